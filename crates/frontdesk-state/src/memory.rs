//! The in-process backends of embedded mode (SPEC §2): [`MemoryState`], a key space with
//! Redis semantics, and [`MemoryPubSub`], per-channel fan-out inside one process.
//!
//! The key space is split into shards by [`hash_tag`], so keys that share a hash tag share a
//! shard and one lock; a [`Script`] runs its `local` body while holding that lock, which is
//! what makes it atomic, and refuses keys of different tags exactly as Redis Cluster does
//! (`CROSSSLOT`). Every async method runs the same synchronous code ([`Tx`]) that scripts
//! use, so a script and a plain call can never disagree on semantics.
//!
//! Expiry has millisecond precision and follows Tokio's clock (so tests that pause time
//! drive it too). Expired keys vanish on access, and a background sweeper removes those that
//! are never touched again, so memory does not grow with dead keys.

use std::cmp::{Ordering, Reverse};
use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::pubsub::{PubSub, Subscription};
use frontdesk_core::state::{hash_tag, Script, ScriptTx, ScriptValue, SetMode, StateStore, Ttl};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

const BACKEND: &str = "memory";
/// Enough shards that two busy chats rarely contend on one lock, few enough to sweep cheaply.
const SHARDS: usize = 64;
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Bounds how long one sweep holds a shard's lock, so a burst of expiries cannot stall
/// callers; the rest is left for the next tick.
const SWEEP_BATCH: usize = 1024;
/// Messages a subscriber may fall behind before further ones are dropped for it.
pub const DEFAULT_SUBSCRIBER_BUFFER: usize = 1024;

/// The in-process [`StateStore`]. Cheap to clone; clones share the same key space.
#[derive(Clone)]
pub struct MemoryState {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Entry>,
    /// When keys may expire, for the sweeper. Entries are not removed when a key is deleted
    /// or its expiry changes; the sweeper checks the key's real deadline when one comes due.
    deadlines: BinaryHeap<Reverse<(Instant, String)>>,
}

struct Entry {
    value: Value,
    expires_at: Option<Instant>,
}

enum Value {
    Str(String),
    Hash(HashMap<String, String>),
    List(VecDeque<String>),
    Set(HashSet<String>),
    ZSet(ZSet),
}

impl Value {
    fn is_empty_container(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.scores.is_empty(),
        }
    }
}

/// A sorted set: scores by member, plus the members ordered as Redis orders them (score,
/// then member bytes).
#[derive(Default)]
struct ZSet {
    scores: HashMap<String, f64>,
    order: BTreeSet<ZEntry>,
}

struct ZEntry {
    score: f64,
    member: String,
}

impl Ord for ZEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| self.member.as_bytes().cmp(other.member.as_bytes()))
    }
}

impl PartialOrd for ZEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ZEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ZEntry {}

impl ZSet {
    /// Adds or moves a member; true when it is new.
    fn insert(&mut self, member: &str, score: f64) -> bool {
        // -0.0 and 0.0 are one score in Redis; total_cmp would order them apart.
        let score = if score == 0.0 { 0.0 } else { score };
        match self.scores.insert(member.to_owned(), score) {
            Some(old) => {
                self.order.remove(&ZEntry { score: old, member: member.to_owned() });
                self.order.insert(ZEntry { score, member: member.to_owned() });
                false
            }
            None => {
                self.order.insert(ZEntry { score, member: member.to_owned() });
                true
            }
        }
    }

    fn remove(&mut self, member: &str) -> bool {
        match self.scores.remove(member) {
            Some(score) => {
                self.order.remove(&ZEntry { score, member: member.to_owned() });
                true
            }
            None => false,
        }
    }

    fn range(&self, min: f64, max: f64) -> impl Iterator<Item = &ZEntry> {
        let from = ZEntry { score: min, member: String::new() };
        self.order.range(from..).take_while(move |e| e.score <= max)
    }
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryState {
    /// An empty store. Inside a Tokio runtime this also starts the expiry sweeper, which
    /// ends by itself once the store is dropped.
    pub fn new() -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        let inner = Arc::new(Inner { shards, hasher: RandomState::new() });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_loop(Arc::downgrade(&inner)));
        }
        Self { inner }
    }

    /// How many keys are held, counting expired ones the sweeper has not reached yet.
    pub fn stored_keys(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    fn shard_of(&self, tag: &str) -> &Mutex<Shard> {
        let index = self.inner.hasher.hash_one(tag) as usize % SHARDS;
        &self.inner.shards[index]
    }

    /// Runs one single-key operation under the lock of the key's shard.
    fn with<T>(&self, key: &str, op: impl FnOnce(&mut Tx<'_>) -> BackendResult<T>) -> BackendResult<T> {
        let mut shard = self.shard_of(hash_tag(key)).lock();
        let mut tx = Tx { shard: &mut shard, now: Instant::now(), scope: Scope::Any };
        op(&mut tx)
    }
}

async fn sweep_loop(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        for shard in inner.shards.iter() {
            shard.lock().sweep(now);
        }
    }
}

