//! Chats through the real server in cluster mode (SPEC §4, §5.4, §5.6, §6): a whole
//! conversation with its pushes, offsets and `seq`; idempotent sends; queues and
//! positions; dispatch racing on two nodes; transfer, join and monitor; pushes across
//! nodes; heartbeats; and every refusal.

mod chat_support;
mod support;

use std::time::Duration;

use chat_support::*;
use frontdesk_core::store::Role;
use serde_json::{json, Value};

fn messages(answer: &Value) -> Vec<Value> {
    answer["messages"].as_array().cloned().unwrap_or_default()
}

fn seqs(answer: &Value) -> Vec<i64> {
    messages(answer).iter().map(|m| m["seq"].as_i64().expect("seq")).collect()
}

fn offsets(answer: &Value) -> (i64, i64) {
    (answer["visitorDataOffset"].as_i64().expect("v"), answer["agentDataOffset"].as_i64().expect("a"))
}

#[tokio::test]
async fn a_whole_conversation_with_its_pushes_offsets_and_seq_embedded() {
    a_whole_conversation_with_its_pushes_offsets_and_seq(Env::embedded().await).await
}

#[tokio::test]
async fn a_whole_conversation_with_its_pushes_offsets_and_seq_on_redis() {
    a_whole_conversation_with_its_pushes_offsets_and_seq(Env::cluster(1).await).await
}

async fn a_whole_conversation_with_its_pushes_offsets_and_seq(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 2).await;
    let visitor = env.visitor().await;
    let mut ann_ws = socket(node, &ann).await;
    let mut visitor_ws = socket(node, &visitor).await;

    // Request with a first message: created, routed to the only agent, offered.
    let answer = ok(node, "chat.request", &visitor, json!({"message": "Hello?", "name": "Vic"}), None).await;
    let chat = chat_id(&answer["data"]);
    assert_eq!(answer["data"]["status"], "offered", "{answer}");
    assert_eq!(offsets(&answer), (1, 0));
    let first = &messages(&answer)[0];
    assert_eq!(
        (first["seq"].as_i64(), first["dataOffset"].as_i64(), first["messageType"].as_i64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!((first["content"].as_str(), first["senderName"].as_str()), (Some("Hello?"), Some("Vic")));
    assert!(first["sig"].as_str().is_some_and(|s| s.len() > 20), "messages carry sig: {first}");
    assert!(first["sendTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    let offered = next_push(&mut ann_ws, "chat.offered").await;
    assert_eq!(offered["chatId"], chat.as_str());
    assert_eq!(env.active_chats(ann.id).await, 1, "an offer holds capacity");

    // Accept: the agent sees everything so far; the visitor hears the chat started.
    let accepted = ok(node, "chat.agent_accept", &ann, json!({"chatId": chat}), None).await;
    assert_eq!(accepted["data"]["status"], "active");
    assert_eq!(seqs(&accepted), vec![1, 2]);
    assert_eq!(messages(&accepted)[1]["content"], "Ann joined the chat");
    assert_eq!(messages(&accepted)[1]["messageType"], 4);
    assert_eq!(offsets(&accepted), (1, 1));
    let started = next_push(&mut visitor_ws, "chat.started").await;
    assert_eq!((started["chatId"].as_str(), started["agentName"].as_str()), (Some(chat.as_str()), Some("Ann")));

    // Agent writes: seq 3, agent side 2; the visitor gets the push with the offsets.
    let sent = ok(
        node,
        "chat.agent_send_message",
        &ann,
        json!({"chatId": chat, "content": "  Hi, how can I help?  ", "clientMessageId": "a-1"}),
        Some((1, 1)),
    )
    .await;
    assert_eq!(seqs(&sent), vec![3], "only what the agent lacks");
    assert_eq!(sent["data"]["message"]["content"], "Hi, how can I help?", "content is trimmed");
    assert_eq!(offsets(&sent), (1, 2));
    let pushed = loop {
        let m = next_push(&mut visitor_ws, "chat.message").await;
        if m["messageType"] == 2 {
            break m;
        }
    };
    assert_eq!((pushed["seq"].as_i64(), pushed["dataOffset"].as_i64()), (Some(3), Some(2)));
    assert_eq!((pushed["visitorDataOffset"].as_i64(), pushed["agentDataOffset"].as_i64()), (Some(1), Some(2)));
    assert!(pushed["sig"].is_string());

    // Visitor writes back: seq 4, visitor side 2; it receives what it lacked, by seq.
    let back =
        ok(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "My order"}), Some((1, 0)))
            .await;
    assert_eq!(seqs(&back), vec![2, 3, 4]);
    assert_eq!(offsets(&back), (2, 2));
    let to_agent = loop {
        // The agent also got the system message of its own acceptance before.
        let m = next_push(&mut ann_ws, "chat.message").await;
        if m["messageType"] == 1 {
            break m;
        }
    };
    assert_eq!((to_agent["content"].as_str(), to_agent["dataOffset"].as_i64()), (Some("My order"), Some(2)));

    // A heartbeat with nothing new carries nothing; unread counts from the read cursor.
    let hb = ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat, "seenSeq": 3}), Some((2, 2))).await;
    assert_eq!(seqs(&hb), Vec::<i64>::new());
    assert_eq!(hb["data"]["unread"], 1);
    let seen = next_push(&mut ann_ws, "chat.seen").await;
    assert_eq!((seen["by"].as_str(), seen["seq"].as_i64()), (Some("visitor"), Some(3)));

    // End: system message, push, capacity released, no more messages.
    let ended = ok(node, "chat.end", &ann, json!({"chatId": chat}), Some((2, 2))).await;
    assert_eq!(ended["data"]["status"], "ended");
    assert_eq!(messages(&ended)[0]["content"], "Ann ended the chat");
    let end_push = next_push(&mut visitor_ws, "chat.ended").await;
    assert_eq!(end_push["chatId"], chat.as_str());
    assert_eq!(env.active_chats(ann.id).await, 0);
    let late =
        call(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "hello?"}), None).await;
    assert_eq!(kind(&late), (409, "conflict".to_string()));

    // Rating and wrap-up after the end.
    ok(node, "chat.post_chat", &visitor, json!({"chatId": chat, "rating": 5, "comment": "great"}), None).await;
    let wrap =
        ok(node, "chat.wrap_up", &ann, json!({"chatId": chat, "notes": "order issue", "tags": ["orders"]}), None).await;
    assert_eq!(wrap["data"]["tags"], json!(["orders"]));
    env.stop().await;
}

