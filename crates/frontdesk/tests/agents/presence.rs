//! Status, presence and preferences: `agent.set_status` pushes `agent.status` to the site's
//! agents' sockets, the sweeper's core sets silent agents offline, preferences are kept.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use frontdesk::config::RawSettings;
use frontdesk_core::error::BackendResult;
use frontdesk_core::id::Id;
use frontdesk_core::object;
use frontdesk_core::push::{Push, Recipient};
use frontdesk_core::state::StateStore;
use frontdesk_modules::agent::{presence_sites_key, sweep_presence};
use frontdesk_modules::model::{agent_key, agents_key, AgentPresence, AgentStatus};
use frontdesk_state::memory::MemoryState;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::TestServer;
use crate::{call, create_agent, error_of, login_ok, ADMIN, ADMIN_PASSWORD};

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An agent's socket, attached for pushes: frames are read only after `socket.connect`
/// attached it, so the answer to one frame proves it.
pub async fn socket(server: &TestServer, token: &str) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?token={token}", server.addr))
        .await
        .expect("socket connects");
    let frame = json!({"id": "ready", "event": "auth.whoami", "data": {}}).to_string();
    ws.send(Message::Text(frame.into())).await.expect("send");
    let wait = async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame {
                let v: Value = serde_json::from_str(text.as_str()).expect("frames are JSON");
                if v["id"] == "ready" {
                    return v;
                }
            }
        }
        panic!("the socket closed before it answered");
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), wait).await.expect("the socket answers within 5 s");
    assert_eq!(answer["result"]["code"], 0, "{answer}");
    ws
}

