//! The local bus's durable spool: the SQLite file `spool.db`, its schema, and the single
//! writer task that owns the file's only connection and commits every change in groups.
//!
//! Group commit is what makes the spool fast: publishers, acks, fails and dead letters queue
//! up on one channel; the writer takes everything waiting, applies it in one transaction and
//! answers each caller after the commit. With WAL and `synchronous=NORMAL` a committed
//! transaction survives the death of the process (not of the machine), which is the
//! promise of [`Bus::publish`](frontdesk_core::bus::Bus::publish).

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use frontdesk_core::bus::{DeadLetter, JobId};
use frontdesk_core::error::{BackendError, BackendResult};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteLockingMode, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteExecutor};
use tokio::sync::{mpsc, oneshot};

pub(super) const BACKEND: &str = "local bus";

/// Dead letters kept per queue; older ones are dropped by [`Op::Compact`].
pub(super) const DEAD_LETTER_CAP: i64 = 10_000;

/// Ops taken per group commit; bounds the latency one huge burst adds to the next caller.
const MAX_OPS_PER_COMMIT: usize = 4096;

/// Rows per multi-row INSERT, largest first. One statement per row would cost a round trip
/// to sqlx's SQLite worker thread per job; powers of two cover any count with a handful of
/// cached statements.
const INSERT_CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

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

static INSERT_SQL: LazyLock<Vec<(usize, &'static str)>> = LazyLock::new(|| {
    INSERT_CHUNKS
        .iter()
        .map(|&n| {
            let mut sql = String::from("INSERT INTO jobs (seq, queue, payload) VALUES ");
            for i in 0..n {
                sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
            }
            // Built once from constants; leaked so sqlx sees a `&'static str` it may cache.
            (n, &*sql.leak())
        })
        .collect()
});

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