#[tokio::test]
async fn the_same_client_message_id_twice_stores_one_message_and_answers_alike_embedded() {
    the_same_client_message_id_twice_stores_one_message_and_answers_alike(Env::embedded().await).await
}

#[tokio::test]
async fn the_same_client_message_id_twice_stores_one_message_and_answers_alike_on_redis() {
    the_same_client_message_id_twice_stores_one_message_and_answers_alike(Env::cluster(1).await).await
}

async fn the_same_client_message_id_twice_stores_one_message_and_answers_alike(env: Env) {
    let node = env.node();
    let visitor = env.visitor().await;
    let chat = chat_id(&request(node, &visitor, json!({})).await);
    let body = json!({"chatId": chat, "content": "once", "clientMessageId": "c-42"});
    let a = ok(node, "chat.visitor_send_message", &visitor, body.clone(), Some((0, 0))).await;
    let b = ok(node, "chat.visitor_send_message", &visitor, body, Some((0, 0))).await;
    assert_eq!(a["data"]["message"], b["data"]["message"], "both calls get the same message");
    assert_eq!(a, b, "and the whole answers are alike");
    assert_eq!(a["messages"], b["messages"]);
    assert_eq!(offsets(&b), (1, 0));
    let all = ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat}), None).await;
    assert_eq!(seqs(&all), vec![1]);
    env.stop().await;
}

#[tokio::test]
async fn a_client_ahead_of_the_server_is_told_to_rebuild_with_the_servers_offsets_embedded() {
    a_client_ahead_of_the_server_is_told_to_rebuild_with_the_servers_offsets(Env::embedded().await).await
}

#[tokio::test]
async fn a_client_ahead_of_the_server_is_told_to_rebuild_with_the_servers_offsets_on_redis() {
    a_client_ahead_of_the_server_is_told_to_rebuild_with_the_servers_offsets(Env::cluster(1).await).await
}

