//! The local bus's durable spool: the SQLite file `spool.db`, its schema, and the single
//! writer thread that owns the file's only connection and commits every change in groups.
//!
//! Group commit is what makes the spool fast: publishers, acks, fails and dead letters queue
//! up on one channel; the writer takes everything waiting, applies it in one transaction and
//! answers each caller after the commit. With WAL and `synchronous=NORMAL` a committed
//! transaction survives the death of the process (not of the machine), which is the
//! promise of [`Bus::publish`](frontdesk_core::bus::Bus::publish).
//!
//! The writer is a plain thread calling SQLite directly (rusqlite, on the same bundled
//! SQLite as sqlx): through sqlx every statement of a commit was a hand-off to its worker
//! thread and back, one futex wake each, which cost more than the statements themselves.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use frontdesk_core::bus::{DeadLetter, JobId};
use frontdesk_core::error::{BackendError, BackendResult};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

pub(super) const BACKEND: &str = "local bus";

/// Dead letters kept per queue; older ones are dropped by [`Op::Compact`].
pub(super) const DEAD_LETTER_CAP: i64 = 10_000;

/// Ops taken per group commit; bounds the latency one huge burst adds to the next caller.
const MAX_OPS_PER_COMMIT: usize = 4096;

/// `jobs` holds every accepted job not yet acked or dead-lettered (an ack deletes its row in
/// the same group commit, so there are no acked rows to sweep later); `dead` holds dead
/// letters, trimmed per queue by compaction. AUTOINCREMENT makes SQLite remember the highest
/// sequence ever used, so a job id is never reused after its row is gone.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    queue      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER
);
CREATE TABLE IF NOT EXISTS dead (
    id         INTEGER PRIMARY KEY,
    seq        INTEGER NOT NULL,
    queue      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    attempts   INTEGER NOT NULL,
    error      TEXT    NOT NULL,
    failed_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_by_queue ON dead (queue, id);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// One request to the writer. Ops with a `reply` are answered after their commit.
pub(super) enum Op {
    Publish {
        queue: Arc<str>,
        payloads: Vec<Bytes>,
        reply: oneshot::Sender<BackendResult<Vec<u64>>>,
    },
    /// Jobs handed to a consumer: their delivery count goes up by one. Not awaited: losing it
    /// in a crash only undercounts one attempt.
    Delivered(Vec<u64>),
    Ack {
        seqs: Vec<u64>,
        reply: oneshot::Sender<BackendResult<()>>,
    },
    Retry {
        seq: u64,
        attempts: u32,
        not_before_ms: u64,
        reply: oneshot::Sender<BackendResult<()>>,
    },
    Dead {
        letter: DeadLetter,
        seq: u64,
        reply: Option<oneshot::Sender<BackendResult<()>>>,
    },
    DeadLetters {
        queue: String,
        limit: usize,
        reply: oneshot::Sender<BackendResult<Vec<DeadLetter>>>,
    },
    Ping {
        reply: oneshot::Sender<BackendResult<()>>,
    },
    Compact {
        reply: oneshot::Sender<BackendResult<CompactStats>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// What one [`LocalBus::compact`](super::LocalBus::compact) removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactStats {
    /// Dead letters dropped beyond the per-queue cap.
    pub dead_letters_dropped: u64,
    /// Free pages handed back to the file system.
    pub pages_freed: u64,
}

/// A job found in the spool at open.
pub(super) struct LoadedJob {
    pub seq: u64,
    pub queue: String,
    pub payload: Bytes,
    pub attempts: u32,
    pub not_before_ms: Option<u64>,
}

/// Jobs a commit made durable, handed to the in-memory queues before publishers hear back.
pub(super) struct Published {
    pub queue: Arc<str>,
    pub jobs: Vec<(u64, Bytes)>,
}

pub(super) fn db_error(e: rusqlite::Error) -> BackendError {
    match &e {
        // A constraint or type mismatch is a bug, not an outage.
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            BackendError::other(BACKEND, e)
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnName(_) => BackendError::other(BACKEND, e),
        _ => BackendError::unavailable(BACKEND, e),
    }
}

/// SQLITE_BUSY at open means another bus holds the spool's exclusive lock.
fn locked(e: rusqlite::Error, dir: &Path) -> BackendError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            BackendError::unavailable(BACKEND, format!("the spool in {} is in use by another bus ({e})", dir.display()))
        }
        _ => db_error(e),
    }
}

