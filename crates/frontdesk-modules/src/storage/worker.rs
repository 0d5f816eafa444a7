//! The write-behind worker: `storage/start` (in `server.start`) starts one per node,
//! `storage/stop` (in `server.end`) stops it after the batch in hand. It fetches up to
//! [`BATCH`] jobs of [`HISTORY_QUEUE`], applies them in one store transaction, and acks
//! them in one call; after a batch that was not full it lets jobs gather for [`LINGER`].
//!
//! Failures: a batch the store refuses as unavailable is failed back to the bus (retried
//! after the bus's backoff), and the worker stops fetching until a probe (`Store::ping`,
//! with a growing pause) answers — so a database outage of any length costs each job one
//! delivery attempt, not all of them, and jobs wait on the bus instead of being
//! dead-lettered. Any other error is a job the store cannot take (bad data): the batch is
//! applied one job at a time so only that job is failed (and in the end dead-lettered).
//!
//! Not `frontdesk_core::worker::run_worker`: that loop cannot hold back its fetches while
//! the store is down, which is what keeps an outage from exhausting the retries.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::bus::{FailOutcome, Job};
use frontdesk_core::error::{BackendError, ErrorKind};
use frontdesk_core::history::{HistoryJob, HistoryWrite, VisitorHistory, HISTORY_JOB_MAX_READ, HISTORY_QUEUE};
use frontdesk_core::id::Id;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Storage;
use crate::RegisterError;

/// Jobs per fetch, and so per transaction.
pub const BATCH: usize = 500;
const FETCH_WAIT: Duration = Duration::from_secs(2);
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// After a batch smaller than [`BATCH`], how long the worker lets jobs gather before it
/// fetches again. Without it a steady trickle is written one or two jobs per transaction
/// (and acked per job on the local bus's spool): under `frontdesk bench chat` at 1,700
/// messages/s, the history writes and their commits took ~60 % of the server's CPU. The
/// history is written behind anyway; this makes it up to this much later.
const LINGER: Duration = Duration::from_millis(50);

type Running = Arc<Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>>;

pub(super) fn register(registry: &mut Registry, storage: &Arc<Storage>) -> Result<(), RegisterError> {
    let running: Running = Arc::new(Mutex::new(None));
    registry.register("storage/start", Arc::new(Start { storage: storage.clone(), running: running.clone() }))?;
    registry.register("storage/stop", Arc::new(Stop { running }))?;
    Ok(())
}

struct Start {
    storage: Arc<Storage>,
    running: Running,
}

#[async_trait]
impl Handler for Start {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        let mut slot = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(_, task)| !task.is_finished()) {
            return Ok(Step::Next);
        }
        let (stop, stopped) = watch::channel(false);
        let consumer = format!("storage-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let task = tokio::spawn(drain(self.storage.clone(), consumer, stopped));
        *slot = Some((stop, task));
        Ok(Step::Next)
    }
}

struct Stop {
    running: Running,
}

#[async_trait]
impl Handler for Stop {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        let taken = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, task)) = taken {
            let _ = stop.send(true);
            // The batch in hand is finished (and acked) before the node goes.
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "the write-behind worker ended abnormally");
            }
        }
        Ok(Step::Next)
    }
}

/// Sleeps `pause`; true when told to stop meanwhile.
async fn stopped_during(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        changed = stop.changed() => changed.is_err() || *stop.borrow_and_update(),
    }
}