impl Shard {
    fn sweep(&mut self, now: Instant) {
        for _ in 0..SWEEP_BATCH {
            match self.deadlines.peek() {
                Some(Reverse((due, _))) if *due <= now => {}
                _ => break,
            }
            let Some(Reverse((_, key))) = self.deadlines.pop() else {
                break;
            };
            if self.map.get(&key).is_some_and(|e| e.expired(now)) {
                self.map.remove(&key);
            }
        }
    }

    fn track_deadline(&mut self, key: &str, at: Instant) {
        self.deadlines.push(Reverse((at, key.to_owned())));
        // A key whose expiry is refreshed often leaves stale deadlines behind; rebuild the
        // heap from the live keys when they outnumber the keys.
        if self.deadlines.len() > 2 * self.map.len() + 64 {
            self.deadlines =
                self.map.iter().filter_map(|(k, e)| e.expires_at.map(|at| Reverse((at, k.clone())))).collect();
        }
    }
}

impl Entry {
    fn new(value: Value) -> Self {
        Self { value, expires_at: None }
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Which keys an operation may touch.
enum Scope<'a> {
    /// A single-key call: the key chose the shard, so it is always in scope.
    Any,
    /// A script: only keys with this hash tag live in the locked shard.
    Tag(&'a str),
}

/// One shard, locked, with the operations of [`ScriptTx`] and the rest of [`StateStore`].
struct Tx<'a> {
    shard: &'a mut Shard,
    now: Instant,
    scope: Scope<'a>,
}

fn wrong_type(key: &str) -> BackendError {
    BackendError::WrongType { backend: BACKEND, key: key.to_owned() }
}

fn not_an_integer() -> BackendError {
    BackendError::other(BACKEND, "value is not an integer or out of range")
}

fn overflow() -> BackendError {
    BackendError::other(BACKEND, "increment or decrement would overflow")
}

/// The deadline `ttl` from `now`. Redis keeps millisecond precision and refuses a zero
/// expiry in `SET`, so both backends round a shorter one up to a millisecond; a TTL past
/// the clock's range is refused, as Redis refuses one past its own.
fn deadline(now: Instant, ttl: Duration) -> BackendResult<Instant> {
    now.checked_add(ttl.max(Duration::from_millis(1)))
        .ok_or_else(|| BackendError::other(BACKEND, "invalid expire time"))
}

/// Turns Redis's inclusive `start..=stop` with negative indices into a slice range.
fn list_range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { (start + len).max(0) } else { start };
    let stop = if stop < 0 { stop + len } else { stop.min(len - 1) };
    if start > stop || start >= len {
        None
    } else {
        Some((start as usize, stop as usize))
    }
}

/// Accessors for one kind of value: `$get` reads an existing one (`None` when the key is
/// missing), `$make` creates an empty one when the key is missing.
macro_rules! kind_accessors {
    ($get:ident, $make:ident, $variant:ident, $ty:ty) => {
        fn $get(&mut self, key: &str) -> BackendResult<Option<&mut $ty>> {
            match self.live(key)? {
                None => Ok(None),
                Some(Entry { value: Value::$variant(v), .. }) => Ok(Some(v)),
                Some(_) => Err(wrong_type(key)),
            }
        }

        fn $make(&mut self, key: &str) -> BackendResult<&mut $ty> {
            self.live(key)?;
            let entry =
                self.shard.map.entry(key.to_owned()).or_insert_with(|| Entry::new(Value::$variant(Default::default())));
            match &mut entry.value {
                Value::$variant(v) => Ok(v),
                _ => Err(wrong_type(key)),
            }
        }
    };
}

