//! The push hub: delivers `{"push": NAME, "data": …}` frames to sockets (SPEC §5.6). It
//! implements the core [`Push`] port for the modules.
//!
//! Each socket is attached under its route keys (`a:<agent>`, `s:<site>:agents`,
//! `v:<visitor>`). A push is serialised once, handed to this node's sockets of each key,
//! and published once to every other node the route table lists for that key; each node
//! listens on its own channel and hands what arrives to its local sockets (seed 003).
//! Route entries are leased and refreshed while the socket lives, so a node that dies
//! stops receiving pushes once its entries lapse.
//!
//! Slow consumers: each socket's outbox is bounded. A push that finds it full raises the
//! socket's [`Overflow`] instead of waiting: the socket leaves the hub at once (no further
//! push queues behind the stuck one), its session closes it with [`TOO_SLOW`], and the
//! client resumes by offsets (SPEC §6). Raising is a flag and a channel notice, never an
//! await, so one socket that stops reading cannot slow a push to anyone else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes};
use frontdesk_core::error::BackendResult;
use frontdesk_core::keys;
use frontdesk_core::pubsub::{PubSub, RouteTable};
use frontdesk_core::push::{Push, Recipient};
use frontdesk_core::state::StateStore;
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a route entry lives without a refresh.
const ROUTE_LEASE: Duration = Duration::from_secs(60);

/// The close code of a socket whose outbox overflowed ("too slow"; private range, as 4401):
/// clients reconnect and catch up by offsets.
pub const TOO_SLOW: u16 = 4008;

/// Raised once when a socket's outbox overflows. The hub raises it; the socket's session
/// and writer task wait on it to close the socket.
#[derive(Clone)]
pub struct Overflow(Arc<watch::Sender<bool>>);

impl Default for Overflow {
    fn default() -> Self {
        Overflow(Arc::new(watch::channel(false).0))
    }
}

impl Overflow {
    /// Marks the socket too slow and counts it; true the first time only.
    pub fn raise(&self) -> bool {
        let first = !self.0.send_replace(true);
        if first {
            metrics::counter!("frontdesk_ws_closed_total", "reason" => "too_slow").increment(1);
        }
        first
    }

    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the overflow is raised (at once if it was already).
    pub async fn raised(&self) {
        // The sender lives in `self`, so the wait cannot fail for want of one.
        let _ = self.0.subscribe().wait_for(|raised| *raised).await;
    }
}

struct LocalConn {
    conn_id: String,
    tx: flume::Sender<Message>,
    overflow: Overflow,
    /// Every key the socket is attached under, to drop it from all of them on overflow.
    keys: Arc<[String]>,
}

pub struct PushHub {
    node_id: u16,
    local: RwLock<HashMap<String, Vec<LocalConn>>>,
    /// Where other nodes' sockets are; `None` when no other node can exist (embedded mode:
    /// the runtime state lives in this process), and a push goes to this node's sockets only.
    routes: Option<RouteTable>,
    pubsub: Arc<dyn PubSub>,
}

#[derive(Serialize)]
struct Frame<'a> {
    push: &'a str,
    data: &'a Value,
}

impl PushHub {
    /// `single_node`: whether this node is the only one there can be (then no route table
    /// is kept).
    pub fn new(node_id: u16, state: Arc<dyn StateStore>, pubsub: Arc<dyn PubSub>, single_node: bool) -> Arc<PushHub> {
        Arc::new(PushHub {
            node_id,
            local: RwLock::new(HashMap::new()),
            routes: (!single_node).then(|| RouteTable::new(state, ROUTE_LEASE)),
            pubsub,
        })
    }

