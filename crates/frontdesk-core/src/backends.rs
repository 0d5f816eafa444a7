//! The set of backends a node runs on, chosen at start-up by URL scheme and passed down
//! explicitly (never through a global).

use std::sync::Arc;

use crate::bus::Bus;
use crate::pubsub::PubSub;
use crate::state::StateStore;
use crate::store::Store;

#[derive(Clone)]
pub struct Backends {
    pub state: Arc<dyn StateStore>,
    pub pubsub: Arc<dyn PubSub>,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
}