impl Tx<'_> {
    fn in_scope(&self, key: &str) -> BackendResult<()> {
        match self.scope {
            Scope::Any => Ok(()),
            Scope::Tag(tag) if hash_tag(key) == tag => Ok(()),
            Scope::Tag(tag) => Err(BackendError::CrossSlot(format!("script on hash tag {tag:?} touched key {key:?}"))),
        }
    }

    /// The key's entry if it exists and has not expired; an expired one is removed here.
    fn live(&mut self, key: &str) -> BackendResult<Option<&mut Entry>> {
        self.in_scope(key)?;
        let now = self.now;
        if self.shard.map.get(key).is_some_and(|e| e.expired(now)) {
            self.shard.map.remove(key);
        }
        Ok(self.shard.map.get_mut(key))
    }

    /// Redis deletes a hash, list, set or sorted set once its last element is removed.
    fn vanish_if_empty(&mut self, key: &str) {
        if self.shard.map.get(key).is_some_and(|e| e.value.is_empty_container()) {
            self.shard.map.remove(key);
        }
    }

    kind_accessors!(hash, hash_or_new, Hash, HashMap<String, String>);
    kind_accessors!(list, list_or_new, List, VecDeque<String>);
    kind_accessors!(set_value, set_or_new, Set, HashSet<String>);
    kind_accessors!(zset, zset_or_new, ZSet, ZSet);

    // Strings and keys.

    fn get(&mut self, key: &str) -> BackendResult<Option<String>> {
        match self.live(key)? {
            None => Ok(None),
            Some(Entry { value: Value::Str(s), .. }) => Ok(Some(s.clone())),
            Some(_) => Err(wrong_type(key)),
        }
    }

    fn set(&mut self, key: &str, value: &str, mode: SetMode, ttl: Option<Duration>) -> BackendResult<bool> {
        let expires_at = ttl.map(|ttl| deadline(self.now, ttl)).transpose()?;
        let exists = self.live(key)?.is_some();
        match mode {
            SetMode::IfAbsent if exists => return Ok(false),
            SetMode::IfPresent if !exists => return Ok(false),
            _ => {}
        }
        // As in Redis, SET replaces a value of any kind and clears an earlier expiry.
        self.shard.map.insert(key.to_owned(), Entry { value: Value::Str(value.to_owned()), expires_at });
        if let Some(at) = expires_at {
            self.shard.track_deadline(key, at);
        }
        Ok(true)
    }

    fn incrby(&mut self, key: &str, by: i64) -> BackendResult<i64> {
        match self.live(key)? {
            None => {
                self.shard.map.insert(key.to_owned(), Entry::new(Value::Str(by.to_string())));
                Ok(by)
            }
            // INCRBY keeps the key's expiry.
            Some(Entry { value: Value::Str(s), .. }) => {
                let current: i64 = s.parse().map_err(|_| not_an_integer())?;
                let next = current.checked_add(by).ok_or_else(overflow)?;
                *s = next.to_string();
                Ok(next)
            }
            Some(_) => Err(wrong_type(key)),
        }
    }

    fn del(&mut self, key: &str) -> BackendResult<bool> {
        let existed = self.live(key)?.is_some();
        self.shard.map.remove(key);
        Ok(existed)
    }

    fn exists(&mut self, key: &str) -> BackendResult<bool> {
        Ok(self.live(key)?.is_some())
    }

    fn pexpire(&mut self, key: &str, ttl: Duration) -> BackendResult<bool> {
        let at = deadline(self.now, ttl)?;
        match self.live(key)? {
            None => Ok(false),
            Some(entry) => {
                entry.expires_at = Some(at);
                self.shard.track_deadline(key, at);
                Ok(true)
            }
        }
    }

    fn ttl(&mut self, key: &str) -> BackendResult<Ttl> {
        let now = self.now;
        Ok(match self.live(key)? {
            None => Ttl::Missing,
            Some(Entry { expires_at: None, .. }) => Ttl::Persistent,
            Some(Entry { expires_at: Some(at), .. }) => Ttl::Expires(at.saturating_duration_since(now)),
        })
    }

    // Hashes.

    fn hget(&mut self, key: &str, field: &str) -> BackendResult<Option<String>> {
        Ok(self.hash(key)?.and_then(|h| h.get(field).cloned()))
    }

    fn hmget(&mut self, key: &str, fields: &[&str]) -> BackendResult<Vec<Option<String>>> {
        let hash = self.hash(key)?;
        Ok(fields.iter().map(|f| hash.as_ref().and_then(|h| h.get(*f).cloned())).collect())
    }

    fn hgetall(&mut self, key: &str) -> BackendResult<Vec<(String, String)>> {
        Ok(self.hash(key)?.map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default())
    }

    fn hset(&mut self, key: &str, fields: &[(&str, &str)]) -> BackendResult<()> {
        // Nothing to write is a no-op on both backends (Redis refuses an empty HSET).
        if fields.is_empty() {
            return Ok(());
        }
        let hash = self.hash_or_new(key)?;
        for (field, value) in fields {
            hash.insert((*field).to_owned(), (*value).to_owned());
        }
        Ok(())
    }

    fn hsetnx(&mut self, key: &str, field: &str, value: &str) -> BackendResult<bool> {
        let hash = self.hash_or_new(key)?;
        let wrote = match hash.entry(field.to_owned()) {
            MapEntry::Occupied(_) => false,
            MapEntry::Vacant(v) => {
                v.insert(value.to_owned());
                true
            }
        };
        Ok(wrote)
    }

    fn hdel(&mut self, key: &str, fields: &[&str]) -> BackendResult<u64> {
        if fields.is_empty() {
            return Ok(0);
        }
        let Some(hash) = self.hash(key)? else {
            return Ok(0);
        };
        let removed = fields.iter().filter(|f| hash.remove(**f).is_some()).count() as u64;
        self.vanish_if_empty(key);
        Ok(removed)
    }

    fn hincrby(&mut self, key: &str, field: &str, by: i64) -> BackendResult<i64> {
        let hash = self.hash_or_new(key)?;
        let current = match hash.get(field) {
            None => 0,
            Some(v) => v.parse::<i64>().map_err(|_| BackendError::other(BACKEND, "hash value is not an integer"))?,
        };
        let next = current.checked_add(by).ok_or_else(overflow)?;
        hash.insert(field.to_owned(), next.to_string());
        Ok(next)
    }

    fn hcas(&mut self, key: &str, field: &str, expected: Option<&str>, new: Option<&str>) -> BackendResult<bool> {
        let current = self.hget(key, field)?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        match new {
            Some(value) => self.hset(key, &[(field, value)])?,
            None => {
                self.hdel(key, &[field])?;
            }
        }
        Ok(true)
    }

    // Sorted sets.

    fn zadd(&mut self, key: &str, members: &[(f64, &str)]) -> BackendResult<u64> {
        if members.iter().any(|(score, _)| score.is_nan()) {
            return Err(BackendError::other(BACKEND, "value is not a valid float"));
        }
        if members.is_empty() {
            return Ok(0);
        }
        let zset = self.zset_or_new(key)?;
        Ok(members.iter().filter(|(score, member)| zset.insert(member, *score)).count() as u64)
    }

    fn zrem(&mut self, key: &str, members: &[&str]) -> BackendResult<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        let Some(zset) = self.zset(key)? else {
            return Ok(0);
        };
        let removed = members.iter().filter(|m| zset.remove(m)).count() as u64;
        self.vanish_if_empty(key);
        Ok(removed)
    }

    fn zscore(&mut self, key: &str, member: &str) -> BackendResult<Option<f64>> {
        Ok(self.zset(key)?.and_then(|z| z.scores.get(member).copied()))
    }

    fn zrank(&mut self, key: &str, member: &str) -> BackendResult<Option<u64>> {
        let Some(zset) = self.zset(key)? else {
            return Ok(None);
        };
        let Some(&score) = zset.scores.get(member) else {
            return Ok(None);
        };
        let this = ZEntry { score, member: member.to_owned() };
        Ok(Some(zset.order.range(..this).count() as u64))
    }

    fn zcard(&mut self, key: &str) -> BackendResult<u64> {
        Ok(self.zset(key)?.map_or(0, |z| z.scores.len() as u64))
    }

    fn zrange_by_score(
        &mut self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<(usize, usize)>,
    ) -> BackendResult<Vec<(String, f64)>> {
        if min.is_nan() || max.is_nan() {
            return Err(BackendError::other(BACKEND, "min or max is not a float"));
        }
        let Some(zset) = self.zset(key)? else {
            return Ok(Vec::new());
        };
        let (offset, count) = limit.unwrap_or((0, usize::MAX));
        Ok(zset.range(min, max).skip(offset).take(count).map(|e| (e.member.clone(), e.score)).collect())
    }

    fn zremrange_by_score(&mut self, key: &str, min: f64, max: f64) -> BackendResult<u64> {
        if min.is_nan() || max.is_nan() {
            return Err(BackendError::other(BACKEND, "min or max is not a float"));
        }
        let Some(zset) = self.zset(key)? else {
            return Ok(0);
        };
        let doomed: Vec<String> = zset.range(min, max).map(|e| e.member.clone()).collect();
        for member in &doomed {
            zset.remove(member);
        }
        self.vanish_if_empty(key);
        Ok(doomed.len() as u64)
    }

    // Lists.

    fn rpush(&mut self, key: &str, values: &[&str]) -> BackendResult<u64> {
        if values.is_empty() {
            return Ok(self.list(key)?.map_or(0, |l| l.len() as u64));
        }
        let list = self.list_or_new(key)?;
        list.extend(values.iter().map(|v| (*v).to_owned()));
        Ok(list.len() as u64)
    }

    fn lpop(&mut self, key: &str, count: usize) -> BackendResult<Vec<String>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let Some(list) = self.list(key)? else {
            return Ok(Vec::new());
        };
        let n = count.min(list.len());
        let popped = list.drain(..n).collect();
        self.vanish_if_empty(key);
        Ok(popped)
    }

    fn lrange(&mut self, key: &str, start: i64, stop: i64) -> BackendResult<Vec<String>> {
        let Some(list) = self.list(key)? else {
            return Ok(Vec::new());
        };
        Ok(match list_range(list.len(), start, stop) {
            Some((from, to)) => list.range(from..=to).cloned().collect(),
            None => Vec::new(),
        })
    }

    fn ltrim(&mut self, key: &str, start: i64, stop: i64) -> BackendResult<()> {
        let Some(list) = self.list(key)? else {
            return Ok(());
        };
        match list_range(list.len(), start, stop) {
            Some((from, to)) => {
                list.truncate(to + 1);
                list.drain(..from);
            }
            None => list.clear(),
        }
        self.vanish_if_empty(key);
        Ok(())
    }

    fn llen(&mut self, key: &str) -> BackendResult<u64> {
        Ok(self.list(key)?.map_or(0, |l| l.len() as u64))
    }

    fn lrem(&mut self, key: &str, count: i64, value: &str) -> BackendResult<u64> {
        let Some(list) = self.list(key)? else {
            return Ok(0);
        };
        let limit = if count == 0 { usize::MAX } else { count.unsigned_abs() as usize };
        let mut removed = 0usize;
        if count >= 0 {
            list.retain(|v| {
                let drop = removed < limit && v == value;
                removed += usize::from(drop);
                !drop
            });
        } else {
            // From the tail: walk backwards and remove the first `limit` matches seen.
            let mut i = list.len();
            while i > 0 && removed < limit {
                i -= 1;
                if list[i] == value {
                    list.remove(i);
                    removed += 1;
                }
            }
        }
        self.vanish_if_empty(key);
        Ok(removed as u64)
    }

    // Sets.

    fn sadd(&mut self, key: &str, members: &[&str]) -> BackendResult<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        let set = self.set_or_new(key)?;
        Ok(members.iter().filter(|m| set.insert((**m).to_owned())).count() as u64)
    }

    fn srem(&mut self, key: &str, members: &[&str]) -> BackendResult<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        let Some(set) = self.set_value(key)? else {
            return Ok(0);
        };
        let removed = members.iter().filter(|m| set.remove(**m)).count() as u64;
        self.vanish_if_empty(key);
        Ok(removed)
    }

    fn smembers(&mut self, key: &str) -> BackendResult<Vec<String>> {
        Ok(self.set_value(key)?.map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }

    fn sismember(&mut self, key: &str, member: &str) -> BackendResult<bool> {
        Ok(self.set_value(key)?.is_some_and(|s| s.contains(member)))
    }

    fn scard(&mut self, key: &str) -> BackendResult<u64> {
        Ok(self.set_value(key)?.map_or(0, |s| s.len() as u64))
    }

    // The lock: a string holding its owner, with the lease as its expiry.

    fn lock_acquire(&mut self, key: &str, owner: &str, lease: Duration) -> BackendResult<bool> {
        self.set(key, owner, SetMode::IfAbsent, Some(lease))
    }

    fn lock_renew(&mut self, key: &str, owner: &str, lease: Duration) -> BackendResult<bool> {
        if self.get(key)?.as_deref() != Some(owner) {
            return Ok(false);
        }
        self.pexpire(key, lease)
    }

    fn lock_release(&mut self, key: &str, owner: &str) -> BackendResult<bool> {
        if self.get(key)?.as_deref() != Some(owner) {
            return Ok(false);
        }
        self.del(key)
    }
}

