//! Node-id leasing (SPEC §4): in cluster mode each node leases a snowflake node id in the
//! state store (`SET NX` with a lease, renewed), so two live nodes never share one. A node
//! that cannot renew in time stops issuing ids until it holds the lease again, because by
//! then another node may have taken the id over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{BackendError, BackendResult};
use crate::id::MAX_NODE_ID;
use crate::keys;
use crate::state::StateStore;

/// A held node-id lease. Renewed in the background; [`NodeLease::release`] gives it back.
pub struct NodeLease {
    node_id: u16,
    owner: String,
    state: Arc<dyn StateStore>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl NodeLease {
    /// Leases the first free node id, probing from a random start so that nodes starting
    /// together rarely contend. `owner` must be unique to this process (e.g. a random id).
    /// `valid` is cleared whenever the lease may have lapsed and set again once renewed.
    pub async fn acquire(
        state: Arc<dyn StateStore>,
        owner: String,
        lease: Duration,
        valid: Arc<AtomicBool>,
    ) -> BackendResult<Self> {
        let span = u32::from(MAX_NODE_ID) + 1;
        let start = rand::random::<u32>() % span;
        for i in 0..span {
            let node_id = ((start + i) % span) as u16;
            if state.lock_acquire(&keys::node_lease(node_id), &owner, lease).await? {
                return Ok(Self::start(state, node_id, owner, lease, valid));
            }
        }
        Err(BackendError::Conflict(format!("all {span} node ids are leased by live nodes")))
    }

    /// Leases exactly `node_id` (configured by the operator); fails with `Conflict` when a
    /// live node holds it.
    pub async fn acquire_id(
        state: Arc<dyn StateStore>,
        node_id: u16,
        owner: String,
        lease: Duration,
        valid: Arc<AtomicBool>,
    ) -> BackendResult<Self> {
        if !state.lock_acquire(&keys::node_lease(node_id), &owner, lease).await? {
            return Err(BackendError::Conflict(format!(
                "node id {node_id} is held by another live node; give this node another FRONTDESK_NODE_ID or leave it unset"
            )));
        }
        Ok(Self::start(state, node_id, owner, lease, valid))
    }

    fn start(state: Arc<dyn StateStore>, node_id: u16, owner: String, lease: Duration, valid: Arc<AtomicBool>) -> Self {
        valid.store(true, Ordering::Release);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(renew_loop(state.clone(), node_id, owner.clone(), lease, valid, stopped));
        tracing::info!(node_id, "leased node id");
        Self { node_id, owner, state, stop, task: Some(task) }
    }

    pub fn node_id(&self) -> u16 {
        self.node_id
    }

    /// Stops renewing and frees the id for another node.
    pub async fn release(mut self) -> BackendResult<()> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.state.lock_release(&keys::node_lease(self.node_id), &self.owner).await?;
        Ok(())
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn renew_loop(
    state: Arc<dyn StateStore>,
    node_id: u16,
    owner: String,
    lease: Duration,
    valid: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    let key = keys::node_lease(node_id);
    let mut last_renewed = Instant::now();
    // Renew at a third of the lease so two missed renewals still leave time.
    let every = lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        let renewed = match state.lock_renew(&key, &owner, lease).await {
            // Someone else holds it, or it lapsed: take it again only if it is free.
            Ok(false) => state.lock_acquire(&key, &owner, lease).await,
            other => other,
        };
        match renewed {
            Ok(true) => {
                last_renewed = Instant::now();
                if !valid.swap(true, Ordering::AcqRel) {
                    tracing::warn!(node_id, "node-id lease regained; issuing ids again");
                }
            }
            Ok(false) => {
                if valid.swap(false, Ordering::AcqRel) {
                    tracing::error!(node_id, "node-id lease taken by another node; no ids until it is free");
                }
            }
            Err(e) => {
                // Unreachable store: the lease is still ours until it would have lapsed.
                if last_renewed.elapsed() >= lease && valid.swap(false, Ordering::AcqRel) {
                    tracing::error!(node_id, error = %e, "node-id lease may have lapsed; no ids until renewed");
                }
            }
        }
    }
}
