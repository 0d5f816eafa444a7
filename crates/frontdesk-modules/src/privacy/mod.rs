//! The privacy module (issue 5): per-site retention, GDPR erase and the audit log.
//!
//! # Layout
//! - [`settings`] — `privacy/update_settings` (`sites.update_settings`, admins): the
//!   site's `retentionDays` (1..=3650, or `null` to keep forever), `retentionMode`
//!   (`delete` | `anonymise`) and `offlineMessageEmails`, stored in `sites.settings`.
//!   Retention covers transcripts and offline messages alike.
//! - [`retention`] — `privacy/start` / `privacy/stop` (in `server.start` / `server.end`):
//!   a timer that applies every site's retention once an hour; `privacy/retention_run`
//!   (`retention.run`) runs it now, for the caller's site (an admin) or every site (the
//!   server itself). Each node runs the timer: a sweep is idempotent, so two nodes
//!   sweeping at once delete nothing twice.
//! - [`erase`] — `privacy/erase_visitor` (`visitors.erase`, admins): a visitor's durable
//!   record, chats and messages (and so their search entries), offline messages and
//!   runtime record.
//! - [`audit`] — `privacy/audit`, a `did` stage that records an admin action in the site's
//!   audit log (agents, departments, settings, erase; retention runs are recorded by the
//!   sweep itself), and `privacy/audit_log` (`audit_log.list`, `GET /api/v1/audit-log`).

mod audit;
mod erase;
mod retention;
mod settings;

use std::sync::Arc;

use frontdesk_core::id::{AgentId, IdGenerator, SiteId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Registry};
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;

use crate::{Deps, RegisterError};

/// Registers the privacy module's handlers.
pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let privacy = Arc::new(Privacy {
        state: deps.backends.state.clone(),
        store: deps.backends.store.clone(),
        ids: deps.ids.clone(),
    });
    settings::register(registry, &privacy)?;
    retention::register(registry, &privacy)?;
    erase::register(registry, &privacy)?;
    audit::register(registry, &privacy)?;
    Ok(())
}

/// What the privacy handlers work with.
pub(crate) struct Privacy {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub ids: IdGenerator,
}

/// The calling agent's site and id.
fn admin(ctx: &Ctx) -> Result<(SiteId, AgentId), Failure> {
    match ctx.caller {
        Caller::Agent { site_id, agent_id, .. } => Ok((site_id, agent_id)),
        _ => Err(Failure::forbidden(format!("{} is called with an admin's access token", ctx.event))),
    }
}

/// Refuses parameters other than `known`, naming the first.
fn only(ctx: &Ctx, known: &[&str]) -> Result<(), Failure> {
    if let Some(unknown) = ctx.request.data.as_object().and_then(|m| m.keys().find(|k| !known.contains(&k.as_str()))) {
        return Err(Failure::bad_request(format!("{unknown} is not a parameter of {}; use {known:?}", ctx.event)));
    }
    Ok(())
}