impl ScriptTx for Tx<'_> {
    fn get(&mut self, key: &str) -> BackendResult<Option<String>> {
        Tx::get(self, key)
    }
    fn set(&mut self, key: &str, value: &str, ttl: Option<Duration>) -> BackendResult<()> {
        Tx::set(self, key, value, SetMode::Always, ttl).map(drop)
    }
    fn del(&mut self, key: &str) -> BackendResult<bool> {
        Tx::del(self, key)
    }
    fn exists(&mut self, key: &str) -> BackendResult<bool> {
        Tx::exists(self, key)
    }
    fn pexpire(&mut self, key: &str, ttl: Duration) -> BackendResult<bool> {
        Tx::pexpire(self, key, ttl)
    }
    fn incrby(&mut self, key: &str, by: i64) -> BackendResult<i64> {
        Tx::incrby(self, key, by)
    }
    fn hget(&mut self, key: &str, field: &str) -> BackendResult<Option<String>> {
        Tx::hget(self, key, field)
    }
    fn hset(&mut self, key: &str, fields: &[(&str, &str)]) -> BackendResult<()> {
        Tx::hset(self, key, fields)
    }
    fn hdel(&mut self, key: &str, fields: &[&str]) -> BackendResult<u64> {
        Tx::hdel(self, key, fields)
    }
    fn hincrby(&mut self, key: &str, field: &str, by: i64) -> BackendResult<i64> {
        Tx::hincrby(self, key, field, by)
    }
    fn hgetall(&mut self, key: &str) -> BackendResult<Vec<(String, String)>> {
        Tx::hgetall(self, key)
    }
    fn zadd(&mut self, key: &str, members: &[(f64, &str)]) -> BackendResult<u64> {
        Tx::zadd(self, key, members)
    }
    fn zrem(&mut self, key: &str, members: &[&str]) -> BackendResult<u64> {
        Tx::zrem(self, key, members)
    }
    fn zscore(&mut self, key: &str, member: &str) -> BackendResult<Option<f64>> {
        Tx::zscore(self, key, member)
    }
    fn zcard(&mut self, key: &str) -> BackendResult<u64> {
        Tx::zcard(self, key)
    }
    fn zrange_by_score(
        &mut self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<(usize, usize)>,
    ) -> BackendResult<Vec<(String, f64)>> {
        Tx::zrange_by_score(self, key, min, max, limit)
    }
    fn rpush(&mut self, key: &str, values: &[&str]) -> BackendResult<u64> {
        Tx::rpush(self, key, values)
    }
    fn lrange(&mut self, key: &str, start: i64, stop: i64) -> BackendResult<Vec<String>> {
        Tx::lrange(self, key, start, stop)
    }
    fn lrem(&mut self, key: &str, count: i64, value: &str) -> BackendResult<u64> {
        Tx::lrem(self, key, count, value)
    }
    fn sadd(&mut self, key: &str, members: &[&str]) -> BackendResult<u64> {
        Tx::sadd(self, key, members)
    }
    fn srem(&mut self, key: &str, members: &[&str]) -> BackendResult<u64> {
        Tx::srem(self, key, members)
    }
    fn smembers(&mut self, key: &str) -> BackendResult<Vec<String>> {
        Tx::smembers(self, key)
    }
}

