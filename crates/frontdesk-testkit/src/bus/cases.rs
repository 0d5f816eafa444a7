//! The cases of the bus contract suite, one `pub async fn` per `#[tokio::test]` that
//! [`bus_contract_tests!`](crate::bus_contract_tests) expands to.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use frontdesk_core::bus::{FailOutcome, Job, JobId, RetryPolicy};
use frontdesk_core::worker::{run_worker, JobHandler};
use tokio::time::Instant;

use super::{fetch_n, ids, past_visibility, payloads, policy, BusUnderTest, MakeBus};
async fn setup(make: &impl MakeBus) -> (BusUnderTest, RetryPolicy) {
    let policy = policy();
    (make.make(policy.clone()).await, policy)
}

pub async fn publish_fetch_ack_fifo(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = t.bus.as_ref();
    let mut published = Vec::new();
    for p in ["a", "b", "c"] {
        published.push(bus.publish("q", Bytes::from(p)).await.expect("publish"));
    }
    let jobs = fetch_n(bus, "q", "c1", 3, Duration::from_secs(2)).await;
    assert_eq!(payloads(&jobs), ["a", "b", "c"].map(Bytes::from), "oldest first");
    assert_eq!(ids(&jobs), published, "delivered under the ids publish returned");
    assert!(jobs.iter().all(|j| j.attempt == 1 && j.queue == "q"));
    bus.ack("q", &ids(&jobs)).await.expect("ack");
    let again = bus.fetch("q", "c1", 10, past_visibility(&policy)).await.expect("fetch");
    assert!(again.is_empty(), "acked jobs came back: {again:?}");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 0);
}

pub async fn batch_publish_keeps_order(make: impl MakeBus) {
    let (t, _) = setup(&make).await;
    let bus = t.bus.as_ref();
    let sent: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("job {i}"))).collect();
    let published = bus.publish_batch("q", sent.clone()).await.expect("publish_batch");
    assert_eq!(published.len(), 50);
    assert_eq!(published.iter().collect::<HashSet<_>>().len(), 50, "ids are distinct");
    assert!(bus.publish_batch("q", Vec::new()).await.expect("empty batch").is_empty());
    let jobs = fetch_n(bus, "q", "c1", 50, Duration::from_secs(2)).await;
    assert_eq!(payloads(&jobs), sent);
    assert_eq!(ids(&jobs), published);
}

pub async fn fetch_wakes_on_publish(make: impl MakeBus) {
    let (t, _) = setup(&make).await;
    let bus = Arc::clone(&t.bus);
    // Create the queue first, so the waiting fetch below is a plain wait.
    assert!(bus.fetch("q", "c1", 1, Duration::ZERO).await.expect("fetch").is_empty());
    let waiter = tokio::spawn({
        let bus = Arc::clone(&bus);
        async move { bus.fetch("q", "c1", 1, Duration::from_secs(5)).await.expect("fetch") }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let published_at = Instant::now();
    bus.publish("q", Bytes::from("wake")).await.expect("publish");
    let jobs = tokio::time::timeout(Duration::from_secs(3), waiter).await.expect("fetch woke").expect("join");
    assert_eq!(payloads(&jobs), [Bytes::from("wake")]);
    let latency = published_at.elapsed();
    assert!(latency < Duration::from_secs(1), "woke {latency:?} after the publish");
}

pub async fn fetch_with_nothing_returns_empty_after_wait(make: impl MakeBus) {
    let (t, _) = setup(&make).await;
    let bus = t.bus.as_ref();
    let started = Instant::now();
    assert!(bus.fetch("q", "c1", 10, Duration::from_millis(300)).await.expect("fetch").is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(280), "returned after {waited:?}, before the wait was over");
    assert!(waited < Duration::from_secs(2), "returned after {waited:?}");
    let started = Instant::now();
    assert!(bus.fetch("q", "c1", 10, Duration::ZERO).await.expect("fetch").is_empty());
    assert!(started.elapsed() < Duration::from_millis(500), "a zero wait still waited");
}

pub async fn competing_consumers_never_share_a_pending_job(make: impl MakeBus) {
    let (t, _) = setup(&make).await;
    let bus = Arc::clone(&t.bus);
    let sent: Vec<Bytes> = (0..30).map(|i| Bytes::from(format!("{i}"))).collect();
    bus.publish_batch("q", sent).await.expect("publish_batch");
    let mut consumers = Vec::new();
    for c in 0..3 {
        let bus = Arc::clone(&bus);
        consumers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = bus.fetch("q", &format!("c{c}"), 4, Duration::from_millis(100)).await.expect("fetch");
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs);
            }
        }));
    }
    let mut seen = HashSet::new();
    for consumer in consumers {
        for job in consumer.await.expect("join") {
            assert!(seen.insert(job.payload.clone()), "{:?} went to two consumers", job.payload);
        }
    }
    assert_eq!(seen.len(), 30);
}

