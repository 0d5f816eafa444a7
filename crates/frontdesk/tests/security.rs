//! The security half of the reliability suite (issue #8, part 3): hostile input is
//! answered with the right error kind and nothing is stored.
//!
//! - `security/jwt.rs` — a table of token attacks (`alg: none`, algorithm confusion, key-id
//!   games, forged, tampered, expired, wrong audience, wrong kind of token, revoked,
//!   garbage), each on HTTP and on the WebSocket handshake (token in the URL and in the
//!   header).
//! - `security/sockets.rs` — logout closes the session's sockets (4001) on any node; a
//!   visitor socket's `Origin` must be one of its site's domains; sockets per address are
//!   capped; an oversized frame closes 1009.
//! - `security/login.rs` — password guessing: per account and per address, without telling
//!   which accounts exist (answer, status and timing class).
//! - `security/floods.rs` — a visitor's message rate (one budget across nodes, nothing
//!   stored when refused) and a flooding site not slowing another.

mod chat_support;
mod support;

#[path = "security/floods.rs"]
mod floods;
#[path = "security/jwt.rs"]
mod jwt;
#[path = "security/login.rs"]
mod login;
#[path = "security/sockets.rs"]
mod sockets;

use std::net::SocketAddr;
use std::time::Duration;

use frontdesk::config::RawSettings;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use support::TestServer;

pub const ADMIN: &str = "admin@test.example";
pub const ADMIN_PASSWORD: &str = "test-password";
pub const OPERATOR: &str = "operator-token-0123456789";

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Settings with the operator token (to make a second site) and `tune` applied.
pub fn settings(tune: impl FnOnce(&mut RawSettings)) -> RawSettings {
    let mut raw = RawSettings { operator_token: Some(OPERATOR.into()), ..RawSettings::default() };
    tune(&mut raw);
    raw
}

/// `POST /api/v1/{event}` with an optional bearer token and extra headers.
pub async fn call_with(
    server: &TestServer,
    event: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Value) {
    let mut req = server
        .http()
        .post(server.url(&format!("/api/v1/{event}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(20));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{event}: not JSON: {text}")))
}

pub async fn call(server: &TestServer, event: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call_with(server, event, token, &[], body).await
}

/// Status and error kind of an answer.
pub fn kind(answer: &(u16, Value)) -> (u16, String) {
    (answer.0, answer.1["error"]["kind"].as_str().unwrap_or("(none)").to_string())
}

/// Logs in; answers (access token, refresh token, agent id).
pub async fn login_ok(server: &TestServer, email: &str, password: &str) -> (String, String, String) {
    let answer = call(server, "agent.login", None, json!({"email": email, "password": password})).await;
    assert_eq!(answer.0, 200, "login {email}: {}", answer.1);
    let text = |k: &str| answer.1["data"][k].as_str().unwrap_or_else(|| panic!("{k} in {}", answer.1)).to_string();
    (text("accessToken"), text("refreshToken"), answer.1["data"]["agent"]["id"].as_str().expect("id").to_string())
}

/// A second site made by the operator; answers (site id, its admin's access token).
pub async fn second_site(server: &TestServer, admin_email: &str) -> (String, String) {
    let body = json!({"name": "Site B", "adminEmail": admin_email, "adminPassword": "b-password-1"});
    let (status, site) = call(server, "sites.create", Some(OPERATOR), body).await;
    assert_eq!(status, 200, "sites.create: {site}");
    let (token, _, _) = login_ok(server, admin_email, "b-password-1").await;
    (site["data"]["siteId"].as_str().expect("siteId").to_string(), token)
}

/// A visitor entering `site`; answers (visitor id, visitor token).
pub async fn enter(server: &TestServer, site: &str) -> (String, String) {
    let (status, body) =
        call(server, "visitor.enter_site", None, json!({"siteId": site, "url": "https://shop.example/"})).await;
    assert_eq!(status, 200, "enter_site: {body}");
    let text = |k: &str| body["data"][k].as_str().expect(k).to_string();
    (text("visitorId"), text("visitorToken"))
}

/// The id of the bootstrap site (the admin's).
pub async fn first_site(server: &TestServer, admin_token: &str) -> String {
    let (_, me) = call(server, "auth.whoami", Some(admin_token), json!({})).await;
    me["data"]["caller"]["siteId"].as_str().expect("siteId").to_string()
}

/// A WebSocket handshake on `/api/v1/ws`: the open socket, or the refusal's HTTP status and
/// body (a `ReturnResult`).
pub async fn handshake(
    addr: SocketAddr,
    url_token: Option<&str>,
    bearer: Option<&str>,
    origin: Option<&str>,
) -> Result<Socket, (u16, Value)> {
    let mut url = format!("ws://{addr}/api/v1/ws");
    if let Some(t) = url_token {
        url.push_str("?token=");
        url.push_str(&percent_encode(t));
    }
    let mut req = url.into_client_request().expect("a WebSocket request");
    if let Some(b) = bearer {
        req.headers_mut().insert("authorization", format!("Bearer {b}").parse().expect("header value"));
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().expect("header value"));
    }
    let attempt = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(req))
        .await
        .expect("the handshake is answered within 10 s");
    match attempt {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(e) => panic!("the handshake failed without an HTTP answer: {e}"),
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends a frame and waits (up to 10 s) for the answer with the same id.
pub async fn ask(ws: &mut Socket, id: &str, event: &str, data: Value) -> Value {
    use futures::{SinkExt, StreamExt};
    let frame = json!({"id": id, "event": event, "data": data}).to_string();
    ws.send(tungstenite::Message::text(frame)).await.expect("send");
    let wait = async {
        while let Some(msg) = ws.next().await {
            if let Ok(tungstenite::Message::Text(text)) = msg {
                let v: Value = serde_json::from_str(text.as_str()).expect("frames are JSON");
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
        panic!("the socket closed before answering {id}");
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or_else(|_| panic!("no answer to {id} in 10 s"))
}

/// Reads frames until the socket closes (up to `within`); answers the pushes seen and the
/// close code (`None` when the connection just dropped or did not close in time).
pub async fn until_closed(ws: &mut Socket, within: Duration) -> (Vec<Value>, Option<u16>) {
    use futures::StreamExt;
    let mut pushes = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return (pushes, None),
            Ok(None) | Ok(Some(Err(_))) => return (pushes, None),
            Ok(Some(Ok(tungstenite::Message::Close(frame)))) => return (pushes, frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(tungstenite::Message::Text(text)))) => {
                if let Ok(v) = serde_json::from_str::<Value>(text.as_str()) {
                    if v.get("push").is_some() {
                        pushes.push(v);
                    }
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}
