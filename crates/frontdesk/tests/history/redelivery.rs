//! Issue #8: a bus consumer killed between applying a batch of history writes and acking it.
//! The batch is applied once more by the next consumer (the real storage worker of a
//! restarted node), and afterwards the database holds each message exactly once and the
//! aggregates built on it (chats per day, ratings, chat durations, agents' online time)
//! are not doubled — on both buses:
//! - the local spool: a child process fetches the jobs, applies them to SQLite and is
//!   SIGKILLed before it acks (no destructor, no close);
//! - Redis Streams: a consumer fetches and applies them to PostgreSQL and is dropped without
//!   acking; its pending entries are then made to look idle past the visibility timeout, as
//!   if it had died that long ago, so the node's worker reclaims them at once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use frontdesk_core::bus::{Bus, RetryPolicy};
use frontdesk_core::history::{
    ChatRecord, HistoryJob, HistoryWrite, MessageRecord, VisitorHistory, HISTORY_JOB_MAX_READ, HISTORY_QUEUE,
};
use frontdesk_core::id::Id;
use frontdesk_core::reports::{AgentStatusChange, Interval, ReportQuery, Span};
use frontdesk_core::store::Store;
use frontdesk_state::local_bus::LocalBus;
use frontdesk_state::redis_bus::RedisBus;
use frontdesk_testkit::env::{postgres_url, redis_url, unique_name};

use crate::chat_support::ADMIN;
use crate::support::{cluster_settings, create_postgres_database, TestServer};

/// Messages in the conversation the jobs describe.
const MESSAGES: usize = 40;
const CHILD_DIR: &str = "FRONTDESK_REDELIVERY_CHILD_DIR";
const CHILD_TEST: &str = "redelivery::applying_child_killed_before_ack";

/// One conversation's history writes, as `storage/record` publishes them: the visitor, the
/// chat (twice: a newer version replaces the first), its messages, and the agent going
/// online and offline.
struct Conversation {
    site: Id,
    chat: Id,
    agent: Id,
    writes: Vec<HistoryWrite>,
    /// When it started (ms), for the report ranges.
    t0: i64,
}

impl Conversation {
    fn new(site: Id) -> Conversation {
        let ids = frontdesk_core::id::IdGenerator::new(950 + std::process::id() % 40).expect("ids");
        let next = || ids.next().expect("id");
        let (chat, visitor, agent) = (next(), next(), next());
        let t0 = crate::chat_support::now_ms() - 3_600_000;
        let mut writes = vec![HistoryWrite::Visitor(VisitorHistory {
            visitor_id: visitor,
            site_id: site,
            name: "Vic".into(),
            email: "vic@example.com".into(),
            custom_variables: Default::default(),
            first_seen: t0,
            last_seen: t0,
            visit_count: 1,
            page_views: 1,
            version: 1,
        })];
        let record = |version: i64, status: &str, ended: Option<i64>, rating: Option<i64>| ChatRecord {
            chat_id: chat,
            site_id: site,
            visitor_id: visitor,
            department_id: None,
            status: status.into(),
            agent_id: Some(agent),
            participants: vec![agent],
            created_at: t0,
            started_at: Some(t0 + 1_000),
            ended_at: ended,
            rating,
            comment: None,
            wrap_up_notes: None,
            tags: vec!["redelivered".into()],
            visitor_name: "Vic".into(),
            visitor_email: "vic@example.com".into(),
            version,
        };
        writes.push(HistoryWrite::Chat(record(1, "active", None, None)));
        writes.push(HistoryWrite::AgentStatus(AgentStatusChange {
            site_id: site,
            agent_id: agent,
            status: "online".into(),
            at: t0,
        }));
        let (mut visitor_side, mut agent_side) = (0, 0);
        for i in 0..MESSAGES {
            let from_visitor = i % 2 == 0;
            let offset = if from_visitor {
                visitor_side += 1;
                visitor_side
            } else {
                agent_side += 1;
                agent_side
            };
            let at = t0 + 2_000 + i as i64 * 1_000;
            writes.push(HistoryWrite::Message(MessageRecord {
                id: next(),
                chat_id: chat,
                site_id: site,
                seq: i as i64 + 1,
                data_offset: offset,
                message_type: if from_visitor { 1 } else { 2 },
                sender_id: if from_visitor { visitor } else { agent },
                sender_name: if from_visitor { "Vic".into() } else { "Ann".into() },
                content: format!("message {i}"),
                client_message_id: from_visitor.then(|| format!("c-{i}")),
                send_time: frontdesk_core::time::rfc3339(at),
                send_time_ms: at,
                rev: at * 1000,
                rebuild: false,
            }));
        }
        let ended = t0 + 2_000 + MESSAGES as i64 * 1_000;
        writes.push(HistoryWrite::Chat(record(2, "ended", Some(ended), Some(4))));
        writes.push(HistoryWrite::AgentStatus(AgentStatusChange {
            site_id: site,
            agent_id: agent,
            status: "offline".into(),
            at: ended,
        }));
        Conversation { site, chat, agent, writes, t0 }
    }