pub(super) fn closed() -> BackendError {
    BackendError::unavailable(BACKEND, "the spool writer has stopped")
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Opens (creating if needed) `dir/spool.db` and reads every live job. Blocking: call it
/// off the async runtime.
pub(super) fn open(dir: &Path) -> BackendResult<(Connection, Vec<LoadedJob>, u64)> {
    std::fs::create_dir_all(dir).map_err(|e| BackendError::unavailable(BACKEND, format!("{}: {e}", dir.display())))?;
    let conn = Connection::open(dir.join("spool.db")).map_err(|e| locked(e, dir))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db_error)?;
    // Exclusive: the in-memory queues are the truth while a bus runs, so a second process
    // on the same spool would deliver every job twice. It waits `busy_timeout` for the
    // lock, then refuses. `auto_vacuum` only takes effect before the first table exists.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA locking_mode = EXCLUSIVE; \
         PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
    )
    .map_err(|e| locked(e, dir))?;
    conn.execute_batch(SCHEMA).map_err(|e| locked(e, dir))?;

    let jobs = {
        let mut stmt = conn
            .prepare("SELECT seq, queue, payload, attempts, not_before FROM jobs ORDER BY seq")
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(LoadedJob {
                    seq: to_u64(row.get(0)?),
                    queue: row.get(1)?,
                    payload: Bytes::from(row.get::<_, Vec<u8>>(2)?),
                    attempts: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(u32::MAX),
                    not_before_ms: row.get::<_, Option<i64>>(4)?.map(to_u64),
                })
            })
            .map_err(|e| locked(e, dir))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error)?
    };
    let last: Option<i64> = conn
        .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'", [], |row| row.get(0))
        .optional()
        .map_err(db_error)?;
    let next_seq = last.map(to_u64).unwrap_or(0) + 1;
    Ok((conn, jobs, next_seq))
}

/// The writer: runs on a thread of its own until every sender is gone or [`Op::Close`]
/// arrives, then closes the connection (which checkpoints the WAL into the main file).
pub(super) fn run_writer<F>(mut conn: Connection, mut next_seq: u64, mut rx: mpsc::UnboundedReceiver<Op>, published: F)
where
    F: Fn(Vec<Published>),
{
    let mut received = Vec::with_capacity(MAX_OPS_PER_COMMIT);
    let mut batch = Vec::new();
    let mut closers = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        received.push(first);
        while received.len() < MAX_OPS_PER_COMMIT {
            match rx.try_recv() {
                Ok(op) => received.push(op),
                Err(_) => break,
            }
        }
        for op in received.drain(..) {
            match op {
                Op::Compact { reply } => {
                    // Checkpoints cannot run inside a transaction: commit what came before.
                    commit(&mut conn, &mut next_seq, std::mem::take(&mut batch), &published);
                    let _ = reply.send(compact(&conn));
                }
                Op::Close { reply } => {
                    // Refuse new ops; those already queued still get their commit.
                    rx.close();
                    closers.push(reply);
                }
                op => batch.push(op),
            }
        }
        commit(&mut conn, &mut next_seq, std::mem::take(&mut batch), &published);
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the bus spool failed");
    }
    for reply in closers {
        let _ = reply.send(());
    }
}

enum Outcome {
    Done,
    Seqs(Vec<u64>),
    Letters(Vec<DeadLetter>),
}

fn commit<F>(conn: &mut Connection, next_seq: &mut u64, ops: Vec<Op>, published: &F)
where
    F: Fn(Vec<Published>),
{
    if ops.is_empty() {
        return;
    }
    let first_seq = *next_seq;
    let outcomes = match apply_all(conn, next_seq, &ops) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            *next_seq = first_seq;
            tracing::warn!(error = %e, ops = ops.len(), "bus spool commit failed");
            for op in ops {
                reply_err(op, e.clone());
            }
            return;
        }
    };

    let mut fresh = Vec::new();
    let mut replies = Vec::with_capacity(ops.len());
    for (op, outcome) in ops.into_iter().zip(outcomes) {
        match (op, outcome) {
            (Op::Publish { queue, payloads, reply }, Outcome::Seqs(seqs)) => {
                let jobs = seqs.iter().copied().zip(payloads).collect();
                fresh.push(Published { queue, jobs });
                replies.push((reply, seqs));
            }
            (Op::DeadLetters { reply, .. }, Outcome::Letters(letters)) => {
                let _ = reply.send(Ok(letters));
            }
            (op, _) => reply_ok(op),
        }
    }
    // Memory first, then the answer: a publisher that gets its id can fetch the job at once.
    if !fresh.is_empty() {
        published(fresh);
    }
    for (reply, seqs) in replies {
        let _ = reply.send(Ok(seqs));
    }
}

fn reply_ok(op: Op) {
    match op {
        Op::Ack { reply, .. } | Op::Retry { reply, .. } | Op::Ping { reply } => {
            let _ = reply.send(Ok(()));
        }
        Op::Dead { reply: Some(reply), .. } => {
            let _ = reply.send(Ok(()));
        }
        _ => {}
    }
}

