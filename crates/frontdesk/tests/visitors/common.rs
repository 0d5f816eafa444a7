//! Helpers of the visitor and agent-chat tests: sites and agents made through the store,
//! calls with an `Origin` header, agent sockets that wait for pushes.

use std::time::Duration;

use frontdesk::bootstrap::{create_site, new_agent, NewSite};
use frontdesk_core::id::{Id, IdGenerator};
use frontdesk_core::store::Role;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::TestServer;

pub const ADMIN: &str = "admin@test.example";

/// One id generator for everything the tests make through the store (node id 1000, unused
/// by the servers under test), so ids never repeat within a test.
fn ids() -> &'static IdGenerator {
    static IDS: std::sync::OnceLock<IdGenerator> = std::sync::OnceLock::new();
    IDS.get_or_init(|| IdGenerator::new(1000).expect("ids"))
}

/// A fresh id for a record made through the store.
pub fn new_id() -> Id {
    ids().next().expect("id")
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The bootstrap site's id.
pub async fn site_of(db: &str, email: &str) -> Id {
    let store = frontdesk_store::connect(db).await.expect("store");
    store.agent_by_email(email).await.expect("read").expect("agent").site_id
}

/// A new agent of `site` with `role`; returns its id and an access token.
pub async fn add_agent(server: &TestServer, db: &str, site: Id, email: &str, role: Role) -> (Id, String) {
    let store = frontdesk_store::connect(db).await.expect("store");
    let agent = new_agent(ids(), site, email, "Second", "second-password", role).await.expect("agent");
    store.insert_agent(&agent).await.expect("insert");
    (agent.id, server.token_for(db, email).await)
}

/// A second site with its own admin; returns the site id, the admin's id and token.
pub async fn second_site(server: &TestServer, db: &str, email: &str) -> (Id, Id, String) {
    let store = frontdesk_store::connect(db).await.expect("store");
    let new = NewSite { name: "Site B", admin_email: email, admin_name: "B", admin_password: "b-password-123" };
    let (site, admin) = create_site(store.as_ref(), ids(), new_id(), &new).await.expect("site");
    (site.id, admin.id, server.token_for(db, email).await)
}

/// POSTs an event with an optional `Origin` header.
pub async fn call_from(server: &TestServer, event: &str, origin: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = server
        .http()
        .post(server.url(&format!("/api/v1/{event}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

pub async fn call(server: &TestServer, event: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    server.call(event, token, &body.to_string()).await
}

pub fn kind(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["kind"].as_str().unwrap_or("(none)"))
}

/// Enters `site` as a new visitor; returns the visitor id and token.
pub async fn enter(server: &TestServer, site: Id) -> (String, String) {
    let (status, body) = call(
        server,
        "visitor.enter_site",
        None,
        json!({"siteId": site, "url": "https://shop.example/", "title": "Home", "referrer": "https://search.example/?q=shoes"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    (data["visitorId"].as_str().expect("id").to_string(), data["visitorToken"].as_str().expect("token").to_string())
}

/// An agent socket, attached for pushes once its first answer has come back.
pub async fn agent_socket(server: &TestServer, token: &str) -> Socket {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?token={token}", server.addr)).await.expect("ws");
    ws.send(Message::text(json!({"id": "hello", "event": "auth.whoami"}).to_string())).await.expect("send");
    loop {
        let frame = next_frame(&mut ws).await;
        if frame["id"] == "hello" {
            return ws;
        }
    }
}

pub async fn next_frame(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = msg {
            return serde_json::from_str(text.as_str()).expect("json frame");
        }
    }
}

/// The next push named `name` (other frames are skipped).
pub async fn next_push(ws: &mut Socket, name: &str) -> Value {
    loop {
        let frame = next_frame(ws).await;
        if frame["push"] == name {
            return frame["data"].clone();
        }
    }
}

pub async fn listed(server: &TestServer, token: &str) -> Vec<Value> {
    let (status, body) = call(server, "visitor.list", Some(token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["visitors"].as_array().expect("visitors").clone()
}

pub async fn admin_of(db: &str) -> Id {
    frontdesk_store::connect(db).await.expect("store").agent_by_email(ADMIN).await.expect("read").expect("admin").id
}