/// The hash tag every key of one atomic step shares, or `CrossSlot`. Shared with the Redis
/// backend so both refuse the same calls.
pub(crate) fn common_tag<'k>(keys: &[&'k str]) -> BackendResult<Option<&'k str>> {
    let Some(first) = keys.first() else {
        return Ok(None);
    };
    let tag = hash_tag(first);
    match keys.iter().find(|k| hash_tag(k) != tag) {
        Some(other) => Err(BackendError::CrossSlot(format!("{first:?} and {other:?}"))),
        None => Ok(Some(tag)),
    }
}

#[async_trait]
impl StateStore for MemoryState {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> BackendResult<()> {
        Ok(())
    }

    async fn get(&self, key: &str) -> BackendResult<Option<String>> {
        self.with(key, |tx| tx.get(key))
    }

    async fn set(&self, key: &str, value: &str, mode: SetMode, ttl: Option<Duration>) -> BackendResult<bool> {
        self.with(key, |tx| tx.set(key, value, mode, ttl))
    }

    async fn incrby(&self, key: &str, by: i64) -> BackendResult<i64> {
        self.with(key, |tx| tx.incrby(key, by))
    }

    async fn del(&self, keys: &[&str]) -> BackendResult<u64> {
        let mut n = 0;
        for key in keys {
            n += u64::from(self.with(key, |tx| tx.del(key))?);
        }
        Ok(n)
    }

