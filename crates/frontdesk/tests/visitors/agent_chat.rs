//! `agent_chat.*` between agents of one site (SPEC §5.4): the push, paging, the limits,
//! trimming to the newest 1,000 messages, and no reach into another site.

use frontdesk::config::RawSettings;
use frontdesk_core::store::Role;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::TestServer;

#[tokio::test]
async fn agents_chat_with_each_other_with_a_push_and_paging() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site = site_of(&db, ADMIN).await;
    let admin = server.token_for(&db, ADMIN).await;
    let admin_id = admin_of(&db).await;
    let (bob_id, bob) = add_agent(&server, &db, site, "bob@test.example", Role::Agent).await;
    let mut bob_ws = agent_socket(&server, &bob).await;

    let (status, sent) =
        call(&server, "agent_chat.send_message", Some(&admin), json!({"toAgentId": bob_id, "content": "  hi Bob  "}))
            .await;
    assert_eq!(status, 200, "{sent}");
    let message = &sent["data"]["message"];
    assert_eq!(message["seq"], 1);
    assert_eq!(message["content"], "hi Bob");
    assert_eq!(message["fromAgentId"], admin_id.to_string());
    assert_eq!(message["toAgentId"], bob_id.to_string());
    assert!(message["sendTime"].as_str().expect("time").ends_with('Z'));
    let pushed = next_push(&mut bob_ws, "agent_chat.message").await;
    assert_eq!(&pushed, message);

    for i in 2..=5 {
        let (from, to) = if i % 2 == 0 { (&bob, admin_id) } else { (&admin, bob_id) };
        let (status, body) =
            call(&server, "agent_chat.send_message", Some(from), json!({"toAgentId": to, "content": format!("m{i}")}))
                .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["message"]["seq"], i);
    }

    let (status, page) =
        call(&server, "agent_chat.get_messages", Some(&bob), json!({"withAgentId": admin_id, "limit": 2})).await;
    assert_eq!(status, 200, "{page}");
    let seqs = |page: &Value| -> Vec<i64> {
        page["data"]["messages"].as_array().expect("messages").iter().map(|m| m["seq"].as_i64().expect("seq")).collect()
    };
    assert_eq!(seqs(&page), vec![4, 5], "the newest page, oldest first");
    assert_eq!(page["data"]["hasMore"], true);
    let (_, page) =
        call(&server, "agent_chat.get_messages", Some(&admin), json!({"withAgentId": bob_id, "before": 4, "limit": 2}))
            .await;
    assert_eq!(seqs(&page), vec![2, 3]);
    assert_eq!(page["data"]["hasMore"], true);
    let (_, page) =
        call(&server, "agent_chat.get_messages", Some(&admin), json!({"withAgentId": bob_id, "before": 2, "limit": 2}))
            .await;
    assert_eq!(seqs(&page), vec![1]);
    assert_eq!(page["data"]["hasMore"], false);
    assert_eq!(page["data"]["messages"][0]["content"], "hi Bob");

    let send = |body: Value| call(&server, "agent_chat.send_message", Some(&admin), body);
    assert_eq!(kind(&send(json!({"toAgentId": bob_id, "content": "   "})).await), (400, "bad_request"));
    assert_eq!(kind(&send(json!({"toAgentId": bob_id, "content": "x".repeat(4001)})).await), (400, "bad_request"));
    assert_eq!(send(json!({"toAgentId": bob_id, "content": "é".repeat(4000)})).await.0, 200, "4000 characters fit");
    assert_eq!(kind(&send(json!({"toAgentId": admin_id, "content": "me"})).await), (400, "bad_request"));
    assert_eq!(kind(&send(json!({"toAgentId": "777", "content": "who"})).await), (404, "not_found"));
    assert_eq!(kind(&send(json!({"content": "to nobody"})).await), (400, "bad_request"));
    let get = |body: Value| call(&server, "agent_chat.get_messages", Some(&admin), body);
    assert_eq!(kind(&get(json!({"withAgentId": bob_id, "limit": 101})).await), (400, "bad_request"));
    assert_eq!(kind(&get(json!({"withAgentId": bob_id, "before": 0})).await), (400, "bad_request"));
    let (_, visitor) = enter(&server, site).await;
    let by_visitor =
        call(&server, "agent_chat.send_message", Some(&visitor), json!({"toAgentId": bob_id, "content": "hi"})).await;
    assert_eq!(kind(&by_visitor), (403, "forbidden"));
    server.stop().await;
}

