//! The Logic layer (SPEC §3, §8): one module per folder, each owning its slice of state and
//! registering its `module/action` handlers. Modules reach each other only through the
//! state store, the context, the bus and published events — never by calling another
//! module's internals.
//!
//! # Layout
//! - [`auth`] — caller resolution and role guards.
//! - [`agent`] — login, refresh, logout, status, preferences, presence.
//! - [`directory`] — sites, agents and departments as admin resources.
//! - [`visitor`] — visitors entering, browsing, custom variables; the live visitor list.
//! - [`chat`] — chats, messages, offsets and rebuild (SPEC §6), typing, read cursors.
//! - [`dispatch`] — queues and assignment of chats to agents.
//! - [`storage`] — durable chat history written behind through the bus; the history API.
//! - [`reports`] — supervisor reports over the durable history (SQL aggregates).
//! - [`privacy`] — retention, GDPR erase and the audit log.
//! - [`offline`] — offline messages: availability, submit (written behind, e-mailed), the
//!   agents' list.
//! - [`tokens`] — agent and visitor bearer tokens (shared by the modules that issue them).
//!
//! Each module declares its events in `src/<module>/pipelines.json`; `build.rs` merges them
//! with `src/pipelines.json` (base and lifecycle events) into the built-in pipeline file
//! ([`BUILTIN_PIPELINES`]). The runtime objects modules share (agent presence, chat
//! metadata) are described once in [`model`], like a database schema.
//!
//! Architecture Invariant: no module names a backend; they see only `frontdesk-core`'s ports.

pub mod agent;
pub mod agent_chat;
pub mod auth;
pub mod chat;
pub mod directory;
pub mod dispatch;
pub mod invitation;
pub mod model;
pub mod offline;
pub mod privacy;
pub mod reports;
pub mod storage;
pub mod tokens;
pub mod visitor;

use std::sync::Arc;

use frontdesk_core::backends::Backends;
use frontdesk_core::id::IdGenerator;
use frontdesk_core::pipeline::Registry;
use frontdesk_core::push::Push;

/// The built-in pipeline file, embedded; `frontdesk pipelines` prints it and
/// `FRONTDESK_PIPELINES` replaces it.
pub const BUILTIN_PIPELINES: &str = include_str!(concat!(env!("OUT_DIR"), "/pipelines.json"));

/// What modules are built from.
pub struct Deps {
    pub backends: Backends,
    pub ids: IdGenerator,
    pub tokens: Arc<tokens::Tokens>,
    /// `FRONTDESK_OPERATOR_TOKEN`, when set.
    pub operator_token: Option<String>,
    /// Real-time pushes to users' sockets, on any node.
    pub push: Arc<dyn Push>,
    /// The runtime state's generation; chats are stamped with it (SPEC §6).
    pub generation: Arc<frontdesk_core::generation::Generation>,
    pub settings: Settings,
    /// Outbound e-mail (SMTP), when configured; without it no e-mail is queued.
    pub mailer: Option<Arc<dyn frontdesk_core::mail::Mailer>>,
}

/// Tunables of the modules (defaults from SPEC §4 and common practice).
#[derive(Debug, Clone)]
pub struct Settings {
    /// An agent with no socket and no call for this long counts as offline.
    pub presence_timeout: std::time::Duration,
    /// How long an agent has to accept an offered chat before it goes to the next one.
    pub offer_timeout: std::time::Duration,
    pub access_token_ttl: std::time::Duration,
    pub refresh_token_ttl: std::time::Duration,
    pub visitor_token_ttl: std::time::Duration,
    /// How fast one visitor may send chat messages (`chat/rate_limit`).
    pub visitor_messages: chat::MessageRate,
}

impl Default for Settings {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            presence_timeout: Duration::from_secs(60),
            offer_timeout: Duration::from_secs(30),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            visitor_token_ttl: Duration::from_secs(365 * 24 * 3600),
            visitor_messages: chat::MessageRate::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Registry(#[from] frontdesk_core::pipeline::handler::RegistryError),
}

/// Registers every module's handlers.
pub fn register_all(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    auth::register(registry, deps)?;
    agent::register(registry, deps)?;
    agent_chat::register(registry, deps)?;
    directory::register(registry, deps)?;
    visitor::register(registry, deps)?;
    chat::register(registry, deps)?;
    dispatch::register(registry, deps)?;
    invitation::register(registry, deps)?;
    offline::register(registry, deps)?;
    storage::register(registry, deps)?;
    reports::register(registry, deps)?;
    privacy::register(registry, deps)?;
    Ok(())
}