    async fn exists(&self, key: &str) -> BackendResult<bool> {
        self.with(key, |tx| tx.exists(key))
    }

    async fn expire(&self, key: &str, ttl: Duration) -> BackendResult<bool> {
        self.with(key, |tx| tx.pexpire(key, ttl))
    }

    async fn ttl(&self, key: &str) -> BackendResult<Ttl> {
        self.with(key, |tx| tx.ttl(key))
    }

    async fn hget(&self, key: &str, field: &str) -> BackendResult<Option<String>> {
        self.with(key, |tx| tx.hget(key, field))
    }

    async fn hmget(&self, key: &str, fields: &[&str]) -> BackendResult<Vec<Option<String>>> {
        self.with(key, |tx| tx.hmget(key, fields))
    }

    async fn hgetall(&self, key: &str) -> BackendResult<Vec<(String, String)>> {
        self.with(key, |tx| tx.hgetall(key))
    }

    async fn hset(&self, key: &str, fields: &[(&str, &str)]) -> BackendResult<()> {
        self.with(key, |tx| tx.hset(key, fields))
    }

    async fn hsetnx(&self, key: &str, field: &str, value: &str) -> BackendResult<bool> {
        self.with(key, |tx| tx.hsetnx(key, field, value))
    }

    async fn hdel(&self, key: &str, fields: &[&str]) -> BackendResult<u64> {
        self.with(key, |tx| tx.hdel(key, fields))
    }

    async fn hincrby(&self, key: &str, field: &str, by: i64) -> BackendResult<i64> {
        self.with(key, |tx| tx.hincrby(key, field, by))
    }

    async fn hcas(&self, key: &str, field: &str, expected: Option<&str>, new: Option<&str>) -> BackendResult<bool> {
        self.with(key, |tx| tx.hcas(key, field, expected, new))
    }

    async fn zadd(&self, key: &str, members: &[(f64, &str)]) -> BackendResult<u64> {
        self.with(key, |tx| tx.zadd(key, members))
    }

