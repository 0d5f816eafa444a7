//! Durable chat history through the real server (SPEC §2, §5.3): a conversation written
//! behind through the bus arrives in the store as the clients saw it (embedded: SQLite and
//! the local bus; cluster: Redis Streams and PostgreSQL); the history API lists, searches,
//! filters and pages a site's chats, exports a transcript as CSV, refuses bad filters by
//! name, and never shows another site's chats; [`outage`]: the database going away mid-chat
//! (a cut proxy); [`outage_real`]: a real PostgreSQL crash and an unwritable SQLite file;
//! [`redelivery`]: a consumer killed between applying a batch and acking it.

mod chat_support;
#[path = "history/outage.rs"]
mod outage;
#[path = "history/outage_real.rs"]
mod outage_real;
#[path = "history/redelivery.rs"]
mod redelivery;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chat_support::*;
use frontdesk::bootstrap::{create_site, NewSite};
use frontdesk_core::store::Role;
use serde_json::{json, Value};
use support::TestServer;

/// `GET path` as `who`: status and JSON body.
async fn get(node: &TestServer, path: &str, who: &Person) -> (u16, Value) {
    let resp = node.http().get(node.url(path)).bearer_auth(&who.token).send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// Polls `GET path` until `done` holds (the write-behind drained), for up to 10 s.
async fn eventually(node: &TestServer, path: &str, who: &Person, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = get(node, path, who).await;
        if status == 200 && done(&body["data"]) {
            return body["data"].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{path} did not settle within 10 s: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message an answer carried, by id.
fn collect(seen: &mut BTreeMap<String, Value>, answer: &Value) {
    for m in answer["messages"].as_array().into_iter().flatten() {
        seen.insert(m["id"].as_str().expect("id").to_string(), m.clone());
    }
}

/// (id, seq, messageType, content) in seq order.
fn shape<'a>(messages: impl Iterator<Item = &'a Value>) -> Vec<(String, i64, i64, String)> {
    let mut v: Vec<_> = messages
        .map(|m| {
            (
                m["id"].as_str().expect("id").to_string(),
                m["seq"].as_i64().expect("seq"),
                m["messageType"].as_i64().expect("type"),
                m["content"].as_str().expect("content").to_string(),
            )
        })
        .collect();
    v.sort_by_key(|m| m.1);
    v
}

const TRICKY: &str = "Total: 3,50 € — say \"hi\"\nthanks";

#[tokio::test]
async fn a_conversation_is_stored_as_the_clients_saw_it_embedded() {
    a_conversation_is_stored_as_the_clients_saw_it(Env::embedded().await).await
}

#[tokio::test]
async fn a_conversation_is_stored_as_the_clients_saw_it_on_redis_and_postgres() {
    a_conversation_is_stored_as_the_clients_saw_it(Env::cluster(1).await).await
}

async fn a_conversation_is_stored_as_the_clients_saw_it(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    let bob = env.agent("Bob", Role::Agent).await;
    env.online(ann.id, 2).await;
    let visitor = env.visitor().await;
    let mut seen = BTreeMap::new();

    let a = ok(node, "chat.request", &visitor, json!({"message": "Hello, my parcel?", "name": "Vic"}), None).await;
    collect(&mut seen, &a);
    let chat = chat_id(&a["data"]);
    collect(&mut seen, &ok(node, "chat.agent_accept", &ann, json!({"chatId": chat}), None).await);
    let sent = json!({"chatId": chat, "content": TRICKY, "clientMessageId": "a-1"});
    collect(&mut seen, &ok(node, "chat.agent_send_message", &ann, sent.clone(), Some((1, 1))).await);
    // A retried send stores nothing new.
    collect(&mut seen, &ok(node, "chat.agent_send_message", &ann, sent, Some((1, 1))).await);
    let back = json!({"chatId": chat, "content": "Thanks, it is order 12345"});
    collect(&mut seen, &ok(node, "chat.visitor_send_message", &visitor, back, Some((1, 0))).await);
    collect(&mut seen, &ok(node, "chat.end", &ann, json!({"chatId": chat}), Some((2, 2))).await);
    let rate = json!({"chatId": chat, "rating": 5, "comment": "quick, thanks"});
    collect(&mut seen, &ok(node, "chat.post_chat", &visitor, rate, Some((2, 3))).await);
    let wrap = json!({"chatId": chat, "notes": "parcel found", "tags": ["shipping", "vip"]});
    collect(&mut seen, &ok(node, "chat.wrap_up", &ann, wrap, Some((2, 3))).await);
    assert_eq!(seen.len(), 5, "request message, join, agent reply, visitor reply, end: {seen:?}");

    let path = format!("/api/v1/chats/{chat}");
    let stored = eventually(node, &path, &env.admin, |d| {
        d["messages"].as_array().map(Vec::len) == Some(seen.len())
            && d["chat"]["tags"] == json!(["shipping", "vip"])
            && d["chat"]["status"] == "ended"
    })
    .await;
    assert_eq!(shape(stored["messages"].as_array().expect("messages").iter()), shape(seen.values()));
    let c = &stored["chat"];
    assert_eq!((c["rating"].as_i64(), c["comment"].as_str()), (Some(5), Some("quick, thanks")));
    assert_eq!((c["visitorName"].as_str(), c["wrapUpNotes"].as_str()), (Some("Vic"), Some("parcel found")));
    assert_eq!(c["agentIds"], json!([ann.id.to_string()]));
    assert!(c["startedAt"].as_i64().is_some() && c["endedAt"].as_i64().is_some() && c["firstResponseAt"].is_i64());

    // The agent who took part sees it; another agent neither finds nor lists it.
    assert_eq!(get(node, &path, &ann).await.0, 200);
    let (status, body) = get(node, &path, &bob).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (404, Some("not_found")), "{body}");
    let listed = get(node, "/api/v1/chats", &bob).await.1;
    assert_eq!(listed["data"]["chats"], json!([]), "{listed}");
    let listed = get(node, "/api/v1/chats?q=parcel", &env.admin).await.1;
    assert_eq!(listed["data"]["chats"][0]["chatId"], chat.as_str(), "{listed}");

    // CSV: a header row, and the comma, quotes and newline come back quoted.
    let resp = node
        .http()
        .get(node.url(&format!("{path}/export?format=csv")))
        .bearer_auth(&env.admin.token)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let csv = resp.text().await.expect("csv");
    assert!(csv.starts_with("messageId,seq,sendTime,messageType,senderId,senderName,content,clientMessageId\r\n"));
    assert!(csv.contains(",\"Total: 3,50 € — say \"\"hi\"\"\nthanks\",a-1\r\n"), "{csv}");
    assert_eq!(csv.matches("\r\n").count(), 1 + seen.len(), "one row per message: {csv}");
    let (status, body) = get(node, &format!("{path}/export?format=pdf"), &env.admin).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().expect("message").starts_with("format"), "{body}");
    env.stop().await;
}

