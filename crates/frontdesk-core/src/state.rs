//! The runtime-state port (SPEC §2, §7): a key space with Redis semantics — hashes of
//! string fields, strings with expiry, counters, sorted sets, lists, sets, a lock with a
//! lease, and a few atomic [`Script`]s.
//!
//! Two backends implement it (in-memory and Redis) and one contract suite
//! (`frontdesk-testkit`) runs against both, so code written against this trait behaves the
//! same on one node and on a cluster.
//!
//! Keys that an atomic step touches together must share a Redis hash tag (`{…}`), exactly
//! as Redis Cluster requires; see [`crate::keys`]. Every backend enforces this.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::BackendResult;

/// How `set` treats an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetMode {
    #[default]
    Always,
    /// Only when the key does not exist (`NX`).
    IfAbsent,
    /// Only when the key exists (`XX`).
    IfPresent,
}

/// The remaining life of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Missing,
    Persistent,
    Expires(Duration),
}

/// The value a [`Script`] returns, the subset of Redis replies we use.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptValue {
    Nil,
    Int(i64),
    Str(String),
    List(Vec<ScriptValue>),
}

impl ScriptValue {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            ScriptValue::Int(i) => Some(*i),
            ScriptValue::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            ScriptValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// An atomic step over keys that share one hash tag. It is written twice: as Lua for Redis
/// (`EVALSHA`) and as Rust over a [`ScriptTx`] for the in-memory store, which runs it under
/// the lock of that hash tag's shard. The contract suite runs each script on both backends,
/// which is what keeps the two definitions the same.
///
/// Lua conventions: `KEYS` and `ARGV` as in Redis; return `nil`, an integer, a string or a
/// flat array of those.
pub struct Script {
    pub name: &'static str,
    pub lua: &'static str,
    pub local: fn(&mut dyn ScriptTx, &[String], &[String]) -> BackendResult<ScriptValue>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The synchronous operations a [`Script`]'s local body may use; the same semantics as the
/// async methods of [`StateStore`] with the same names.
pub trait ScriptTx {
    fn get(&mut self, key: &str) -> BackendResult<Option<String>>;
    fn set(&mut self, key: &str, value: &str, ttl: Option<Duration>) -> BackendResult<()>;
    fn del(&mut self, key: &str) -> BackendResult<bool>;
    fn exists(&mut self, key: &str) -> BackendResult<bool>;
    fn pexpire(&mut self, key: &str, ttl: Duration) -> BackendResult<bool>;
    fn incrby(&mut self, key: &str, by: i64) -> BackendResult<i64>;
    fn hget(&mut self, key: &str, field: &str) -> BackendResult<Option<String>>;
    fn hset(&mut self, key: &str, fields: &[(&str, &str)]) -> BackendResult<()>;
    fn hdel(&mut self, key: &str, fields: &[&str]) -> BackendResult<u64>;
    fn hincrby(&mut self, key: &str, field: &str, by: i64) -> BackendResult<i64>;
    fn hgetall(&mut self, key: &str) -> BackendResult<Vec<(String, String)>>;
    fn zadd(&mut self, key: &str, members: &[(f64, &str)]) -> BackendResult<u64>;
    fn zrem(&mut self, key: &str, members: &[&str]) -> BackendResult<u64>;
    fn zscore(&mut self, key: &str, member: &str) -> BackendResult<Option<f64>>;
    fn zcard(&mut self, key: &str) -> BackendResult<u64>;
    fn zrange_by_score(
        &mut self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<(usize, usize)>,
    ) -> BackendResult<Vec<(String, f64)>>;
    fn rpush(&mut self, key: &str, values: &[&str]) -> BackendResult<u64>;
    fn lrange(&mut self, key: &str, start: i64, stop: i64) -> BackendResult<Vec<String>>;
    fn lrem(&mut self, key: &str, count: i64, value: &str) -> BackendResult<u64>;
    fn sadd(&mut self, key: &str, members: &[&str]) -> BackendResult<u64>;
    fn srem(&mut self, key: &str, members: &[&str]) -> BackendResult<u64>;
    fn smembers(&mut self, key: &str) -> BackendResult<Vec<String>>;
}

/// Runtime state with Redis semantics. All values are strings; nested values are JSON.
/// Missing keys read as empty (an empty hash, an empty list, `None`), as in Redis.
/// Operating on a key holding another kind of value is [`crate::error::BackendError::WrongType`].
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
    async fn ping(&self) -> BackendResult<()>;

