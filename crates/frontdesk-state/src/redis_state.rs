//! The cluster-mode backends (SPEC §2) on Redis: [`RedisState`] (the [`StateStore`]) and
//! [`RedisPubSub`] (the [`PubSub`]).
//!
//! Every key and channel gets the deployment's prefix in front, so several installations
//! (or tests) can share one server and `{…}` hash tags inside keys keep working. Commands go
//! through a [`ConnectionManager`], which reconnects by itself; short connection and response
//! timeouts make a dead or paused Redis fail calls fast with `Unavailable` instead of
//! stalling requests, and after one such failure a [`Breaker`] makes the calls that follow
//! fail at once until a background prober finds Redis answering again. Scripts run with `EVALSHA` (falling back to `EVAL` once per server).
//!
//! Pub/sub uses one dedicated connection per [`RedisPubSub`], owned by a single driver task:
//! it applies subscribe/unsubscribe requests in order, forwards each message to that
//! channel's subscribers without ever waiting on one, and after a dropped connection
//! reconnects with backoff and subscribes to every channel again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::{self, Breaker};
use async_trait::async_trait;
use bytes::Bytes;
use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::pubsub::{PubSub, Subscription};
use frontdesk_core::state::{Script, ScriptValue, SetMode, StateStore, Ttl};
use futures::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{Client, FromRedisValue, RedisError, ServerErrorKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

use crate::memory::{common_tag, DEFAULT_SUBSCRIBER_BUFFER};

const BACKEND: &str = "redis";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

const LOCK_RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const LOCK_RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// ARGV: field, expected given ('1'/'0'), expected, new given ('1'/'0'), new.
const HCAS_LUA: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return 0 end
elseif current then
  return 0
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
";

/// The Redis [`StateStore`]. Cheap to clone; clones share the connection and script cache.
#[derive(Clone)]
pub struct RedisState {
    conn: ConnectionManager,
    prefix: Arc<str>,
    scripts: Arc<Mutex<ScriptCache>>,
    internal: Arc<InternalScripts>,
    breaker: Arc<Breaker>,
}

/// Compiled scripts by [`Script::name`], with the Lua text they were compiled from.
type ScriptCache = HashMap<&'static str, (&'static str, Arc<redis::Script>)>;

struct InternalScripts {
    lock_renew: redis::Script,
    lock_release: redis::Script,
    hcas: redis::Script,
}

fn open_client(url: &str) -> BackendResult<Client> {
    Client::open(url).map_err(|e| BackendError::other(BACKEND, format!("bad Redis URL: {e}")))
}

/// A prefix with braces would become the hash tag of every key and put them all on one
/// slot, so it is refused.
fn check_prefix(prefix: &str) -> BackendResult<Arc<str>> {
    if prefix.contains(['{', '}']) {
        return Err(BackendError::other(BACKEND, format!("key prefix {prefix:?} must not contain braces")));
    }
    Ok(prefix.into())
}

fn connection_manager(client: Client) -> BackendResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        // One quick retry per reconnect: a caller waiting on a dead server should get
        // `Unavailable` in about a second, and the next call tries again anyway.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    // Lazy, so a node can start (and report not ready) while its Redis is still down.
    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| map_err(e, ""))
}

/// Network trouble, or a server that cannot serve now (loading, failing over, read-only
/// replica): the state store and the bus both answer these as `Unavailable`.
pub(crate) fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ReadOnly
            )
        )
}

/// Redis errors as backend errors: network trouble and a server that cannot serve now are
/// `Unavailable` (callers may retry or answer 503), `WRONGTYPE` is `WrongType`, the rest
/// `Other`.
fn map_err(e: RedisError, key: &str) -> BackendError {
    if e.code() == Some("WRONGTYPE") {
        return BackendError::WrongType { backend: BACKEND, key: key.to_owned() };
    }
    let unavailable = is_outage(&e);
    if unavailable {
        BackendError::unavailable(BACKEND, e)
    } else {
        BackendError::other(BACKEND, e)
    }
}