async fn a_client_ahead_of_the_server_is_told_to_rebuild_with_the_servers_offsets(env: Env) {
    let node = env.node();
    let visitor = env.visitor().await;
    let chat = chat_id(&request(node, &visitor, json!({"message": "one"})).await);
    let ahead =
        ok_code(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "x"}), (5, 0)).await;
    assert_eq!((ahead["code"].as_i64(), offsets(&ahead)), (Some(1), (1, 0)));
    assert!(ahead["messages"].is_null(), "a rebuild answer runs nothing: {ahead}");
    // Nothing was appended.
    let hb = ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat}), None).await;
    assert_eq!(seqs(&hb), vec![1]);
    env.stop().await;
}

async fn ok_code(node: &support::TestServer, event: &str, who: &Person, body: Value, offs: (i64, i64)) -> Value {
    let (status, answer) = call(node, event, who, body, Some(offs)).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test]
async fn visitors_wait_in_a_queue_and_hear_their_position_embedded() {
    visitors_wait_in_a_queue_and_hear_their_position(Env::embedded().await).await
}

#[tokio::test]
async fn visitors_wait_in_a_queue_and_hear_their_position_on_redis() {
    visitors_wait_in_a_queue_and_hear_their_position(Env::cluster(1).await).await
}

async fn visitors_wait_in_a_queue_and_hear_their_position(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 1).await;
    let mut ann_ws = socket(node, &ann).await;
    let (v1, v2, v3) = (env.visitor().await, env.visitor().await, env.visitor().await);
    let (mut ws2, mut ws3) = (socket(node, &v2).await, socket(node, &v3).await);

    let c1 = request(node, &v1, json!({"message": "first"})).await;
    assert_eq!(c1["status"], "offered");
    let c2 = request(node, &v2, json!({"message": "second"})).await;
    assert_eq!((c2["status"].as_str(), c2["queuePosition"].as_i64()), (Some("queued"), Some(1)));
    assert_eq!(next_push(&mut ws2, "queue.updated").await["position"], 1);
    let c3 = request(node, &v3, json!({"message": "third"})).await;
    assert_eq!((c3["status"].as_str(), c3["queuePosition"].as_i64()), (Some("queued"), Some(2)));
    assert_eq!(next_push(&mut ws3, "queue.updated").await["position"], 2);
    // A second request of a visitor returns its open chat.
    let again = request(node, &v2, json!({})).await;
    assert_eq!(again["chatId"], c2["chatId"]);

    assert_eq!(next_push(&mut ann_ws, "chat.offered").await["chatId"], c1["chatId"]);
    ok(node, "chat.agent_accept", &ann, json!({"chatId": chat_id(&c1)}), None).await;
    ok(node, "chat.end", &ann, json!({"chatId": chat_id(&c1)}), None).await;
    // Capacity came back: the head of the queue is offered, the next moves up.
    assert_eq!(next_push(&mut ann_ws, "chat.offered").await["chatId"], c2["chatId"]);
    assert_eq!(next_push(&mut ws3, "queue.updated").await["position"], 1);
    assert_eq!(env.active_chats(ann.id).await, 1);
    env.stop().await;
}

#[tokio::test]
async fn two_nodes_never_give_one_chat_to_two_agents_nor_an_agent_too_many() {
    let env = Env::cluster(2).await;
    let mut agents = Vec::new();
    for name in ["A1", "A2", "A3"] {
        let a = env.agent(name, Role::Agent).await;
        env.online(a.id, 2).await;
        agents.push(a);
    }
    let mut visitors = Vec::new();
    for _ in 0..12 {
        visitors.push(env.visitor().await);
    }
    let calls = visitors.iter().enumerate().map(|(i, v)| {
        let node = &env.nodes[i % 2];
        async move { request(node, v, json!({"message": "hi"})).await }
    });
    let answers = futures::future::join_all(calls).await;
    let mut offered_to = Vec::new();
    for a in &answers {
        let meta = env.state.hgetall(&format!("fd:{{c:{}}}:meta", chat_id(a))).await.expect("meta");
        let field = |n: &str| meta.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        if field("status").as_deref() == Some("offered") {
            offered_to.push(field("offeredTo").expect("offeredTo"));
        }
    }
    assert_eq!(offered_to.len(), 6, "3 agents × capacity 2");
    for a in &agents {
        let active = env.active_chats(a.id).await;
        assert_eq!(active, 2, "agent {} at capacity, never above", a.id);
        assert_eq!(offered_to.iter().filter(|o| **o == a.id.to_string()).count(), 2);
    }
    let offers = env.state.zcard(&format!("fd:{{s:{}}}:offers", env.site)).await.expect("zcard");
    assert_eq!(offers, 6, "one pending offer per offered chat");
    let queued = env.state.zcard(&format!("fd:{{s:{}}}:queue:0", env.site)).await.expect("zcard");
    assert_eq!(queued, 6, "the rest wait in the queue");
    env.stop().await;
}