    fn payloads(&self) -> Vec<Bytes> {
        self.writes
            .iter()
            .map(|w| {
                let job = HistoryJob { v: HISTORY_JOB_MAX_READ, write: w.clone() };
                Bytes::from(serde_json::to_vec(&job).expect("job"))
            })
            .collect()
    }

    /// The database holds the conversation exactly once: every message once, in seq
    /// order; one chat in the day's count, one rating, one duration; the agent online for
    /// the conversation's length, not twice that.
    async fn check_once(&self, store: &dyn Store) {
        let transcript = store.chat_transcript(self.site, self.chat).await.expect("transcript").expect("the chat");
        let mut by_id: HashMap<Id, usize> = HashMap::new();
        for m in &transcript.messages {
            *by_id.entry(m.id).or_default() += 1;
        }
        assert_eq!(transcript.messages.len(), MESSAGES, "each message once");
        assert!(by_id.values().all(|n| *n == 1), "a message id twice: {by_id:?}");
        let seqs: Vec<i64> = transcript.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=MESSAGES as i64).collect::<Vec<_>>());
        assert_eq!(transcript.chat.status.as_deref(), Some("ended"), "the newest chat version wins");

        let query = ReportQuery { site_id: self.site, from: self.t0 - 1, to: self.t0 + 86_400_000, by: None };
        let chats = store.report_chats(&query, Interval::Day).await.expect("report_chats");
        assert_eq!(chats.iter().map(|b| b.total).sum::<i64>(), 1, "chats counted once: {chats:?}");
        let ratings = store.report_ratings(&query).await.expect("report_ratings");
        assert_eq!(
            (ratings.iter().map(|r| r.count()).sum::<i64>(), ratings.iter().map(|r| r.sum).sum::<i64>()),
            (1, 4)
        );
        let durations = store.report_spans(&query, Span::Duration).await.expect("report_spans");
        assert_eq!(durations.iter().map(|s| s.count).sum::<i64>(), 1, "one duration: {durations:?}");
        let ended = self.t0 + 2_000 + MESSAGES as i64 * 1_000;
        let time = store
            .report_agent_time(self.site, self.t0 - 1, ended + 60_000, ended + 60_000)
            .await
            .expect("report_agent_time");
        let online: i64 = time.iter().filter(|t| t.agent_id == self.agent).map(|t| t.online_ms).sum();
        assert_eq!(online, ended - self.t0, "online time counted once: {time:?}");
    }
}

/// Polls `/readyz` until the history backlog is 0 (within 30 s); returns how long it took.
async fn drained(node: &TestServer) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let (status, body) = node.get("/readyz").await;
        let ready: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status == 200 && ready["backends"]["bus"]["backlog"][HISTORY_QUEUE].as_i64() == Some(0) {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the backlog did not drain within 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy::default()
}

async fn site_of(store: &dyn Store) -> Id {
    store.agent_by_email(ADMIN).await.expect("read").expect("admin").site_id
}

/// Every history job that `bus` delivers within a few seconds, as `consumer`.
async fn fetch_all(bus: &dyn Bus, consumer: &str, want: usize) -> Vec<frontdesk_core::bus::Job> {
    let mut jobs = Vec::new();
    for _ in 0..20 {
        jobs.extend(bus.fetch(HISTORY_QUEUE, consumer, 500, Duration::from_millis(200)).await.expect("fetch"));
        if jobs.len() >= want {
            break;
        }
    }
    assert_eq!(jobs.len(), want, "every published job is delivered");
    jobs
}

fn writes_of(jobs: &[frontdesk_core::bus::Job]) -> Vec<HistoryWrite> {
    jobs.iter().map(|j| serde_json::from_slice::<HistoryJob>(&j.payload).expect("history job").write).collect()
}

