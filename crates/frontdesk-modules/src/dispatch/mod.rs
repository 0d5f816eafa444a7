//! The dispatch module (SPEC §4, §5.4): queues of waiting chats per department, offers to
//! available agents, agents' capacity (`activeChats`), transfers, and the sweeper that
//! expires unanswered offers and retries queued chats.
//!
//! # Layout
//! - [`scripts`] — the atomic steps on a site's hash tag: [`OFFER`] (picks the agent from the
//!   site's availability index, `model::availability` — online, seen within the presence
//!   timeout, under capacity, in the department; returning-visitor stickiness, priority,
//!   then load or turn — and offers it the chat: capacity, queue and index change together,
//!   so two nodes never give one chat to two agents and no agent goes over capacity) and
//!   [`ADJUST_CAPACITY`].
//! - [`offer`] — the offer around the script (strategy and members, cached per node for a
//!   second), the queues, draining them, and `queue.updated` pushes.
//! - [`handlers`] — `dispatch/route`, `dispatch/accept`, `dispatch/refuse`,
//!   `dispatch/transfer`, `dispatch/release`.
//! - [`sweeper`] — `dispatch/start` / `dispatch/stop` and the once-a-second sweep.
//!
//! Keys: the queues (`model::queue_key`), `fd:{s:<site>}:queues` (the departments with a
//! queue), `fd:{s:<site>}:offers` (pending offers: chat id scored by deadline, claimed
//! with `ZREM` by whoever answers or expires it), `fd:dispatch:sites` (sites the sweeper
//! visits), and the availability index with the offer counter (`model::availability`).

mod handlers;
mod offer;
mod scripts;
mod sweeper;

use std::sync::Arc;

use frontdesk_core::id::SiteId;
use frontdesk_core::keys;
use frontdesk_core::pipeline::Registry;
use frontdesk_core::push::Push;
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;

use crate::{Deps, RegisterError, Settings};

pub use scripts::{ADJUST_CAPACITY, OFFER};

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let d = Arc::new(Dispatch {
        state: deps.backends.state.clone(),
        store: deps.backends.store.clone(),
        push: deps.push.clone(),
        settings: deps.settings.clone(),
        routing: Default::default(),
        positions: Default::default(),
        positions_running: Default::default(),
        drains_running: Default::default(),
    });
    handlers::register(registry, &d)?;
    sweeper::register(registry, &d)?;
    Ok(())
}

pub(crate) struct Dispatch {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub push: Arc<dyn Push>,
    pub settings: Settings,
    pub routing: offer::RoutingCache,
    pub positions: offer::PositionCache,
    pub positions_running: offer::RunningPasses,
    pub drains_running: offer::RunningPasses,
}

/// Departments (`0` = the site-wide queue) that have a queue in the site.
pub(crate) fn queues_key(site: SiteId) -> String {
    keys::site(site, "queues")
}

/// Pending offers of a site: chat id scored by the offer's deadline (Unix ms).
pub(crate) fn offers_key(site: SiteId) -> String {
    keys::site(site, "offers")
}

/// Sites with queues or offers, visited by the sweeper.
pub(crate) fn sites_key() -> String {
    "fd:dispatch:sites".to_string()
}

pub(crate) use frontdesk_core::time::now_ms;
