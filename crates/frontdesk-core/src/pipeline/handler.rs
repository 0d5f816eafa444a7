//! In-process stages: the [`Handler`] trait modules implement, and the [`Registry`] that
//! maps `module/action` names to them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::context::{Ctx, Failure};
use super::spec::is_handler_name;

/// What a stage tells the engine after it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Go on with the next stage.
    Next,
    /// Answer now with the response as it stands; the remaining stages do not run.
    Answer,
}

/// One `module/action`. Small, and reaching other modules only through the state store,
/// the context, the bus and published events.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure>;

    /// Undoes what `run` did, when a later stage of the same request fails. Called in
    /// reverse order of the stages that ran. Most stages have nothing to undo.
    async fn compensate(&self, _ctx: &mut Ctx) {}
}

/// `module/action` → handler, filled by the modules at start-up.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

/// Why a handler could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{0:?} is not a handler name (expected \"module/action\")")]
    BadName(String),
    #[error("handler {0:?} is registered twice")]
    Duplicate(String),
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, name: &str, handler: Arc<dyn Handler>) -> Result<(), RegistryError> {
        if !is_handler_name(name) {
            return Err(RegistryError::BadName(name.to_string()));
        }
        if self.handlers.insert(name.to_string(), handler).is_some() {
            return Err(RegistryError::Duplicate(name.to_string()));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
