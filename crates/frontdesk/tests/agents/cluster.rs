//! The agent events on Redis (state, pub/sub, bus) and PostgreSQL: login, refresh, status,
//! socket presence, departments, logout — the same code as embedded, on the cluster
//! backends.

use std::time::Duration;

use frontdesk_core::id::Id;
use frontdesk_core::state::StateStore;
use frontdesk_modules::model::agent_key;
use frontdesk_state::redis_state::RedisState;
use frontdesk_testkit::env::{postgres_url, redis_url, unique_name};
use serde_json::json;

use crate::presence::socket;
use crate::support::{cluster_settings, create_postgres_database, TestServer};
use crate::{call, login_ok, ADMIN, ADMIN_PASSWORD};

/// Polls the agent's presence field until it reads `want` (within 5 s).
async fn wait_field(state: &RedisState, key: &str, field: &str, want: &str) {
    for _ in 0..100 {
        if state.hget(key, field).await.expect("hget").as_deref() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key} {field} never became {want:?}");
}

#[tokio::test]
async fn agent_events_run_on_redis_and_postgres() {
    let database = create_postgres_database(&postgres_url()).await;
    let prefix = unique_name("fdagents");
    let server = TestServer::start(cluster_settings(&redis_url(), &database, &prefix)).await;
    let (access, refresh, agent_id) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let (status, body) = call(&server, "agent.set_status", Some(&access), json!({"status": "online"})).await;
    assert_eq!(status, 200, "{body}");

    let (_, me) = call(&server, "auth.whoami", Some(&access), json!({})).await;
    let site: Id = me["data"]["caller"]["siteId"].as_str().expect("site").parse().expect("id");
    let agent: Id = agent_id.parse().expect("id");
    let state = RedisState::connect(&redis_url(), &format!("{prefix}:")).await.expect("redis");
    let key = agent_key(site, agent);
    assert_eq!(state.hget(&key, "status").await.expect("hget").as_deref(), Some("online"));

    let ws = socket(&server, &access).await;
    wait_field(&state, &key, "sockets", "1").await;
    drop(ws);
    wait_field(&state, &key, "sockets", "0").await;

    let (status, body) = call(
        &server,
        "departments.create",
        Some(&access),
        json!({"name": "Sales", "strategy": "least_busy", "members": [agent_id]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let dept = body["data"]["id"].as_str().expect("dept").to_string();
    let departments = state.hget(&key, "departments").await.expect("hget").unwrap_or_default();
    assert_eq!(departments, format!("[\"{dept}\"]"), "presence follows department membership");

    let (status, body) = call(&server, "agent.refresh_token", None, json!({"refreshToken": refresh})).await;
    assert_eq!(status, 200, "{body}");
    let access = body["data"]["accessToken"].as_str().expect("access").to_string();
    assert_eq!(call(&server, "agent.logout", Some(&access), json!({})).await.0, 200);
    assert_eq!(call(&server, "auth.whoami", Some(&access), json!({})).await.0, 401);
    server.stop().await;
}