/// A score as Redis reads it (`inf`, `-inf` or a decimal that round-trips).
fn score_arg(score: f64) -> BackendResult<String> {
    if score.is_nan() {
        return Err(BackendError::other(BACKEND, "value is not a valid float"));
    }
    Ok(if score == f64::INFINITY {
        "+inf".to_owned()
    } else if score == f64::NEG_INFINITY {
        "-inf".to_owned()
    } else {
        score.to_string()
    })
}

/// A score reply: text in RESP2, a double in RESP3 (`?protocol=resp3` URLs).
fn parse_score(v: &redis::Value) -> BackendResult<f64> {
    let bad = || BackendError::other(BACKEND, format!("bad score {v:?} from Redis"));
    match v {
        redis::Value::Double(d) => Ok(*d),
        redis::Value::Int(i) => Ok(*i as f64),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(bad),
        redis::Value::SimpleString(s) => s.parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn parse_member(v: &redis::Value) -> BackendResult<String> {
    match v {
        redis::Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Ok(s.clone()),
        other => Err(BackendError::other(BACKEND, format!("bad member {other:?} from Redis"))),
    }
}

/// A `WITHSCORES` reply: a flat member, score, … array in RESP2, an array of pairs in RESP3.
fn parse_scored(reply: redis::Value) -> BackendResult<Vec<(String, f64)>> {
    let redis::Value::Array(items) = reply else {
        return Err(BackendError::other(BACKEND, format!("bad WITHSCORES reply {reply:?}")));
    };
    if items.iter().all(|i| matches!(i, redis::Value::Array(_))) {
        items
            .iter()
            .map(|pair| match pair {
                redis::Value::Array(p) if p.len() == 2 => Ok((parse_member(&p[0])?, parse_score(&p[1])?)),
                other => Err(BackendError::other(BACKEND, format!("bad WITHSCORES pair {other:?}"))),
            })
            .collect()
    } else {
        items.chunks_exact(2).map(|pair| Ok((parse_member(&pair[0])?, parse_score(&pair[1])?))).collect()
    }
}

fn ms(d: Duration) -> u64 {
    // Sub-millisecond leases round up, as in the memory backend; Redis refuses `PX 0`.
    (d.as_millis() as u64).max(1)
}

fn script_value(v: redis::Value) -> BackendResult<ScriptValue> {
    use redis::Value as V;
    Ok(match v {
        V::Nil => ScriptValue::Nil,
        V::Int(i) => ScriptValue::Int(i),
        V::BulkString(b) => ScriptValue::Str(String::from_utf8_lossy(&b).into_owned()),
        V::SimpleString(s) => ScriptValue::Str(s),
        V::Okay => ScriptValue::Str("OK".to_owned()),
        V::Boolean(b) => ScriptValue::Int(i64::from(b)),
        V::Double(d) => ScriptValue::Str(d.to_string()),
        V::Array(items) | V::Set(items) => {
            ScriptValue::List(items.into_iter().map(script_value).collect::<BackendResult<_>>()?)
        }
        other => return Err(BackendError::other(BACKEND, format!("unexpected script reply {other:?}"))),
    })
}

impl RedisState {
    /// A store on the Redis at `url`, with `prefix` in front of every key (may be empty; no
    /// braces). Connects lazily: an unreachable server shows as `Unavailable` from the first
    /// call (e.g. [`StateStore::ping`]), not here.
    pub async fn connect(url: &str, prefix: &str) -> BackendResult<Self> {
        let prefix = check_prefix(prefix)?;
        let conn = connection_manager(open_client(url)?)?;
        Ok(Self {
            conn,
            prefix,
            scripts: Arc::default(),
            breaker: breaker::for_server(url),
            internal: Arc::new(InternalScripts {
                lock_renew: redis::Script::new(LOCK_RENEW_LUA),
                lock_release: redis::Script::new(LOCK_RELEASE_LUA),
                hcas: redis::Script::new(HCAS_LUA),
            }),
        })
    }

    fn k(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one command; `key` (unprefixed) names the value in a `WrongType` error.
    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd, key: &str) -> BackendResult<T> {
        let mut conn = self.conn.clone();
        self.guarded(cmd.query_async(&mut conn), key).await
    }

    /// Runs a call through the breaker (see `breaker.rs`): at once `unavailable` while Redis
    /// is known silent, also for a call that was already waiting when it went silent.
    async fn guarded<T>(&self, call: impl Future<Output = Result<T, RedisError>>, key: &str) -> BackendResult<T> {
        breaker::guard(&self.breaker, &self.conn, BACKEND, call).await?.map_err(|e| map_err(e, key))
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[String],
    ) -> BackendResult<T> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(self.k(key));
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        self.guarded(invocation.invoke_async(&mut conn), keys.first().copied().unwrap_or_default()).await
    }

    fn cached(&self, script: &'static Script) -> Arc<redis::Script> {
        let mut scripts = self.scripts.lock();
        match scripts.get(script.name) {
            // Same name and same text: the common case. Two scripts that share a name
            // replace each other's entry rather than run the wrong Lua.
            Some((lua, cached)) if *lua == script.lua => cached.clone(),
            _ => {
                let compiled = Arc::new(redis::Script::new(script.lua));
                scripts.insert(script.name, (script.lua, compiled.clone()));
                compiled
            }
        }
    }
}

#[async_trait]
impl StateStore for RedisState {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> BackendResult<()> {
        self.query::<String>(&redis::cmd("PING"), "").await.map(drop)
    }

    async fn get(&self, key: &str) -> BackendResult<Option<String>> {
        self.query(redis::cmd("GET").arg(self.k(key)), key).await
    }

    async fn set(&self, key: &str, value: &str, mode: SetMode, ttl: Option<Duration>) -> BackendResult<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.k(key)).arg(value);
        match mode {
            SetMode::Always => {}
            SetMode::IfAbsent => {
                cmd.arg("NX");
            }
            SetMode::IfPresent => {
                cmd.arg("XX");
            }
        }
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ms(ttl));
        }
        let reply: Option<String> = self.query(&cmd, key).await?;
        Ok(reply.is_some())
    }

    async fn incrby(&self, key: &str, by: i64) -> BackendResult<i64> {
        self.query(redis::cmd("INCRBY").arg(self.k(key)).arg(by), key).await
    }

    async fn del(&self, keys: &[&str]) -> BackendResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        // One DEL per key in a pipeline: a multi-key DEL would fail with CROSSSLOT on a
        // cluster when the keys have different hash tags.
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("DEL").arg(self.k(key));
        }
        let mut conn = self.conn.clone();
        let counts: Vec<u64> = self.guarded(pipe.query_async(&mut conn), keys[0]).await?;
        Ok(counts.iter().sum())
    }

    async fn exists(&self, key: &str) -> BackendResult<bool> {
        let n: u64 = self.query(redis::cmd("EXISTS").arg(self.k(key)), key).await?;
        Ok(n > 0)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> BackendResult<bool> {
        let n: u64 = self.query(redis::cmd("PEXPIRE").arg(self.k(key)).arg(ms(ttl)), key).await?;
        Ok(n == 1)
    }

    async fn ttl(&self, key: &str) -> BackendResult<Ttl> {
        let ms: i64 = self.query(redis::cmd("PTTL").arg(self.k(key)), key).await?;
        Ok(match ms {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::Expires(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    async fn hget(&self, key: &str, field: &str) -> BackendResult<Option<String>> {
        self.query(redis::cmd("HGET").arg(self.k(key)).arg(field), key).await
    }

    async fn hmget(&self, key: &str, fields: &[&str]) -> BackendResult<Vec<Option<String>>> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        self.query(redis::cmd("HMGET").arg(self.k(key)).arg(fields), key).await
    }

    async fn hgetall(&self, key: &str) -> BackendResult<Vec<(String, String)>> {
        let map: HashMap<String, String> = self.query(redis::cmd("HGETALL").arg(self.k(key)), key).await?;
        Ok(map.into_iter().collect())
    }

    async fn hset(&self, key: &str, fields: &[(&str, &str)]) -> BackendResult<()> {
        if fields.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.k(key));
        for (field, value) in fields {
            cmd.arg(*field).arg(*value);
        }
        self.query::<u64>(&cmd, key).await.map(drop)
    }

    async fn hsetnx(&self, key: &str, field: &str, value: &str) -> BackendResult<bool> {
        let n: u64 = self.query(redis::cmd("HSETNX").arg(self.k(key)).arg(field).arg(value), key).await?;
        Ok(n == 1)
    }

    async fn hdel(&self, key: &str, fields: &[&str]) -> BackendResult<u64> {
        if fields.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("HDEL").arg(self.k(key)).arg(fields), key).await
    }

    async fn hincrby(&self, key: &str, field: &str, by: i64) -> BackendResult<i64> {
        self.query(redis::cmd("HINCRBY").arg(self.k(key)).arg(field).arg(by), key).await
    }

    async fn hcas(&self, key: &str, field: &str, expected: Option<&str>, new: Option<&str>) -> BackendResult<bool> {
        let flag = |v: Option<&str>| if v.is_some() { "1" } else { "0" }.to_owned();
        let args = [
            field.to_owned(),
            flag(expected),
            expected.unwrap_or_default().to_owned(),
            flag(new),
            new.unwrap_or_default().to_owned(),
        ];
        let wrote: i64 = self.invoke(&self.internal.hcas, &[key], &args).await?;
        Ok(wrote == 1)
    }

    async fn zadd(&self, key: &str, members: &[(f64, &str)]) -> BackendResult<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.k(key));
        for (score, member) in members {
            cmd.arg(score_arg(*score)?).arg(*member);
        }
        self.query(&cmd, key).await
    }

    async fn zrem(&self, key: &str, members: &[&str]) -> BackendResult<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("ZREM").arg(self.k(key)).arg(members), key).await
    }

    async fn zscore(&self, key: &str, member: &str) -> BackendResult<Option<f64>> {
        let score: redis::Value = self.query(redis::cmd("ZSCORE").arg(self.k(key)).arg(member), key).await?;
        match score {
            redis::Value::Nil => Ok(None),
            score => parse_score(&score).map(Some),
        }
    }

    async fn zrank(&self, key: &str, member: &str) -> BackendResult<Option<u64>> {
        self.query(redis::cmd("ZRANK").arg(self.k(key)).arg(member), key).await
    }

    async fn zcard(&self, key: &str) -> BackendResult<u64> {
        self.query(redis::cmd("ZCARD").arg(self.k(key)), key).await
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<(usize, usize)>,
    ) -> BackendResult<Vec<(String, f64)>> {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.k(key)).arg(score_arg(min)?).arg(score_arg(max)?).arg("WITHSCORES");
        if let Some((offset, count)) = limit {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            cmd.arg("LIMIT").arg(offset).arg(count);
        }
        parse_scored(self.query(&cmd, key).await?)
    }

    async fn zremrange_by_score(&self, key: &str, min: f64, max: f64) -> BackendResult<u64> {
        let cmd = redis::cmd("ZREMRANGEBYSCORE").arg(self.k(key)).arg(score_arg(min)?).arg(score_arg(max)?).to_owned();
        self.query(&cmd, key).await
    }

    async fn rpush(&self, key: &str, values: &[&str]) -> BackendResult<u64> {
        if values.is_empty() {
            return self.llen(key).await;
        }
        self.query(redis::cmd("RPUSH").arg(self.k(key)).arg(values), key).await
    }

    async fn lpop(&self, key: &str, count: usize) -> BackendResult<Vec<String>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let popped: Option<Vec<String>> = self.query(redis::cmd("LPOP").arg(self.k(key)).arg(count), key).await?;
        Ok(popped.unwrap_or_default())
    }

    async fn lrange(&self, key: &str, start: i64, stop: i64) -> BackendResult<Vec<String>> {
        self.query(redis::cmd("LRANGE").arg(self.k(key)).arg(start).arg(stop), key).await
    }

    async fn ltrim(&self, key: &str, start: i64, stop: i64) -> BackendResult<()> {
        self.query::<String>(redis::cmd("LTRIM").arg(self.k(key)).arg(start).arg(stop), key).await.map(drop)
    }

    async fn llen(&self, key: &str) -> BackendResult<u64> {
        self.query(redis::cmd("LLEN").arg(self.k(key)), key).await
    }

    async fn lrem(&self, key: &str, count: i64, value: &str) -> BackendResult<u64> {
        self.query(redis::cmd("LREM").arg(self.k(key)).arg(count).arg(value), key).await
    }

    async fn sadd(&self, key: &str, members: &[&str]) -> BackendResult<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("SADD").arg(self.k(key)).arg(members), key).await
    }

    async fn srem(&self, key: &str, members: &[&str]) -> BackendResult<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("SREM").arg(self.k(key)).arg(members), key).await
    }

    async fn smembers(&self, key: &str) -> BackendResult<Vec<String>> {
        self.query(redis::cmd("SMEMBERS").arg(self.k(key)), key).await
    }

    async fn sismember(&self, key: &str, member: &str) -> BackendResult<bool> {
        let n: u64 = self.query(redis::cmd("SISMEMBER").arg(self.k(key)).arg(member), key).await?;
        Ok(n == 1)
    }

    async fn scard(&self, key: &str) -> BackendResult<u64> {
        self.query(redis::cmd("SCARD").arg(self.k(key)), key).await
    }

    async fn lock_acquire(&self, key: &str, owner: &str, lease: Duration) -> BackendResult<bool> {
        let cmd = redis::cmd("SET").arg(self.k(key)).arg(owner).arg("NX").arg("PX").arg(ms(lease)).to_owned();
        let reply: Option<String> = self.query(&cmd, key).await?;
        Ok(reply.is_some())
    }

    async fn lock_renew(&self, key: &str, owner: &str, lease: Duration) -> BackendResult<bool> {
        let args = [owner.to_owned(), ms(lease).to_string()];
        let n: i64 = self.invoke(&self.internal.lock_renew, &[key], &args).await?;
        Ok(n == 1)
    }

    async fn lock_release(&self, key: &str, owner: &str) -> BackendResult<bool> {
        let n: i64 = self.invoke(&self.internal.lock_release, &[key], &[owner.to_owned()]).await?;
        Ok(n == 1)
    }

    async fn eval(&self, script: &'static Script, keys: &[&str], args: &[&str]) -> BackendResult<ScriptValue> {
        // Checked here too, although a single Redis would run it, so that code which works
        // on one node also works on a cluster.
        common_tag(keys)?;
        let compiled = self.cached(script);
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let reply: redis::Value = self.invoke(&compiled, keys, &args).await?;
        script_value(reply)
    }
}

