//! Offline messages through the real server (issue 5; SPEC §5.3, §5.4): a submit is written
//! behind into the durable table (embedded: local bus + SQLite; cluster: Redis Streams +
//! PostgreSQL), a replayed job leaves one row, agents list, page, filter and mark them
//! handled over REST, another site sees none of them, bad input stores nothing, a visitor's
//! erase removes them; and the e-mail to the site goes out over SMTP to a local stand-in
//! ([`smtp_standin`]) with the right shape, and still goes out when the SMTP server comes up
//! only after the first attempts failed.

mod chat_support;
#[path = "offline/smtp_standin.rs"]
mod smtp_standin;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_support::{Person, ADMIN};
use frontdesk::bootstrap::{create_site, NewSite};
use frontdesk::config::RawSettings;
use frontdesk_core::history::{HistoryJob, OfflineMessageRecord, HISTORY_QUEUE};
use frontdesk_core::id::{Id, IdGenerator};
use frontdesk_core::store::Store;
use frontdesk_testkit::env::{free_port, postgres_url, redis_url, unique_name};
use serde_json::{json, Value};
use smtp_standin::SmtpStandIn;
use support::{cluster_settings, create_postgres_database, TestServer};

const FROM: &str = "Frontdesk <frontdesk@test.example>";

#[derive(Clone, Copy, Debug)]
enum Mode {
    Embedded,
    Cluster,
}

/// One node and its site: the admin, a handle on the durable store.
struct Install {
    node: TestServer,
    db: String,
    site: Id,
    admin: Person,
    store: Arc<dyn Store>,
}

impl Install {
    async fn start(mode: Mode, smtp_port: Option<u16>) -> Install {
        let (mut raw, db) = match mode {
            Mode::Embedded => (RawSettings::default(), None),
            Mode::Cluster => {
                let db = create_postgres_database(&postgres_url()).await;
                (cluster_settings(&redis_url(), &db, &unique_name("fd")), Some(db))
            }
        };
        if let Some(port) = smtp_port {
            raw.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
            raw.smtp_from = Some(FROM.into());
        }
        let node = TestServer::start(raw).await;
        let db = db.unwrap_or_else(|| node.sqlite_url());
        let store = frontdesk_store::connect(&db).await.expect("store");
        let admin = store.agent_by_email(ADMIN).await.expect("read").expect("admin");
        let token = node.token_for(&db, ADMIN).await;
        Install { site: admin.site_id, admin: Person { id: admin.id, token }, node, db, store }
    }

    /// A second site with its own admin.
    async fn other_site(&self) -> (Id, Person) {
        let ids = IdGenerator::new(1000).expect("ids");
        let email = format!("{}@b.example", unique_name("admin"));
        let new =
            NewSite { name: "Site B", admin_email: &email, admin_name: "B admin", admin_password: "b-password-1" };
        let (site, agent) =
            create_site(self.store.as_ref(), &ids, ids.next().expect("id"), &new).await.expect("site B");
        (site.id, Person { id: agent.id, token: self.node.token_for(&self.db, &email).await })
    }

    /// A visitor of `site` who entered on `url`: id and token.
    async fn visitor(&self, site: Id, url: &str) -> Person {
        let body = json!({"siteId": site.to_string(), "url": url}).to_string();
        let (status, answer) = self.node.call("visitor.enter_site", None, &body).await;
        assert_eq!(status, 200, "enter_site: {answer}");
        let id = answer["data"]["visitorId"].as_str().expect("visitorId").parse().expect("id");
        Person { id, token: answer["data"]["visitorToken"].as_str().expect("token").to_string() }
    }

    async fn submit(&self, visitor: &Person, body: Value) -> (u16, Value) {
        self.node.call("offline_message.submit", Some(&visitor.token), &body.to_string()).await
    }

    /// `method path` with `body` as `who`: status and JSON answer.
    async fn rest(&self, method: &str, path: &str, who: &Person, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .node
            .http()
            .request(method.parse().expect("method"), self.node.url(path))
            .bearer_auth(&who.token)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
    }

    /// The site's list (`query` appended), once it holds `n` messages (the write-behind
    /// drained); at most 10 s.
    async fn list_when(&self, who: &Person, query: &str, n: usize) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.rest("GET", &format!("/api/v1/offline-messages{query}"), who, None).await;
            assert_eq!(status, 200, "list: {body}");
            let found = body["data"]["offlineMessages"].as_array().map_or(0, Vec::len);
            if found >= n {
                assert_eq!(found, n, "more messages than expected: {body}");
                return body["data"].clone();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{found} of {n} messages listed within 10 s: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.node.stop().await;
    }
}