    async fn zrem(&self, key: &str, members: &[&str]) -> BackendResult<u64> {
        self.with(key, |tx| tx.zrem(key, members))
    }

    async fn zscore(&self, key: &str, member: &str) -> BackendResult<Option<f64>> {
        self.with(key, |tx| tx.zscore(key, member))
    }

    async fn zrank(&self, key: &str, member: &str) -> BackendResult<Option<u64>> {
        self.with(key, |tx| tx.zrank(key, member))
    }

    async fn zcard(&self, key: &str) -> BackendResult<u64> {
        self.with(key, |tx| tx.zcard(key))
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<(usize, usize)>,
    ) -> BackendResult<Vec<(String, f64)>> {
        self.with(key, |tx| tx.zrange_by_score(key, min, max, limit))
    }

    async fn zremrange_by_score(&self, key: &str, min: f64, max: f64) -> BackendResult<u64> {
        self.with(key, |tx| tx.zremrange_by_score(key, min, max))
    }

    async fn rpush(&self, key: &str, values: &[&str]) -> BackendResult<u64> {
        self.with(key, |tx| tx.rpush(key, values))
    }

    async fn lpop(&self, key: &str, count: usize) -> BackendResult<Vec<String>> {
        self.with(key, |tx| tx.lpop(key, count))
    }

    async fn lrange(&self, key: &str, start: i64, stop: i64) -> BackendResult<Vec<String>> {
        self.with(key, |tx| tx.lrange(key, start, stop))
    }

    async fn ltrim(&self, key: &str, start: i64, stop: i64) -> BackendResult<()> {
        self.with(key, |tx| tx.ltrim(key, start, stop))
    }

    async fn llen(&self, key: &str) -> BackendResult<u64> {
        self.with(key, |tx| tx.llen(key))
    }

    async fn lrem(&self, key: &str, count: i64, value: &str) -> BackendResult<u64> {
        self.with(key, |tx| tx.lrem(key, count, value))
    }

    async fn sadd(&self, key: &str, members: &[&str]) -> BackendResult<u64> {
        self.with(key, |tx| tx.sadd(key, members))
    }

    async fn srem(&self, key: &str, members: &[&str]) -> BackendResult<u64> {
        self.with(key, |tx| tx.srem(key, members))
    }

    async fn smembers(&self, key: &str) -> BackendResult<Vec<String>> {
        self.with(key, |tx| tx.smembers(key))
    }

    async fn sismember(&self, key: &str, member: &str) -> BackendResult<bool> {
        self.with(key, |tx| tx.sismember(key, member))
    }

    async fn scard(&self, key: &str) -> BackendResult<u64> {
        self.with(key, |tx| tx.scard(key))
    }

    async fn lock_acquire(&self, key: &str, owner: &str, lease: Duration) -> BackendResult<bool> {
        self.with(key, |tx| tx.lock_acquire(key, owner, lease))
    }

    async fn lock_renew(&self, key: &str, owner: &str, lease: Duration) -> BackendResult<bool> {
        self.with(key, |tx| tx.lock_renew(key, owner, lease))
    }

    async fn lock_release(&self, key: &str, owner: &str) -> BackendResult<bool> {
        self.with(key, |tx| tx.lock_release(key, owner))
    }

    async fn eval(&self, script: &'static Script, keys: &[&str], args: &[&str]) -> BackendResult<ScriptValue> {
        let owned_keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        let owned_args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        // A script without keys may touch none: no shard is its own, as in Redis Cluster.
        let tag = common_tag(keys)?.unwrap_or("\0no keys");
        let mut shard = self.shard_of(tag).lock();
        let mut tx = Tx { shard: &mut shard, now: Instant::now(), scope: Scope::Tag(tag) };
        (script.local)(&mut tx, &owned_keys, &owned_args)
    }
}

/// The in-process [`PubSub`]: a map of channel → subscribers, each with a bounded buffer.
/// Cheap to clone; clones share the channels.
#[derive(Clone)]
pub struct MemoryPubSub {
    inner: Arc<PubSubInner>,
}

struct PubSubInner {
    channels: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
    buffer: usize,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Bytes>,
}

/// Removes its subscriber when the [`Subscription`] is dropped.
struct Unsubscribe {
    inner: Weak<PubSubInner>,
    channel: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut channels = inner.channels.lock();
        if let Some(subs) = channels.get_mut(&self.channel) {
            subs.retain(|s| s.id != self.id);
            if subs.is_empty() {
                channels.remove(&self.channel);
            }
        }
    }
}

impl Default for MemoryPubSub {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPubSub {
    pub fn new() -> Self {
        Self::with_buffer(DEFAULT_SUBSCRIBER_BUFFER)
    }

    /// `buffer` is how many messages one subscriber may fall behind before further messages
    /// are dropped for it (and only for it).
    pub fn with_buffer(buffer: usize) -> Self {
        Self {
            inner: Arc::new(PubSubInner {
                channels: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                buffer: buffer.max(1),
            }),
        }
    }

