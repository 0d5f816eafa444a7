//! The offline-message module (SPEC §5.4 "offline_message", §8 "offline messages"): what the
//! widget shows when no agent can take a chat, where what the visitor leaves is kept, who is
//! told, and how agents work through it.
//!
//! - `offline_message.availability` `{siteId}` (no token) → `{agentsOnline}`: whether any
//!   agent of the site is `online` and has shown life within the presence timeout, read
//!   from the site's presence hashes ([`crate::model::agents_key`], [`crate::model::agent_key`]).
//! - `offline_message.submit` `{siteId?, name, email, message, url?}` (visitor token) →
//!   `{id}`: validated (`offline/validate`: e-mail shape, name without line breaks, message
//!   1..=5000 characters, optional http(s) page URL), then `offline/submit` publishes the
//!   message as a write-behind job ([`HistoryWrite::OfflineMessage`]) on `storage.write`,
//!   applied by the storage worker into the `offline_messages` table (keyed by id, so a
//!   replay inserts nothing) — the durable row is the record, nothing is kept in the runtime
//!   state — and, when SMTP is configured, an [`EmailJob`] on `email.send`. Only the bus
//!   must answer: the visitor's message is accepted while the database or the mail server
//!   is down. The page URL is the one sent, or else the visitor's current page.
//! - `offline_messages.list` (`GET /api/v1/offline-messages?handled=&limit=&cursor=`),
//!   `offline_messages.get` (`GET /api/v1/offline-messages/{id}`) and
//!   `offline_messages.update` (`PATCH /api/v1/offline-messages/{id}` `{handled}`): any
//!   agent of the site lists its messages newest first and marks them handled (or not).
//!   Another site's message reads as `not_found`.
//! - `offline/start` / `offline/stop` (in `server.start` / `server.end`): the e-mail worker.
//!   It sends each offline message to the site's `offlineMessageEmails` setting (set with
//!   `PATCH /api/v1/sites/{id}/settings`) or, when that is unset, to every admin of the site;
//!   `Reply-To` is the visitor, so answering the e-mail answers them. A failed send goes back
//!   to the bus (retried with backoff, dead-lettered after the last attempt).
//!
//! A submit whose first publish succeeded and second failed answers `unavailable`; the
//! visitor's retry then stores the message a second time under a new id (rare, and
//! visible, rather than an e-mail silently lost).
//!
//! # Layout
//! - [`validate`] — the request and its checks (pure functions, unit-tested).
//! - [`handlers`] — availability, validate, submit.
//! - [`api`] — the agents' list, read and handled mark.
//! - [`mail`] — the e-mail worker and the e-mail's text.
//!
//! [`HistoryWrite::OfflineMessage`]: frontdesk_core::history::HistoryWrite::OfflineMessage
//! [`EmailJob`]: frontdesk_core::mail::EmailJob

mod api;
mod handlers;
mod mail;
pub mod validate;

use std::sync::Arc;

use frontdesk_core::bus::Bus;
use frontdesk_core::id::IdGenerator;
use frontdesk_core::mail::Mailer;
use frontdesk_core::pipeline::Registry;
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;

use crate::{Deps, RegisterError};

/// The site setting naming where offline messages are e-mailed (an array of addresses).
pub const EMAILS_SETTING: &str = "offlineMessageEmails";

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let offline = Arc::new(Offline {
        state: deps.backends.state.clone(),
        store: deps.backends.store.clone(),
        bus: deps.backends.bus.clone(),
        ids: deps.ids.clone(),
        mailer: deps.mailer.clone(),
    });
    registry.register(
        "offline/availability",
        Arc::new(handlers::Availability {
            state: deps.backends.state.clone(),
            store: deps.backends.store.clone(),
            presence_timeout: deps.settings.presence_timeout,
        }),
    )?;
    registry.register("offline/validate", Arc::new(handlers::Validate))?;
    registry.register("offline/submit", Arc::new(handlers::Submit(offline.clone())))?;
    api::register(registry, &offline)?;
    mail::register(registry, &offline)?;
    Ok(())
}

/// What the offline handlers work with.
pub(crate) struct Offline {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub ids: IdGenerator,
    pub mailer: Option<Arc<dyn Mailer>>,
}