/// The Redis [`PubSub`]: publishes through a [`ConnectionManager`] and receives through one
/// dedicated subscriber connection driven by its own task. Cheap to clone.
#[derive(Clone)]
pub struct RedisPubSub {
    publisher: ConnectionManager,
    /// The server's breaker (see `breaker.rs`): a push to a silent Redis fails at once.
    breaker: Arc<Breaker>,
    prefix: Arc<str>,
    control: mpsc::UnboundedSender<Control>,
    next_id: Arc<AtomicU64>,
    buffer: usize,
}

enum Control {
    Subscribe { channel: String, id: u64, tx: mpsc::Sender<Bytes>, done: oneshot::Sender<BackendResult<()>> },
    Unsubscribe { channel: String, id: u64 },
}

/// Tells the driver when a [`Subscription`] is dropped.
struct Unsubscribe {
    control: mpsc::UnboundedSender<Control>,
    channel: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let channel = std::mem::take(&mut self.channel);
        // The driver is gone only when nothing can publish to this subscription either.
        let _ = self.control.send(Control::Unsubscribe { channel, id: self.id });
    }
}

impl RedisPubSub {
    /// Pub/sub on the Redis at `url`, with `prefix` in front of every channel. Like
    /// [`RedisState::connect`], connects lazily.
    pub async fn connect(url: &str, prefix: &str) -> BackendResult<Self> {
        Self::with_buffer(url, prefix, DEFAULT_SUBSCRIBER_BUFFER).await
    }