pub async fn ack_is_idempotent(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = t.bus.as_ref();
    bus.publish_batch("q", vec![Bytes::from("x"), Bytes::from("y")]).await.expect("publish");
    let jobs = fetch_n(bus, "q", "c1", 2, Duration::from_secs(2)).await;
    let first = [jobs[0].id.clone()];
    bus.ack("q", &first).await.expect("ack");
    bus.ack("q", &first).await.expect("second ack is a no-op");
    bus.ack("q", &[JobId("123456789".into())]).await.expect("unknown id is a no-op");
    bus.ack("other", &first).await.expect("ack in an unknown queue is a no-op");
    bus.ack("q", &[]).await.expect("empty ack");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 1, "only the acked job is gone");
    let back = fetch_n(bus, "q", "c2", 1, past_visibility(&policy) + Duration::from_secs(1)).await;
    assert_eq!(payloads(&back), [Bytes::from("y")], "the unacked job comes back, the acked one not");
}

pub async fn failed_job_is_redelivered_after_backoff(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = t.bus.as_ref();
    bus.publish("q", Bytes::from("flaky")).await.expect("publish");
    let jobs = fetch_n(bus, "q", "c1", 1, Duration::from_secs(2)).await;
    assert_eq!(jobs[0].attempt, 1);
    let failed_at = Instant::now();
    let outcome = bus.fail("q", &jobs[0], "try later").await.expect("fail");
    assert_eq!(outcome, FailOutcome::Retry { after: policy.backoff(1) });
    assert_eq!(bus.backlog("q").await.expect("backlog"), 1, "a job waiting for retry is backlog");
    let again = fetch_n(bus, "q", "c1", 1, Duration::from_secs(2)).await;
    let delay = failed_at.elapsed();
    assert_eq!(again.len(), 1, "the failed job was not redelivered");
    assert_eq!((again[0].payload.clone(), again[0].attempt), (Bytes::from("flaky"), 2));
    assert!(delay >= policy.backoff(1) - Duration::from_millis(5), "redelivered after {delay:?}, before the backoff");
    bus.ack("q", &ids(&again)).await.expect("ack");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 0);
    assert!(bus.dead_letters("q", 10).await.expect("dead letters").is_empty());
}

