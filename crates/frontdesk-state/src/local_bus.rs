//! The in-process bus of embedded mode (SPEC §2): ready, pending and scheduled jobs live in
//! memory for fast fetch, and every change is recorded in a durable spool (a SQLite file,
//! see `local_bus/spool.rs`) so a published job survives the death of the process.
//!
//! One `QueueState` per queue, behind one lock: fetch takes the oldest ready jobs and marks
//! them pending until a visibility deadline; acks delete them; fails schedule them again
//! after backoff or dead-letter them. Timers are not tasks: every fetch first moves due
//! retries and expired deliveries back to ready, and a waiting fetch sleeps on the queue's
//! [`Notify`] until whichever comes first of a publish, its own deadline, or the queue's
//! next retry or visibility deadline. A job whose consumers died on all of its
//! `max_attempts` deliveries is dead-lettered when it would be delivered once more.

mod spool;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use frontdesk_core::bus::{Bus, DeadLetter, FailOutcome, Job, JobId, RetryPolicy};
use frontdesk_core::error::{BackendError, BackendResult};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

pub use spool::CompactStats;
use spool::{closed, now_ms, Op, Published};

/// How often an open bus compacts its spool on its own.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// The in-process bus. Cheap to clone; the spool closes when the last clone is dropped (or
/// at [`LocalBus::close`]).
#[derive(Clone)]
pub struct LocalBus {
    inner: Arc<Inner>,
}

struct Inner {
    policy: RetryPolicy,
    queues: Arc<Queues>,
    spool: mpsc::UnboundedSender<Op>,
}

type Queues = Mutex<HashMap<String, QueueState>>;

#[derive(Default)]
struct QueueState {
    jobs: HashMap<u64, Entry>,
    /// By sequence, so fetch hands out the oldest first.
    ready: BTreeSet<u64>,
    /// By visibility deadline.
    pending: BTreeSet<(Instant, u64)>,
    /// By due time of the retry.
    scheduled: BTreeSet<(Instant, u64)>,
    notify: Arc<Notify>,
}

struct Entry {
    payload: Bytes,
    /// Deliveries so far.
    attempts: u32,
    slot: Slot,
}

#[derive(Clone, Copy)]
enum Slot {
    Ready,
    Pending(Instant),
    Scheduled(Instant),
}

/// A job leaving the queues for the dead-letter table, with its sequence.
struct Dying {
    seq: u64,
    letter: DeadLetter,
}

impl QueueState {
    fn place(&mut self, seq: u64, entry: Entry) {
        match entry.slot {
            Slot::Ready => self.ready.insert(seq),
            Slot::Pending(at) => self.pending.insert((at, seq)),
            Slot::Scheduled(at) => self.scheduled.insert((at, seq)),
        };
        self.jobs.insert(seq, entry);
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.jobs.remove(&seq)?;
        match entry.slot {
            Slot::Ready => self.ready.remove(&seq),
            Slot::Pending(at) => self.pending.remove(&(at, seq)),
            Slot::Scheduled(at) => self.scheduled.remove(&(at, seq)),
        };
        Some(entry)
    }

    /// Moves due retries and deliveries past their visibility deadline back to ready.
    fn expire(&mut self, now: Instant) {
        for index in [&mut self.scheduled, &mut self.pending] {
            while let Some(&(at, seq)) = index.first() {
                if at > now {
                    break;
                }
                index.pop_first();
                if let Some(entry) = self.jobs.get_mut(&seq) {
                    entry.slot = Slot::Ready;
                    self.ready.insert(seq);
                }
            }
        }
    }

    /// Takes up to `max` ready jobs, oldest first, marking them pending until `deadline`. A
    /// job already delivered `max_attempts` times without an answer (its consumers died) is
    /// dead-lettered instead of delivered again.
    fn take(&mut self, queue: &str, max: usize, deadline: Instant, policy: &RetryPolicy) -> (Vec<Job>, Vec<Dying>) {
        let mut jobs = Vec::new();
        let mut dying = Vec::new();
        while jobs.len() < max {
            let Some(seq) = self.ready.pop_first() else {
                break;
            };
            let Some(entry) = self.jobs.get_mut(&seq) else {
                continue;
            };
            if entry.attempts >= policy.max_attempts {
                let attempts = entry.attempts;
                if let Some(entry) = self.jobs.remove(&seq) {
                    dying.push(Dying {
                        seq,
                        letter: DeadLetter {
                            id: JobId(seq.to_string()),
                            queue: queue.to_owned(),
                            payload: entry.payload,
                            attempts,
                            error: format!(
                                "not acked within the visibility timeout ({} ms) on any of {attempts} deliveries",
                                policy.visibility_timeout.as_millis()
                            ),
                            failed_at: now_ms(),
                        },
                    });
                }
                continue;
            }
            entry.attempts += 1;
            entry.slot = Slot::Pending(deadline);
            self.pending.insert((deadline, seq));
            jobs.push(Job {
                id: JobId(seq.to_string()),
                queue: queue.to_owned(),
                payload: entry.payload.clone(),
                attempt: entry.attempts,
            });
        }
        (jobs, dying)
    }

