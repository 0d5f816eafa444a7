//! Reports, retention and privacy through the real server (issue 5), embedded (SQLite) and
//! on Redis + PostgreSQL: supervisors read exact report figures over chats stored with
//! known timestamps; agents' status changes reach the online/away report through the
//! write-behind; retention deletes (or anonymises) exactly the chats past their time and
//! search forgets them; `visitors.erase` removes a visitor's chats; admin actions appear
//! in the audit log; agents get 403, another site's ids 404, bad parameters 400 by name.

mod chat_support;
mod support;

use std::time::{Duration, Instant};

use chat_support::*;
use frontdesk::bootstrap::{create_site, NewSite};
use frontdesk_core::history::{ChatRecord, HistoryWrite, MessageRecord};
use frontdesk_core::id::Id;
use frontdesk_core::store::{Role, Store};
use serde_json::{json, Value};
use support::TestServer;

const DAY: i64 = 86_400_000;

/// `method path` as `who`, with an optional JSON body: status and JSON answer.
async fn rest(node: &TestServer, method: &str, path: &str, who: &Person, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = node.http().request(method, node.url(path)).bearer_auth(&who.token);
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

async fn get_ok(node: &TestServer, path: &str, who: &Person) -> Value {
    let (status, body) = rest(node, "GET", path, who, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["data"].clone()
}

/// A chat of the site, created `created` (ms), as the write-behind would store it, with one
/// visitor message saying `text`.
fn chat(env: &Env, visitor: Id, created: i64, ended: Option<i64>, text: &str) -> (Id, Vec<HistoryWrite>) {
    let id = env.ids.next().expect("id");
    let record = ChatRecord {
        chat_id: id,
        site_id: env.site,
        visitor_id: visitor,
        department_id: None,
        status: if ended.is_some() { "ended".into() } else { "active".into() },
        agent_id: None,
        participants: vec![],
        created_at: created,
        started_at: None,
        ended_at: ended,
        rating: None,
        comment: None,
        wrap_up_notes: None,
        tags: vec![],
        visitor_name: "Vera Visitor".into(),
        visitor_email: "vera@example.com".into(),
        version: 1,
    };
    let message = MessageRecord {
        id: env.ids.next().expect("id"),
        chat_id: id,
        site_id: env.site,
        seq: 1,
        data_offset: 1,
        message_type: 1,
        sender_id: visitor,
        sender_name: "Vera Visitor".into(),
        content: text.into(),
        client_message_id: None,
        send_time: frontdesk_core::time::rfc3339(created),
        send_time_ms: created,
        rev: 0,
        rebuild: false,
    };
    (id, vec![HistoryWrite::Chat(record), HistoryWrite::Message(message)])
}

/// Chat ids `GET /api/v1/chats?q=words` finds.
async fn search(node: &TestServer, who: &Person, words: &str) -> Vec<String> {
    let data = get_ok(node, &format!("/api/v1/chats?q={words}&limit=100"), who).await;
    let mut ids: Vec<String> =
        data["chats"].as_array().expect("chats").iter().map(|c| c["chatId"].as_str().expect("id").to_owned()).collect();
    ids.sort();
    ids
}

/// Another site with its admin, for isolation checks.
async fn other_admin(env: &Env, store: &dyn Store) -> Person {
    let other = env.ids.next().expect("id");
    let email = format!("{}@other.example", frontdesk_testkit::env::unique_name("admin"));
    let new = NewSite { name: "Other", admin_email: &email, admin_name: "Olga", admin_password: "olga-password" };
    create_site(store, &env.ids, other, &new).await.expect("site");
    Person { id: other, token: env.node().token_for(&env.db, &email).await }
}

#[tokio::test]
async fn reports_give_exact_figures_embedded() {
    reports_give_exact_figures(Env::embedded().await).await
}

#[tokio::test]
async fn reports_give_exact_figures_on_redis_and_postgres() {
    reports_give_exact_figures(Env::cluster(1).await).await
}

async fn reports_give_exact_figures(env: Env) {
    let node = env.node();
    let store = frontdesk_store::connect(&env.db).await.expect("store");
    let boss = env.agent("Sue", Role::Supervisor).await;
    let ann = env.agent("Ann", Role::Agent).await;
    // Two accepted chats (waits 10 s and 30 s, ended 100 s and 300 s after they were
    // created, so lasting 90 s and 270 s; rated 5 and 2) and one missed, on one day.
    let day = (now_ms() / DAY - 3) * DAY;
    let mut batch = Vec::new();
    for (offset, wait, rating, ended) in
        [(0, Some(10), Some(5), 100), (60, Some(30), Some(2), 300), (120, None, None, 50)]
    {
        let (_, mut writes) = chat(&env, env.ids.next().expect("id"), day + offset * 1000, None, "hello");
        if let HistoryWrite::Chat(c) = &mut writes[0] {
            c.started_at = wait.map(|w: i64| c.created_at + w * 1000);
            c.ended_at = Some(c.created_at + ended * 1000);
            c.status = "ended".into();
            c.rating = rating;
            c.agent_id = wait.map(|_| ann.id);
        }
        batch.extend(writes);
    }
    store.apply_history(&batch).await.expect("apply");
    let range = format!("from={}&to={}", day, day + DAY);

    let chats = get_ok(node, &format!("/api/v1/reports/chats?{range}"), &boss).await;
    assert_eq!((chats["total"].clone(), chats["missed"].clone()), (json!(3), json!(1)), "{chats}");
    assert_eq!(chats["buckets"][0]["startMs"], json!(day), "{chats}");
    let waits = get_ok(node, &format!("/api/v1/reports/wait-times?{range}&by=agent"), &boss).await;
    assert_eq!(
        waits["rows"],
        json!([{"agentId": ann.id.to_string(), "count": 2, "averageMs": 20000.0, "p90Ms": 30000}]),
        "{waits}"
    );
    let durations = get_ok(node, &format!("/api/v1/reports/durations?{range}"), &boss).await;
    assert_eq!(durations["rows"], json!([{"count": 2, "averageMs": 180000.0, "p90Ms": 270000}]), "{durations}");
    let ratings = get_ok(node, &format!("/api/v1/reports/ratings?{range}"), &env.admin).await;
    assert_eq!(ratings["rows"][0]["counts"], json!({"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}), "{ratings}");
    assert_eq!(ratings["rows"][0]["average"], json!(3.5), "{ratings}");
    let none = get_ok(node, "/api/v1/reports/first-response", &boss).await;
    assert_eq!(none["rows"], json!([]), "the default range (last 7 days) has no first responses: {none}");

    // Status changes reach the agent-time report through the write-behind.
    ok(node, "agent.set_status", &ann, json!({"status": "online"}), None).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ok(node, "agent.set_status", &ann, json!({"status": "away"}), None).await;
    let start = Instant::now();
    loop {
        let times = get_ok(node, "/api/v1/reports/agent-time", &boss).await;
        let row = times["rows"].as_array().expect("rows").iter().find(|r| r["agentId"] == json!(ann.id.to_string()));
        if let Some(row) = row.filter(|r| r["awayMs"].as_i64().unwrap_or(0) > 0) {
            assert!(row["onlineMs"].as_i64().expect("online") >= 1000, "{row}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "agent time did not arrive: {times}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Agents may not read reports; bad parameters are named.
    let (status, body) = rest(node, "GET", "/api/v1/reports/chats", &ann, None).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (403, Some("forbidden")), "{body}");
    for (query, name) in
        [("from=yesterday", "from"), ("by=team", "by"), ("interval=week", "interval"), ("colour=red", "colour")]
    {
        let (status, body) = rest(node, "GET", &format!("/api/v1/reports/chats?{query}"), &boss, None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"]["message"].as_str().expect("message").starts_with(name), "{query}: {body}");
    }
    // Another site's reports hold none of these chats.
    let olga = other_admin(&env, store.as_ref()).await;
    let theirs = get_ok(node, &format!("/api/v1/reports/chats?{range}"), &olga).await;
    assert_eq!(theirs["total"], json!(0), "{theirs}");
    env.stop().await;
}

#[tokio::test]
async fn retention_and_erase_remove_exactly_their_chats_embedded() {
    retention_and_erase_remove_exactly_their_chats(Env::embedded().await).await
}

#[tokio::test]
async fn retention_and_erase_remove_exactly_their_chats_on_redis_and_postgres() {
    retention_and_erase_remove_exactly_their_chats(Env::cluster(1).await).await
}

async fn retention_and_erase_remove_exactly_their_chats(env: Env) {
    let node = env.node();
    let store = frontdesk_store::connect(&env.db).await.expect("store");
    let agent = env.agent("Ann", Role::Agent).await;
    let now = now_ms();
    let visitor = env.ids.next().expect("id");
    let (old_ended, w1) = chat(&env, visitor, now - 50 * DAY, Some(now - 40 * DAY), "walrus");
    let (old_open, w2) = chat(&env, visitor, now - 45 * DAY, None, "walrus");
    let (late_end, w3) = chat(&env, visitor, now - 45 * DAY, Some(now - 2 * DAY), "walrus");
    let (recent, w4) = chat(&env, visitor, now - DAY, None, "walrus");
    store.apply_history(&[w1, w2, w3, w4].concat()).await.expect("apply");
    assert_eq!(search(node, &env.admin, "walrus").await.len(), 4);

    // Settings: admins only, their own site only, values checked by name.
    let settings = format!("/api/v1/sites/{}/settings", env.site);
    let (status, _) = rest(node, "PATCH", &settings, &agent, Some(json!({"retentionDays": 30}))).await;
    assert_eq!(status, 403);
    let olga = other_admin(&env, store.as_ref()).await;
    let (status, _) = rest(node, "PATCH", &settings, &olga, Some(json!({"retentionDays": 30}))).await;
    assert_eq!(status, 404, "another site's id is not found");
    for (body, name) in
        [(json!({"retentionDays": 0}), "retentionDays"), (json!({"retentionMode": "shred"}), "retentionMode")]
    {
        let (status, answer) = rest(node, "PATCH", &settings, &env.admin, Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().expect("message").starts_with(name), "{answer}");
    }
    let (status, answer) = rest(node, "PATCH", &settings, &env.admin, Some(json!({"retentionDays": 30}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["settings"]["retentionDays"], json!(30));

    let (status, _) = rest(node, "POST", "/api/v1/retention/run", &agent, Some(json!({}))).await;
    assert_eq!(status, 403);
    let (status, run) = rest(node, "POST", "/api/v1/retention/run", &env.admin, Some(json!({}))).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (run["data"]["sites"][0]["chats"].clone(), run["data"]["sites"][0]["messages"].clone()),
        (json!(2), json!(2))
    );
    let mut kept = vec![late_end.to_string(), recent.to_string()];
    kept.sort();
    assert_eq!(search(node, &env.admin, "walrus").await, kept, "exactly the old chats are gone");
    for gone in [old_ended, old_open] {
        assert_eq!(rest(node, "GET", &format!("/api/v1/chats/{gone}"), &env.admin, None).await.0, 404);
    }

    // Anonymise mode keeps the chat and removes its text.
    let (old, w5) = chat(&env, env.ids.next().expect("id"), now - 60 * DAY, Some(now - 59 * DAY), "narwhal");
    store.apply_history(&w5).await.expect("apply");
    let body = json!({"retentionMode": "anonymise"});
    assert_eq!(rest(node, "PATCH", &settings, &env.admin, Some(body)).await.0, 200);
    assert_eq!(rest(node, "POST", "/api/v1/retention/run", &env.admin, Some(json!({}))).await.0, 200);
    let t = get_ok(node, &format!("/api/v1/chats/{old}"), &env.admin).await;
    assert_eq!(
        (t["chat"]["visitorName"].clone(), t["messages"][0]["content"].clone()),
        (json!(""), json!("[removed]"))
    );
    assert!(search(node, &env.admin, "narwhal").await.is_empty());

    // Erase: the visitor's remaining chats go, and search forgets them.
    let erase = format!("/api/v1/visitors/{visitor}/erase");
    assert_eq!(rest(node, "POST", &erase, &agent, Some(json!({}))).await.0, 403);
    assert_eq!(rest(node, "POST", &erase, &olga, Some(json!({}))).await.0, 404, "another site's visitor");
    let (status, erased) = rest(node, "POST", &erase, &env.admin, Some(json!({}))).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!((erased["data"]["chats"].clone(), erased["data"]["messages"].clone()), (json!(2), json!(2)));
    assert!(search(node, &env.admin, "walrus").await.is_empty());
    assert_eq!(rest(node, "POST", &erase, &env.admin, Some(json!({}))).await.0, 404, "nothing left to erase");

    // Admin actions are in the audit log, newest first, paged; agents may not read it.
    let body = json!({"name": "Dept of Audits", "strategy": "round_robin"});
    assert_eq!(rest(node, "POST", "/api/v1/departments", &env.admin, Some(body)).await.0, 201);
    let page = get_ok(node, "/api/v1/audit-log?limit=3", &env.admin).await;
    let actions: Vec<&str> =
        page["entries"].as_array().expect("entries").iter().map(|e| e["action"].as_str().expect("action")).collect();
    assert_eq!(actions, ["departments.create", "visitors.erase", "retention.run"], "{page}");
    assert_eq!(page["entries"][1]["target"], json!(visitor.to_string()));
    assert_eq!(page["entries"][1]["actorAgentId"], json!(env.admin.id.to_string()));
    let cursor = page["nextCursor"].as_str().expect("more entries");
    let rest_page = get_ok(node, &format!("/api/v1/audit-log?cursor={cursor}&limit=100"), &env.admin).await;
    let older: Vec<&str> =
        rest_page["entries"].as_array().expect("entries").iter().map(|e| e["action"].as_str().expect("a")).collect();
    assert_eq!(older, ["sites.update_settings", "retention.run", "sites.update_settings"], "{rest_page}");
    assert_eq!(rest(node, "GET", "/api/v1/audit-log", &agent, None).await.0, 403);
    let (status, answer) = rest(node, "GET", "/api/v1/audit-log?limit=0", &env.admin, None).await;
    assert!(status == 400 && answer["error"]["message"].as_str().expect("m").starts_with("limit"), "{answer}");
    assert_eq!(get_ok(node, "/api/v1/audit-log", &olga).await["entries"], json!([]), "each site sees its own");
    env.stop().await;
}