pub async fn failing_at_max_attempts_dead_letters(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = t.bus.as_ref();
    let published = bus.publish("q", Bytes::from("poison")).await.expect("publish");
    for attempt in 1..=policy.max_attempts {
        let jobs = fetch_n(bus, "q", "c1", 1, Duration::from_secs(2)).await;
        assert_eq!(jobs.len(), 1, "delivery {attempt} did not come");
        assert_eq!(jobs[0].attempt, attempt);
        let outcome = bus.fail("q", &jobs[0], &format!("boom {attempt}")).await.expect("fail");
        if attempt < policy.max_attempts {
            assert_eq!(outcome, FailOutcome::Retry { after: policy.backoff(attempt) });
        } else {
            assert_eq!(outcome, FailOutcome::DeadLettered);
        }
    }
    let letters = bus.dead_letters("q", 10).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.id, published, "the dead letter carries the id publish returned");
    assert_eq!((letter.queue.as_str(), letter.payload.clone()), ("q", Bytes::from("poison")));
    assert_eq!(letter.attempts, policy.max_attempts);
    assert_eq!(letter.error, format!("boom {}", policy.max_attempts));
    assert!(letter.failed_at > 1_600_000_000_000, "failed_at is unix milliseconds");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 0);
    let after = bus.fetch("q", "c1", 10, past_visibility(&policy)).await.expect("fetch");
    assert!(after.is_empty(), "a dead letter was delivered again: {after:?}");

    let more = bus.publish_batch("q", vec![Bytes::from("p2"), Bytes::from("p3")]).await.expect("publish");
    for _ in 0..policy.max_attempts {
        for job in fetch_n(bus, "q", "c1", 2, Duration::from_secs(2)).await {
            bus.fail("q", &job, "no").await.expect("fail");
        }
    }
    let letters = bus.dead_letters("q", 10).await.expect("dead letters");
    let newest: Vec<JobId> = letters.iter().map(|l| l.id.clone()).collect();
    assert_eq!(newest, [more[1].clone(), more[0].clone(), published], "newest first");
    assert_eq!(bus.dead_letters("q", 2).await.expect("dead letters").len(), 2, "limit is kept");
}

pub async fn consumer_killed_mid_job_gets_job_redelivered_once(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = Arc::clone(&t.bus);
    let published = bus.publish("q", Bytes::from("survives")).await.expect("publish");
    // The doomed consumer takes the job and dies (its task ends) without an answer.
    let doomed = tokio::spawn({
        let bus = Arc::clone(&bus);
        async move { bus.fetch("q", "doomed", 1, Duration::from_secs(2)).await.expect("fetch") }
    });
    let taken = doomed.await.expect("join");
    let taken_at = Instant::now();
    assert_eq!(ids(&taken), std::slice::from_ref(&published));
    assert!(
        bus.fetch("q", "survivor", 1, Duration::ZERO).await.expect("fetch").is_empty(),
        "a pending job went to a second consumer before its visibility timeout"
    );
    let again = fetch_n(bus.as_ref(), "q", "survivor", 1, policy.visibility_timeout * 4).await;
    assert_eq!(again.len(), 1, "the job of the dead consumer was lost");
    let waited = taken_at.elapsed();
    assert!(waited >= policy.visibility_timeout - Duration::from_millis(20), "redelivered after only {waited:?}");
    assert_eq!((again[0].payload.clone(), again[0].attempt), (Bytes::from("survives"), 2));
    bus.ack("q", &ids(&again)).await.expect("ack");
    let more = bus.fetch("q", "survivor", 10, past_visibility(&policy)).await.expect("fetch");
    assert!(more.is_empty(), "delivered more than once more: {more:?}");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 0);
}

pub async fn job_whose_consumers_keep_dying_is_dead_lettered(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = t.bus.as_ref();
    let published = bus.publish("q", Bytes::from("crashes everyone")).await.expect("publish");
    for attempt in 1..=policy.max_attempts {
        let jobs = fetch_n(bus, "q", &format!("c{attempt}"), 1, policy.visibility_timeout * 4).await;
        assert_eq!(jobs.len(), 1, "delivery {attempt} did not come");
        assert_eq!(jobs[0].attempt, attempt);
    }
    let after = bus.fetch("q", "last", 1, past_visibility(&policy)).await.expect("fetch");
    assert!(after.is_empty(), "delivered beyond max_attempts: {after:?}");
    let letters = bus.dead_letters("q", 10).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].id.clone(), letters[0].attempts), (published, policy.max_attempts));
    assert_eq!(letters[0].payload, Bytes::from("crashes everyone"));
    assert!(!letters[0].error.is_empty());
    assert_eq!(bus.backlog("q").await.expect("backlog"), 0);
}

