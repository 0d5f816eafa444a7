//! Cross-node pushes: the [`PubSub`] port (in-process or Redis pub/sub) and the
//! [`RouteTable`], which records on which node each user's sockets live (seed 003), so a
//! push for a user on another node is published to that node's channel only.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::BackendResult;
use crate::keys;
use crate::state::StateStore;

/// A live subscription: messages published on its channel after `subscribe` returned, in
/// publish order per publisher. Dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<Bytes>,
    _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    /// `guard` is dropped with the subscription; backends use it to unsubscribe.
    pub fn new(rx: mpsc::Receiver<Bytes>, guard: Box<dyn Send + Sync>) -> Self {
        Self { rx, _guard: guard }
    }

    /// The next message, or `None` once the backend has closed the subscription.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

/// Fire-and-forget publish/subscribe. Delivery is at most once: a node that is down misses
/// what was published meanwhile, which is why clients resume by offsets (SPEC §6).
#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    async fn publish(&self, channel: &str, payload: Bytes) -> BackendResult<()>;
    async fn subscribe(&self, channel: &str) -> BackendResult<Subscription>;
}

/// Where one connection of a user lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub conn_id: String,
    pub node_id: u16,
}

/// user → connections → node, kept in the state store with a lease per connection, so a
/// node that dies without cleaning up stops receiving pushes once its entries lapse.
#[derive(Clone)]
pub struct RouteTable {
    state: Arc<dyn StateStore>,
    lease: Duration,
}

impl RouteTable {
    /// `lease` is how long an entry lives without [`RouteTable::add`] being called again.
    pub fn new(state: Arc<dyn StateStore>, lease: Duration) -> Self {
        Self { state, lease }
    }

    /// Records (or refreshes) that `conn_id` of `user` is on `node_id`.
    pub async fn add(&self, user: &str, conn_id: &str, node_id: u16) -> BackendResult<()> {
        let key = keys::route(user);
        let value = format!("{node_id}:{}", now_ms() + self.lease.as_millis() as u64);
        self.state.hset(&key, &[(conn_id, &value)]).await?;
        // The whole hash outlives its newest entry by one lease, so a user who leaves
        // leaves nothing behind.
        self.state.expire(&key, self.lease * 2).await?;
        Ok(())
    }

    pub async fn remove(&self, user: &str, conn_id: &str) -> BackendResult<()> {
        self.state.hdel(&keys::route(user), &[conn_id]).await?;
        Ok(())
    }

    /// The live connections of `user`; lapsed entries are skipped and cleaned up.
    pub async fn lookup(&self, user: &str) -> BackendResult<Vec<Route>> {
        let key = keys::route(user);
        let now = now_ms();
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (conn_id, value) in self.state.hgetall(&key).await? {
            match parse_route(&value) {
                Some((node_id, until)) if until > now => live.push(Route { conn_id, node_id }),
                _ => stale.push(conn_id),
            }
        }
        if !stale.is_empty() {
            let fields: Vec<&str> = stale.iter().map(String::as_str).collect();
            self.state.hdel(&key, &fields).await?;
        }
        live.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
        Ok(live)
    }

    /// The distinct nodes `user` is connected to.
    pub async fn nodes(&self, user: &str) -> BackendResult<Vec<u16>> {
        let mut nodes: Vec<u16> = self.lookup(user).await?.into_iter().map(|r| r.node_id).collect();
        nodes.sort_unstable();
        nodes.dedup();
        Ok(nodes)
    }
}

fn parse_route(value: &str) -> Option<(u16, u64)> {
    let (node, until) = value.split_once(':')?;
    Some((node.parse().ok()?, until.parse().ok()?))
}

fn now_ms() -> u64 {
    u64::try_from(crate::time::now_ms()).unwrap_or(0)
}