/// The child half of the local-spool test: fetches every history job, applies the batch to
/// SQLite as the worker does, says so, and waits to be killed without acking.
#[test]
#[ignore = "child process of history_applied_but_not_acked_is_applied_once_more_local_spool"]
fn applying_child_killed_before_ack() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        eprintln!("{CHILD_TEST} only runs as the child of the redelivery test");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let dir = std::path::PathBuf::from(dir);
        let bus = LocalBus::open(&dir, policy()).await.expect("open the spool");
        let store = frontdesk_store::connect(&format!("sqlite://{}", dir.join("frontdesk.db").display()))
            .await
            .expect("open the database");
        let want: usize = std::env::var("FRONTDESK_REDELIVERY_JOBS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
        let jobs = fetch_all(&bus, "doomed", want).await;
        store.apply_history(&writes_of(&jobs)).await.expect("apply");
        println!("APPLIED {}", jobs.len());
        // Killed here, before any ack.
        tokio::time::sleep(Duration::from_secs(120)).await;
        println!("NOT KILLED");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_applied_but_not_acked_is_applied_once_more_local_spool() {
    // A node makes the database (site, admin) and stops; its spool is free.
    let node = TestServer::start(frontdesk::config::RawSettings::default()).await;
    let dir = node.data_dir.clone();
    let db = node.sqlite_url();
    node.stop().await;
    let store = frontdesk_store::connect(&db).await.expect("store");
    let conversation = Conversation::new(site_of(store.as_ref()).await);
    let jobs = conversation.payloads();
    {
        let bus = LocalBus::open(&dir, policy()).await.expect("open the spool");
        bus.publish_batch(HISTORY_QUEUE, jobs.clone()).await.expect("publish");
        bus.close().await;
    }

    // The consumer applies the batch and is SIGKILLed before it acks.
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--include-ignored", "--test-threads=1"])
        .env(CHILD_DIR, &dir)
        .env("FRONTDESK_REDELIVERY_JOBS", jobs.len().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the consumer");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, applied) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print the test's name on the same line first.
            if let Some(at) = line.find("APPLIED ") {
                if tx.send(line[at..].to_string()).is_err() {
                    return;
                }
            }
        }
    });
    let said = tokio::task::spawn_blocking(move || applied.recv_timeout(Duration::from_secs(60)))
        .await
        .expect("join")
        .expect("the consumer did not apply the batch within 60 s");
    assert_eq!(said, format!("APPLIED {}", jobs.len()));
    child.kill().expect("SIGKILL the consumer");
    child.wait().expect("reap the consumer");

    // Applied, not acked: the database has the conversation and the spool still every job.
    conversation.check_once(store.as_ref()).await;
    {
        let bus = LocalBus::open(&dir, policy()).await.expect("reopen the killed consumer's spool");
        assert_eq!(bus.backlog(HISTORY_QUEUE).await.expect("backlog"), jobs.len() as u64, "nothing was acked");
        bus.close().await;
    }

    // A node starts on the same directory: its worker gets the jobs again and re-applies them.
    let node_dir = dir.clone();
    let node = TestServer::start_in(frontdesk::config::RawSettings::default(), dir).await;
    let took = drained(&node).await;
    println!("local spool: {} jobs redelivered and re-applied in {took:?}", jobs.len());
    conversation.check_once(store.as_ref()).await;
    node.stop().await;
    // Settled by acks after applying, not by dead-lettering.
    let bus = LocalBus::open(&node_dir, policy()).await.expect("reopen the spool");
    assert_eq!(bus.dead_letters(HISTORY_QUEUE, 10).await.expect("dead letters").len(), 0);
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_applied_but_not_acked_is_applied_once_more_redis_streams() {
    let db = create_postgres_database(&postgres_url()).await;
    let prefix = unique_name("fd");
    // A node makes the database (site, admin) and stops.
    let node = TestServer::start(cluster_settings(&redis_url(), &db, &prefix)).await;
    node.stop().await;
    let store = frontdesk_store::connect(&db).await.expect("store");
    let conversation = Conversation::new(site_of(store.as_ref()).await);
    let jobs = conversation.payloads();
    // The key prefix exactly as the node's (cluster_settings adds the colon).
    let bus_prefix = format!("{prefix}:");

    // The consumer applies the batch and dies (its connection dropped) before it acks.
    let ids = {
        let bus: Arc<dyn Bus> = Arc::new(RedisBus::connect(&redis_url(), &bus_prefix, policy()).await.expect("bus"));
        bus.publish_batch(HISTORY_QUEUE, jobs.clone()).await.expect("publish");
        let fetched = fetch_all(bus.as_ref(), "doomed", jobs.len()).await;
        store.apply_history(&writes_of(&fetched)).await.expect("apply");
        fetched.into_iter().map(|j| j.id.0).collect::<Vec<_>>()
    };
    conversation.check_once(store.as_ref()).await;

    // As if it died a visibility timeout ago: its pending entries idle that long (XCLAIM to
    // the same consumer with IDLE and JUSTID, which counts no delivery).
    let client = redis::Client::open(redis_url()).expect("redis client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let stream = format!("{bus_prefix}fd:bus:{{q:{HISTORY_QUEUE}}}:stream");
    let idle = policy().visibility_timeout + Duration::from_secs(1);
    let mut claim = redis::cmd("XCLAIM");
    claim.arg(&stream).arg("fd").arg("doomed").arg(0).arg(&ids).arg("IDLE").arg(idle.as_millis() as u64).arg("JUSTID");
    let claimed: Vec<String> = claim.query_async(&mut conn).await.expect("XCLAIM");
    assert_eq!(claimed.len(), jobs.len(), "every job is pending under the dead consumer");

    // A node starts: its worker reclaims the jobs and re-applies them.
    let node = TestServer::start(cluster_settings(&redis_url(), &db, &prefix)).await;
    let took = drained(&node).await;
    println!("Redis Streams: {} jobs reclaimed and re-applied in {took:?}", jobs.len());
    conversation.check_once(store.as_ref()).await;
    node.stop().await;
    // Settled by acks after applying, not by dead-lettering.
    let bus = RedisBus::connect(&redis_url(), &bus_prefix, policy()).await.expect("bus");
    assert_eq!(bus.dead_letters(HISTORY_QUEUE, 10).await.expect("dead letters").len(), 0);
}
