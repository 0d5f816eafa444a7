//! Tenant isolation, table-driven (issue 4, SPEC §4: "no call ever reads or writes across
//! sites"). Every event of the built-in pipeline file and every REST route is called by
//! actors of site A with site B's real ids in every id-shaped field; none may answer with
//! B's data, and B's data must be the same afterwards. New events are covered by being in
//! the file: the table is the file.

mod support;

use std::collections::BTreeSet;

use frontdesk::config::RawSettings;
use serde_json::{json, Value};
use support::TestServer;

const OPERATOR: &str = "operator-token-0123456789";

/// Events whose job is to cross the tenant line on purpose, or that no site actor can call.
const NOT_TENANT_SCOPED: &[&str] = &[
    "server.start",
    "server.end",
    "socket.connect",
    "socket.disconnect",
    // The operator creates sites; agents of a site cannot.
    "sites.create",
    // Anonymous by design: logging in, refreshing, a visitor entering any site's page, a
    // site's public availability for its widget.
    "agent.login",
    "agent.refresh_token",
    // Ends the caller's own session; nothing of another site is named.
    "agent.logout",
    "visitor.enter_site",
    "offline_message.availability",
    // Installation-wide, not per site.
    "pipelines.get",
    "auth.whoami",
];

/// Site B's objects, made through the API as a user would.
struct SiteB {
    admin_token: String,
    visitor_token: String,
    ids: Vec<(String, String)>,
}

