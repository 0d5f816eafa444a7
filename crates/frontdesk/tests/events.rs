//! The event API as a client sees it (SPEC §5.1, §5.2, §5.5, §5.6): HTTP and WebSocket
//! calls, the `ReturnResult` envelope and its error kinds, caller resolution, the active
//! pipelines, external stages, reload, per-event metrics.

mod support;

use std::time::Duration;

use frontdesk::config::RawSettings;
use frontdesk_testkit::env::unique_name;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::TestServer;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "admin@test.example";

#[tokio::test]
async fn callers_are_resolved_from_bearer_tokens() {
    let raw = RawSettings { operator_token: Some("operator-token-0123456789".into()), ..RawSettings::default() };
    let server = TestServer::start(raw).await;

    let (status, body) = server.call("auth.whoami", None, "{}").await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], -1);
    assert_eq!(body["error"]["kind"], "unauthorized");
    assert!(body["error"]["message"].as_str().expect("message").contains("Authorization: Bearer"));

    let (status, body) = server.call("auth.whoami", Some("not-a-token"), "{}").await;
    assert_eq!((status, body["error"]["kind"].as_str()), (401, Some("unauthorized")));

    let token = server.token_for(&server.sqlite_url(), ADMIN).await;
    let (status, body) = server.call("auth.whoami", Some(&token), "{}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0);
    assert_eq!(body["data"]["caller"]["kind"], "agent");
    assert_eq!(body["data"]["caller"]["role"], "admin");
    assert!(body["data"]["caller"]["siteId"].is_string(), "ids travel as strings");

    let (status, body) = server.call("auth.whoami", Some("operator-token-0123456789"), "{}").await;
    assert_eq!((status, body["data"]["caller"]["kind"].as_str()), (200, Some("operator")));
    server.stop().await;
}

#[tokio::test]
async fn bad_calls_get_the_right_error_kind_and_status() {
    let server = TestServer::start(RawSettings::default()).await;
    let token = server.token_for(&server.sqlite_url(), ADMIN).await;

    let (status, body) = server.call("chat.nonexistent", Some(&token), "{}").await;
    assert_eq!((status, body["error"]["kind"].as_str()), (404, Some("unknown_event")));

    let (status, body) = server.call("auth.whoami", Some(&token), "{\"a\": ").await;
    assert_eq!((status, body["error"]["kind"].as_str()), (400, Some("bad_request")));
    assert!(body["error"]["message"].as_str().expect("msg").starts_with("malformed JSON at line 1"));

    let (status, body) = server.call("auth.whoami", Some(&token), "[1, 2]").await;
    assert_eq!((status, body["error"]["kind"].as_str()), (400, Some("bad_request")));

    let big = format!("{{\"text\": \"{}\"}}", "x".repeat(70 * 1024));
    let (status, body) = server.call("auth.whoami", Some(&token), &big).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (413, Some("payload_too_large")));

    let resp = server
        .http()
        .post(server.url("/api/v1/auth.whoami"))
        .bearer_auth(&token)
        .header("X-Visitor-Data-Offset", "three")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert!(body["error"]["message"].as_str().expect("msg").contains("x-visitor-data-offset"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn admins_read_the_active_pipelines_in_the_file_format() {
    let server = TestServer::start(RawSettings::default()).await;
    let resp = server.http().get(server.url("/api/v1/events")).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 401);

    // A plain agent may not.
    let store = frontdesk_store::connect(&server.sqlite_url()).await.expect("store");
    let admin = store.agent_by_email(ADMIN).await.expect("read").expect("admin");
    let ids = frontdesk_core::id::IdGenerator::new(1000).expect("ids");
    let agent = frontdesk::bootstrap::new_agent(
        &ids,
        admin.site_id,
        "plain@test.example",
        "Plain",
        "plain-password",
        frontdesk_core::store::Role::Agent,
    )
    .await
    .expect("agent");
    store.insert_agent(&agent).await.expect("insert");
    let plain = server.token_for(&server.sqlite_url(), "plain@test.example").await;
    let resp = server.http().get(server.url("/api/v1/events")).bearer_auth(&plain).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 403);

    let token = server.token_for(&server.sqlite_url(), ADMIN).await;
    let resp = server.http().get(server.url("/api/v1/events")).bearer_auth(&token).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let served: Value = resp.json().await.expect("json");
    let builtin: Value = serde_json::from_str(frontdesk_modules::BUILTIN_PIPELINES).expect("builtin json");
    assert_eq!(served, builtin, "the active file, in the same format");
    server.stop().await;
}