pub(super) fn db_error(e: sqlx::Error) -> BackendError {
    match &e {
        // A constraint or type mismatch is a bug, not an outage.
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_check_violation() => {
            BackendError::other(BACKEND, e)
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => {
            BackendError::other(BACKEND, e)
        }
        _ => BackendError::unavailable(BACKEND, e),
    }
}

/// SQLITE_BUSY at open means another bus holds the spool's exclusive lock.
fn locked(e: sqlx::Error, dir: &Path) -> BackendError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("5") => {
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

/// Opens (creating if needed) `dir/spool.db` and reads every live job.
pub(super) async fn open(dir: &Path) -> BackendResult<(SqliteConnection, Vec<LoadedJob>, u64)> {
    std::fs::create_dir_all(dir).map_err(|e| BackendError::unavailable(BACKEND, format!("{}: {e}", dir.display())))?;
    let options = SqliteConnectOptions::new()
        .filename(dir.join("spool.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // Exclusive: the in-memory queues are the truth while a bus runs, so a second
        // process on the same spool would deliver every job twice. It waits `busy_timeout`
        // for the lock, then refuses.
        .locking_mode(SqliteLockingMode::Exclusive)
        .busy_timeout(Duration::from_secs(5))
        .auto_vacuum(SqliteAutoVacuum::Incremental);
    let mut conn = SqliteConnection::connect_with(&options).await.map_err(|e| locked(e, dir))?;
    sqlx::raw_sql(SCHEMA).execute(&mut conn).await.map_err(|e| locked(e, dir))?;

    let rows = sqlx::query("SELECT seq, queue, payload, attempts, not_before FROM jobs ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| locked(e, dir))?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        let payload: Vec<u8> = row.try_get("payload").map_err(db_error)?;
        let attempts: i64 = row.try_get("attempts").map_err(db_error)?;
        let not_before: Option<i64> = row.try_get("not_before").map_err(db_error)?;
        jobs.push(LoadedJob {
            seq: to_u64(row.try_get("seq").map_err(db_error)?),
            queue: row.try_get("queue").map_err(db_error)?,
            payload: Bytes::from(payload),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            not_before_ms: not_before.map(to_u64),
        });
    }
    let last: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'")
        .fetch_optional(&mut conn)
        .await
        .map_err(db_error)?;
    let next_seq = last.map(to_u64).unwrap_or(0) + 1;
    Ok((conn, jobs, next_seq))
}

/// The writer task: runs until every sender is gone or [`Op::Close`] arrives, then closes
/// the connection (which checkpoints the WAL into the main file).
pub(super) async fn run_writer<F>(
    mut conn: SqliteConnection,
    mut next_seq: u64,
    mut rx: mpsc::UnboundedReceiver<Op>,
    published: F,
) where
    F: Fn(Vec<Published>) + Send + 'static,
{
    let mut received = Vec::with_capacity(MAX_OPS_PER_COMMIT);
    let mut batch = Vec::new();
    let mut closers = Vec::new();
    while rx.recv_many(&mut received, MAX_OPS_PER_COMMIT).await > 0 {
        for op in received.drain(..) {
            match op {
                Op::Compact { reply } => {
                    // Checkpoints cannot run inside a transaction: commit what came before.
                    commit(&mut conn, &mut next_seq, std::mem::take(&mut batch), &published).await;
                    let _ = reply.send(compact(&mut conn).await);
                }
                Op::Close { reply } => {
                    // Refuse new ops; those already queued still get their commit.
                    rx.close();
                    closers.push(reply);
                }
                op => batch.push(op),
            }
        }
        commit(&mut conn, &mut next_seq, std::mem::take(&mut batch), &published).await;
    }
    if let Err(e) = conn.close().await {
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

async fn commit<F>(conn: &mut SqliteConnection, next_seq: &mut u64, ops: Vec<Op>, published: &F)
where
    F: Fn(Vec<Published>),
{
    if ops.is_empty() {
        return;
    }
    let first_seq = *next_seq;
    let result = apply_all(conn, next_seq, &ops).await;
    let outcomes = match result {
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

async fn apply_all(conn: &mut SqliteConnection, next_seq: &mut u64, ops: &[Op]) -> BackendResult<Vec<Outcome>> {
    // IMMEDIATE takes the write lock up front, so the commit cannot fail for lock upgrade.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let mut outcomes = Vec::with_capacity(ops.len());
    // Consecutive publishes become one run of multi-row INSERTs.
    let mut rows: Vec<(u64, &Arc<str>, &Bytes)> = Vec::new();
    for op in ops {
        if !matches!(op, Op::Publish { .. }) && !rows.is_empty() {
            insert_jobs(&mut tx, &rows).await?;
            rows.clear();
        }
        let outcome = match op {
            Op::Publish { queue, payloads, .. } => {
                let mut seqs = Vec::with_capacity(payloads.len());
                for payload in payloads {
                    let seq = *next_seq;
                    *next_seq += 1;
                    seqs.push(seq);
                    rows.push((seq, queue, payload));
                }
                Outcome::Seqs(seqs)
            }
            Op::Delivered(seqs) => {
                sqlx::query("UPDATE jobs SET attempts = attempts + 1 WHERE seq IN (SELECT value FROM json_each(?1))")
                    .bind(json_ids(seqs))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                Outcome::Done
            }
            Op::Ack { seqs, .. } => {
                sqlx::query("DELETE FROM jobs WHERE seq IN (SELECT value FROM json_each(?1))")
                    .bind(json_ids(seqs))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                Outcome::Done
            }
            Op::Retry { seq, attempts, not_before_ms, .. } => {
                sqlx::query("UPDATE jobs SET attempts = ?2, not_before = ?3 WHERE seq = ?1")
                    .bind(to_i64(*seq))
                    .bind(i64::from(*attempts))
                    .bind(to_i64(*not_before_ms))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                Outcome::Done
            }
            Op::Dead { letter, seq, .. } => {
                sqlx::query(
                    "INSERT INTO dead (seq, queue, payload, attempts, error, failed_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind(to_i64(*seq))
                .bind(letter.queue.as_str())
                .bind(letter.payload.as_ref())
                .bind(i64::from(letter.attempts))
                .bind(letter.error.as_str())
                .bind(to_i64(letter.failed_at))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                sqlx::query("DELETE FROM jobs WHERE seq = ?1")
                    .bind(to_i64(*seq))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                Outcome::Done
            }
            Op::DeadLetters { queue, limit, .. } => Outcome::Letters(dead_letters(&mut *tx, queue, *limit).await?),
            Op::Ping { .. } => {
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ('last_ping_ms', ?1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(now_ms().to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                Outcome::Done
            }
            // Handled by the writer loop outside any transaction.
            Op::Compact { .. } | Op::Close { .. } => Outcome::Done,
        };
        outcomes.push(outcome);
    }
    if !rows.is_empty() {
        insert_jobs(&mut tx, &rows).await?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(outcomes)
}

async fn insert_jobs(conn: &mut SqliteConnection, rows: &[(u64, &Arc<str>, &Bytes)]) -> BackendResult<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let (n, sql) = INSERT_SQL
            .iter()
            .copied()
            .find(|(n, _)| *n <= rest.len())
            .unwrap_or((1, INSERT_SQL[INSERT_SQL.len() - 1].1));
        let (chunk, tail) = rest.split_at(n);
        let mut query = sqlx::query(sql);
        for (seq, queue, payload) in chunk {
            query = query.bind(to_i64(*seq)).bind(Arc::clone(queue)).bind(payload.as_ref());
        }
        query.execute(&mut *conn).await.map_err(db_error)?;
        rest = tail;
    }
    Ok(())
}

fn json_ids(seqs: &[u64]) -> String {
    let mut s = String::with_capacity(seqs.len() * 8 + 2);
    s.push('[');
    for (i, seq) in seqs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&seq.to_string());
    }
    s.push(']');
    s
}

async fn dead_letters<'c>(conn: impl SqliteExecutor<'c>, queue: &str, limit: usize) -> BackendResult<Vec<DeadLetter>> {
    let rows = sqlx::query(
        "SELECT seq, payload, attempts, error, failed_at FROM dead \
         WHERE queue = ?1 ORDER BY id DESC LIMIT ?2",
    )
    .bind(queue)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await
    .map_err(db_error)?;
    let mut letters = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get("seq").map_err(db_error)?;
        let payload: Vec<u8> = row.try_get("payload").map_err(db_error)?;
        let attempts: i64 = row.try_get("attempts").map_err(db_error)?;
        let failed_at: i64 = row.try_get("failed_at").map_err(db_error)?;
        letters.push(DeadLetter {
            id: JobId(seq.to_string()),
            queue: queue.to_owned(),
            payload: Bytes::from(payload),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            error: row.try_get("error").map_err(db_error)?,
            failed_at: to_u64(failed_at),
        });
    }
    Ok(letters)
}

async fn compact(conn: &mut SqliteConnection) -> BackendResult<CompactStats> {
    let queues: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT queue FROM dead").fetch_all(&mut *conn).await.map_err(db_error)?;
    let mut dropped = 0;
    for queue in queues {
        let done = sqlx::query(
            "DELETE FROM dead WHERE queue = ?1 AND id <= \
             (SELECT id FROM dead WHERE queue = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )
        .bind(&queue)
        .bind(DEAD_LETTER_CAP)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        dropped += done.rows_affected();
    }
    let free_before: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(&mut *conn).await.map_err(db_error)?;
    // Acks delete rows, so the file only holds free pages left by a past backlog peak;
    // handing them back and truncating the WAL keeps the spool near its live size.
    sqlx::raw_sql("PRAGMA incremental_vacuum").execute(&mut *conn).await.map_err(db_error)?;
    let free_after: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(&mut *conn).await.map_err(db_error)?;
    sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await.map_err(db_error)?;
    Ok(CompactStats { dead_letters_dropped: dropped, pages_freed: to_u64(free_before.saturating_sub(free_after)) })
}