    /// When the next retry becomes due or the next delivery times out.
    fn next_timer(&self) -> Option<Instant> {
        let scheduled = self.scheduled.first().map(|&(at, _)| at);
        let pending = self.pending.first().map(|&(at, _)| at);
        match (scheduled, pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn parse_seq(id: &JobId) -> Option<u64> {
    id.0.parse().ok()
}

fn insert_published(queues: &Queues, published: Vec<Published>) {
    let mut queues = queues.lock();
    for batch in published {
        let q = queues.entry(batch.queue.to_string()).or_default();
        for (seq, payload) in batch.jobs {
            q.place(seq, Entry { payload, attempts: 0, slot: Slot::Ready });
        }
        q.notify.notify_waiters();
    }
}

impl LocalBus {
    /// Opens the bus whose spool is `dir/spool.db`, creating it if needed. Every job the
    /// spool holds that was not acked or dead-lettered is ready again (a retry keeps its due
    /// time), with the delivery count it had. Only one process may hold a spool open.
    pub async fn open(dir: &Path, policy: RetryPolicy) -> BackendResult<Self> {
        let spool_dir = dir.to_path_buf();
        let (conn, loaded, next_seq) = tokio::task::spawn_blocking(move || spool::open(&spool_dir))
            .await
            .map_err(|e| BackendError::unavailable(spool::BACKEND, format!("opening the spool failed: {e}")))??;
        let mut map: HashMap<String, QueueState> = HashMap::new();
        let (wall, now) = (now_ms(), Instant::now());
        for job in loaded {
            let slot = match job.not_before_ms {
                Some(due) if due > wall => Slot::Scheduled(now + Duration::from_millis(due - wall)),
                _ => Slot::Ready,
            };
            map.entry(job.queue)
                .or_default()
                .place(job.seq, Entry { payload: job.payload, attempts: job.attempts, slot });
        }
        let queues = Arc::new(Mutex::new(map));
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Arc::clone(&queues);
        std::thread::Builder::new()
            .name("bus-spool".into())
            .spawn(move || spool::run_writer(conn, next_seq, rx, move |published| insert_published(&sink, published)))
            .map_err(|e| BackendError::unavailable(spool::BACKEND, format!("cannot start the spool writer: {e}")))?;
        spawn_compactor(tx.downgrade());
        Ok(Self { inner: Arc::new(Inner { policy, queues, spool: tx }) })
    }

    /// Drops dead letters beyond the per-queue cap, returns free pages to the file system
    /// and truncates the write-ahead log. Runs on its own every minute; acked jobs need no
    /// sweeping, as an ack deletes its row.
    pub async fn compact(&self) -> BackendResult<CompactStats> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Compact { reply })?;
        answer.await.map_err(|_| closed())?
    }

    /// Commits everything queued so far and closes the spool; later calls fail with
    /// `unavailable`. Jobs in memory are not lost: they are in the spool for the next open.
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Op::Close { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    fn send(&self, op: Op) -> BackendResult<()> {
        self.inner.spool.send(op).map_err(|_| closed())
    }

    fn bury(&self, dying: Vec<Dying>) {
        for Dying { seq, letter } in dying {
            tracing::warn!(queue = %letter.queue, id = %letter.id, attempts = letter.attempts, error = %letter.error, "job dead-lettered");
            // Not awaited: the fetch that found it must not wait; a crash before the commit
            // only means the job is judged again after the restart.
            let _ = self.send(Op::Dead { letter, seq, reply: None });
        }
    }
}

fn spawn_compactor(spool: mpsc::WeakUnboundedSender<Op>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(COMPACT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            // A weak sender: the compactor must not keep a dropped bus's spool open.
            let Some(tx) = spool.upgrade() else { return };
            let (reply, answer) = oneshot::channel();
            if tx.send(Op::Compact { reply }).is_err() {
                return;
            }
            drop(tx);
            match answer.await {
                Ok(Ok(stats)) => tracing::debug!(?stats, "bus spool compacted"),
                Ok(Err(e)) => tracing::warn!(error = %e, "bus spool compaction failed"),
                Err(_) => return,
            }
        }
    });
}