/// An active chat between `visitor` and `agent`; returns its id.
async fn active_chat(env: &Env, visitor: &Person, agent: &Person) -> String {
    let node = env.node();
    let chat = chat_id(&request(node, visitor, json!({"message": "hello"})).await);
    ok(node, "chat.agent_accept", agent, json!({"chatId": chat}), None).await;
    chat
}

#[tokio::test]
async fn a_transfer_hands_the_chat_to_another_agent_and_frees_the_first_embedded() {
    a_transfer_hands_the_chat_to_another_agent_and_frees_the_first(Env::embedded().await).await
}

#[tokio::test]
async fn a_transfer_hands_the_chat_to_another_agent_and_frees_the_first_on_redis() {
    a_transfer_hands_the_chat_to_another_agent_and_frees_the_first(Env::cluster(1).await).await
}

async fn a_transfer_hands_the_chat_to_another_agent_and_frees_the_first(env: Env) {
    let node = env.node();
    let (ann, bob) = (env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await);
    env.online(ann.id, 1).await;
    let visitor = env.visitor().await;
    let chat = active_chat(&env, &visitor, &ann).await;
    env.online(bob.id, 1).await;
    let mut bob_ws = socket(node, &bob).await;
    let mut visitor_ws = socket(node, &visitor).await;

    let t = ok(node, "chat.agent_transfer", &ann, json!({"chatId": chat, "agentId": bob.id}), None).await;
    assert_eq!(t["data"]["offeredTo"], bob.id.to_string());
    assert_eq!(next_push(&mut bob_ws, "chat.offered").await["transferFrom"], ann.id.to_string());
    let accepted = ok(node, "chat.agent_accept", &bob, json!({"chatId": chat}), None).await;
    assert_eq!(accepted["data"]["status"], "active");
    let moved = next_push(&mut visitor_ws, "chat.transferred").await;
    assert_eq!(
        (moved["from"].as_str(), moved["to"].as_str()),
        (Some(ann.id.to_string().as_str()), Some(bob.id.to_string().as_str()))
    );
    assert_eq!((env.active_chats(ann.id).await, env.active_chats(bob.id).await), (0, 1));
    let ann_writes = call(node, "chat.agent_send_message", &ann, json!({"chatId": chat, "content": "x"}), None).await;
    assert_eq!(kind(&ann_writes), (403, "forbidden".to_string()), "the previous owner left");
    ok(node, "chat.agent_send_message", &bob, json!({"chatId": chat, "content": "Bob here"}), None).await;
    // To an agent who cannot take it: conflict, nothing changes.
    let carl = env.agent("Carl", Role::Agent).await;
    let busy = call(node, "chat.agent_transfer", &bob, json!({"chatId": chat, "agentId": carl.id}), None).await;
    assert_eq!(kind(&busy), (409, "conflict".to_string()));
    env.stop().await;
}

#[tokio::test]
async fn joined_agents_talk_and_a_monitor_listens_unseen_embedded() {
    joined_agents_talk_and_a_monitor_listens_unseen(Env::embedded().await).await
}

#[tokio::test]
async fn joined_agents_talk_and_a_monitor_listens_unseen_on_redis() {
    joined_agents_talk_and_a_monitor_listens_unseen(Env::cluster(1).await).await
}

