//! The storage module (SPEC §2, §8): durable chat history written behind through the bus,
//! and the history API over it.
//!
//! # Layout
//! - [`record`] — `storage/record`, the last `did` stage of every event that changes
//!   something durable: it publishes one [`HistoryJob`] per effect (the chat as it stands,
//!   each message the event added, the visitor record) to the bus queue
//!   [`HISTORY_QUEUE`]. Core chat keeps working while the database is down (seed 000):
//!   only the bus must answer. Sending a message uses `storage/record_messages`, which
//!   records just the messages (sending changes nothing else about the chat).
//! - [`worker`] — `storage/start` / `storage/stop` (in `server.start` / `server.end`) and the
//!   loop that applies batches of up to [`BATCH`] jobs in one store transaction. A batch
//!   that fails is failed back to the bus (retried with backoff); while the store is
//!   unavailable the loop stops fetching and probes it, so an outage of any length costs
//!   each job one attempt rather than all of them.
//! - [`api`] — `storage/list_chats`, `storage/get_chat`, `storage/export_chat` behind
//!   `chats.list`, `chats.get` and `chats.export` (REST `GET /api/v1/chats…`).
//! - [`status`] — `storage/record_status`, agents' status changes for the online/away report.
//! - [`params`] — the history filters and the opaque cursor; [`export`] — CSV.
//!
//! Who sees what (as Chatwoot scopes conversations by role): supervisors and admins see
//! every chat of their site; agents see the chats they took part in (accepted, were
//! transferred or joined). Another site's chat reads as not found.
//!
//! [`HistoryJob`]: frontdesk_core::history::HistoryJob
//! [`HISTORY_QUEUE`]: frontdesk_core::history::HISTORY_QUEUE

mod api;
mod export;
mod params;
mod record;
mod status;
mod worker;

use std::sync::Arc;

use frontdesk_core::bus::Bus;
use frontdesk_core::pipeline::Registry;
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;

use crate::{Deps, RegisterError};

pub use worker::BATCH;

/// Registers the storage module's handlers.
pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let storage = Arc::new(Storage {
        state: deps.backends.state.clone(),
        store: deps.backends.store.clone(),
        bus: deps.backends.bus.clone(),
    });
    record::register(registry, &storage)?;
    worker::register(registry, &storage)?;
    api::register(registry, &storage)?;
    status::register(registry, &storage)?;
    Ok(())
}

/// What the storage handlers work with.
pub(crate) struct Storage {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
}

/// Microseconds since the epoch: the version of a snapshot (last writer wins).
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