/// The next push named `name` on `ws` (others are skipped), within 5 s.
pub async fn next_push(ws: &mut Socket, name: &str) -> Value {
    let wait = async {
        while let Some(frame) = ws.next().await {
            if let Ok(Message::Text(text)) = frame {
                let v: Value = serde_json::from_str(text.as_str()).expect("frames are JSON");
                if v["push"] == name {
                    return v["data"].clone();
                }
            }
        }
        panic!("the socket closed before a {name} push");
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.unwrap_or_else(|_| panic!("no {name} push within 5 s"))
}

#[tokio::test]
async fn set_status_pushes_agent_status_to_the_other_agents_of_the_site() {
    let server = TestServer::start(RawSettings::default()).await;
    let (admin, _, admin_id) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    create_agent(&server, &admin, "ann@test.example", "agent").await;
    let (ann, _, _) = login_ok(&server, "ann@test.example", "agent-password").await;
    let mut ann_socket = socket(&server, &ann).await;

    let (status, body) = call(&server, "agent.set_status", Some(&admin), json!({"status": "online"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({"agentId": admin_id, "status": "online"}));
    let pushed = next_push(&mut ann_socket, "agent.status").await;
    assert_eq!(pushed, json!({"agentId": admin_id, "status": "online"}));

    let (status, body) = call(&server, "agents.get", Some(&ann), json!({"id": admin_id})).await;
    assert_eq!((status, &body["data"]["status"]), (200, &json!("online")), "{body}");

    let (status, body) = call(&server, "agent.set_status", Some(&admin), json!({"status": "offline"})).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.starts_with("data.status"), "{body}");
    let (status, body) = call(&server, "agent.set_status", Some(&admin), json!({"status": "busy"})).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.starts_with("data.status"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn preferences_are_kept_and_bounded() {
    let server = TestServer::start(RawSettings::default()).await;
    let (admin, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let set = |key: Value, value: Value| {
        let admin = admin.clone();
        let server = &server;
        async move { call(server, "agent.set_preference", Some(&admin), json!({"key": key, "value": value})).await }
    };
    assert_eq!(set(json!("sound"), json!(true)).await.0, 200);
    let (status, body) = set(json!("columns"), json!({"left": ["queue"], "width": 320})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["preferences"], json!({"sound": true, "columns": {"left": ["queue"], "width": 320}}));

    let (status, body) = set(json!("k".repeat(65)), json!(1)).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.starts_with("data.key"), "{body}");
    let (status, body) = set(json!("big"), json!("x".repeat(5000))).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.starts_with("data.value"), "{body}");
    let (status, body) = call(&server, "agent.set_preference", Some(&admin), json!({"key": "a"})).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.contains("value"), "{body}");
    server.stop().await;
}

/// Pushes as the sweeper made them.
#[derive(Default)]
struct Recorder(Mutex<Vec<(Vec<Recipient>, String, Value)>>);

#[async_trait]
impl Push for Recorder {
    async fn push(&self, to: &[Recipient], name: &str, data: &Value) -> BackendResult<()> {
        self.0.lock().expect("lock").push((to.to_vec(), name.to_string(), data.clone()));
        Ok(())
    }
}

async fn put(state: &MemoryState, site: Id, agent: Id, status: AgentStatus, last_seen: i64, sockets: i64) {
    let p = AgentPresence {
        agent_id: agent,
        site_id: site,
        name: format!("Agent {agent}"),
        role: "agent".into(),
        status,
        max_chats: 3,
        last_seen,
        sockets,
        ..AgentPresence::default()
    };
    object::save(state, &agent_key(site, agent), &p).await.expect("save");
    state.sadd(&agents_key(site), &[&agent.to_string()]).await.expect("sadd");
    state.sadd(&presence_sites_key(), &[&site.to_string()]).await.expect("sadd site");
}

async fn status_of(state: &MemoryState, site: Id, agent: Id) -> (AgentStatus, i64) {
    let p: AgentPresence = object::load(state, &agent_key(site, agent)).await.expect("load").expect("presence");
    (p.status, p.last_seen)
}

#[tokio::test]
async fn the_sweep_sets_agents_without_socket_or_call_offline_within_the_timeout() {
    let state = MemoryState::new();
    let push = Recorder::default();
    let (site, now) = (Id(7), 1_000_000);
    let timeout = Duration::from_millis(50);
    let (silent, connected, recent, away, gone) = (Id(1), Id(2), Id(3), Id(4), Id(5));
    put(&state, site, silent, AgentStatus::Online, now - 51, 0).await;
    put(&state, site, connected, AgentStatus::Online, now - 10_000, 1).await;
    put(&state, site, recent, AgentStatus::Online, now - 50, 0).await;
    put(&state, site, away, AgentStatus::Away, now - 51, 0).await;
    // A deleted agent left in the set is dropped from it.
    state.sadd(&agents_key(site), &[&gone.to_string()]).await.expect("sadd");

    let mut swept = sweep_presence(&state, &push, timeout, now).await.expect("sweep");
    swept.sort();
    assert_eq!(swept, vec![(site, silent), (site, away)]);
    assert_eq!(status_of(&state, site, silent).await.0, AgentStatus::Offline);
    assert_eq!(status_of(&state, site, away).await.0, AgentStatus::Offline);
    assert_eq!(status_of(&state, site, recent).await, (AgentStatus::Online, now - 50), "within the timeout");
    assert_eq!(status_of(&state, site, connected).await, (AgentStatus::Online, now), "an open socket is life");
    assert!(!state.sismember(&agents_key(site), &gone.to_string()).await.expect("sismember"));
    let pushes = push.0.lock().expect("lock").clone();
    assert_eq!(pushes.len(), 2);
    for (to, name, data) in &pushes {
        assert_eq!((to.as_slice(), name.as_str()), ([Recipient::SiteAgents(site)].as_slice(), "agent.status"));
        assert_eq!(data["status"], "offline");
    }
    // A second sweep finds nothing more to do and pushes nothing.
    assert_eq!(sweep_presence(&state, &push, timeout, now).await.expect("sweep"), vec![]);
    assert_eq!(push.0.lock().expect("lock").len(), 2);
}