#[tokio::test]
async fn no_visitor_or_agent_reaches_across_sites() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site_a = site_of(&db, ADMIN).await;
    let admin_a = server.token_for(&db, ADMIN).await;
    let admin_a_id = admin_of(&db).await;
    let (bob_id, bob) = add_agent(&server, &db, site_a, "bob@test.example", Role::Agent).await;
    let (site_b, admin_b_id, admin_b) = second_site(&server, &db, "b-admin@test.example").await;
    let (visitor_a, token_a) = enter(&server, site_a).await;
    let (visitor_b, _) = enter(&server, site_b).await;

    // Site B's admin cannot see, ban or message site A's people.
    let ids_of = |list: Vec<Value>| list.iter().map(|v| v["id"].as_str().expect("id").to_string()).collect::<Vec<_>>();
    assert_eq!(ids_of(listed(&server, &admin_b).await), vec![visitor_b.clone()]);
    assert_eq!(ids_of(listed(&server, &admin_a).await), vec![visitor_a.clone()]);
    let ban = call(&server, "visitor.ban", Some(&admin_b), json!({"visitorId": visitor_a, "banned": true})).await;
    assert_eq!(kind(&ban), (404, "not_found"));
    let visit = call(&server, "visitor.page_visit", Some(&token_a), json!({"url": "https://shop.example/after"})).await;
    assert_eq!(visit.0, 200, "visitor A was not banned by site B: {}", visit.1);

    let send =
        call(&server, "agent_chat.send_message", Some(&admin_b), json!({"toAgentId": bob_id, "content": "psst"})).await;
    assert_eq!(kind(&send), (404, "not_found"));
    let read = call(&server, "agent_chat.get_messages", Some(&admin_b), json!({"withAgentId": admin_a_id})).await;
    assert_eq!(kind(&read), (404, "not_found"));
    let read = call(&server, "agent_chat.get_messages", Some(&bob), json!({"withAgentId": admin_b_id})).await;
    assert_eq!(kind(&read), (404, "not_found"));
    // Nothing was written: A's pair with B's admin is empty, and Bob's first message is seq 1.
    let (_, first) =
        call(&server, "agent_chat.send_message", Some(&bob), json!({"toAgentId": admin_a_id, "content": "hi"})).await;
    assert_eq!(first["data"]["message"]["seq"], 1);
    let (_, page) = call(&server, "agent_chat.get_messages", Some(&admin_a), json!({"withAgentId": bob_id})).await;
    assert_eq!(page["data"]["messages"].as_array().expect("messages").len(), 1);

    // A visitor of site A cannot act as an agent of either site.
    let list = call(&server, "visitor.list", Some(&token_a), json!({})).await;
    assert_eq!(kind(&list), (403, "forbidden"));
    let ban = call(&server, "visitor.ban", Some(&token_a), json!({"visitorId": visitor_b, "banned": true})).await;
    assert_eq!(kind(&ban), (403, "forbidden"));
    server.stop().await;
}

#[tokio::test]
async fn a_pair_keeps_its_newest_thousand_messages() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site = site_of(&db, ADMIN).await;
    let admin = server.token_for(&db, ADMIN).await;
    let admin_id = admin_of(&db).await;
    let (bob_id, bob) = add_agent(&server, &db, site, "bob@test.example", Role::Agent).await;
    for i in 1..=1003 {
        let body = json!({"toAgentId": bob_id, "content": format!("m{i}")}).to_string();
        let (status, answer) = server.call("agent_chat.send_message", Some(&admin), &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, newest) =
        call(&server, "agent_chat.get_messages", Some(&bob), json!({"withAgentId": admin_id, "limit": 1})).await;
    assert_eq!(newest["data"]["messages"][0]["seq"], 1003);
    assert_eq!(newest["data"]["messages"][0]["content"], "m1003");
    let (_, oldest) = call(
        &server,
        "agent_chat.get_messages",
        Some(&bob),
        json!({"withAgentId": admin_id, "before": 6, "limit": 100}),
    )
    .await;
    let seqs: Vec<i64> =
        oldest["data"]["messages"].as_array().expect("messages").iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(seqs, vec![4, 5], "seqs 1 to 3 were trimmed");
    assert_eq!(oldest["data"]["hasMore"], false);
    server.stop().await;
}
