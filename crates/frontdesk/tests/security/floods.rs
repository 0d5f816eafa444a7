//! Floods: a visitor's messages are limited (a burst, then a steady rate) with one budget
//! across nodes; a refused message is answered `rate_limited` with a retry hint and is not
//! stored; a site flooding the server does not slow another site's chats beyond a loose
//! bound (a correctness check, not a benchmark).

use std::time::{Duration, Instant};

use frontdesk::config::RawSettings;
use frontdesk_testkit::env::{postgres_url, redis_url, unique_name};
use serde_json::{json, Value};

use crate::support::{cluster_settings, create_postgres_database, TestServer};
use crate::{ask, call, enter, first_site, handshake, kind, login_ok, second_site, settings, ADMIN, ADMIN_PASSWORD};

const BURST: u32 = 5;

fn limited(raw: &mut RawSettings) {
    raw.visitor_message_burst = Some(BURST);
    raw.visitor_message_rate = Some(1);
}

/// The wait a `rate_limited` answer asks for ("… retry in N ms").
fn retry_hint(answer: &Value) -> Duration {
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    let ms = message
        .split("retry in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no retry hint in {answer}"));
    Duration::from_millis(ms)
}

/// A visitor opens a chat (one message) and floods it, spread over `nodes`: the budget is
/// one for all nodes, refusals say when to retry, and refused messages leave no trace.
async fn one_budget_across_nodes(nodes: &[TestServer]) {
    let (admin, _, _) = login_ok(&nodes[0], ADMIN, ADMIN_PASSWORD).await;
    let site = first_site(&nodes[0], &admin).await;
    let (_, visitor) = enter(&nodes[0], &site).await;
    let opened = call(&nodes[0], "chat.request", Some(&visitor), json!({"message": "hello"})).await;
    assert_eq!(opened.0, 200, "{}", opened.1);
    let chat = opened.1["data"]["chatId"].as_str().expect("chatId").to_string();

    let started = Instant::now();
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for i in 0..12 {
        let node = &nodes[i % nodes.len()];
        let body = json!({"chatId": chat, "content": format!("flood {i}")});
        let answer = call(node, "chat.visitor_send_message", Some(&visitor), body).await;
        match answer.0 {
            200 => accepted.push(i),
            _ => {
                assert_eq!(kind(&answer), (429, "rate_limited".to_string()), "{}", answer.1);
                refused.push(answer.1);
            }
        }
    }
    let elapsed = started.elapsed();
    // chat.request took one of the burst; the steady rate (1/s) adds one per second.
    let most = (BURST as usize - 1) + elapsed.as_secs() as usize + 1;
    assert!(
        accepted.len() >= BURST as usize - 1 && accepted.len() <= most,
        "{} accepted in {elapsed:?} over {} node(s); one budget allows {}..={most}",
        accepted.len(),
        nodes.len(),
        BURST - 1
    );
    assert!(!refused.is_empty());
    let wait = retry_hint(&refused[refused.len() - 1]);
    assert!(wait <= Duration::from_secs(1), "the hint is at most one interval: {wait:?}");

    // After the hinted wait, the next message goes through, right after the accepted ones:
    // nothing of the refused ones was stored.
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    let node = &nodes[nodes.len() - 1];
    let after =
        call(node, "chat.visitor_send_message", Some(&visitor), json!({"chatId": chat, "content": "after"})).await;
    assert_eq!(after.0, 200, "{}", after.1);
    let stored: Vec<String> = after.1["messages"]
        .as_array()
        .expect("messages since offset 0")
        .iter()
        .filter(|m| m["messageType"] == 1)
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut expected = vec!["hello".to_string()];
    expected.extend(accepted.iter().map(|i| format!("flood {i}")));
    expected.push("after".into());
    assert_eq!(stored, expected, "exactly the accepted messages, in order");
    assert_eq!(after.1["visitorDataOffset"], json!(expected.len()));
}