async fn joined_agents_talk_and_a_monitor_listens_unseen(env: Env) {
    let node = env.node();
    let (ann, bob) = (env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await);
    let sue = env.agent("Sue", Role::Supervisor).await;
    env.online(ann.id, 2).await;
    let visitor = env.visitor().await;
    let chat = active_chat(&env, &visitor, &ann).await;
    let mut visitor_ws = socket(node, &visitor).await;
    let mut sue_ws = socket(node, &sue).await;

    let plain_monitor = call(node, "chat.agent_monitor", &bob, json!({"chatId": chat}), None).await;
    assert_eq!(kind(&plain_monitor), (403, "forbidden".to_string()), "monitoring is for supervisors");
    ok(node, "chat.agent_monitor", &sue, json!({"chatId": chat}), None).await;
    let joined = ok(node, "chat.agent_join", &bob, json!({"chatId": chat}), None).await;
    assert_eq!(messages(&joined).last().expect("system message")["content"], "Bob joined the chat");
    ok(node, "chat.agent_send_message", &bob, json!({"chatId": chat, "content": "Bob too"}), None).await;
    ok(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "thanks"}), None).await;

    // The monitor receives the conversation...
    let heard: Vec<Value> = pushes_within(&mut sue_ws, "chat.message", Duration::from_secs(2)).await;
    let contents: Vec<&str> = heard.iter().filter_map(|m| m["content"].as_str()).collect();
    assert!(contents.contains(&"thanks") && contents.contains(&"Bob too"), "{contents:?}");
    // ...may not write...
    let writes = call(node, "chat.agent_send_message", &sue, json!({"chatId": chat, "content": "psst"}), None).await;
    assert_eq!(kind(&writes), (403, "forbidden".to_string()));
    // ...and the visitor never hears of it.
    let mut frames = Vec::new();
    while let Some(f) = next_frame(&mut visitor_ws, Duration::from_millis(800)).await {
        frames.push(f);
    }
    let text = serde_json::to_string(&frames).expect("json");
    assert!(!text.contains(&sue.id.to_string()) && !text.contains("Sue"), "the visitor heard of the monitor: {text}");
    let all = ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat}), None).await;
    assert!(!serde_json::to_string(&all).expect("json").contains("Sue"));
    env.stop().await;
}

#[tokio::test]
async fn a_socket_on_one_node_receives_a_message_sent_through_another() {
    let env = Env::cluster(2).await;
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 1).await;
    let visitor = env.visitor().await;
    let chat = active_chat(&env, &visitor, &ann).await;
    let mut visitor_ws = socket(&env.nodes[1], &visitor).await;
    ok(&env.nodes[0], "chat.agent_send_message", &ann, json!({"chatId": chat, "content": "across nodes"}), None).await;
    let m = loop {
        let m = next_push(&mut visitor_ws, "chat.message").await;
        if m["messageType"] == 2 {
            break m;
        }
    };
    assert_eq!(m["content"], "across nodes");
    env.stop().await;
}

#[tokio::test]
async fn typing_is_pushed_to_the_other_side_only_when_it_changes_embedded() {
    typing_is_pushed_to_the_other_side_only_when_it_changes(Env::embedded().await).await
}

#[tokio::test]
async fn typing_is_pushed_to_the_other_side_only_when_it_changes_on_redis() {
    typing_is_pushed_to_the_other_side_only_when_it_changes(Env::cluster(1).await).await
}

async fn typing_is_pushed_to_the_other_side_only_when_it_changes(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 1).await;
    let visitor = env.visitor().await;
    let chat = active_chat(&env, &visitor, &ann).await;
    let mut ann_ws = socket(node, &ann).await;
    ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat, "typing": true}), None).await;
    ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat, "typing": true}), None).await;
    let typing = pushes_within(&mut ann_ws, "chat.typing", Duration::from_secs(1)).await;
    assert_eq!(typing, vec![json!({"chatId": chat, "side": "visitor", "typing": true})]);
    let hb = ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat}), None).await;
    assert_eq!(hb["data"]["typing"], true, "the agent sees the visitor typing");
    // A read cursor never moves back.
    ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat, "seenSeq": 2}), None).await;
    let back = ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat, "seenSeq": 1}), None).await;
    assert_eq!(back["data"]["seenSeq"], 2);
    env.stop().await;
}

#[tokio::test]
async fn refusals_name_what_was_wrong_and_write_nothing_embedded() {
    refusals_name_what_was_wrong_and_write_nothing(Env::embedded().await).await
}

#[tokio::test]
async fn refusals_name_what_was_wrong_and_write_nothing_on_redis() {
    refusals_name_what_was_wrong_and_write_nothing(Env::cluster(1).await).await
}

