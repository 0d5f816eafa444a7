//! The message queue port (SPEC §2): async pipeline stages, write-behind persistence,
//! webhooks and email go through it. At least once: a job is delivered until it is acked;
//! a job whose consumer dies is delivered again after the visibility timeout; a failed job
//! is retried with exponential backoff and dead-lettered after `max_attempts`.
//!
//! Backends: the in-process bus with a durable spool in the data directory, and Redis
//! Streams with one consumer group per queue. One contract suite runs against both.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::BackendResult;

/// A job's id, unique within its queue (a spool sequence or a Redis stream entry id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub String);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One delivery of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub queue: String,
    pub payload: Bytes,
    /// 1 on the first delivery, 2 on the second, …
    pub attempt: u32,
}

/// A job that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: JobId,
    pub queue: String,
    pub payload: Bytes,
    pub attempts: u32,
    pub error: String,
    /// Unix milliseconds.
    pub failed_at: u64,
}

/// What [`Bus::fail`] did with a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    /// It will be delivered again after this delay.
    Retry {
        after: Duration,
    },
    DeadLettered,
}

/// Delivery and retry settings, shared by every queue of a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries before a failing job is dead-lettered.
    pub max_attempts: u32,
    /// Backoff after the first failure; doubles with each attempt.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A fetched job not acked or failed within this time is delivered again.
    pub visibility_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            visibility_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before delivery number `attempt + 1`, after delivery `attempt` failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// `local` or `redis`.
    fn kind(&self) -> &'static str;
    async fn ping(&self) -> BackendResult<()>;
    /// Accepts a job. Once this returns, the job survives the death of this process.
    async fn publish(&self, queue: &str, payload: Bytes) -> BackendResult<JobId>;
    /// Accepts several jobs at once, in order; cheaper than one call each.
    async fn publish_batch(&self, queue: &str, payloads: Vec<Bytes>) -> BackendResult<Vec<JobId>>;
    /// Up to `max` ready jobs, oldest first, waiting up to `wait` when none is ready. Each
    /// stays pending until acked or failed.
    async fn fetch(&self, queue: &str, consumer: &str, max: usize, wait: Duration) -> BackendResult<Vec<Job>>;
    /// Marks jobs done; they are never delivered again.
    async fn ack(&self, queue: &str, ids: &[JobId]) -> BackendResult<()>;
    /// Marks one delivery failed: retried after backoff, or dead-lettered.
    async fn fail(&self, queue: &str, job: &Job, error: &str) -> BackendResult<FailOutcome>;
    /// The newest dead letters of a queue, newest first.
    async fn dead_letters(&self, queue: &str, limit: usize) -> BackendResult<Vec<DeadLetter>>;
    /// Jobs accepted and not yet acked or dead-lettered.
    async fn backlog(&self, queue: &str) -> BackendResult<u64>;
    /// Makes everything recorded so far (acks, failures) durable and stops accepting
    /// work; called once at shutdown. Accepted jobs are durable already.
    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            visibility_timeout: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(500));
        assert_eq!(p.backoff(60), Duration::from_millis(500));
    }
}