async fn drain(s: Arc<Storage>, consumer: String, mut stop: watch::Receiver<bool>) {
    let mut pause = FIRST_PAUSE;
    let mut store_down = false;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if store_down {
            if stopped_during(&mut stop, pause).await {
                return;
            }
            if let Err(e) = s.store.ping().await {
                tracing::debug!(error = %e, "store still unavailable; history writes wait on the bus");
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
            tracing::info!("store is back; resuming history writes");
            store_down = false;
            pause = FIRST_PAUSE;
        }
        let fetched = tokio::select! {
            fetched = s.bus.fetch(HISTORY_QUEUE, &consumer, BATCH, FETCH_WAIT) => fetched,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow_and_update() {
                    return;
                }
                continue;
            }
        };
        match fetched {
            Ok(jobs) if jobs.is_empty() => {}
            Ok(jobs) => {
                pause = FIRST_PAUSE;
                store_down = apply_jobs(&s, &jobs).await;
                if !store_down && jobs.len() < BATCH && stopped_during(&mut stop, LINGER).await {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "bus fetch of history writes failed");
                if stopped_during(&mut stop, pause).await {
                    return;
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

fn decode(job: &Job) -> Result<HistoryWrite, String> {
    let parsed: HistoryJob = serde_json::from_slice(&job.payload).map_err(|e| {
        // A newer node's job this node cannot read: another node will take it on retry.
        match serde_json::from_slice::<serde_json::Value>(&job.payload).ok().and_then(|v| v["v"].as_u64()) {
            Some(v) if v > u64::from(HISTORY_JOB_MAX_READ) => {
                format!("history job version {v} is newer than this node's")
            }
            _ => format!("not a history job: {e}"),
        }
    })?;
    if parsed.v > HISTORY_JOB_MAX_READ {
        return Err(format!("history job version {} is newer than this node's", parsed.v));
    }
    Ok(parsed.write)
}

/// Applies one fetched batch and settles it with the bus. True when the store was
/// unavailable (the caller then waits for it before fetching again).
pub(crate) async fn apply_jobs(s: &Storage, jobs: &[Job]) -> bool {
    let mut good = Vec::with_capacity(jobs.len());
    let mut writes = Vec::with_capacity(jobs.len());
    for job in jobs {
        match decode(job) {
            Ok(w) => {
                good.push(job);
                writes.push(w);
            }
            Err(reason) => fail(s, job, &reason).await,
        }
    }
    match s.store.apply_history(&coalesce_visitors(&writes)).await {
        Ok(()) => {
            ack(s, &good).await;
            false
        }
        Err(e) if e.kind() == ErrorKind::Unavailable => {
            tracing::warn!(error = %e, jobs = good.len(), "store unavailable; history writes go back to the bus");
            for job in good {
                fail(s, job, &e.to_string()).await;
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "a history batch was refused; applying its jobs one by one");
            one_by_one(s, &good, &writes).await
        }
    }
}

/// The batch with one visitor record per visitor: the newest (highest `version`), with the
/// earliest `first_seen` of them all — what the store's upserts would end with after
/// applying every one (they keep the newest version and the smallest `first_seen`). A
/// visitor browsing records itself on every page visit, so a batch often holds many.
/// Everything else is kept as it is, in order; a batch where no visitor repeats is not
/// copied.
fn coalesce_visitors(writes: &[HistoryWrite]) -> Cow<'_, [HistoryWrite]> {
    // Per visitor: the position of its newest record, and the earliest first sighting.
    let mut newest: HashMap<(Id, Id), (&VisitorHistory, usize, i64)> = HashMap::new();
    let mut repeats = false;
    for (i, w) in writes.iter().enumerate() {
        let HistoryWrite::Visitor(v) = w else { continue };
        match newest.entry((v.site_id, v.visitor_id)) {
            Entry::Vacant(slot) => {
                slot.insert((v, i, v.first_seen));
            }
            Entry::Occupied(mut slot) => {
                repeats = true;
                let (kept, at, first_seen) = slot.get_mut();
                *first_seen = (*first_seen).min(v.first_seen);
                if v.version >= kept.version {
                    (*kept, *at) = (v, i);
                }
            }
        }
    }
    if !repeats {
        return Cow::Borrowed(writes);
    }
    let mut out = Vec::with_capacity(writes.len());
    for (i, w) in writes.iter().enumerate() {
        match w {
            HistoryWrite::Visitor(v) => {
                if let Some(&(kept, at, first_seen)) = newest.get(&(v.site_id, v.visitor_id)) {
                    if at == i {
                        out.push(HistoryWrite::Visitor(VisitorHistory { first_seen, ..kept.clone() }));
                    }
                }
            }
            other => out.push(other.clone()),
        }
    }
    Cow::Owned(out)
}

async fn one_by_one(s: &Storage, jobs: &[&Job], writes: &[HistoryWrite]) -> bool {
    let mut done = Vec::new();
    let mut down: Option<BackendError> = None;
    for (job, write) in jobs.iter().zip(writes) {
        if let Some(e) = &down {
            fail(s, job, &e.to_string()).await;
            continue;
        }
        match s.store.apply_history(std::slice::from_ref(write)).await {
            Ok(()) => done.push(*job),
            Err(e) => {
                fail(s, job, &e.to_string()).await;
                if e.kind() == ErrorKind::Unavailable {
                    down = Some(e);
                }
            }
        }
    }
    ack(s, &done).await;
    down.is_some()
}

async fn ack(s: &Storage, jobs: &[&Job]) {
    if jobs.is_empty() {
        return;
    }
    let ids: Vec<_> = jobs.iter().map(|j| j.id.clone()).collect();
    if let Err(e) = s.bus.ack(HISTORY_QUEUE, &ids).await {
        // Not lost: they come back after the visibility timeout and apply again, as no-ops.
        tracing::warn!(error = %e, jobs = ids.len(), "bus ack of history writes failed");
    }
}

async fn fail(s: &Storage, job: &Job, reason: &str) {
    match s.bus.fail(HISTORY_QUEUE, job, reason).await {
        Ok(FailOutcome::Retry { after }) => {
            tracing::debug!(id = %job.id, attempt = job.attempt, retry_in_ms = after.as_millis() as u64, "history write will retry");
        }
        Ok(FailOutcome::DeadLettered) => {
            tracing::error!(id = %job.id, attempt = job.attempt, error = reason, "history write dead-lettered");
        }
        Err(e) => {
            tracing::warn!(id = %job.id, error = %e, "bus fail failed; the job returns after the visibility timeout");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(id: u64, version: i64, first_seen: i64, page_views: i64) -> HistoryWrite {
        HistoryWrite::Visitor(VisitorHistory {
            visitor_id: Id(id),
            site_id: Id(1),
            name: String::new(),
            email: String::new(),
            custom_variables: Default::default(),
            first_seen,
            last_seen: version,
            visit_count: 1,
            page_views,
            version,
        })
    }

    #[test]
    fn a_batch_keeps_each_visitors_newest_record_with_its_first_sighting() {
        let status = HistoryWrite::AgentStatus(frontdesk_core::reports::AgentStatusChange {
            site_id: Id(1),
            agent_id: Id(2),
            status: "online".into(),
            at: 1,
        });
        // Out of order on purpose: versions, not positions, decide.
        let batch = vec![
            visitor(7, 30, 10, 3),
            status.clone(),
            visitor(8, 5, 5, 1),
            visitor(7, 20, 8, 2),
            visitor(7, 40, 12, 4),
        ];
        let out = coalesce_visitors(&batch);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(out[0], HistoryWrite::AgentStatus(_)));
        let HistoryWrite::Visitor(v8) = &out[1] else { panic!("{out:?}") };
        assert_eq!((v8.visitor_id, v8.version), (Id(8), 5));
        let HistoryWrite::Visitor(v7) = &out[2] else { panic!("{out:?}") };
        assert_eq!((v7.version, v7.page_views, v7.first_seen), (40, 4, 8));
    }
}