    /// As [`RedisPubSub::connect`]; `buffer` is how many messages one subscriber may fall
    /// behind before further ones are dropped for it.
    pub async fn with_buffer(url: &str, prefix: &str, buffer: usize) -> BackendResult<Self> {
        let prefix = check_prefix(prefix)?;
        let client = open_client(url)?;
        let publisher = connection_manager(client.clone())?;
        let (control, requests) = mpsc::unbounded_channel();
        let driver =
            Driver { client, subscribers: HashMap::new(), conn: None, retry_at: Instant::now(), backoff: MIN_BACKOFF };
        tokio::spawn(driver.run(requests));
        Ok(Self {
            publisher,
            breaker: breaker::for_server(url),
            prefix,
            control,
            next_id: Arc::default(),
            buffer: buffer.max(1),
        })
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn publish(&self, channel: &str, payload: Bytes) -> BackendResult<()> {
        let mut conn = self.publisher.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(format!("{}{channel}", self.prefix)).arg(payload.as_ref());
        let published =
            breaker::guard(&self.breaker, &self.publisher, BACKEND, cmd.query_async::<u64>(&mut conn)).await?;
        published.map(drop).map_err(|e| map_err(e, channel))
    }

    async fn subscribe(&self, channel: &str) -> BackendResult<Subscription> {
        let channel = format!("{}{channel}", self.prefix);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.buffer);
        let (done, confirmed) = oneshot::channel();
        let gone = || BackendError::unavailable(BACKEND, "pub/sub driver stopped");
        self.control.send(Control::Subscribe { channel: channel.clone(), id, tx, done }).map_err(|_| gone())?;
        confirmed.await.map_err(|_| gone())??;
        let guard = Unsubscribe { control: self.control.clone(), channel, id };
        Ok(Subscription::new(rx, Box::new(guard)))
    }
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Bytes>,
}

