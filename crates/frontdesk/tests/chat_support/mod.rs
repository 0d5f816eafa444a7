//! The chat tests' harness: a cluster-mode node (Redis + PostgreSQL) whose runtime state
//! the test can also reach, so it can put agents online (the presence hashes dispatch
//! reads), mint visitor tokens, call chat events with offsets, and read pushes on sockets.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use frontdesk::bootstrap::new_agent;
use frontdesk_core::id::{Id, IdGenerator};
use frontdesk_core::object;
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Role;
use frontdesk_modules::model::{agent_key, agents_key, AgentPresence, AgentStatus};
use frontdesk_state::redis_state::RedisState;
use frontdesk_testkit::env::{postgres_url, redis_url, unique_name};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{cluster_settings, create_postgres_database, TestServer};

pub const ADMIN: &str = "admin@test.example";

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One installation: its database, Redis prefix and site, and the nodes serving it.
pub struct Env {
    pub nodes: Vec<TestServer>,
    pub db: String,
    pub prefix: String,
    pub site: Id,
    pub state: Arc<dyn StateStore>,
    pub ids: IdGenerator,
    pub admin: Person,
    /// A Redis server of this test's own (so it may be flushed), when there is one.
    pub own_redis: Option<frontdesk_testkit::env::RedisProcess>,
}

/// A user: id and bearer token.
#[derive(Clone, Debug)]
pub struct Person {
    pub id: Id,
    pub token: String,
}

impl Env {
    /// `n` nodes on one Redis prefix and one PostgreSQL database.
    pub async fn cluster(n: usize) -> Env {
        Self::cluster_on(&redis_url(), n).await
    }

    /// `n` nodes on the Redis server at `redis` (e.g. a test's own, to flush it).
    pub async fn cluster_on(redis: &str, n: usize) -> Env {
        let db = create_postgres_database(&postgres_url()).await;
        Self::cluster_on_database(redis, db, n).await
    }

