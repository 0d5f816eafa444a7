//! The contract suite of the [`Bus`] port: one list of cases that every bus backend must
//! pass, and [`run_worker`](frontdesk_core::worker::run_worker) with it.
//!
//! ```ignore
//! frontdesk_testkit::bus_contract_tests!(|policy| async move {
//!     let dir = tempfile::tempdir().expect("tempdir");
//!     let bus = LocalBus::open(dir.path(), policy).await.expect("open");
//!     (Arc::new(bus) as Arc<dyn Bus>, dir) // the second part lives as long as the test
//! });
//! ```
//!
//! The factory gets the suite's [`policy`] (short timings, so redelivery cases take well
//! under a second each) and returns the bus, or the bus and a guard to keep alive. Every
//! wait is bounded; nothing sleeps longer than a visibility timeout.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use frontdesk_core::bus::{Bus, Job, JobId, RetryPolicy};
use tokio::time::Instant;

/// Expands to one `#[tokio::test]` per contract case. The argument is a closure from the
/// suite's [`RetryPolicy`] to a future of `Arc<dyn Bus>` or of `(Arc<dyn Bus>, guard)`.
#[macro_export]
macro_rules! bus_contract_tests {
    (make = $make:expr) => {
        $crate::bus_contract_tests!($make);
    };
    ($make:expr) => {
        $crate::bus_contract_tests!(@cases ($make)
            publish_fetch_ack_fifo,
            batch_publish_keeps_order,
            fetch_wakes_on_publish,
            fetch_with_nothing_returns_empty_after_wait,
            competing_consumers_never_share_a_pending_job,
            ack_is_idempotent,
            failed_job_is_redelivered_after_backoff,
            failing_at_max_attempts_dead_letters,
            consumer_killed_mid_job_gets_job_redelivered_once,
            job_whose_consumers_keep_dying_is_dead_lettered,
            backlog_counts_accepted_minus_acked_and_dead,
            queues_are_independent,
            thousand_jobs_four_consumers_each_acked_once,
            worker_acks_retries_dead_letters_and_stops,
        );
    };
    (@cases ($make:expr) $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::bus::cases::$case($crate::bus::maker($make)).await;
            }
        )*
    };
}

/// The policy every case runs with.
pub fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        visibility_timeout: Duration::from_millis(400),
    }
}

/// A bus made for one case, with whatever must outlive it (e.g. its data directory).
pub struct BusUnderTest {
    pub bus: Arc<dyn Bus>,
    _guard: Box<dyn Any + Send>,
}

/// What a factory may return.
pub trait IntoBusUnderTest {
    fn into_bus_under_test(self) -> BusUnderTest;
}

impl IntoBusUnderTest for Arc<dyn Bus> {
    fn into_bus_under_test(self) -> BusUnderTest {
        BusUnderTest { bus: self, _guard: Box::new(()) }
    }
}

impl<G: Send + 'static> IntoBusUnderTest for (Arc<dyn Bus>, G) {
    fn into_bus_under_test(self) -> BusUnderTest {
        BusUnderTest { bus: self.0, _guard: Box::new(self.1) }
    }
}

/// What the macro's argument is: a closure from the suite's policy to a future of the bus.
pub trait MakeBus {
    fn make(&self, policy: RetryPolicy) -> impl Future<Output = BusUnderTest>;
}

impl<F, Fut> MakeBus for F
where
    F: Fn(RetryPolicy) -> Fut,
    Fut: Future,
    Fut::Output: IntoBusUnderTest,
{
    fn make(&self, policy: RetryPolicy) -> impl Future<Output = BusUnderTest> {
        let made = self(policy);
        async move { made.await.into_bus_under_test() }
    }
}

/// Pins the macro's closure to `Fn(RetryPolicy)`, so `|policy| …` needs no type annotation.
#[doc(hidden)]
pub fn maker<F, Fut>(make: F) -> F
where
    F: Fn(RetryPolicy) -> Fut,
    Fut: Future,
    Fut::Output: IntoBusUnderTest,
{
    make
}

/// Fetches as `consumer` until `n` jobs came or `within` passed.
pub async fn fetch_n(bus: &dyn Bus, queue: &str, consumer: &str, n: usize, within: Duration) -> Vec<Job> {
    let give_up = Instant::now() + within;
    let mut jobs = Vec::new();
    while jobs.len() < n {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        jobs.extend(bus.fetch(queue, consumer, n - jobs.len(), left).await.expect("fetch"));
    }
    jobs
}

fn payloads(jobs: &[Job]) -> Vec<Bytes> {
    jobs.iter().map(|j| j.payload.clone()).collect()
}

fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id.clone()).collect()
}

/// Longer than the visibility timeout: a job not delivered within it will not be.
fn past_visibility(policy: &RetryPolicy) -> Duration {
    policy.visibility_timeout + Duration::from_millis(300)
}

#[doc(hidden)]
pub mod cases;