pub async fn backlog_counts_accepted_minus_acked_and_dead(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = t.bus.as_ref();
    assert_eq!(bus.backlog("q").await.expect("backlog"), 0);
    let sent: Vec<Bytes> = (0..5).map(|i| Bytes::from(format!("{i}"))).collect();
    bus.publish_batch("q", sent).await.expect("publish");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 5);
    let jobs = fetch_n(bus, "q", "c1", 3, Duration::from_secs(2)).await;
    assert_eq!(bus.backlog("q").await.expect("backlog"), 5, "pending jobs are backlog");
    bus.ack("q", &[jobs[0].id.clone()]).await.expect("ack");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 4);
    bus.fail("q", &jobs[1], "later").await.expect("fail");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 4, "retrying jobs are backlog");
    let last_try = Job { attempt: policy.max_attempts, ..jobs[2].clone() };
    assert_eq!(bus.fail("q", &last_try, "gone").await.expect("fail"), FailOutcome::DeadLettered);
    assert_eq!(bus.backlog("q").await.expect("backlog"), 3, "dead letters are not backlog");
    assert_eq!(bus.backlog("elsewhere").await.expect("backlog"), 0);
}

pub async fn queues_are_independent(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = t.bus.as_ref();
    bus.publish_batch("mail", vec![Bytes::from("m1"), Bytes::from("m2")]).await.expect("publish");
    bus.publish("hooks", Bytes::from("h1")).await.expect("publish");
    assert_eq!(bus.backlog("mail").await.expect("backlog"), 2);
    assert_eq!(bus.backlog("hooks").await.expect("backlog"), 1);
    // Ask for exactly what should be there, then check nothing else is: waiting longer than
    // the visibility timeout would (rightly) see a job delivered again on a slow machine.
    let mail = fetch_n(bus, "mail", "c1", 2, Duration::from_millis(300)).await;
    assert_eq!(payloads(&mail), [Bytes::from("m1"), Bytes::from("m2")]);
    assert!(bus.fetch("mail", "c1", 10, Duration::ZERO).await.expect("fetch").is_empty(), "nothing from hooks");
    let last_try = Job { attempt: policy.max_attempts, ..mail[0].clone() };
    bus.fail("mail", &last_try, "bounced").await.expect("fail");
    bus.ack("mail", &[mail[1].id.clone()]).await.expect("ack");
    assert!(bus.dead_letters("hooks", 10).await.expect("dead letters").is_empty());
    assert_eq!(bus.dead_letters("mail", 10).await.expect("dead letters").len(), 1);
    let hooks = fetch_n(bus, "hooks", "c1", 1, Duration::from_millis(300)).await;
    assert_eq!(payloads(&hooks), [Bytes::from("h1")]);
    assert!(bus.fetch("hooks", "c1", 10, Duration::ZERO).await.expect("fetch").is_empty(), "nothing from mail");
    assert!(hooks.iter().all(|j| j.queue == "hooks"));
    assert_eq!(bus.backlog("mail").await.expect("backlog"), 0);
    assert_eq!(bus.backlog("hooks").await.expect("backlog"), 1);
}

