//! `frontdesk bench` against a real server, small and short: the scenarios run (chat,
//! storm, visits and idle on both embedded and Redis + PostgreSQL, chat across two nodes),
//! and the run's own guarantees hold (nothing lost, nothing doubled, no chat offered twice,
//! every idle socket held). The counters' ability to catch a server that drops or repeats a
//! message is unit-tested in `bench/ledger.rs`; the figures themselves belong in
//! docs/BENCHMARKS.md, not here.

mod support;

use frontdesk::bench::chat::ChatArgs;
use frontdesk::bench::idle::IdleArgs;
use frontdesk::bench::storm::StormArgs;
use frontdesk::bench::visits::VisitsArgs;
use frontdesk::bench::Common;
use frontdesk::config::RawSettings;
use frontdesk_testkit::env::{postgres_url, redis_url, unique_name};
use support::{cluster_settings, create_postgres_database, TestServer};

fn common(server: &TestServer) -> Common {
    Common {
        url: format!("http://{}", server.addr),
        admin_email: "admin@test.example".into(),
        admin_password: "test-password".into(),
        duration: 2,
        server_pid: vec![std::process::id()],
        sources: 1,
        json: true,
    }
}

/// A `bench chat` run delivered messages, and lost, doubled or failed none.
fn assert_every_message_once(report: &frontdesk::bench::report::Report) {
    let get = |k: &str| report.get(k).unwrap_or(-1.0);
    assert!(get("delivered") > 10.0, "{}", report.table());
    assert_eq!(
        (get("lost"), get("duplicated"), get("unknown"), get("errors")),
        (0.0, 0.0, 0.0, 0.0),
        "{}",
        report.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chat_delivers_every_message_once() {
    let server = TestServer::start(RawSettings::default()).await;
    let args = ChatArgs { common: common(&server), chats: 6, per_agent: 3, rate: 0, body_bytes: 100, agent_url: None };
    let report = frontdesk::bench::chat::run(args).await.expect("bench chat");
    assert_every_message_once(&report);
    let get = |k: &str| report.get(k).unwrap_or(-1.0);
    assert!(get("p99_ms") > 0.0 && get("server_cpu_s") >= 0.0, "{}", report.table());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chat_at_a_fixed_rate_delivers_every_message_once() {
    let server = TestServer::start(RawSettings::default()).await;
    let args = ChatArgs { common: common(&server), chats: 4, per_agent: 2, rate: 40, body_bytes: 64, agent_url: None };
    let report = frontdesk::bench::chat::run(args).await.expect("bench chat");
    let get = |k: &str| report.get(k).unwrap_or(-1.0);
    // 40 visitor messages/s for 2 s, each answered: about 160 deliveries.
    assert!(get("delivered") > 60.0, "{}", report.table());
    assert_eq!((get("lost"), get("duplicated")), (0.0, 0.0), "{}", report.table());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_storm_offers_no_chat_twice_and_bench_visits_counts_events() {
    let server = TestServer::start(RawSettings::default()).await;
    storm_and_visits(&server).await;
    server.stop().await;
}

/// `storm` and `visits` against one node on Redis + PostgreSQL (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_storm_and_visits_on_redis_and_postgres() {
    let db = create_postgres_database(&postgres_url()).await;
    let server = TestServer::start(cluster_settings(&redis_url(), &db, &unique_name("fd"))).await;
    storm_and_visits(&server).await;
    server.stop().await;
}

/// A storm of 30 chat requests on 4 agents of capacity 5 offers no chat twice and fills
/// every agent; `visits` counts page visits without errors.
async fn storm_and_visits(server: &TestServer) {
    let storm = StormArgs { common: common(server), visitors: 30, agents: 4, capacity: 5 };
    let report = frontdesk::bench::storm::run(storm).await.expect("bench storm");
    let get = |k: &str| report.get(k).unwrap_or(-1.0);
    assert_eq!(get("errors"), 0.0, "{}", report.table());
    assert_eq!(get("offered") + get("queued"), 30.0, "{}", report.table());
    // Answered `offered` at once or `queued` and offered behind: 20 offers either way.
    assert!(get("offered") <= 20.0, "{}", report.table());
    assert_eq!(get("offers_received"), 20.0, "4 agents × capacity 5: {}", report.table());
    assert_eq!((get("offered_twice"), get("agents_over_capacity")), (0.0, 0.0), "{}", report.table());

    let visits = VisitsArgs { common: Common { duration: 1, ..common(server) }, concurrency: 4 };
    let report = frontdesk::bench::visits::run(visits).await.expect("bench visits");
    assert!(report.get("delivered").unwrap_or(0.0) > 10.0, "{}", report.table());
    assert_eq!(report.get("errors"), Some(0.0), "{}", report.table());
}

/// The same run against one node on Redis + PostgreSQL (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chat_on_redis_and_postgres_delivers_every_message_once() {
    let db = create_postgres_database(&postgres_url()).await;
    let server = TestServer::start(cluster_settings(&redis_url(), &db, &unique_name("fd"))).await;
    let args = ChatArgs { common: common(&server), chats: 6, per_agent: 3, rate: 0, body_bytes: 100, agent_url: None };
    let report = frontdesk::bench::chat::run(args).await.expect("bench chat");
    assert_every_message_once(&report);
    server.stop().await;
}

/// Two nodes sharing Redis + PostgreSQL, agents on one and visitors on the other: every
/// message crosses nodes, and still none is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_chat_across_two_nodes_delivers_every_message_once() {
    let db = create_postgres_database(&postgres_url()).await;
    let prefix = unique_name("fd");
    let visitors_node = TestServer::start(cluster_settings(&redis_url(), &db, &prefix)).await;
    let agents_node = TestServer::start(cluster_settings(&redis_url(), &db, &prefix)).await;
    let args = ChatArgs {
        common: common(&visitors_node),
        chats: 6,
        per_agent: 3,
        rate: 0,
        body_bytes: 100,
        agent_url: Some(format!("http://{}", agents_node.addr)),
    };
    let report = frontdesk::bench::chat::run(args).await.expect("bench chat");
    assert_every_message_once(&report);
    agents_node.stop().await;
    visitors_node.stop().await;
}

/// `bench idle` opens and holds every socket it asked for and reports the memory curve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_idle_holds_every_socket_and_reports_memory_per_socket() {
    let server = TestServer::start(RawSettings::default()).await;
    idle_holds_every_socket(&server).await;
    server.stop().await;
}

/// `idle` against one node on Redis + PostgreSQL (cluster mode: each socket also has its
/// route entries in Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_idle_on_redis_and_postgres() {
    let db = create_postgres_database(&postgres_url()).await;
    let server = TestServer::start(cluster_settings(&redis_url(), &db, &unique_name("fd"))).await;
    idle_holds_every_socket(&server).await;
    server.stop().await;
}

/// 40 idle sockets held with heartbeats, none failed, memory reported along the curve.
async fn idle_holds_every_socket(server: &TestServer) {
    let args = IdleArgs { common: Common { duration: 1, ..common(server) }, sockets: 40, heartbeat: 1 };
    let report = frontdesk::bench::idle::run(args).await.expect("bench idle");
    let get = |k: &str| report.get(k).unwrap_or(-1.0);
    assert_eq!((get("sockets"), get("failed")), (40.0, 0.0), "{}", report.table());
    assert!(get("server_kib_per_socket") >= 0.0, "{}", report.table());
    assert_eq!(get("curve_4_sockets"), 40.0, "the curve's last point is all sockets: {}", report.table());
}