    /// `n` nodes on the Redis server at `redis` and the PostgreSQL database at `db` (e.g.
    /// reached through a proxy the test can cut).
    pub async fn cluster_on_database(redis: &str, db: String, n: usize) -> Env {
        let prefix = unique_name("fd");
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(TestServer::start(cluster_settings(redis, &db, &prefix)).await);
        }
        let state: Arc<dyn StateStore> =
            Arc::new(RedisState::connect(redis, &format!("{prefix}:")).await.expect("redis"));
        Self::around(nodes, db, prefix, state).await
    }

    /// One node on a Redis server of the test's own, which the test may flush.
    pub async fn cluster_on_own_redis() -> Env {
        let redis = frontdesk_testkit::env::RedisProcess::start();
        let mut env = Self::cluster_on(&redis.url(), 1).await;
        env.own_redis = Some(redis);
        env
    }

    /// One node on its embedded defaults (memory state, SQLite, local bus); the test reaches
    /// its in-process state store the way cluster tests reach Redis.
    pub async fn embedded() -> Env {
        let node = TestServer::start(frontdesk::config::RawSettings::default()).await;
        let db = node.sqlite_url();
        let state = node.backends.state.clone();
        Self::around(vec![node], db, String::new(), state).await
    }

    async fn around(nodes: Vec<TestServer>, db: String, prefix: String, state: Arc<dyn StateStore>) -> Env {
        let store = frontdesk_store::connect(&db).await.expect("store");
        let admin = store.agent_by_email(ADMIN).await.expect("read").expect("admin");
        let token = nodes[0].token_for(&db, ADMIN).await;
        let node = 900 + (rand_u16() % 100) as u32;
        Env {
            nodes,
            db,
            prefix,
            site: admin.site_id,
            state,
            ids: IdGenerator::new(node).expect("ids"),
            admin: Person { id: admin.id, token },
            own_redis: None,
        }
    }

    pub fn node(&self) -> &TestServer {
        &self.nodes[0]
    }

    /// A new agent of the site, stored durably.
    pub async fn agent(&self, name: &str, role: Role) -> Person {
        let store = frontdesk_store::connect(&self.db).await.expect("store");
        let email = format!("{}@test.example", unique_name(name));
        let agent = new_agent(&self.ids, self.site, &email, name, "agent-password", role).await.expect("agent");
        store.insert_agent(&agent).await.expect("insert agent");
        Person { id: agent.id, token: self.node().token_for(&self.db, &email).await }
    }

    /// Marks an agent online with `max_chats`, as the agent module's presence would.
    pub async fn online(&self, agent: Id, max_chats: i64) {
        self.presence(agent, max_chats, AgentStatus::Online, &[]).await;
    }

    pub async fn presence(&self, agent: Id, max_chats: i64, status: AgentStatus, departments: &[Id]) {
        let p = AgentPresence {
            agent_id: agent,
            site_id: self.site,
            name: format!("Agent {agent}"),
            role: "agent".into(),
            status,
            max_chats,
            active_chats: 0,
            priority: 0,
            departments: departments.to_vec(),
            last_seen: now_ms(),
            sockets: 0,
        };
        object::save(self.state.as_ref(), &agent_key(self.site, agent), &p).await.expect("presence");
        self.state.sadd(&agents_key(self.site), &[&agent.to_string()]).await.expect("agents set");
    }

    pub async fn active_chats(&self, agent: Id) -> i64 {
        let v = self.state.hget(&agent_key(self.site, agent), "activeChats").await.expect("hget");
        v.and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// A visitor of the site (a token as `visitor.enter_site` issues).
    pub async fn visitor(&self) -> Person {
        self.visitor_of(self.site).await
    }

    pub async fn visitor_of(&self, site: Id) -> Person {
        let store = frontdesk_store::connect(&self.db).await.expect("store");
        let tokens = frontdesk_modules::tokens::Tokens::load(store.as_ref()).await.expect("tokens");
        let id = self.ids.next().expect("id");
        Person { id, token: tokens.issue_visitor(site, id, Duration::from_secs(3600)).expect("token") }
    }

    pub async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

fn rand_u16() -> u16 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7);
    (nanos ^ std::process::id()) as u16
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Calls an event with the client's offsets in the headers (SPEC §5.1).
pub async fn call(
    node: &TestServer,
    event: &str,
    who: &Person,
    body: Value,
    offsets: Option<(i64, i64)>,
) -> (u16, Value) {
    let mut req = node
        .http()
        .post(node.url(&format!("/api/v1/{event}")))
        .bearer_auth(&who.token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(20));
    if let Some((v, a)) = offsets {
        req = req.header("X-Visitor-Data-Offset", v.to_string()).header("X-Agent-Data-Offset", a.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// Calls and expects `code: 0`.
pub async fn ok(node: &TestServer, event: &str, who: &Person, body: Value, offsets: Option<(i64, i64)>) -> Value {
    let (status, answer) = call(node, event, who, body, offsets).await;
    assert_eq!((status, &answer["code"]), (200, &json!(0)), "{event}: {answer}");
    answer
}

/// The error kind and HTTP status of an answer.
pub fn kind(answer: &(u16, Value)) -> (u16, String) {
    (answer.0, answer.1["error"]["kind"].as_str().unwrap_or("(none)").to_string())
}

/// A socket for `who`, attached for pushes once its first answer has come back.
pub async fn socket(node: &TestServer, who: &Person) -> Socket {
    let url = format!("ws://{}/api/v1/ws?token={}", node.addr, who.token);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    ws.send(Message::text(json!({"id": "hello", "event": "auth.whoami"}).to_string())).await.expect("send");
    loop {
        if next_frame(&mut ws, Duration::from_secs(10)).await.expect("hello answer")["id"] == "hello" {
            return ws;
        }
    }
}

pub async fn next_frame(ws: &mut Socket, within: Duration) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(within, ws.next()).await.ok()?.expect("socket open").expect("frame");
        if let Message::Text(text) = msg {
            return Some(serde_json::from_str(text.as_str()).expect("json frame"));
        }
    }
}

/// The next push named `name` within 10 s (other frames are skipped).
pub async fn next_push(ws: &mut Socket, name: &str) -> Value {
    loop {
        let frame =
            next_frame(ws, Duration::from_secs(10)).await.unwrap_or_else(|| panic!("no {name} push within 10 s"));
        if frame["push"] == name {
            return frame["data"].clone();
        }
    }
}

/// Every push named `name` arriving within `within`.
pub async fn pushes_within(ws: &mut Socket, name: &str, within: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    let until = tokio::time::Instant::now() + within;
    while let Some(left) = until.checked_duration_since(tokio::time::Instant::now()) {
        match next_frame(ws, left).await {
            Some(f) if f["push"] == name => got.push(f["data"].clone()),
            Some(_) => {}
            None => break,
        }
    }
    got
}

/// A visitor's chat request; returns the answer's data.
pub async fn request(node: &TestServer, visitor: &Person, body: Value) -> Value {
    ok(node, "chat.request", visitor, body, None).await["data"].clone()
}

pub fn chat_id(data: &Value) -> String {
    data["chatId"].as_str().expect("chatId").to_string()
}