pub async fn thousand_jobs_four_consumers_each_acked_once(make: impl MakeBus) {
    const JOBS: usize = 1_000;
    let (t, _) = setup(&make).await;
    let bus = Arc::clone(&t.bus);
    let handled = Arc::new(Deliveries::default());
    let mut consumers = Vec::new();
    for c in 0..4 {
        let (bus, handled) = (Arc::clone(&bus), Arc::clone(&handled));
        consumers.push(tokio::spawn(async move {
            let give_up = Instant::now() + Duration::from_secs(30);
            while handled.total() < JOBS && Instant::now() < give_up {
                let jobs = bus.fetch("q", &format!("c{c}"), 50, Duration::from_millis(200)).await.expect("fetch");
                if jobs.is_empty() {
                    continue;
                }
                bus.ack("q", &ids(&jobs)).await.expect("ack");
                handled.add(&jobs);
            }
        }));
    }
    // Published while the consumers already run, in batches and one by one.
    for chunk in 0..9 {
        let batch = (0..100).map(|i| Bytes::from(format!("{}", chunk * 100 + i))).collect();
        bus.publish_batch("q", batch).await.expect("publish_batch");
    }
    for i in 900..JOBS {
        bus.publish("q", Bytes::from(format!("{i}"))).await.expect("publish");
    }
    for consumer in consumers {
        consumer.await.expect("join");
    }
    let counts = handled.counts();
    let missing: Vec<usize> = (0..JOBS).filter(|i| !counts.contains_key(&Bytes::from(format!("{i}")))).collect();
    assert!(missing.is_empty(), "lost {} jobs, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "acked more than once: {twice:?}");
    assert_eq!(bus.backlog("q").await.expect("backlog"), 0);
}

pub async fn worker_acks_retries_dead_letters_and_stops(make: impl MakeBus) {
    let (t, policy) = setup(&make).await;
    let bus = Arc::clone(&t.bus);
    let handler = Arc::new(Scripted::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(run_worker(
        Arc::clone(&bus),
        "q".into(),
        "w1".into(),
        8,
        Arc::clone(&handler) as Arc<dyn JobHandler>,
        shutdown,
    ));
    bus.publish_batch("q", vec![Bytes::from("ok"), Bytes::from("flaky"), Bytes::from("bad")]).await.expect("publish");
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let settled = bus.backlog("q").await.expect("backlog") == 0
            && bus.dead_letters("q", 10).await.expect("dead letters").len() == 1;
        if settled {
            break;
        }
        assert!(Instant::now() < give_up, "the worker did not settle: {:?}", handler.calls());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = handler.calls();
    let tries = |p: &str| calls.iter().filter(|(q, _)| q == p).map(|(_, a)| *a).collect::<Vec<_>>();
    assert_eq!(tries("ok"), [1], "a success is handled once");
    assert_eq!(tries("flaky"), [1, 2], "a failure is retried");
    assert_eq!(tries("bad"), (1..=policy.max_attempts).collect::<Vec<_>>());
    let letters = bus.dead_letters("q", 10).await.expect("dead letters");
    assert_eq!((letters[0].payload.clone(), letters[0].error.as_str()), (Bytes::from("bad"), "permanent"));

    // Idle in a long fetch; shutdown must still end it at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    stop.send(true).expect("worker listens");
    tokio::time::timeout(Duration::from_secs(2), worker).await.expect("worker stopped").expect("join");
    assert!(asked.elapsed() < Duration::from_secs(1), "stopping took {:?}", asked.elapsed());
}

/// `ok` succeeds, `flaky` fails its first attempt, anything else always fails.
#[derive(Default)]
struct Scripted {
    calls: std::sync::Mutex<Vec<(String, u32)>>,
}

impl Scripted {
    fn calls(&self) -> Vec<(String, u32)> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl JobHandler for Scripted {
    async fn handle(&self, jobs: &[Job]) -> Vec<Result<(), String>> {
        let mut calls = self.calls.lock().expect("lock");
        jobs.iter()
            .map(|job| {
                let name = String::from_utf8_lossy(&job.payload).into_owned();
                calls.push((name.clone(), job.attempt));
                match (name.as_str(), job.attempt) {
                    ("ok", _) | ("flaky", 2..) => Ok(()),
                    ("flaky", _) => Err("flaked".to_owned()),
                    _ => Err("permanent".to_owned()),
                }
            })
            .collect()
    }
}

/// Deliveries per payload, shared by the consumers of one case.
#[derive(Default)]
struct Deliveries(std::sync::Mutex<HashMap<Bytes, usize>>);

impl Deliveries {
    fn add(&self, jobs: &[Job]) {
        let mut counts = self.0.lock().expect("lock");
        for job in jobs {
            *counts.entry(job.payload.clone()).or_default() += 1;
        }
    }

    fn total(&self) -> usize {
        self.0.lock().expect("lock").values().sum()
    }

    fn counts(&self) -> HashMap<Bytes, usize> {
        self.0.lock().expect("lock").clone()
    }
}
