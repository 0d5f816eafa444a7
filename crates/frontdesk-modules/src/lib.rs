//! The Logic layer (SPEC §3, §8): one module per folder, each owning its slice of state and
//! registering its `module/action` handlers. Modules reach each other only through the
//! state store, the context, the bus and published events — never by calling another
//! module's internals.
//!
//! # Layout
//! - [`auth`] — caller resolution and role guards.
//! - [`tokens`] — agent and visitor bearer tokens (shared by the modules that issue them).
//! - `pipelines.json`: the built-in pipeline file ([`BUILTIN_PIPELINES`]).
//!
//! Architecture Invariant: no module names a backend; they see only `frontdesk-core`'s ports.

pub mod auth;
pub mod tokens;

use std::sync::Arc;

use frontdesk_core::backends::Backends;
use frontdesk_core::id::IdGenerator;
use frontdesk_core::pipeline::Registry;

/// The built-in pipeline file, embedded; `frontdesk pipelines` prints it and
/// `FRONTDESK_PIPELINES` replaces it.
pub const BUILTIN_PIPELINES: &str = include_str!("pipelines.json");

/// What modules are built from.
pub struct Deps {
    pub backends: Backends,
    pub ids: IdGenerator,
    pub tokens: Arc<tokens::Tokens>,
    /// `FRONTDESK_OPERATOR_TOKEN`, when set.
    pub operator_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Registry(#[from] frontdesk_core::pipeline::handler::RegistryError),
}

/// Registers every module's handlers.
pub fn register_all(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    auth::register(registry, deps.tokens.clone(), deps.operator_token.clone())?;
    Ok(())
}