#[async_trait]
impl Bus for LocalBus {
    async fn close(&self) {
        LocalBus::close(self).await;
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    async fn ping(&self) -> BackendResult<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Ping { reply })?;
        answer.await.map_err(|_| closed())?
    }

    async fn publish(&self, queue: &str, payload: Bytes) -> BackendResult<JobId> {
        let ids = self.publish_batch(queue, vec![payload]).await?;
        ids.into_iter().next().ok_or_else(closed)
    }

    async fn publish_batch(&self, queue: &str, payloads: Vec<Bytes>) -> BackendResult<Vec<JobId>> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Op::Publish { queue: Arc::from(queue), payloads, reply })?;
        let seqs = answer.await.map_err(|_| closed())??;
        Ok(seqs.into_iter().map(|seq| JobId(seq.to_string())).collect())
    }

    async fn fetch(&self, queue: &str, _consumer: &str, max: usize, wait: Duration) -> BackendResult<Vec<Job>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let policy = &self.inner.policy;
        let give_up =
            Instant::now().checked_add(wait).unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400));
        loop {
            let (jobs, dying, sleep) = {
                let mut queues = self.inner.queues.lock();
                let q = queues.entry(queue.to_owned()).or_default();
                let now = Instant::now();
                q.expire(now);
                let (jobs, dying) = q.take(queue, max, now + policy.visibility_timeout, policy);
                let sleep = if jobs.is_empty() && now < give_up {
                    let until = q.next_timer().map_or(give_up, |t| t.min(give_up));
                    // Registered under the lock: a publish that lands after we looked
                    // cannot slip between the look and the wait.
                    let mut woken = Box::pin(Arc::clone(&q.notify).notified_owned());
                    woken.as_mut().enable();
                    Some((woken, until))
                } else {
                    None
                };
                if !jobs.is_empty() {
                    // Other waiters must re-arm their timers for the new visibility deadline.
                    q.notify.notify_waiters();
                }
                (jobs, dying, sleep)
            };
            self.bury(dying);
            if !jobs.is_empty() {
                let _ = self.send(Op::Delivered(jobs.iter().filter_map(|j| parse_seq(&j.id)).collect()));
                return Ok(jobs);
            }
            match sleep {
                Some((woken, until)) => {
                    let _ = tokio::time::timeout_at(until, woken).await;
                }
                None => return Ok(Vec::new()),
            }
        }
    }

    async fn ack(&self, queue: &str, ids: &[JobId]) -> BackendResult<()> {
        let seqs: Vec<u64> = {
            let mut queues = self.inner.queues.lock();
            let Some(q) = queues.get_mut(queue) else {
                return Ok(());
            };
            ids.iter().filter_map(parse_seq).filter(|&seq| q.remove(seq).is_some()).collect()
        };
        if seqs.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Op::Ack { seqs, reply })?;
        answer.await.map_err(|_| closed())?
    }

    async fn fail(&self, queue: &str, job: &Job, error: &str) -> BackendResult<FailOutcome> {
        let policy = &self.inner.policy;
        let seq = parse_seq(&job.id);
        let (outcome, answer) = {
            let mut queues = self.inner.queues.lock();
            let found = match (queues.get_mut(queue), seq) {
                (Some(q), Some(seq)) => q.remove(seq).map(|entry| (q, seq, entry)),
                _ => None,
            };
            let Some((q, seq, mut entry)) = found else {
                // Already acked, failed or dead-lettered by another delivery: say what
                // would have happened, change nothing.
                return Ok(if job.attempt >= policy.max_attempts {
                    FailOutcome::DeadLettered
                } else {
                    FailOutcome::Retry { after: policy.backoff(job.attempt) }
                });
            };
            let attempts = entry.attempts.max(job.attempt);
            let (reply, answer) = oneshot::channel();
            if attempts >= policy.max_attempts {
                let letter = DeadLetter {
                    id: job.id.clone(),
                    queue: queue.to_owned(),
                    payload: entry.payload,
                    attempts,
                    error: error.to_owned(),
                    failed_at: now_ms(),
                };
                tracing::warn!(queue, id = %job.id, attempts, error, "job dead-lettered");
                self.send(Op::Dead { letter, seq, reply: Some(reply) })?;
                (FailOutcome::DeadLettered, answer)
            } else {
                let after = policy.backoff(attempts);
                let due = Instant::now() + after;
                entry.attempts = attempts;
                entry.slot = Slot::Scheduled(due);
                q.place(seq, entry);
                // A waiting fetch must re-arm its timer for this retry.
                q.notify.notify_waiters();
                let not_before_ms = now_ms().saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
                self.send(Op::Retry { seq, attempts, not_before_ms, reply })?;
                (FailOutcome::Retry { after }, answer)
            }
        };
        answer.await.map_err(|_| closed())??;
        Ok(outcome)
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> BackendResult<Vec<DeadLetter>> {
        let (reply, answer) = oneshot::channel();
        // Through the writer, so a dead letter recorded just before is seen.
        self.send(Op::DeadLetters { queue: queue.to_owned(), limit, reply })?;
        answer.await.map_err(|_| closed())?
    }

    async fn backlog(&self, queue: &str) -> BackendResult<u64> {
        let queues = self.inner.queues.lock();
        Ok(queues.get(queue).map_or(0, |q| q.jobs.len() as u64))
    }
}