    /// How many live subscriptions `channel` has.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.inner.channels.lock().get(channel).map_or(0, Vec::len)
    }
}

#[async_trait]
impl PubSub for MemoryPubSub {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn publish(&self, channel: &str, payload: Bytes) -> BackendResult<()> {
        let mut channels = self.inner.channels.lock();
        let Some(subs) = channels.get_mut(channel) else {
            return Ok(());
        };
        // try_send never waits, so one slow subscriber costs a publisher nothing and the
        // lock is held only for the copies.
        subs.retain(|s| match s.tx.try_send(payload.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(channel, subscriber = s.id, "subscriber is behind; message dropped for it");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if subs.is_empty() {
            channels.remove(channel);
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> BackendResult<Subscription> {
        let (tx, rx) = mpsc::channel(self.inner.buffer);
        let id = self.inner.next_id.fetch_add(1, AtomicOrdering::Relaxed);
        self.inner.channels.lock().entry(channel.to_owned()).or_default().push(Subscriber { id, tx });
        let guard = Unsubscribe { inner: Arc::downgrade(&self.inner), channel: channel.to_owned(), id };
        Ok(Subscription::new(rx, Box::new(guard)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_range_follows_redis() {
        assert_eq!(list_range(5, 0, -1), Some((0, 4)));
        assert_eq!(list_range(5, -2, -1), Some((3, 4)));
        assert_eq!(list_range(5, -100, 100), Some((0, 4)));
        assert_eq!(list_range(5, 3, 1), None);
        assert_eq!(list_range(5, 5, 10), None);
        assert_eq!(list_range(0, 0, -1), None);
    }

    #[tokio::test]
    async fn sweeper_removes_expired_keys_nobody_reads() {
        let state = MemoryState::new();
        for i in 0..200 {
            state.set(&format!("k{i}"), "v", SetMode::Always, Some(Duration::from_millis(20))).await.expect("set");
        }
        state.set("kept", "v", SetMode::Always, None).await.expect("set");
        assert_eq!(state.stored_keys(), 201);
        let deadline = Instant::now() + Duration::from_secs(3);
        while state.stored_keys() > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state.stored_keys(), 1, "expired keys stayed in memory");
    }

    #[tokio::test]
    async fn sweeper_ends_when_the_store_is_dropped() {
        let state = MemoryState::new();
        let weak = Arc::downgrade(&state.inner);
        drop(state);
        tokio::time::sleep(SWEEP_EVERY * 2).await;
        assert!(weak.upgrade().is_none(), "the sweeper kept the store alive");
    }

    #[tokio::test]
    async fn slow_subscriber_loses_messages_without_blocking_the_publisher() {
        let bus = MemoryPubSub::with_buffer(4);
        let mut slow = bus.subscribe("c").await.expect("subscribe");
        for i in 0..100u32 {
            bus.publish("c", Bytes::from(i.to_string())).await.expect("publish");
        }
        for i in 0..4u32 {
            assert_eq!(slow.recv().await, Some(Bytes::from(i.to_string())));
        }
        bus.publish("c", Bytes::from_static(b"later")).await.expect("publish");
        assert_eq!(slow.recv().await, Some(Bytes::from_static(b"later")));
    }

    #[tokio::test]
    async fn dropped_subscriptions_leave_nothing_behind() {
        let bus = MemoryPubSub::new();
        let a = bus.subscribe("c").await.expect("subscribe");
        let b = bus.subscribe("c").await.expect("subscribe");
        assert_eq!(bus.subscribers("c"), 2);
        drop(a);
        assert_eq!(bus.subscribers("c"), 1);
        drop(b);
        assert_eq!(bus.subscribers("c"), 0);
        assert!(bus.inner.channels.lock().is_empty());
    }

    #[tokio::test]
    async fn a_ttl_beyond_the_clock_is_an_error_not_a_panic() {
        let state = MemoryState::new();
        let r = state.set("k", "v", SetMode::Always, Some(Duration::MAX)).await;
        assert!(matches!(r, Err(BackendError::Other { .. })), "{r:?}");
        state.set("k", "v", SetMode::Always, None).await.expect("set");
        assert!(state.expire("k", Duration::MAX).await.is_err());
        assert_eq!(state.ttl("k").await.expect("ttl"), Ttl::Persistent);
    }

    #[test]
    fn zset_orders_by_score_then_member() {
        let mut z = ZSet::default();
        z.insert("b", 1.0);
        z.insert("a", 1.0);
        z.insert("c", 0.5);
        z.insert("a", -0.0);
        let order: Vec<&str> = z.order.iter().map(|e| e.member.as_str()).collect();
        assert_eq!(order, ["a", "c", "b"]);
    }
}