/// An out-of-process module on a free port that answers `{result}` and echoes the call.
async fn echo_module() -> String {
    use axum::routing::post;
    use axum::Json;
    let app = axum::Router::new().route(
        "/quote",
        post(|Json(call): Json<Value>| async move {
            Json(json!({"result": {"quote": 42, "for": call["request"]["data"]["sku"], "event": call["event"]}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/quote")
}

#[tokio::test]
async fn an_event_defined_only_in_a_pipeline_file_with_an_external_stage_works_over_http_and_websocket() {
    let url = echo_module().await;
    let dir = std::env::temp_dir().join(unique_name("pipes"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("pipelines.json");
    let mut pipelines: Value = serde_json::from_str(frontdesk_modules::BUILTIN_PIPELINES).expect("builtin");
    pipelines["shop.quote"] = json!({"base": false, "do": [{"url": url}]});
    std::fs::write(&file, pipelines.to_string()).expect("write");
    let raw = RawSettings { pipelines: Some(file.clone()), ..RawSettings::default() };
    let server = TestServer::start(raw).await;

    let (status, body) = server.call("shop.quote", None, r#"{"sku": "A-1"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"code": 0, "data": {"quote": 42, "for": "A-1", "event": "shop.quote"}}));

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", server.addr)).await.expect("ws");
    ws.send(Message::text(json!({"id": "r1", "event": "shop.quote", "data": {"sku": "B-2"}}).to_string()))
        .await
        .expect("send");
    let answer = next_json(&mut ws).await;
    assert_eq!(
        answer,
        json!({"id": "r1", "result": {"code": 0, "data": {"quote": 42, "for": "B-2", "event": "shop.quote"}}})
    );
    server.stop().await;
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
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

#[tokio::test]
async fn websocket_frames_are_answered_by_id_and_bad_frames_say_why() {
    let server = TestServer::start(RawSettings::default()).await;
    let token = server.token_for(&server.sqlite_url(), ADMIN).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?token={token}", server.addr)).await.expect("ws");

    ws.send(Message::text(json!({"id": 7, "event": "auth.whoami"}).to_string())).await.expect("send");
    let a = next_json(&mut ws).await;
    assert_eq!(a["id"], 7);
    assert_eq!(a["result"]["data"]["caller"]["role"], "admin");

    ws.send(Message::text(json!({"id": "u", "event": "no.such_event"}).to_string())).await.expect("send");
    let a = next_json(&mut ws).await;
    assert_eq!((a["id"].as_str(), a["result"]["error"]["kind"].as_str()), (Some("u"), Some("unknown_event")));

    ws.send(Message::text(r#"{"id": "m", "event": 5}"#)).await.expect("send");
    let a = next_json(&mut ws).await;
    assert_eq!((a["id"].as_str(), a["result"]["error"]["kind"].as_str()), (Some("m"), Some("bad_request")));

    ws.send(Message::text(json!({"id": "n", "event": "auth.whoami", "data": [1]}).to_string())).await.expect("send");
    let a = next_json(&mut ws).await;
    assert_eq!(a["result"]["error"]["kind"], "bad_request");

    ws.send(Message::text(json!({"id": "o", "event": "auth.whoami", "agentDataOffset": -4}).to_string()))
        .await
        .expect("send");
    let a = next_json(&mut ws).await;
    assert!(a["result"]["error"]["message"].as_str().expect("msg").contains("agentDataOffset"), "{a}");

    // The same socket without a token: base stages refuse.
    let (mut anon, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", server.addr)).await.expect("ws");
    anon.send(Message::text(json!({"id": 1, "event": "auth.whoami"}).to_string())).await.expect("send");
    assert_eq!(next_json(&mut anon).await["result"]["error"]["kind"], "unauthorized");

    // An oversized frame closes the socket with 1009.
    let huge = json!({"id": "big", "event": "auth.whoami", "data": {"x": "y".repeat(80 * 1024)}}).to_string();
    let _ = ws.send(Message::text(huge)).await;
    let close = wait_close(&mut ws).await;
    assert_eq!(close, Some(1009));

    // Shutting down closes sockets with 1001.
    let stopping = tokio::spawn(server.stop());
    assert_eq!(wait_close(&mut anon).await, Some(1001));
    stopping.await.expect("stopped");
}

async fn wait_close<S>(ws: &mut S) -> Option<u16>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await.expect("closed within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn a_changed_pipeline_file_is_reloaded_and_a_bad_one_refused() {
    let url = echo_module().await;
    let dir = std::env::temp_dir().join(unique_name("pipes"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("pipelines.json");
    let mut pipelines: Value = serde_json::from_str(frontdesk_modules::BUILTIN_PIPELINES).expect("builtin");
    std::fs::write(&file, pipelines.to_string()).expect("write");
    let raw = RawSettings { pipelines: Some(file.clone()), ..RawSettings::default() };
    let server = TestServer::start(raw).await;
    assert_eq!(server.call("shop.quote", None, "{}").await.0, 404);

    pipelines["shop.quote"] = json!({"base": false, "do": [{"url": url}]});
    std::fs::write(&file, pipelines.to_string()).expect("write");
    wait_until(|| async { server.call("shop.quote", None, "{}").await.0 == 200 }).await;

    std::fs::write(&file, r#"{"shop.quote": {"do": [{"url": "nope/nothing"}]}}"#).expect("write bad");
    // Give the watcher time to see and refuse it; the old pipelines keep serving.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(server.call("shop.quote", None, "{}").await.0, 200);
    server.stop().await;
}

async fn wait_until<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn events_and_stages_are_counted_in_metrics() {
    let server = TestServer::start(RawSettings::default()).await;
    let token = server.token_for(&server.sqlite_url(), ADMIN).await;
    // The recorder is per process: other tests in this binary may count too, so compare
    // before and after.
    let value = |metrics: &str, prefix: &str, needles: &[&str]| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let read = || async { server.get("/metrics").await.1 };
    let before = read().await;
    for _ in 0..3 {
        assert_eq!(server.call("auth.whoami", Some(&token), "{}").await.0, 200);
    }
    assert_eq!(server.call("auth.whoami", None, "{}").await.0, 401);
    let after = read().await;
    let delta = |prefix: &str, needles: &[&str]| value(&after, prefix, needles) - value(&before, prefix, needles);
    assert_eq!(delta("frontdesk_events_total", &["event=\"auth.whoami\""]), 4.0, "{after}");
    assert_eq!(delta("frontdesk_event_failures_total", &["event=\"auth.whoami\"", "kind=\"unauthorized\""]), 1.0);
    assert_eq!(delta("frontdesk_stage_runs_total", &["event=\"auth.whoami\"", "stage=\"auth/whoami\""]), 3.0);
    assert!(
        after.contains("frontdesk_stage_duration_seconds_bucket") && after.contains("stage=\"auth/resolve_caller\"")
    );
    assert!(after.contains("frontdesk_event_duration_seconds_bucket"));
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_event_the_node_serves() {
    let server = TestServer::start(RawSettings::default()).await;
    let doc = server.get_json("/api/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let pipelines: Value = serde_json::from_str(frontdesk_modules::BUILTIN_PIPELINES).expect("builtin");
    for event in pipelines.as_object().expect("object").keys() {
        if ["base", "server.start", "server.end", "socket.connect", "socket.disconnect"].contains(&event.as_str()) {
            continue;
        }
        assert!(doc["paths"][format!("/api/v1/{event}")]["post"].is_object(), "{event} missing");
    }
    assert!(doc["paths"]["/api/v1/agents/{id}"]["patch"].is_object());
    server.stop().await;
}