async fn refusals_name_what_was_wrong_and_write_nothing(env: Env) {
    let node = env.node();
    let (ann, bob) = (env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await);
    env.online(ann.id, 1).await;
    let visitor = env.visitor().await;
    let chat = active_chat(&env, &visitor, &ann).await;
    let send = |c: &str| json!({"chatId": c, "content": "hi"});

    let unknown = call(node, "chat.visitor_send_message", &visitor, send("123456789"), None).await;
    assert_eq!(kind(&unknown), (404, "not_found".to_string()));
    let stranger = env.visitor().await;
    let not_theirs = call(node, "chat.visitor_send_message", &stranger, send(&chat), None).await;
    assert_eq!(kind(&not_theirs), (404, "not_found".to_string()));
    let outsider = call(node, "chat.agent_send_message", &bob, send(&chat), None).await;
    assert_eq!(kind(&outsider), (403, "forbidden".to_string()));
    assert!(outsider.1["error"]["message"].as_str().expect("msg").contains("chat.agent_join"));
    let empty =
        call(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "   "}), None).await;
    assert_eq!(kind(&empty), (400, "bad_request".to_string()));
    let long = "x".repeat(10_001);
    let too_long =
        call(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": long}), None).await;
    assert_eq!(kind(&too_long), (400, "bad_request".to_string()));
    let rating = call(node, "chat.post_chat", &visitor, json!({"chatId": chat, "rating": 6}), None).await;
    assert_eq!(kind(&rating), (400, "bad_request".to_string()));
    let not_offered = call(node, "chat.agent_accept", &bob, json!({"chatId": chat}), None).await;
    assert_eq!(kind(&not_offered), (409, "conflict".to_string()));
    let early_wrap = call(node, "chat.wrap_up", &ann, json!({"chatId": chat}), None).await;
    assert_eq!(kind(&early_wrap), (409, "conflict".to_string()));

    // Another site's visitor and agent: not found, and the chat is untouched.
    let other_site = frontdesk_core::id::Id(77_777);
    let foreign_visitor = env.visitor_of(other_site).await;
    let foreign = call(node, "chat.visitor_send_message", &foreign_visitor, send(&chat), None).await;
    assert_eq!(kind(&foreign), (404, "not_found".to_string()));
    let store = frontdesk_store::connect(&env.db).await.expect("store");
    let tokens = frontdesk_modules::tokens::Tokens::load(store.as_ref()).await.expect("tokens");
    let foreign_agent = Person {
        id: frontdesk_core::id::Id(88_888),
        token: tokens
            .issue_agent(other_site, frontdesk_core::id::Id(88_888), Role::Admin, "s", Duration::from_secs(600))
            .expect("token"),
    };
    for event in ["chat.agent_send_message", "chat.agent_join", "chat.end", "chat.rebuild"] {
        let r = call(node, event, &foreign_agent, send(&chat), None).await;
        assert_eq!(kind(&r), (404, "not_found".to_string()), "{event}: {}", r.1);
    }
    let hb = ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat}), None).await;
    assert_eq!(seqs(&hb), vec![1, 2], "nothing was written");
    assert_eq!(hb["data"]["status"], "active");

    ok(node, "chat.end", &ann, json!({"chatId": chat}), None).await;
    let again = call(node, "chat.end", &ann, json!({"chatId": chat}), None).await;
    assert_eq!(kind(&again), (409, "conflict".to_string()));
    let after = call(node, "chat.agent_send_message", &ann, send(&chat), None).await;
    assert_eq!(kind(&after), (409, "conflict".to_string()));
    env.stop().await;
}

#[tokio::test]
async fn a_client_lacking_an_old_message_behind_many_new_ones_gets_exactly_what_it_lacks() {
    let env = Env::embedded().await;
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 2).await;
    let visitor = env.visitor().await;
    let answer = ok(node, "chat.request", &visitor, json!({"message": "first"}), None).await;
    let chat = chat_id(&answer["data"]);
    ok(node, "chat.agent_accept", &ann, json!({"chatId": chat}), None).await;
    for i in 0..60 {
        ok(node, "chat.agent_send_message", &ann, json!({"chatId": chat, "content": format!("a{i}")}), None).await;
    }
    // Holding every agent-side message but not the visitor's first one (seq 1, far behind).
    let old = ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat}), Some((0, 61))).await;
    let got: Vec<String> = messages(&old).iter().filter_map(|m| m["content"].as_str().map(str::to_string)).collect();
    assert_eq!(got, vec!["first".to_string()]);
    // Holding nothing of the agent side: every agent message (the join notice and 60), in order.
    let all = ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat}), Some((1, 0))).await;
    let seqs: Vec<i64> = messages(&all).iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(seqs, (2..=62).collect::<Vec<_>>());
    // Up to date: nothing.
    let none = ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat}), Some((1, 61))).await;
    assert!(messages(&none).is_empty());
    env.stop().await;
}