    // Strings, counters and keys.
    async fn get(&self, key: &str) -> BackendResult<Option<String>>;
    /// Sets a string value; returns false when `mode` prevented the write.
    async fn set(&self, key: &str, value: &str, mode: SetMode, ttl: Option<Duration>) -> BackendResult<bool>;
    async fn incrby(&self, key: &str, by: i64) -> BackendResult<i64>;
    /// Deletes keys of any kind; returns how many existed.
    async fn del(&self, keys: &[&str]) -> BackendResult<u64>;
    async fn exists(&self, key: &str) -> BackendResult<bool>;
    /// Sets a key's time to live (millisecond precision); false when the key is missing.
    async fn expire(&self, key: &str, ttl: Duration) -> BackendResult<bool>;
    async fn ttl(&self, key: &str) -> BackendResult<Ttl>;

    // Hashes: the shape of every runtime object (SPEC §7).
    async fn hget(&self, key: &str, field: &str) -> BackendResult<Option<String>>;
    async fn hmget(&self, key: &str, fields: &[&str]) -> BackendResult<Vec<Option<String>>>;
    async fn hgetall(&self, key: &str) -> BackendResult<Vec<(String, String)>>;
    /// Writes only the given fields; other fields of the hash are left as they are.
    async fn hset(&self, key: &str, fields: &[(&str, &str)]) -> BackendResult<()>;
    async fn hsetnx(&self, key: &str, field: &str, value: &str) -> BackendResult<bool>;
    async fn hdel(&self, key: &str, fields: &[&str]) -> BackendResult<u64>;
    async fn hincrby(&self, key: &str, field: &str, by: i64) -> BackendResult<i64>;
    /// Compare-and-set of one field: writes `new` (or deletes the field when `None`) only if
    /// the field currently equals `expected` (`None` = absent). Returns whether it wrote.
    async fn hcas(&self, key: &str, field: &str, expected: Option<&str>, new: Option<&str>) -> BackendResult<bool>;

    // Sorted sets (message windows, queues ordered by time).
    async fn zadd(&self, key: &str, members: &[(f64, &str)]) -> BackendResult<u64>;
    async fn zrem(&self, key: &str, members: &[&str]) -> BackendResult<u64>;
    async fn zscore(&self, key: &str, member: &str) -> BackendResult<Option<f64>>;
    async fn zrank(&self, key: &str, member: &str) -> BackendResult<Option<u64>>;
    async fn zcard(&self, key: &str) -> BackendResult<u64>;
    /// Members with `min <= score <= max`, ascending by score then member; `limit` is
    /// `(offset, count)`.
    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<(usize, usize)>,
    ) -> BackendResult<Vec<(String, f64)>>;
    async fn zremrange_by_score(&self, key: &str, min: f64, max: f64) -> BackendResult<u64>;

    // Lists.
    async fn rpush(&self, key: &str, values: &[&str]) -> BackendResult<u64>;
    async fn lpop(&self, key: &str, count: usize) -> BackendResult<Vec<String>>;
    /// Inclusive range with Redis's negative indices.
    async fn lrange(&self, key: &str, start: i64, stop: i64) -> BackendResult<Vec<String>>;
    async fn ltrim(&self, key: &str, start: i64, stop: i64) -> BackendResult<()>;
    async fn llen(&self, key: &str) -> BackendResult<u64>;
    async fn lrem(&self, key: &str, count: i64, value: &str) -> BackendResult<u64>;

    // Sets.
    async fn sadd(&self, key: &str, members: &[&str]) -> BackendResult<u64>;
    async fn srem(&self, key: &str, members: &[&str]) -> BackendResult<u64>;
    async fn smembers(&self, key: &str) -> BackendResult<Vec<String>>;
    async fn sismember(&self, key: &str, member: &str) -> BackendResult<bool>;
    async fn scard(&self, key: &str) -> BackendResult<u64>;

    // A lock with a lease: held by `owner` until released or until the lease runs out.
    async fn lock_acquire(&self, key: &str, owner: &str, lease: Duration) -> BackendResult<bool>;
    /// Extends the lease if `owner` still holds the lock.
    async fn lock_renew(&self, key: &str, owner: &str, lease: Duration) -> BackendResult<bool>;
    /// Releases the lock if `owner` still holds it.
    async fn lock_release(&self, key: &str, owner: &str) -> BackendResult<bool>;

    /// Runs an atomic [`Script`]. All `keys` must share one hash tag.
    async fn eval(&self, script: &'static Script, keys: &[&str], args: &[&str]) -> BackendResult<ScriptValue>;
}

/// The hash tag of a key (the text inside the first `{…}`, if non-empty), else the key.
/// Keys with the same tag live on the same Redis Cluster slot and the same memory shard.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::hash_tag;

    #[test]
    fn hash_tag_follows_redis_cluster_rules() {
        assert_eq!(hash_tag("fd:{c:42}:msgs"), "c:42");
        assert_eq!(hash_tag("fd:{c:42}:meta"), "c:42");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("a{}b"), "a{}b");
        assert_eq!(hash_tag("a{x}{y}"), "x");
    }
}
