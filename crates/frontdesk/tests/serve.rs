//! The server as a whole: embedded defaults, cluster mode on real Redis and PostgreSQL,
//! first-start bootstrap, node ids, the operations endpoints, the command line, shutdown.

mod support;

use std::time::Duration;

use frontdesk::config::{Config, RawSettings};
use frontdesk_core::password;
use frontdesk_testkit::env::{postgres_url, redis_url, unique_name, RedisProcess};
use serde_json::Value;
use support::{cluster_settings, create_postgres_database, TestServer};

#[tokio::test]
async fn embedded_defaults_answer_health_ready_and_metrics() {
    let server = TestServer::start(RawSettings::default()).await;
    let health: Value = server.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["nodeId"], 0);

    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let ready: Value = serde_json::from_str(&ready).expect("json");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["backends"]["state"]["kind"], "memory");
    assert_eq!(ready["backends"]["bus"]["kind"], "local");
    assert_eq!(ready["backends"]["database"]["kind"], "sqlite");
    for b in ["state", "pubsub", "bus", "database"] {
        assert_eq!(ready["backends"][b]["ok"], true, "{b}: {ready}");
    }
    // The backlog of each queue: async stages and the history written behind.
    assert_eq!(ready["backends"]["bus"]["backlog"]["pipeline.async"], 0, "{ready}");
    assert!(ready["backends"]["bus"]["backlog"]["storage.write"].is_u64(), "{ready}");

    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("frontdesk_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/healthz\""), "{metrics}");
    assert!(metrics.contains("frontdesk_backend_up"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn first_start_creates_one_site_and_an_admin_and_later_starts_do_not() {
    let settings = RawSettings {
        admin_email: Some("boss@shop.example".into()),
        admin_password: Some("s3cure-enough".into()),
        ..RawSettings::default()
    };
    let server = TestServer::start(settings.clone()).await;
    let data_dir = server.data_dir.clone();
    server.stop().await;

    let database = format!("sqlite://{}", data_dir.join("frontdesk.db").display());
    let store = frontdesk_store::connect(&database).await.expect("store");
    assert_eq!(store.site_count().await.expect("count"), 1);
    let admin = store.agent_by_email("BOSS@shop.example").await.expect("read").expect("admin exists");
    assert_eq!(admin.role, frontdesk_core::store::Role::Admin);
    assert!(password::verify("s3cure-enough".into(), admin.password_hash.clone()).await);
    drop(store);

    // Same data directory again: nothing new.
    let again = TestServer::start_in(settings, data_dir.clone()).await;
    again.stop().await;
    let store = frontdesk_store::connect(&database).await.expect("store");
    assert_eq!(store.site_count().await.expect("count"), 1);
}

#[tokio::test]
async fn cluster_mode_runs_on_redis_and_postgres() {
    let db = create_postgres_database(&postgres_url()).await;
    let server = TestServer::start(cluster_settings(&redis_url(), &db, &unique_name("fd"))).await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let ready: Value = serde_json::from_str(&ready).expect("json");
    assert_eq!(ready["backends"]["state"]["kind"], "redis");
    assert_eq!(ready["backends"]["pubsub"]["kind"], "redis");
    assert_eq!(ready["backends"]["bus"]["kind"], "redis");
    assert_eq!(ready["backends"]["database"]["kind"], "postgres");
    server.stop().await;

    let store = frontdesk_store::connect(&db).await.expect("store");
    assert_eq!(store.site_count().await.expect("count"), 1, "bootstrap ran on PostgreSQL");
}

#[tokio::test]
async fn two_nodes_on_one_redis_lease_different_node_ids_and_share_one_bootstrap() {
    let db = create_postgres_database(&postgres_url()).await;
    let prefix = unique_name("fd");
    let settings = cluster_settings(&redis_url(), &db, &prefix);
    let (a, b) = tokio::join!(TestServer::start(settings.clone()), TestServer::start(settings.clone()));
    let ida = a.get_json("/healthz").await["nodeId"].as_u64().expect("node id");
    let idb = b.get_json("/healthz").await["nodeId"].as_u64().expect("node id");
    assert_ne!(ida, idb, "two live nodes must never share a node id");

    // A third node asking for a held id by configuration is refused at start-up.
    let mut clash = settings.clone();
    clash.node_id = Some(ida as u32);
    let config = Config::validate(with_listen(clash)).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let err = frontdesk::run(config, listener, std::future::pending()).await.expect_err("node id clash");
    assert!(format!("{err:#}").contains(&format!("node id {ida} is held")), "{err:#}");

    a.stop().await;
    b.stop().await;
    let store = frontdesk_store::connect(&db).await.expect("store");
    assert_eq!(store.site_count().await.expect("count"), 1, "nodes starting together make one site");

    // Released on shutdown: a node may now take the id by configuration.
    let mut reuse = settings;
    reuse.node_id = Some(ida as u32);
    let c = TestServer::start(reuse).await;
    assert_eq!(c.get_json("/healthz").await["nodeId"].as_u64(), Some(ida));
    c.stop().await;
}

#[tokio::test]
async fn readyz_reports_a_backend_that_went_down() {
    let mut redis = RedisProcess::start();
    let settings = RawSettings { state: Some(redis.url()), ..RawSettings::default() };
    let server = TestServer::start(settings).await;
    assert_eq!(server.get("/readyz").await.0, 200);
    redis.kill();
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["backends"]["state"]["ok"], false);
    assert_eq!(ready["backends"]["database"]["ok"], true);
    assert_eq!(server.get("/healthz").await.0, 200, "the process itself is still healthy");
    tokio::time::timeout(Duration::from_secs(15), server.stop()).await.expect("stops without Redis");
}

fn with_listen(mut raw: RawSettings) -> RawSettings {
    raw.listen = Some("127.0.0.1:0".into());
    raw.data_dir = Some(std::env::temp_dir().join(unique_name("fd-data")));
    raw.admin_email = Some("admin@test.example".into());
    raw
}