/// Owns the subscriber connection. Requests and messages are handled by this one task, in
/// order, so a SUBSCRIBE can never overtake the UNSUBSCRIBE before it.
struct Driver {
    client: Client,
    subscribers: HashMap<String, Vec<Subscriber>>,
    conn: Option<(PubSubSink, PubSubStream)>,
    retry_at: Instant,
    backoff: Duration,
}

impl Driver {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Control>) {
        loop {
            let reconnect = self.conn.is_none() && !self.subscribers.is_empty();
            tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => self.handle(request).await,
                    // Every handle and subscription is gone.
                    None => return,
                },
                message = next_message(&mut self.conn) => match message {
                    Some(message) => self.deliver(&message),
                    None => {
                        tracing::warn!("Redis pub/sub connection lost; reconnecting");
                        self.conn = None;
                        self.retry_at = Instant::now();
                    }
                },
                _ = tokio::time::sleep_until(self.retry_at), if reconnect => {
                    match self.ensure_connected().await {
                        Ok(()) => tracing::info!(channels = self.subscribers.len(), "Redis pub/sub resubscribed"),
                        Err(e) => tracing::warn!(error = %e, retry_in = ?self.backoff, "Redis pub/sub reconnect failed"),
                    }
                }
            }
        }
    }

    async fn handle(&mut self, request: Control) {
        match request {
            Control::Subscribe { channel, id, tx, done } => {
                let result = self.subscribe(&channel).await;
                if result.is_ok() {
                    self.subscribers.entry(channel).or_default().push(Subscriber { id, tx });
                }
                let _ = done.send(result);
            }
            Control::Unsubscribe { channel, id } => {
                let Some(subs) = self.subscribers.get_mut(&channel) else {
                    return;
                };
                subs.retain(|s| s.id != id);
                if !subs.is_empty() {
                    return;
                }
                self.subscribers.remove(&channel);
                if let Some((sink, _)) = &mut self.conn {
                    // A failure here leaves at worst an unused subscription until the next
                    // reconnect, which subscribes only to live channels.
                    match timeout(RESPONSE_TIMEOUT, sink.unsubscribe(&channel)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, channel, "UNSUBSCRIBE failed"),
                        Err(_) => tracing::debug!(channel, "UNSUBSCRIBE timed out"),
                    }
                }
            }
        }
    }

    /// Subscribes the connection to `channel` unless a subscriber already has.
    async fn subscribe(&mut self, channel: &str) -> BackendResult<()> {
        self.ensure_connected().await?;
        if self.subscribers.contains_key(channel) {
            return Ok(());
        }
        let Some((sink, _)) = &mut self.conn else {
            return Err(BackendError::unavailable(BACKEND, "not connected"));
        };
        let result = match timeout(RESPONSE_TIMEOUT, sink.subscribe(channel)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(map_err(e, channel)),
            Err(_) => Err(BackendError::unavailable(BACKEND, "SUBSCRIBE timed out")),
        };
        if matches!(result, Err(BackendError::Unavailable { .. })) {
            self.conn = None;
            self.retry_at = Instant::now();
        }
        result
    }

    /// Opens the connection if there is none and subscribes to every live channel.
    async fn ensure_connected(&mut self) -> BackendResult<()> {
        if self.conn.is_some() {
            return Ok(());
        }
        match self.open().await {
            Ok(conn) => {
                self.conn = Some(conn);
                self.backoff = MIN_BACKOFF;
                Ok(())
            }
            Err(e) => {
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Err(e)
            }
        }
    }

    async fn open(&self) -> BackendResult<(PubSubSink, PubSubStream)> {
        let pubsub = timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| BackendError::unavailable(BACKEND, "connect timed out"))?
            .map_err(|e| map_err(e, ""))?;
        let (mut sink, stream) = pubsub.split();
        let channels: Vec<&String> = self.subscribers.keys().collect();
        if !channels.is_empty() {
            timeout(RESPONSE_TIMEOUT, sink.subscribe(channels))
                .await
                .map_err(|_| BackendError::unavailable(BACKEND, "SUBSCRIBE timed out"))?
                .map_err(|e| map_err(e, ""))?;
        }
        Ok((sink, stream))
    }

    fn deliver(&mut self, message: &redis::Msg) {
        let channel = message.get_channel_name();
        let Some(subs) = self.subscribers.get(channel) else {
            return;
        };
        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
        for sub in subs {
            // Never wait on a subscriber: one that is behind loses this message, the others
            // and the reader carry on. A closed one is removed when its guard's request
            // arrives.
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(payload.clone()) {
                tracing::debug!(channel, subscriber = sub.id, "subscriber is behind; message dropped for it");
            }
        }
    }
}

/// The next message of the connection; never resolves while there is none, and `None` once
/// the connection has dropped.
async fn next_message(conn: &mut Option<(PubSubSink, PubSubStream)>) -> Option<redis::Msg> {
    match conn {
        Some((_, stream)) => stream.next().await,
        None => std::future::pending().await,
    }
}