#[tokio::test]
async fn history_is_searched_filtered_and_paged_per_site_embedded() {
    history_is_searched_filtered_and_paged_per_site(Env::embedded().await).await
}

#[tokio::test]
async fn history_is_searched_filtered_and_paged_per_site_on_redis_and_postgres() {
    history_is_searched_filtered_and_paged_per_site(Env::cluster(1).await).await
}

async fn history_is_searched_filtered_and_paged_per_site(env: Env) {
    let node = env.node();
    let mut chats = Vec::new();
    for i in 0..12 {
        let visitor = env.visitor().await;
        let text = if i == 7 { "my parcel went to zanzibar".to_string() } else { format!("where is parcel {i}") };
        chats.push(chat_id(&request(node, &visitor, json!({"message": text})).await));
    }
    let needle = chats[7].clone();
    eventually(node, "/api/v1/chats?limit=100&q=parcel", &env.admin, |d| {
        d["chats"].as_array().map(Vec::len) == Some(chats.len())
    })
    .await;

    // A visitor who entered with a name and email is found by them (visitor.enter_site's
    // record reaches the chat's history), with no message mentioning either.
    let entered = ok(
        node,
        "visitor.enter_site",
        &env.admin,
        json!({"siteId": env.site, "url": "https://shop.example/", "name": "Grace Hopper", "email": "grace.hopper@navy.example"}),
        None,
    )
    .await;
    let grace = Person {
        id: entered["data"]["visitorId"].as_str().expect("visitorId").parse().expect("id"),
        token: entered["data"]["visitorToken"].as_str().expect("visitorToken").to_string(),
    };
    let graces = chat_id(&request(node, &grace, json!({"message": "hello"})).await);
    for q in ["hopper", "grace.hopper@navy.example"] {
        let found = eventually(node, &format!("/api/v1/chats?q={q}"), &env.admin, |d| {
            d["chats"].as_array().is_some_and(|c| !c.is_empty())
        })
        .await;
        let ids: Vec<&str> =
            found["chats"].as_array().expect("chats").iter().filter_map(|c| c["chatId"].as_str()).collect();
        assert_eq!(ids, vec![graces.as_str()], "q={q}");
    }

    let found = get(node, "/api/v1/chats?q=zanzibar", &env.admin).await.1;
    let ids: Vec<&str> =
        found["data"]["chats"].as_array().expect("chats").iter().filter_map(|c| c["chatId"].as_str()).collect();
    assert_eq!(ids, vec![needle.as_str()], "{found}");
    let queued = get(node, "/api/v1/chats?status=queued&limit=100", &env.admin).await.1;
    assert_eq!(queued["data"]["chats"].as_array().map(Vec::len), Some(13));
    let none = get(node, "/api/v1/chats?status=ended", &env.admin).await.1;
    assert_eq!(none["data"]["chats"], json!([]));

    // Pages of 5: no duplicates, no gaps, newest first.
    let (mut paged, mut cursor) = (Vec::new(), None::<String>);
    for _ in 0..5 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/chats?limit=5&cursor={c}"),
            None => "/api/v1/chats?limit=5".to_string(),
        };
        let page = get(node, &path, &env.admin).await.1;
        paged.extend(
            page["data"]["chats"]
                .as_array()
                .expect("chats")
                .iter()
                .map(|c| c["chatId"].as_str().expect("id").to_string()),
        );
        cursor = page["data"]["nextCursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    let mut newest_first = chats.clone();
    newest_first.push(graces.clone());
    newest_first.reverse();
    assert_eq!(paged, newest_first);

    // Bad filters are refused by name.
    for (query, name) in [
        ("rating=9", "rating"),
        ("from=yesterday", "from"),
        ("agentId=ann", "agentId"),
        ("limit=1000", "limit"),
        ("cursor=xyz", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(node, &format!("/api/v1/chats?{query}"), &env.admin).await;
        assert_eq!((status, body["error"]["kind"].as_str()), (400, Some("bad_request")), "{query}: {body}");
        assert!(body["error"]["message"].as_str().expect("message").starts_with(name), "{query}: {body}");
    }

    // Another site sees none of it, even by id or by search.
    let store = frontdesk_store::connect(&env.db).await.expect("store");
    let other = env.ids.next().expect("id");
    let email = format!("{}@other.example", frontdesk_testkit::env::unique_name("admin"));
    let new = NewSite { name: "Other", admin_email: &email, admin_name: "Olga", admin_password: "olga-password" };
    create_site(store.as_ref(), &env.ids, other, &new).await.expect("site");
    let olga = Person { id: other, token: node.token_for(&env.db, &email).await };
    let (status, _) = get(node, &format!("/api/v1/chats/{needle}"), &olga).await;
    assert_eq!(status, 404);
    let theirs = get(node, "/api/v1/chats?q=zanzibar", &olga).await.1;
    assert_eq!(theirs["data"]["chats"], json!([]), "{theirs}");
    let all: HashSet<Value> = get(node, "/api/v1/chats?limit=100", &olga).await.1["data"]["chats"]
        .as_array()
        .expect("chats")
        .iter()
        .map(|c| c["chatId"].clone())
        .collect();
    assert!(all.is_empty(), "{all:?}");
    env.stop().await;
}