fn ids_of(data: &Value) -> Vec<String> {
    data["offlineMessages"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn submit_lists_pages_and_marks_handled(mode: Mode) {
    let i = Install::start(mode, None).await;
    let ann = i.visitor(i.site, "https://shop.example/cart").await;
    let mut sent = Vec::new();
    for n in 1..=3 {
        let body = json!({"name": " Ann Example ", "email": "ann@visitor.example", "message": format!("question {n}")});
        let (status, answer) = i.submit(&ann, body).await;
        assert_eq!(status, 200, "submit: {answer}");
        sent.push(answer["data"]["id"].as_str().expect("id").to_owned());
    }
    let all = i.list_when(&i.admin, "", 3).await;
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(ids_of(&all), newest_first);
    let first = &all["offlineMessages"][2];
    assert_eq!(first["name"], "Ann Example", "trimmed: {first}");
    assert_eq!(first["email"], "ann@visitor.example");
    assert_eq!(first["message"], "question 1");
    assert_eq!(first["visitorId"], ann.id.to_string());
    assert_eq!(first["siteId"], i.site.to_string());
    assert_eq!(first["pageUrl"], "https://shop.example/cart", "the visitor's current page");
    assert_eq!(first["handled"], false);
    assert_eq!(all["nextCursor"], Value::Null);

    // Pages of two, newest first, no gaps.
    let page1 = i.list_when(&i.admin, "?limit=2", 2).await;
    assert_eq!(ids_of(&page1), newest_first[..2]);
    let cursor = page1["nextCursor"].as_str().expect("a cursor while more follow");
    let page2 = i.list_when(&i.admin, &format!("?limit=2&cursor={cursor}"), 1).await;
    assert_eq!(ids_of(&page2), newest_first[2..]);
    assert_eq!(page2["nextCursor"], Value::Null);

    // Any agent of the site marks one handled; the filters follow.
    let agent = Person {
        id: Id(0),
        token: {
            let ids = IdGenerator::new(1001).expect("ids");
            let email = format!("{}@test.example", unique_name("agent"));
            let a = frontdesk::bootstrap::new_agent(
                &ids,
                i.site,
                &email,
                "Agent",
                "agent-password",
                frontdesk_core::store::Role::Agent,
            )
            .await
            .expect("agent");
            i.store.insert_agent(&a).await.expect("insert agent");
            i.node.token_for(&i.db, &email).await
        },
    };
    let path = format!("/api/v1/offline-messages/{}", sent[1]);
    let (status, marked) = i.rest("PATCH", &path, &agent, Some(json!({"handled": true}))).await;
    assert_eq!(status, 200, "mark: {marked}");
    let m = &marked["data"]["offlineMessage"];
    assert_eq!((m["handled"].clone(), m["id"].clone()), (json!(true), json!(sent[1])));
    assert!(m["handledAt"].as_i64().is_some() && m["handledBy"].is_string(), "{m}");
    assert_eq!(ids_of(&i.list_when(&i.admin, "?handled=true", 1).await), [sent[1].clone()]);
    assert_eq!(ids_of(&i.list_when(&i.admin, "?handled=false", 2).await), [sent[2].clone(), sent[0].clone()]);
    let (status, one) = i.rest("GET", &path, &i.admin, None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"]["offlineMessage"]["handled"], true);
    let (status, unmarked) = i.rest("PATCH", &path, &i.admin, Some(json!({"handled": false}))).await;
    assert_eq!((status, unmarked["data"]["offlineMessage"]["handled"].clone()), (200, json!(false)), "{unmarked}");

    // Bad parameters are named.
    for (method, path, body) in [
        ("GET", "/api/v1/offline-messages?handled=maybe".to_string(), None),
        ("GET", "/api/v1/offline-messages?limit=1000".to_string(), None),
        ("GET", "/api/v1/offline-messages?status=open".to_string(), None),
        ("PATCH", path.clone(), Some(json!({"handled": "yes"}))),
        ("PATCH", path.clone(), Some(json!({}))),
    ] {
        let (status, answer) = i.rest(method, &path, &i.admin, body).await;
        assert_eq!((status, answer["error"]["kind"].clone()), (400, json!("bad_request")), "{method} {path}: {answer}");
    }
    // A visitor may not list.
    let (status, _) = i.rest("GET", "/api/v1/offline-messages", &ann, None).await;
    assert_eq!(status, 403);
    i.stop().await;
}

#[tokio::test]
async fn submit_lists_pages_and_marks_handled_embedded() {
    submit_lists_pages_and_marks_handled(Mode::Embedded).await;
}

#[tokio::test]
async fn submit_lists_pages_and_marks_handled_cluster() {
    submit_lists_pages_and_marks_handled(Mode::Cluster).await;
}

async fn another_sites_messages_are_invisible_and_untouched(mode: Mode) {
    let i = Install::start(mode, None).await;
    let (site_b, admin_b) = i.other_site().await;
    let bob = i.visitor(site_b, "https://b.example/").await;
    let (status, answer) =
        i.submit(&bob, json!({"name": "Bob", "email": "bob@b.example", "message": "B's secret question"})).await;
    assert_eq!(status, 200, "{answer}");
    let b_id = answer["data"]["id"].as_str().expect("id").to_owned();
    let before = i.list_when(&admin_b, "", 1).await;

    assert_eq!(ids_of(&i.list_when(&i.admin, "", 0).await), Vec::<String>::new(), "A lists none of B's");
    let path = format!("/api/v1/offline-messages/{b_id}");
    for (method, body) in [("GET", None), ("PATCH", Some(json!({"handled": true})))] {
        let (status, answer) = i.rest(method, &path, &i.admin, body).await;
        assert_eq!(status, 404, "{method} {path} as A: {answer}");
        assert!(!answer.to_string().contains("secret question"), "{answer}");
    }
    for (event, body) in [
        ("offline_messages.get", json!({"offlineMessageId": b_id})),
        ("offline_messages.update", json!({"offlineMessageId": b_id, "handled": true})),
    ] {
        let (status, answer) = i.node.call(event, Some(&i.admin.token), &body.to_string()).await;
        assert_eq!(status, 404, "{event} as A: {answer}");
    }
    // A visitor of A cannot post into B.
    let ann = i.visitor(i.site, "https://a.example/").await;
    let body = json!({"siteId": site_b.to_string(), "name": "Ann", "email": "ann@a.example", "message": "hi"});
    assert_eq!(i.submit(&ann, body).await.0, 403);
    assert_eq!(i.list_when(&admin_b, "", 1).await, before, "B's message is as it was");
    i.stop().await;
}

#[tokio::test]
async fn another_sites_messages_are_invisible_and_untouched_embedded() {
    another_sites_messages_are_invisible_and_untouched(Mode::Embedded).await;
}

#[tokio::test]
async fn another_sites_messages_are_invisible_and_untouched_cluster() {
    another_sites_messages_are_invisible_and_untouched(Mode::Cluster).await;
}

async fn bad_input_is_refused_and_nothing_is_stored(mode: Mode) {
    let i = Install::start(mode, None).await;
    let ann = i.visitor(i.site, "https://shop.example/").await;
    let good = json!({"name": "Ann", "email": "ann@visitor.example", "message": "Hello"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    for (field, body) in [
        ("data.email", with("email", json!("not-an-address"))),
        ("data.email", with("email", json!("Ann <ann@visitor.example>"))),
        ("data.message", with("message", json!("   "))),
        ("data.message", with("message", json!("x".repeat(5001)))),
        ("data.name", with("name", json!(""))),
        ("data.name", with("name", json!("Ann\r\nBcc: all@victim.example"))),
        ("data.url", with("url", json!("javascript:alert(1)"))),
        // Missing fields are named by the decoder: "data: missing field `email`".
        ("data: missing field `email`", json!({"name": "Ann", "message": "no e-mail"})),
    ] {
        let (status, answer) = i.submit(&ann, body.clone()).await;
        assert_eq!((status, answer["error"]["kind"].clone()), (400, json!("bad_request")), "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{field} named in {message:?}");
    }
    // Jobs apply in order: once the good one is listed, any bad one would be too.
    let (status, answer) = i.submit(&ann, with("url", json!("https://shop.example/contact"))).await;
    assert_eq!(status, 200, "{answer}");
    let listed = i.list_when(&i.admin, "", 1).await;
    assert_eq!(ids_of(&listed), [answer["data"]["id"].as_str().expect("id").to_owned()]);
    assert_eq!(listed["offlineMessages"][0]["pageUrl"], "https://shop.example/contact", "the URL sent wins");
    i.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored_embedded() {
    bad_input_is_refused_and_nothing_is_stored(Mode::Embedded).await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored_cluster() {
    bad_input_is_refused_and_nothing_is_stored(Mode::Cluster).await;
}

async fn a_replayed_job_leaves_one_row_and_keeps_the_handled_mark(mode: Mode) {
    let i = Install::start(mode, None).await;
    let ann = i.visitor(i.site, "https://shop.example/").await;
    let (status, answer) =
        i.submit(&ann, json!({"name": "Ann", "email": "ann@visitor.example", "message": "Once only"})).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["data"]["id"].as_str().expect("id").to_owned();
    let listed = i.list_when(&i.admin, "", 1).await;
    let (status, _) =
        i.rest("PATCH", &format!("/api/v1/offline-messages/{id}"), &i.admin, Some(json!({"handled": true}))).await;
    assert_eq!(status, 200);
    let stored = listed["offlineMessages"][0].clone();

    // The same job, delivered twice more (as at-least-once delivery may).
    let record = OfflineMessageRecord {
        id: id.parse().expect("id"),
        site_id: i.site,
        visitor_id: ann.id,
        name: stored["name"].as_str().expect("name").into(),
        email: stored["email"].as_str().expect("email").into(),
        message: stored["message"].as_str().expect("message").into(),
        page_url: stored["pageUrl"].as_str().map(str::to_owned),
        created_at: stored["createdAt"].as_i64().expect("createdAt"),
    };
    let payload = Bytes::from(HistoryJob::offline_message_payload(record).expect("encode"));
    let bus = &i.node.backends.bus;
    bus.publish_batch(HISTORY_QUEUE, vec![payload.clone(), payload]).await.expect("publish");
    let start = Instant::now();
    while bus.backlog(HISTORY_QUEUE).await.expect("backlog") > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the replays were not applied within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = i.list_when(&i.admin, "", 1).await;
    assert_eq!(ids_of(&after), [id]);
    assert_eq!(after["offlineMessages"][0]["handled"], true, "a replay never clears the mark: {after}");
    i.stop().await;
}

#[tokio::test]
async fn a_replayed_job_leaves_one_row_and_keeps_the_handled_mark_embedded() {
    a_replayed_job_leaves_one_row_and_keeps_the_handled_mark(Mode::Embedded).await;
}

#[tokio::test]
async fn a_replayed_job_leaves_one_row_and_keeps_the_handled_mark_cluster() {
    a_replayed_job_leaves_one_row_and_keeps_the_handled_mark(Mode::Cluster).await;
}

async fn erasing_a_visitor_removes_their_offline_messages(mode: Mode) {
    let i = Install::start(mode, None).await;
    let (ann, bob) =
        (i.visitor(i.site, "https://shop.example/").await, i.visitor(i.site, "https://shop.example/").await);
    for (who, text) in [(&ann, "from Ann"), (&ann, "Ann again"), (&bob, "from Bob")] {
        let (status, answer) = i.submit(who, json!({"name": "V", "email": "v@visitor.example", "message": text})).await;
        assert_eq!(status, 200, "{answer}");
    }
    i.list_when(&i.admin, "", 3).await;
    let (status, erased) =
        i.rest("POST", &format!("/api/v1/visitors/{}/erase", ann.id), &i.admin, Some(json!({}))).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["data"]["offlineMessages"], 2, "{erased}");
    let left = i.list_when(&i.admin, "", 1).await;
    assert_eq!(left["offlineMessages"][0]["message"], "from Bob");
    i.stop().await;
}

#[tokio::test]
async fn erasing_a_visitor_removes_their_offline_messages_embedded() {
    erasing_a_visitor_removes_their_offline_messages(Mode::Embedded).await;
}

#[tokio::test]
async fn erasing_a_visitor_removes_their_offline_messages_cluster() {
    erasing_a_visitor_removes_their_offline_messages(Mode::Cluster).await;
}

/// The e-mail of the stand-in's `n`-th message, checked for the shape every offline-message
/// e-mail has.
fn assert_offline_email(mail: &smtp_standin::Received, to: &[&str], message: &str) {
    assert_eq!(mail.mail_from, "frontdesk@test.example", "envelope sender: {mail:?}");
    let mut rcpt = mail.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(rcpt, to, "envelope recipients");
    assert_eq!(mail.header("From").as_deref(), Some(FROM));
    let header_to = mail.header("To").expect("To");
    for address in to {
        assert!(header_to.contains(address), "To: {header_to}");
    }
    assert_eq!(mail.header("Reply-To").as_deref(), Some("\"Ann Example\" <ann@visitor.example>"));
    let subject = mail.header("Subject").expect("Subject");
    assert!(subject.contains("Offline message from Ann Example"), "Subject: {subject}");
    assert!(mail.header("Message-ID").is_some_and(|id| id.starts_with("<offline-")), "{mail:?}");
    let body = mail.body();
    assert!(body.contains(message), "body: {body}");
    assert!(body.contains("https://shop.example/cart"), "the page: {body}");
}

async fn the_email_goes_to_the_admins_or_the_configured_addresses(mode: Mode) {
    let smtp = SmtpStandIn::start(0).await;
    let i = Install::start(mode, Some(smtp.port)).await;
    let ann = i.visitor(i.site, "https://shop.example/cart").await;
    let body = json!({"name": "Ann Example", "email": "ann@visitor.example", "message": "Do you ship to Norway?"});
    let (status, answer) = i.submit(&ann, body).await;
    assert_eq!(status, 200, "{answer}");
    let got = smtp.wait_for(1, Duration::from_secs(15)).await;
    assert_offline_email(&got[0], &[ADMIN], "Do you ship to Norway?");

    // A site setting names the recipients instead.
    let path = format!("/api/v1/sites/{}/settings", i.site);
    let emails = json!({"offlineMessageEmails": ["support@shop.example", "sales@shop.example"]});
    let (status, answer) = i.rest("PATCH", &path, &i.admin, Some(emails)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = i.rest("PATCH", &path, &i.admin, Some(json!({"offlineMessageEmails": ["nope"]}))).await;
    assert_eq!(status, 400, "{answer}");
    let body = json!({"name": "Ann Example", "email": "ann@visitor.example", "message": "And to Iceland?"});
    assert_eq!(i.submit(&ann, body).await.0, 200);
    let got = smtp.wait_for(2, Duration::from_secs(15)).await;
    assert_offline_email(&got[1], &["sales@shop.example", "support@shop.example"], "And to Iceland?");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.received().len(), 2, "each e-mail once");
    i.stop().await;
}

#[tokio::test]
async fn the_email_goes_to_the_admins_or_the_configured_addresses_embedded() {
    the_email_goes_to_the_admins_or_the_configured_addresses(Mode::Embedded).await;
}

#[tokio::test]
async fn the_email_goes_to_the_admins_or_the_configured_addresses_cluster() {
    the_email_goes_to_the_admins_or_the_configured_addresses(Mode::Cluster).await;
}

async fn smtp_down_then_up_the_email_is_retried_and_delivered_once(mode: Mode) {
    // Nothing listens on the port yet: the first attempts are refused.
    let port = free_port();
    let i = Install::start(mode, Some(port)).await;
    let ann = i.visitor(i.site, "https://shop.example/cart").await;
    let body = json!({"name": "Ann Example", "email": "ann@visitor.example", "message": "Anyone there?"});
    let (status, answer) = i.submit(&ann, body).await;
    assert_eq!(status, 200, "the visitor's message is accepted while SMTP is down: {answer}");
    // The message is kept meanwhile, and the e-mail job waits on the bus.
    i.list_when(&i.admin, "", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bus = &i.node.backends.bus;
    assert_eq!(bus.backlog(frontdesk_core::mail::EMAIL_QUEUE).await.expect("backlog"), 1, "the job waits to retry");
    assert!(bus.dead_letters(frontdesk_core::mail::EMAIL_QUEUE, 10).await.expect("dead letters").is_empty());

    let smtp = SmtpStandIn::start(port).await;
    // Backoff 0.5 s, 1 s, 2 s, 4 s … from the first failure: the next try is within ~8 s.
    let got = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_offline_email(&got[0], &[ADMIN], "Anyone there?");
    let start = Instant::now();
    while bus.backlog(frontdesk_core::mail::EMAIL_QUEUE).await.expect("backlog") > 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "the delivered job is acked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.received().len(), 1, "delivered once");
    i.stop().await;
}

#[tokio::test]
async fn smtp_down_then_up_the_email_is_retried_and_delivered_once_embedded() {
    smtp_down_then_up_the_email_is_retried_and_delivered_once(Mode::Embedded).await;
}

#[tokio::test]
async fn smtp_down_then_up_the_email_is_retried_and_delivered_once_cluster() {
    smtp_down_then_up_the_email_is_retried_and_delivered_once(Mode::Cluster).await;
}