    /// Listens on this node's channel and keeps local sockets' routes fresh. Abort the
    /// handles to stop.
    pub async fn start(self: &Arc<Self>) -> BackendResult<Vec<JoinHandle<()>>> {
        let mut sub = self.pubsub.subscribe(&keys::node_channel(self.node_id)).await?;
        let hub = self.clone();
        let listener = tokio::spawn(async move {
            while let Some(envelope) = sub.recv().await {
                if let Some((key, frame)) = open_envelope(&envelope) {
                    hub.deliver_local(key, &frame);
                }
            }
        });
        let Some(routes) = self.routes.clone() else { return Ok(vec![listener]) };
        let hub = self.clone();
        let refresher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ROUTE_LEASE / 3).await;
                let entries: Vec<(String, String)> = hub
                    .local
                    .read()
                    .iter()
                    .flat_map(|(key, conns)| conns.iter().map(|c| (key.clone(), c.conn_id.clone())))
                    .collect();
                for (key, conn_id) in entries {
                    if let Err(e) = routes.add(&key, &conn_id, hub.node_id).await {
                        tracing::warn!(error = %e, "cannot refresh a socket's route");
                        break;
                    }
                }
            }
        });
        Ok(vec![listener, refresher])
    }

    /// Attaches a socket under `route_keys` on this node and in the route table. Pushes
    /// go to `tx`; `overflow` is raised when `tx` is full.
    pub async fn attach(
        &self,
        conn_id: &str,
        route_keys: &[String],
        tx: flume::Sender<Message>,
        overflow: Overflow,
    ) -> BackendResult<()> {
        {
            let all: Arc<[String]> = route_keys.into();
            let mut local = self.local.write();
            for key in route_keys {
                local.entry(key.clone()).or_default().push(LocalConn {
                    conn_id: conn_id.to_string(),
                    tx: tx.clone(),
                    overflow: overflow.clone(),
                    keys: all.clone(),
                });
            }
        }
        let Some(routes) = &self.routes else { return Ok(()) };
        for key in route_keys {
            routes.add(key, conn_id, self.node_id).await?;
        }
        Ok(())
    }

    /// Detaches a socket (closed or logged out).
    pub async fn detach(&self, conn_id: &str, route_keys: &[String]) {
        self.forget_local(conn_id, route_keys);
        let Some(routes) = &self.routes else { return };
        for key in route_keys {
            if let Err(e) = routes.remove(key, conn_id).await {
                tracing::debug!(error = %e, "route not removed; it lapses by itself");
            }
        }
    }

    /// Sockets attached on this node under `key`.
    pub fn local_sockets(&self, key: &str) -> usize {
        self.local.read().get(key).map_or(0, Vec::len)
    }

    /// Drops a socket from this node's map (the route table entries go in `detach`, or
    /// lapse).
    fn forget_local(&self, conn_id: &str, route_keys: &[String]) {
        let mut local = self.local.write();
        for key in route_keys {
            if let Some(conns) = local.get_mut(key) {
                conns.retain(|c| c.conn_id != conn_id);
                if conns.is_empty() {
                    local.remove(key);
                }
            }
        }
    }

    /// Hands `frame` to this node's sockets of `key`. A socket whose queue is full misses
    /// the push and is closed as too slow (it catches up by offsets when it reconnects)
    /// rather than slowing everyone else.
    fn deliver_local(&self, key: &str, frame: &Utf8Bytes) -> usize {
        let mut overflowed = Vec::new();
        let mut delivered = 0;
        {
            let local = self.local.read();
            let Some(conns) = local.get(key) else { return 0 };
            for conn in conns {
                if conn.overflow.is_raised() {
                    continue;
                }
                match conn.tx.try_send(Message::Text(frame.clone())) {
                    Ok(()) => delivered += 1,
                    Err(flume::TrySendError::Full(_)) => {
                        metrics::counter!("frontdesk_push_dropped_total", "reason" => "slow_socket").increment(1);
                        if conn.overflow.raise() {
                            overflowed.push((conn.conn_id.clone(), conn.keys.clone()));
                        }
                    }
                    Err(flume::TrySendError::Disconnected(_)) => {}
                }
            }
        }
        // Under the write lock only once the read guard is gone (the lock is not reentrant).
        for (conn_id, keys) in overflowed {
            tracing::info!(conn_id, "socket too slow: its outbox is full; closing it");
            self.forget_local(&conn_id, &keys);
        }
        delivered
    }
}

#[async_trait]
impl Push for PushHub {
    async fn push(&self, to: &[Recipient], name: &str, data: &Value) -> BackendResult<()> {
        let frame = Utf8Bytes::from(serde_json::to_string(&Frame { push: name, data }).unwrap_or_default());
        metrics::counter!("frontdesk_pushes_total").increment(1);
        for recipient in to {
            let key = recipient.route_key();
            self.deliver_local(&key, &frame);
            let Some(routes) = &self.routes else { continue };
            for node in routes.nodes(&key).await? {
                if node != self.node_id {
                    self.pubsub.publish(&keys::node_channel(node), seal_envelope(&key, &frame)).await?;
                }
            }
        }
        Ok(())
    }
}

/// `key \n frame`: the route key and the frame as it goes on the wire.
fn seal_envelope(key: &str, frame: &Utf8Bytes) -> Bytes {
    let mut buf = Vec::with_capacity(key.len() + 1 + frame.len());
    buf.extend_from_slice(key.as_bytes());
    buf.push(b'\n');
    buf.extend_from_slice(frame.as_bytes());
    Bytes::from(buf)
}

fn open_envelope(envelope: &[u8]) -> Option<(&str, Utf8Bytes)> {
    let split = envelope.iter().position(|b| *b == b'\n')?;
    let key = std::str::from_utf8(&envelope[..split]).ok()?;
    let frame = std::str::from_utf8(&envelope[split + 1..]).ok()?;
    Some((key, Utf8Bytes::from(frame.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let frame = Utf8Bytes::from_static(r#"{"push":"chat.message","data":{"a":"x\ny"}}"#);
        let sealed = seal_envelope("a:42", &frame);
        let (key, back) = open_envelope(&sealed).expect("open");
        assert_eq!(key, "a:42");
        assert_eq!(back, frame);
        assert!(open_envelope(b"no newline").is_none());
    }
}
