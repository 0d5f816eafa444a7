//! The runtime state's generation id (SPEC §6). A value `<epoch>:<random>` under
//! [`keys::generation`], set when a node finds the store empty. Nodes keep the highest epoch
//! they have seen and check the key every second:
//!
//! - missing (the store restarted empty, or was flushed) → a new generation with a higher
//!   epoch is set (`SET NX`; one node wins, all adopt it);
//! - a higher epoch than seen → another node already moved on: adopt it;
//! - a different value with an epoch not above the highest seen → the store was restored
//!   from an old snapshot: move on to a new, higher epoch (compare-and-set, one node wins).
//!
//! Chats are stamped with the generation they were made in; a chat whose stamp is not the
//! current generation is treated as unknown (rule 1 of SPEC §6) instead of counting on from
//! stale counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::task::JoinHandle;

use crate::error::{BackendError, BackendResult};
use crate::keys;
use crate::state::{Script, ScriptTx, ScriptValue, SetMode, StateStore};

/// Sets the key to `ARGV[2]` only while it still holds `ARGV[1]`.
static REPLACE: Script = Script {
    name: "generation_replace",
    lua: "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0",
    local: replace_local,
};

fn replace_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    let (Some(key), Some(old), Some(new)) = (keys.first(), args.first(), args.get(1)) else {
        return Err(BackendError::other("generation", "generation_replace needs 1 key and 2 arguments"));
    };
    if tx.get(key)?.as_deref() == Some(old.as_str()) {
        tx.set(key, new, None)?;
        return Ok(ScriptValue::Int(1));
    }
    Ok(ScriptValue::Int(0))
}

/// This node's view of the generation.
pub struct Generation {
    state: Arc<dyn StateStore>,
    current: RwLock<String>,
    max_epoch: AtomicU64,
}

impl Generation {
    /// Reads the generation, setting the first one on an empty store.
    pub async fn establish(state: Arc<dyn StateStore>) -> BackendResult<Arc<Generation>> {
        let g = Arc::new(Generation { state, current: RwLock::new(String::new()), max_epoch: AtomicU64::new(0) });
        g.check().await?;
        Ok(g)
    }

    /// The generation new chats are stamped with.
    pub fn current(&self) -> String {
        self.current.read().clone()
    }

    /// One look at the store; true when the generation changed since the last look.
    pub async fn check(&self) -> BackendResult<bool> {
        let key = keys::generation();
        let seen = self.max_epoch.load(Ordering::Acquire);
        let value = match self.state.get(&key).await? {
            Some(v) => v,
            None => {
                self.state.set(&key, &fresh(seen + 1), SetMode::IfAbsent, None).await?;
                self.state.get(&key).await?.unwrap_or_default()
            }
        };
        if value == *self.current.read() {
            return Ok(false);
        }
        let value = match epoch(&value) {
            Some(e) if e > seen => value,
            // Not newer than what this node has seen: an old snapshot came back.
            _ if seen > 0 => {
                let next = fresh(seen + 1);
                self.state.eval(&REPLACE, &[&key], &[&value, &next]).await?;
                self.state.get(&key).await?.unwrap_or(next)
            }
            _ => value,
        };
        let first = self.current.read().is_empty();
        if let Some(e) = epoch(&value) {
            self.max_epoch.fetch_max(e, Ordering::AcqRel);
        }
        *self.current.write() = value.clone();
        if !first {
            metrics::counter!("frontdesk_state_generation_changes_total").increment(1);
            tracing::warn!(generation = %value, "the runtime state was lost or restored; chats of older generations will be rebuilt");
        }
        Ok(!first)
    }

    /// Checks every `every` until the handle is aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> JoinHandle<()> {
        let g = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = g.check().await {
                    tracing::debug!(error = %e, "generation check failed; trying again");
                }
            }
        })
    }
}

fn fresh(epoch: u64) -> String {
    format!("{epoch}:{:016x}", rand::random::<u64>())
}

fn epoch(value: &str) -> Option<u64> {
    value.split_once(':').and_then(|(e, _)| e.parse().ok())
}