#[tokio::test]
async fn a_visitors_message_flood_is_refused_with_a_retry_hint_and_nothing_stored() {
    let server = TestServer::start(settings(limited)).await;
    one_budget_across_nodes(std::slice::from_ref(&server)).await;

    // Over a socket too, and the limit is the visitor's: another visitor is not affected.
    let (admin, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let site = first_site(&server, &admin).await;
    let (_, visitor) = enter(&server, &site).await;
    let mut ws = handshake(server.addr, Some(&visitor), None, None).await.expect("socket");
    let opened = ask(&mut ws, "open", "chat.request", json!({"message": "hi"})).await;
    let chat = opened["data"]["chatId"].as_str().expect("chatId").to_string();
    let mut kinds = Vec::new();
    for i in 0..BURST + 2 {
        let answer =
            ask(&mut ws, &format!("m{i}"), "chat.visitor_send_message", json!({"chatId": chat, "content": "x"})).await;
        kinds.push(answer["error"]["kind"].as_str().unwrap_or("ok").to_string());
    }
    assert!(kinds.iter().any(|k| k == "rate_limited"), "{kinds:?}");
    let (_, other) = enter(&server, &site).await;
    assert_eq!(call(&server, "chat.request", Some(&other), json!({"message": "me too"})).await.0, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_budget_is_one_across_the_nodes_of_a_cluster() {
    let db = create_postgres_database(&postgres_url()).await;
    let prefix = unique_name("fd");
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut raw = cluster_settings(&redis_url(), &db, &prefix);
        limited(&mut raw);
        nodes.push(TestServer::start(raw).await);
    }
    one_budget_across_nodes(&nodes).await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_site_does_not_slow_another_site() {
    // The documented defaults: a burst of 20, then 5 messages per second.
    let server = TestServer::start(settings(|raw| {
        raw.visitor_message_burst = Some(20);
        raw.visitor_message_rate = Some(5);
    }))
    .await;
    let (admin, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let site_a = first_site(&server, &admin).await;
    let (site_b, _) = second_site(&server, "admin@b.example").await;
    let (_, quiet) = enter(&server, &site_b).await;
    let opened = call(&server, "chat.request", Some(&quiet), json!({"message": "hello"})).await;
    let quiet_chat = opened.1["data"]["chatId"].as_str().expect("chatId").to_string();

    // Site A: 8 visitors, each sending as fast as its answers come, for 3 s.
    let flood_for = Duration::from_secs(3);
    let mut flooders = Vec::new();
    for n in 0..8 {
        let (_, visitor) = enter(&server, &site_a).await;
        let opened = call(&server, "chat.request", Some(&visitor), json!({"message": "flood"})).await;
        let chat = opened.1["data"]["chatId"].as_str().expect("chatId").to_string();
        let (url, http) = (server.url("/api/v1/chat.visitor_send_message"), server.http().clone());
        flooders.push(tokio::spawn(async move {
            let (started, mut answers) = (Instant::now(), (0u32, 0u32));
            for i in 0..5_000 {
                if started.elapsed() > flood_for {
                    break;
                }
                let body = json!({"chatId": chat, "content": format!("flood {n}/{i}")}).to_string();
                let req = http.post(&url).bearer_auth(&visitor).header("content-type", "application/json").body(body);
                match req.timeout(Duration::from_secs(10)).send().await.map(|r| r.status().as_u16()) {
                    Ok(200) => answers.0 += 1,
                    Ok(429) => answers.1 += 1,
                    other => panic!("a flood message answered {other:?}"),
                }
            }
            answers
        }));
    }
    // Meanwhile site B's visitor chats at a human pace; every message must go through, soon.
    let mut latencies = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let body = json!({"chatId": quiet_chat, "content": format!("quiet {i}")});
        let answer = call(&server, "chat.visitor_send_message", Some(&quiet), body).await;
        latencies.push(started.elapsed());
        assert_eq!(answer.0, 200, "site B's message {i}: {}", answer.1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (mut accepted, mut refused) = (0, 0);
    for f in flooders {
        let (a, r) = f.await.expect("flooder");
        accepted += a;
        refused += r;
    }
    latencies.sort();
    let worst = latencies[latencies.len() - 1];
    eprintln!("flood: {accepted} accepted, {refused} refused; site B's latencies {latencies:?}");
    assert!(refused > 0, "the flood met the limit: {accepted} accepted, {refused} refused");
    assert!(worst < Duration::from_secs(2), "site B's slowest message took {worst:?} during site A's flood");
    server.stop().await;
}
