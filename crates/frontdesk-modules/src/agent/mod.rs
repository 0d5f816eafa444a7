//! The agent module (SPEC §4, §5.3, §5.4 "agent"): login, token refresh and logout,
//! status and presence, preferences.
//!
//! # Layout
//! - [`session`] — `agent/login`, `agent/refresh_token`, `agent/logout`: argon2id
//!   verification, per-account and per-IP failure limits, opaque rotating refresh tokens
//!   stored as SHA-256 with reuse detection, session revocation.
//! - [`presence`] — `agent/set_status`, `agent/touch`, `agent/socket_opened`,
//!   `agent/socket_closed`: the agent's [`AgentPresence`](crate::model::AgentPresence).
//! - [`sweeper`] — `agent/start` and [`sweep_presence`]: agents with no socket and no
//!   call within the presence timeout become `offline`.
//! - [`preference`] — `agent/set_preference`.
//!
//! Keys: `model::agent_key` / `model::agents_key` (presence), `model::session_key`
//! (`revoked` once logged out, read by `auth/resolve_caller`), [`presence_sites_key`]
//! (sites with presence, visited by the sweeper), and the login failure counters
//! `fd:{login:a:<sha256(email)>}` and `fd:{login:ip:<ip>}`.

mod preference;
mod presence;
mod session;
mod sweeper;

use std::sync::Arc;

use frontdesk_core::id::{AgentId, SiteId};
use frontdesk_core::pipeline::{Caller, Failure, Registry};
use frontdesk_core::push::Push;
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;

use crate::tokens::Tokens;
use crate::{Deps, RegisterError, Settings};

pub use sweeper::sweep_presence;

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let m = Arc::new(AgentModule {
        state: deps.backends.state.clone(),
        store: deps.backends.store.clone(),
        tokens: deps.tokens.clone(),
        push: deps.push.clone(),
        settings: deps.settings.clone(),
        bus: deps.backends.bus.clone(),
    });
    session::register(registry, &m)?;
    presence::register(registry, &m)?;
    sweeper::register(registry, &m)?;
    preference::register(registry, &m)?;
    Ok(())
}

pub(crate) struct AgentModule {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub tokens: Arc<Tokens>,
    pub push: Arc<dyn Push>,
    pub settings: Settings,
    /// Where the sweeper's `offline` transitions go to be recorded (the history queue).
    pub bus: Arc<dyn frontdesk_core::bus::Bus>,
}

/// Sites with at least one agent presence, visited by the sweeper. Not hash-tagged: it is
/// read on its own, never in a script with other keys.
pub fn presence_sites_key() -> String {
    "fd:agent:presence_sites".to_string()
}

/// The calling agent, or `forbidden` for anyone else.
pub(crate) fn agent_caller(caller: &Caller, event: &str) -> Result<(SiteId, AgentId, String), Failure> {
    match caller {
        Caller::Agent { site_id, agent_id, session_id, .. } => Ok((*site_id, *agent_id, session_id.clone())),
        _ => Err(Failure::forbidden(format!("only an agent may call {event}"))),
    }
}

pub(crate) use frontdesk_core::time::now_ms;
