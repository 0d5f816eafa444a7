//! The worker loop that drains one queue of the [`Bus`]: fetch a batch, hand it to a
//! [`JobHandler`], ack what succeeded in one call and fail the rest (retry or dead letter,
//! as the bus's [`RetryPolicy`](crate::bus::RetryPolicy) says).
//!
//! It stops on shutdown after finishing the batch in hand; a batch it never finishes (the
//! process dies) is delivered again after the visibility timeout, so handlers must be
//! idempotent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::bus::{Bus, FailOutcome, Job};

/// How long one fetch waits for work. Short enough that a queue's idle workers notice a
/// shutdown signal quickly even if the bus were to ignore cancellation.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// Pause after the first bus error, doubling up to [`MAX_ERROR_PAUSE`]: an unavailable
/// bus must not turn the loop into a busy spin.
const FIRST_ERROR_PAUSE: Duration = Duration::from_millis(100);
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Runs the jobs of one queue.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Handles a batch; returns one result per job, in order. An `Err` carries the reason
    /// recorded with the retry or the dead letter.
    async fn handle(&self, jobs: &[Job]) -> Vec<Result<(), String>>;
}

/// Drains `queue` as `consumer`, `batch` jobs at a time, until `shutdown` turns true (or
/// its sender is dropped). Bus errors are logged and retried after a growing pause.
pub async fn run_worker(
    bus: Arc<dyn Bus>,
    queue: String,
    consumer: String,
    batch: usize,
    handler: Arc<dyn JobHandler>,
    mut shutdown: watch::Receiver<bool>,
) {
    let batch = batch.max(1);
    let mut pause = FIRST_ERROR_PAUSE;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        // Cancelling a fetch loses nothing: a bus hands a job out only when fetch returns,
        // and one taken by a cancelled read is redelivered after the visibility timeout.
        let fetched = tokio::select! {
            fetched = bus.fetch(&queue, &consumer, batch, FETCH_WAIT) => fetched,
            changed = shutdown.changed() => {
                // A dropped sender can never say stop: treat it as the stop.
                if changed.is_err() || *shutdown.borrow_and_update() {
                    return;
                }
                continue;
            }
        };
        let jobs = match fetched {
            Ok(jobs) => {
                pause = FIRST_ERROR_PAUSE;
                jobs
            }
            Err(e) => {
                tracing::warn!(queue, consumer, error = %e, pause_ms = pause.as_millis() as u64, "bus fetch failed");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow_and_update() {
                            return;
                        }
                    }
                }
                pause = (pause * 2).min(MAX_ERROR_PAUSE);
                continue;
            }
        };
        if jobs.is_empty() {
            continue;
        }
        // The batch in hand is finished even if shutdown comes meanwhile.
        let results = handler.handle(&jobs).await;
        settle(bus.as_ref(), &queue, &jobs, results).await;
    }
}

/// Acks the successes in one call and fails the others one by one.
async fn settle(bus: &dyn Bus, queue: &str, jobs: &[Job], mut results: Vec<Result<(), String>>) {
    if results.len() != jobs.len() {
        tracing::error!(
            queue,
            jobs = jobs.len(),
            results = results.len(),
            "job handler returned the wrong number of results"
        );
        results.resize_with(jobs.len(), || Err("the handler returned no result for this job".to_owned()));
    }
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Ok(()) => done.push(job.id.clone()),
            Err(reason) => failed.push((job, reason)),
        }
    }
    if !done.is_empty() {
        if let Err(e) = bus.ack(queue, &done).await {
            // Not fatal: the jobs come back after the visibility timeout and run again.
            tracing::warn!(queue, jobs = done.len(), error = %e, "bus ack failed");
        }
    }
    for (job, reason) in failed {
        match bus.fail(queue, job, &reason).await {
            Ok(FailOutcome::Retry { after }) => {
                tracing::info!(queue, id = %job.id, attempt = job.attempt, error = %reason, retry_in_ms = after.as_millis() as u64, "job failed; will retry");
            }
            Ok(FailOutcome::DeadLettered) => {
                tracing::warn!(queue, id = %job.id, attempt = job.attempt, error = %reason, "job failed for the last time; dead-lettered");
            }
            Err(e) => {
                tracing::warn!(queue, id = %job.id, error = %e, "bus fail failed; the job returns after the visibility timeout");
            }
        }
    }
}
