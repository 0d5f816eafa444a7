//! The Redis Streams bus of cluster mode (SPEC §2): one stream and one consumer group per
//! queue, so the nodes of a cluster are competing consumers of every queue.
//!
//! Keys of queue `Q` (one hash tag, so every script stays on one cluster slot):
//! - `{prefix}fd:bus:{q:Q}:stream`: ready and pending jobs. An entry has the fields `p`
//!   (payload), `a` (the attempt number of its first delivery; absent means 1) and `o` (the
//!   id the job was published under; absent means the entry's own id).
//! - `…:delayed`: retries waiting for their backoff, a sorted set scored by due time.
//! - `…:dead`: dead letters, a stream capped near [`DEAD_LETTER_CAP`].
//!
//! A job's attempt is `a` plus its entry's delivery count minus one. Acked and dead
//! jobs are deleted from the stream, so the backlog is the stream's length plus the delayed
//! set's size. A retry moves the job to a new entry (so a retried job has a new [`JobId`]);
//! its dead letter carries the id it was published under.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use frontdesk_core::bus::{Bus, DeadLetter, FailOutcome, Job, JobId, RetryPolicy};
use frontdesk_core::error::{BackendError, BackendResult};
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, RedisError, Script, Value};
use tokio::time::Instant;

use crate::breaker::{self, Breaker};

const BACKEND: &str = "redis bus";
const GROUP: &str = "fd";

/// Dead letters kept per queue (approximately: trimmed with `MAXLEN ~`).
pub const DEAD_LETTER_CAP: u64 = 10_000;

/// Due retries moved back into the stream per fetch.
const PROMOTE_LIMIT: u32 = 1_000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest one blocking read waits before the fetch loop looks again for retries that
/// became due and deliveries that timed out (neither wakes a blocked XREADGROUP).
const MAX_BLOCK: Duration = Duration::from_secs(1);

/// Moves due retries into the stream, reclaims deliveries idle past the visibility
/// timeout (dead-lettering those out of attempts), then reads fresh entries. Returns
/// `{{id, payload, attempt}…}` and the milliseconds until the next retry is due (or -1).
/// Times come from the server's clock, so nodes with skewed clocks still agree.
static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local min_idle, count = ARGV[3], tonumber(ARGV[4])
local max_attempts, dead_cap, promote = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

for _, m in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, promote)) do
  local a_end = string.find(m, ':', 1, true)
  local o_end = string.find(m, ':', a_end + 1, true)
  redis.call('XADD', stream, '*', 'p', string.sub(m, o_end + 1),
    'a', string.sub(m, 1, a_end - 1), 'o', string.sub(m, a_end + 1, o_end - 1))
  redis.call('ZREM', delayed, m)
end

local out = {}
local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, '0-0', 'COUNT', count)
for _, e in ipairs(claimed[2]) do
  if e then
    local id, fields = e[1], e[2]
    local info = redis.call('XPENDING', stream, group, id, id, 1)
    local deliveries = tonumber(info[1][4])
    local attempt = tonumber(field(fields, 'a') or '1') + deliveries - 1
    local payload = field(fields, 'p') or ''
    if attempt > max_attempts then
      redis.call('XACK', stream, group, id)
      redis.call('XDEL', stream, id)
      redis.call('XADD', dead, 'MAXLEN', '~', dead_cap, '*', 'i', field(fields, 'o') or id,
        'p', payload, 'n', attempt - 1, 't', now,
        'e', 'not acked within the visibility timeout on any of ' .. (attempt - 1) .. ' deliveries')
    else
      table.insert(out, {id, payload, attempt})
    end
  end
end

if #out < count then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #out,
    'STREAMS', stream, '>')
  if read then
    for _, e in ipairs(read[1][2]) do
      local fields = e[2]
      table.insert(out, {e[1], field(fields, 'p') or '', tonumber(field(fields, 'a') or '1')})
    end
  end
end

local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if next_due[2] then return {out, math.max(0, tonumber(next_due[2]) - now)} end
return {out, -1}
",
    )
});

/// Ends one delivery that failed: into the delayed set for a retry, or into the dead
/// letters. Returns 0 when the entry is gone (acked or failed through another delivery).
static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, id, attempt = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_attempts, backoff, err, dead_cap = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local entry = redis.call('XRANGE', stream, id, id)
if #entry == 0 then return 0 end
local fields = entry[1][2]
local payload, origin = '', id
for i = 1, #fields, 2 do
  if fields[i] == 'p' then payload = fields[i + 1] end
  if fields[i] == 'o' then origin = fields[i + 1] end
end
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
if attempt >= max_attempts then
  redis.call('XADD', dead, 'MAXLEN', '~', dead_cap, '*', 'i', origin, 'p', payload,
    'n', attempt, 'e', err, 't', now)
  return 2
end
-- The member carries everything the retry needs; the origin id keeps it unique.
redis.call('ZADD', delayed, now + backoff, (attempt + 1) .. ':' .. origin .. ':' .. payload)
return 1
",
    )
});