async fn make_site_b(server: &TestServer) -> SiteB {
    let (status, site) = server
        .call(
            "sites.create",
            Some(OPERATOR),
            &json!({"name": "Site B", "adminEmail": "admin@b.example", "adminPassword": "b-password-1"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "sites.create: {site}");
    let site_id = site["data"]["siteId"].as_str().expect("siteId").to_string();
    let admin_agent = site["data"]["adminAgentId"].as_str().expect("adminAgentId").to_string();
    let (_, login) = server
        .call("agent.login", None, &json!({"email": "admin@b.example", "password": "b-password-1"}).to_string())
        .await;
    let admin_token = login["data"]["accessToken"].as_str().expect("B admin token").to_string();
    server.call("agent.set_status", Some(&admin_token), r#"{"status": "online"}"#).await;
    let (_, dept) =
        server.call("departments.create", Some(&admin_token), r#"{"name": "B sales", "strategy": "least_busy"}"#).await;
    let department_id = dept["data"]["id"].as_str().or(dept["data"]["departmentId"].as_str()).unwrap_or("").to_string();
    let (_, visitor) = server
        .call("visitor.enter_site", None, &json!({"siteId": site_id, "url": "https://b.example/"}).to_string())
        .await;
    let visitor_id = visitor["data"]["visitorId"].as_str().expect("B visitor").to_string();
    let visitor_token = visitor["data"]["visitorToken"].as_str().expect("B visitor token").to_string();
    let (_, chat) =
        server.call("chat.request", Some(&visitor_token), r#"{"message": "B's secret first message"}"#).await;
    let chat_id = chat["data"]["chatId"].as_str().expect("B chat").to_string();
    let offline_message_id = offline_message_of(server, &visitor_token, &admin_token).await;
    let ids = vec![
        ("offlineMessageId".into(), offline_message_id),
        ("siteId".into(), site_id),
        ("agentId".into(), admin_agent.clone()),
        ("toAgentId".into(), admin_agent.clone()),
        ("withAgentId".into(), admin_agent),
        ("visitorId".into(), visitor_id),
        ("chatId".into(), chat_id),
        ("departmentId".into(), department_id.clone()),
        ("id".into(), department_id),
    ];
    SiteB { admin_token, visitor_token, ids }
}

/// An offline message B's visitor left, once B's admin can list it (written behind).
async fn offline_message_of(server: &TestServer, visitor_token: &str, admin_token: &str) -> String {
    let body = json!({"name": "B visitor", "email": "visitor@b.example", "message": "B's secret first message"});
    let (status, sent) = server.call("offline_message.submit", Some(visitor_token), &body.to_string()).await;
    assert_eq!(status, 200, "offline_message.submit as B: {sent}");
    let id = sent["data"]["id"].as_str().expect("offline message id").to_string();
    for _ in 0..200 {
        let (_, list) = server.call("offline_messages.list", Some(admin_token), "{}").await;
        if list["data"]["offlineMessages"].as_array().is_some_and(|m| !m.is_empty()) {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("B's offline message was not stored within 10 s");
}

/// A request body with B's ids in every id field and harmless values elsewhere.
fn probe_body(b: &SiteB) -> Value {
    let mut body = json!({
        "content": "probe from site A", "message": "probe from site A", "name": "Probe", "email": "probe@a.example",
        "password": "probe-password", "role": "agent", "status": "online", "url": "https://a.example/",
        "title": "probe", "rating": 5, "comment": "probe", "notes": "probe", "tags": ["probe"], "typing": true,
        "seenSeq": 1, "banned": true, "key": "probe", "value": "probe", "customVariables": {"probe": "1"},
        "visitorDataOffset": 0, "agentDataOffset": 0, "messages": [], "strategy": "least_busy",
        "clientMessageId": "probe-1", "maxChats": 3
    });
    for (k, v) in &b.ids {
        body[k] = json!(v);
    }
    body
}

/// What must never appear in an answer to site A's actors: B's content always; B's ids in
/// a successful answer (an error may quote back the id the caller sent).
fn secrets_of(b: &SiteB, success: bool) -> Vec<String> {
    let mut s: Vec<String> = if success {
        b.ids.iter().filter(|(k, v)| k != "siteId" && !v.is_empty()).map(|(_, v)| v.clone()).collect()
    } else {
        Vec::new()
    };
    s.push("B's secret first message".into());
    s.push("admin@b.example".into());
    s.push("B sales".into());
    s
}

/// What site B holds, read as B's own admin and visitor would.
async fn snapshot_b(server: &TestServer, b: &SiteB) -> Vec<Value> {
    let chat_id = &b.ids.iter().find(|(k, _)| k == "chatId").expect("chat").1;
    let mut out = Vec::new();
    for (event, token, body) in [
        ("agents.list", &b.admin_token, json!({})),
        ("departments.list", &b.admin_token, json!({})),
        ("offline_messages.list", &b.admin_token, json!({})),
        ("visitor.list", &b.admin_token, json!({})),
        ("chat.visitor_heartbeat", &b.visitor_token, json!({"chatId": chat_id})),
    ] {
        let (status, mut answer) = server.call(event, Some(token), &body.to_string()).await;
        assert_eq!(status, 200, "{event} as B: {answer}");
        // Times move; what matters is the records.
        strip_volatile(&mut answer);
        out.push(answer);
    }
    out
}

fn strip_volatile(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for k in ["lastSeen", "uptimeSeconds", "typing", "unread", "online"] {
                map.remove(k);
            }
            map.values_mut().for_each(strip_volatile);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

#[tokio::test]
async fn no_event_or_route_lets_site_a_reach_site_b() {
    let raw = RawSettings { operator_token: Some(OPERATOR.into()), ..RawSettings::default() };
    let server = TestServer::start(raw).await;
    let b = make_site_b(&server).await;

    // Site A's actors: its admin (an agent) and one of its visitors.
    let admin_a = server.token_for(&server.sqlite_url(), "admin@test.example").await;
    let store = frontdesk_store::connect(&server.sqlite_url()).await.expect("store");
    let site_a = store.agent_by_email("admin@test.example").await.expect("read").expect("admin").site_id;
    let (_, visitor) = server
        .call("visitor.enter_site", None, &json!({"siteId": site_a, "url": "https://a.example/"}).to_string())
        .await;
    let visitor_a = visitor["data"]["visitorToken"].as_str().expect("A visitor token").to_string();

    let before = snapshot_b(&server, &b).await;
    let pipelines: Value = serde_json::from_str(frontdesk_modules::BUILTIN_PIPELINES).expect("pipelines");
    let events: BTreeSet<&str> = pipelines
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .filter(|e| *e != "base" && !NOT_TENANT_SCOPED.contains(e))
        .collect();
    assert!(events.len() > 20, "the table is the pipeline file: {events:?}");
    let body = probe_body(&b).to_string();
    let mut leaks = Vec::new();
    for event in &events {
        for (actor, token) in [("admin of A", &admin_a), ("visitor of A", &visitor_a)] {
            let (status, answer) = server.call(event, Some(token), &body).await;
            let text = answer.to_string();
            let secrets = secrets_of(&b, status == 200);
            if let Some(secret) = secrets.iter().find(|s| text.contains(s.as_str())) {
                leaks.push(format!("{event} as {actor} → {status}, shows {secret:?}: {text}"));
            }
        }
    }
    // REST routes with B's ids in the path.
    let department_b = &b.ids.iter().find(|(k, _)| k == "departmentId").expect("dept").1;
    let agent_b = &b.ids.iter().find(|(k, _)| k == "agentId").expect("agent").1;
    let offline_b = &b.ids.iter().find(|(k, _)| k == "offlineMessageId").expect("offline message").1;
    for (method, path) in [
        ("GET", format!("/api/v1/offline-messages/{offline_b}")),
        ("PATCH", format!("/api/v1/offline-messages/{offline_b}")),
        ("GET", format!("/api/v1/agents/{agent_b}")),
        ("PATCH", format!("/api/v1/agents/{agent_b}")),
        ("DELETE", format!("/api/v1/agents/{agent_b}")),
        ("GET", format!("/api/v1/departments/{department_b}")),
        ("PATCH", format!("/api/v1/departments/{department_b}")),
        ("DELETE", format!("/api/v1/departments/{department_b}")),
    ] {
        let req = server
            .http()
            .request(method.parse().expect("method"), server.url(&path))
            .bearer_auth(&admin_a)
            .header("content-type", "application/json")
            .body(r#"{"name": "taken over"}"#);
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        if status != 404 {
            leaks.push(format!("{method} {path} as admin of A → {status} (expected 404): {text}"));
        }
    }
    assert!(leaks.is_empty(), "site A reached site B:\n{}", leaks.join("\n"));
    let after = snapshot_b(&server, &b).await;
    assert_eq!(before, after, "site B's data changed under site A's calls");
    server.stop().await;
}