fn reply_err(op: Op, e: BackendError) {
    match op {
        Op::Publish { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Op::Ack { reply, .. } | Op::Retry { reply, .. } | Op::Ping { reply } => {
            let _ = reply.send(Err(e));
        }
        Op::Dead { reply: Some(reply), .. } => {
            let _ = reply.send(Err(e));
        }
        Op::DeadLetters { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Op::Compact { reply } => {
            let _ = reply.send(Err(e));
        }
        Op::Dead { reply: None, .. } | Op::Delivered(_) | Op::Close { .. } => {}
    }
}

/// Runs one cached statement per id (each a reset, a bind and a step: no thread hop now).
fn per_seq(conn: &Connection, sql: &str, seqs: &[u64]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    for &seq in seqs {
        stmt.execute([to_i64(seq)])?;
    }
    Ok(())
}

fn apply_all(conn: &mut Connection, next_seq: &mut u64, ops: &[Op]) -> BackendResult<Vec<Outcome>> {
    // IMMEDIATE takes the write lock up front, so the commit cannot fail for lock upgrade.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        let outcome = match op {
            Op::Publish { queue, payloads, .. } => {
                let mut insert = tx
                    .prepare_cached("INSERT INTO jobs (seq, queue, payload) VALUES (?1, ?2, ?3)")
                    .map_err(db_error)?;
                let mut seqs = Vec::with_capacity(payloads.len());
                for payload in payloads {
                    let seq = *next_seq;
                    *next_seq += 1;
                    insert.execute(params![to_i64(seq), &**queue, payload.as_ref()]).map_err(db_error)?;
                    seqs.push(seq);
                }
                Outcome::Seqs(seqs)
            }
            Op::Delivered(seqs) => {
                per_seq(&tx, "UPDATE jobs SET attempts = attempts + 1 WHERE seq = ?1", seqs).map_err(db_error)?;
                Outcome::Done
            }
            Op::Ack { seqs, .. } => {
                per_seq(&tx, "DELETE FROM jobs WHERE seq = ?1", seqs).map_err(db_error)?;
                Outcome::Done
            }
            Op::Retry { seq, attempts, not_before_ms, .. } => {
                tx.prepare_cached("UPDATE jobs SET attempts = ?2, not_before = ?3 WHERE seq = ?1")
                    .and_then(|mut s| s.execute(params![to_i64(*seq), i64::from(*attempts), to_i64(*not_before_ms)]))
                    .map_err(db_error)?;
                Outcome::Done
            }
            Op::Dead { letter, seq, .. } => {
                tx.prepare_cached(
                    "INSERT INTO dead (seq, queue, payload, attempts, error, failed_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        to_i64(*seq),
                        letter.queue.as_str(),
                        letter.payload.as_ref(),
                        i64::from(letter.attempts),
                        letter.error.as_str(),
                        to_i64(letter.failed_at),
                    ])
                })
                .map_err(db_error)?;
                per_seq(&tx, "DELETE FROM jobs WHERE seq = ?1", &[*seq]).map_err(db_error)?;
                Outcome::Done
            }
            Op::DeadLetters { queue, limit, .. } => Outcome::Letters(dead_letters(&tx, queue, *limit)?),
            Op::Ping { .. } => {
                tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('last_ping_ms', ?1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .and_then(|mut s| s.execute([now_ms().to_string()]))
                .map_err(db_error)?;
                Outcome::Done
            }
            // Handled by the writer loop outside any transaction.
            Op::Compact { .. } | Op::Close { .. } => Outcome::Done,
        };
        outcomes.push(outcome);
    }
    tx.commit().map_err(db_error)?;
    Ok(outcomes)
}

fn dead_letters(conn: &Connection, queue: &str, limit: usize) -> BackendResult<Vec<DeadLetter>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, payload, attempts, error, failed_at FROM dead \
             WHERE queue = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .map_err(db_error)?;
    let rows = stmt
        .query_map(params![queue, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(DeadLetter {
                id: JobId(row.get::<_, i64>(0)?.to_string()),
                queue: queue.to_owned(),
                payload: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                attempts: u32::try_from(row.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                error: row.get(3)?,
                failed_at: to_u64(row.get(4)?),
            })
        })
        .map_err(db_error)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
}

fn compact(conn: &Connection) -> BackendResult<CompactStats> {
    let queues: Vec<String> = {
        let mut stmt = conn.prepare("SELECT DISTINCT queue FROM dead").map_err(db_error)?;
        let rows = stmt.query_map([], |row| row.get(0)).map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)?
    };
    let mut dropped = 0;
    for queue in queues {
        let done = conn
            .execute(
                "DELETE FROM dead WHERE queue = ?1 AND id <= \
                 (SELECT id FROM dead WHERE queue = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![queue, DEAD_LETTER_CAP],
            )
            .map_err(db_error)?;
        dropped += done as u64;
    }
    let free = |conn: &Connection| conn.query_row("PRAGMA freelist_count", [], |row| row.get::<_, i64>(0));
    let free_before = free(conn).map_err(db_error)?;
    // Acks delete rows, so the file only holds free pages left by a past backlog peak;
    // handing them back and truncating the WAL keeps the spool near its live size.
    // `incremental_vacuum` returns a row per freed page on some builds: step through them.
    conn.prepare("PRAGMA incremental_vacuum")
        .and_then(|mut s| s.query([])?.mapped(|_| Ok(())).collect::<rusqlite::Result<Vec<()>>>())
        .map_err(db_error)?;
    let free_after = free(conn).map_err(db_error)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(db_error)?;
    Ok(CompactStats { dead_letters_dropped: dropped, pages_freed: to_u64(free_before.saturating_sub(free_after)) })
}