/// The Redis Streams bus.
pub struct RedisBus {
    client: Client,
    conn: ConnectionManager,
    /// The server's breaker, shared with the state store and pub/sub on the same server
    /// (see `breaker.rs`): publishing fails at once while the server is known silent.
    breaker: Arc<Breaker>,
    prefix: String,
    policy: RetryPolicy,
    /// Queues whose consumer group this process has created (or found).
    groups: Mutex<HashSet<String>>,
    /// Idle connections for blocking reads: a BLOCK on the shared multiplexed connection
    /// would hold up every command queued behind it.
    blocking: Mutex<Vec<MultiplexedConnection>>,
}

struct Keys {
    stream: String,
    delayed: String,
    dead: String,
}

fn redis_error(e: RedisError) -> BackendError {
    let outage = crate::redis_state::is_outage(&e);
    if outage {
        BackendError::unavailable(BACKEND, e)
    } else {
        BackendError::other(BACKEND, e)
    }
}

/// The stream or its group was deleted behind our back (e.g. FLUSHALL).
fn is_no_group(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

/// `wait` from now; a wait too long to represent waits a year instead of panicking.
fn deadline(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait).unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn entry_job(queue: &str, entry: &StreamId) -> Job {
    let payload: Vec<u8> = entry.get("p").unwrap_or_default();
    let first: u32 = entry.get("a").unwrap_or(1);
    Job { id: JobId(entry.id.clone()), queue: queue.to_owned(), payload: Bytes::from(payload), attempt: first }
}

impl RedisBus {
    /// A bus on the Redis server at `url`, its keys under `prefix`. Connects lazily: a
    /// server that is down makes calls fail with `unavailable`, not this constructor.
    pub async fn connect(url: &str, prefix: &str, policy: RetryPolicy) -> BackendResult<Self> {
        let client = Client::open(url).map_err(|e| BackendError::other(BACKEND, e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Few quick retries: a caller waiting on a dead server should hear so in ~1 s.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(redis_error)?;
        Ok(Self {
            client,
            conn,
            breaker: breaker::for_server(url),
            prefix: prefix.to_owned(),
            policy,
            groups: Mutex::new(HashSet::new()),
            blocking: Mutex::new(Vec::new()),
        })
    }

    fn keys(&self, queue: &str) -> Keys {
        let base = format!("{}fd:bus:{{q:{queue}}}", self.prefix);
        Keys { stream: format!("{base}:stream"), delayed: format!("{base}:delayed"), dead: format!("{base}:dead") }
    }

    async fn ensure_group(&self, queue: &str, keys: &Keys) -> BackendResult<()> {
        if self.groups.lock().contains(queue) {
            return Ok(());
        }
        // From id 0: jobs published before the group existed are delivered too.
        let created: Result<Value, RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(redis_error(e)),
        }
        self.groups.lock().insert(queue.to_owned());
        Ok(())
    }

    fn forget_group(&self, queue: &str) {
        self.groups.lock().remove(queue);
    }

    async fn blocking_conn(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = self.blocking.lock().pop() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(MAX_BLOCK + RESPONSE_TIMEOUT));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// One pass of the fetch script: due retries promoted, timed-out deliveries reclaimed,
    /// fresh entries read without blocking.
    async fn fetch_once(
        &self,
        queue: &str,
        keys: &Keys,
        consumer: &str,
        max: usize,
    ) -> Result<(Vec<Job>, i64), RedisError> {
        let (rows, due_in): (Vec<(String, Vec<u8>, i64)>, i64) = FETCH
            .key(&keys.stream)
            .key(&keys.delayed)
            .key(&keys.dead)
            .arg(GROUP)
            .arg(consumer)
            .arg(millis(self.policy.visibility_timeout))
            .arg(max)
            .arg(self.policy.max_attempts)
            .arg(DEAD_LETTER_CAP)
            .arg(PROMOTE_LIMIT)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let jobs = rows
            .into_iter()
            .map(|(id, payload, attempt)| Job {
                id: JobId(id),
                queue: queue.to_owned(),
                payload: Bytes::from(payload),
                attempt: u32::try_from(attempt).unwrap_or(1),
            })
            .collect();
        Ok((jobs, due_in))
    }

    /// One look at the queue, then (if it is empty) one blocking read of at most `slice`,
    /// cut short by the next retry's due time. `None` once `give_up` has passed.
    async fn fetch_pass(
        &self,
        queue: &str,
        keys: &Keys,
        consumer: &str,
        max: usize,
        give_up: Instant,
        slice: Duration,
    ) -> Result<Option<Vec<Job>>, RedisError> {
        let (jobs, due_in) = self.fetch_once(queue, keys, consumer, max).await?;
        if !jobs.is_empty() {
            return Ok(Some(jobs));
        }
        let now = Instant::now();
        if now >= give_up {
            return Ok(None);
        }
        let mut block = (give_up - now).min(slice);
        if let Ok(due_in) = u64::try_from(due_in) {
            block = block.min(Duration::from_millis(due_in));
        }
        if block < Duration::from_millis(1) {
            return Ok(Some(Vec::new()));
        }
        self.read_blocking(queue, keys, consumer, max, block).await.map(Some)
    }

    async fn read_blocking(
        &self,
        queue: &str,
        keys: &Keys,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Job>, RedisError> {
        let mut conn = self.blocking_conn().await?;
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(millis(block).max(1))
            .arg("STREAMS")
            .arg(&keys.stream)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        // Only a connection that answered goes back: one dropped mid-BLOCK (a cancelled
        // fetch) may still be blocked at the server.
        self.blocking.lock().push(conn);
        let entries = reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>()).unwrap_or_default();
        Ok(entries.iter().map(|entry| entry_job(queue, entry)).collect())
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> BackendResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await.map_err(redis_error)?;
        Ok(())
    }

    async fn publish(&self, queue: &str, payload: Bytes) -> BackendResult<JobId> {
        let ids = self.publish_batch(queue, vec![payload]).await?;
        ids.into_iter().next().ok_or_else(|| BackendError::other(BACKEND, "XADD returned no id"))
    }

    async fn publish_batch(&self, queue: &str, payloads: Vec<Bytes>) -> BackendResult<Vec<JobId>> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys(queue);
        self.ensure_group(queue, &keys).await?;
        let mut pipe = redis::pipe();
        for payload in &payloads {
            pipe.cmd("XADD").arg(&keys.stream).arg("*").arg("p").arg(payload.as_ref());
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = breaker::guard(&self.breaker, &self.conn, BACKEND, pipe.query_async(&mut conn))
            .await?
            .map_err(redis_error)?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    async fn fetch(&self, queue: &str, consumer: &str, max: usize, wait: Duration) -> BackendResult<Vec<Job>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let keys = self.keys(queue);
        let give_up = deadline(wait);
        // Deliveries time out at the visibility timeout; look again at least twice per
        // timeout so a redelivery is never late by more than half of it.
        let slice = (self.policy.visibility_timeout / 2).clamp(Duration::from_millis(10), MAX_BLOCK);
        // The group vanishes only when the stream was deleted behind our back (FLUSHALL,
        // a restarted server without persistence): recreate it once, then give up.
        let mut regrouped = false;
        loop {
            self.ensure_group(queue, &keys).await?;
            match self.fetch_pass(queue, &keys, consumer, max, give_up, slice).await {
                Ok(None) => return Ok(Vec::new()),
                Ok(Some(jobs)) if !jobs.is_empty() => return Ok(jobs),
                Ok(Some(_)) => {}
                Err(e) if is_no_group(&e) && !regrouped => {
                    regrouped = true;
                    self.forget_group(queue);
                }
                Err(e) => return Err(redis_error(e)),
            }
        }
    }

    async fn ack(&self, queue: &str, ids: &[JobId]) -> BackendResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = self.keys(queue);
        let ids: Vec<&str> = ids.iter().map(|id| id.0.as_str()).collect();
        // Deleted, not only acked: the stream's length is the backlog, and the entry is
        // never needed again.
        let _: (i64, i64) = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(&ids)
            .cmd("XDEL")
            .arg(&keys.stream)
            .arg(&ids)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn fail(&self, queue: &str, job: &Job, error: &str) -> BackendResult<FailOutcome> {
        let keys = self.keys(queue);
        let policy = &self.policy;
        let after = policy.backoff(job.attempt);
        let done: i64 = FAIL
            .key(&keys.stream)
            .key(&keys.delayed)
            .key(&keys.dead)
            .arg(GROUP)
            .arg(&job.id.0)
            .arg(job.attempt)
            .arg(policy.max_attempts)
            .arg(millis(after))
            .arg(error)
            .arg(DEAD_LETTER_CAP)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        // When the entry was already gone (0) nothing changed; the outcome says what would
        // have happened, as for the local bus.
        if job.attempt >= policy.max_attempts {
            if done == 2 {
                tracing::warn!(queue, id = %job.id, attempts = job.attempt, error, "job dead-lettered");
            }
            Ok(FailOutcome::DeadLettered)
        } else {
            Ok(FailOutcome::Retry { after })
        }
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> BackendResult<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = self.keys(queue);
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&keys.dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(reply
            .ids
            .iter()
            .map(|entry| DeadLetter {
                id: JobId(entry.get("i").unwrap_or_else(|| entry.id.clone())),
                queue: queue.to_owned(),
                payload: Bytes::from(entry.get::<Vec<u8>>("p").unwrap_or_default()),
                attempts: entry.get("n").unwrap_or(0),
                error: entry.get("e").unwrap_or_default(),
                failed_at: entry.get("t").unwrap_or(0),
            })
            .collect())
    }

    async fn backlog(&self, queue: &str) -> BackendResult<u64> {
        let keys = self.keys(queue);
        let (ready, delayed): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&keys.stream)
            .cmd("ZCARD")
            .arg(&keys.delayed)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(ready + delayed)
    }
}
