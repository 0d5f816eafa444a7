//! Rebuild (SPEC §6): a server that lost a chat's runtime state answers `code: 1, -1/-1`,
//! visitor and agent upload their signed copies (in either order, even at once), forged
//! or foreign messages are refused and counted, and the conversation goes on with no loss
//! and no duplicate — in cluster mode (Redis lost the chat) and in embedded mode (a
//! restart of a memory-state node on the same data directory).

mod chat_support;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chat_support::*;
use frontdesk::config::RawSettings;
use frontdesk_core::store::Role;
use serde_json::{json, Value};
use support::TestServer;

/// A client's copy of a chat: messages by id, and its offsets.
#[derive(Default, Clone)]
struct Copy {
    messages: BTreeMap<String, Value>,
    v: i64,
    a: i64,
}

impl Copy {
    fn take(&mut self, answer: &Value) {
        assert_eq!(answer["code"], 0, "{answer}");
        for m in answer["messages"].as_array().cloned().unwrap_or_default() {
            self.messages.insert(m["id"].as_str().expect("id").to_string(), m);
        }
        self.v = answer["visitorDataOffset"].as_i64().expect("v");
        self.a = answer["agentDataOffset"].as_i64().expect("a");
    }

    fn offsets(&self) -> Option<(i64, i64)> {
        Some((self.v, self.a))
    }

    fn upload(&self, chat: &str, extra: Vec<Value>) -> Value {
        let mut messages: Vec<Value> = self.messages.values().cloned().collect();
        messages.extend(extra);
        json!({"chatId": chat, "visitorDataOffset": self.v, "agentDataOffset": self.a, "messages": messages})
    }
}

/// (seq, dataOffset, messageType, content) of a full sync, in order.
fn shape(answer: &Value) -> Vec<(i64, i64, i64, String)> {
    answer["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let n = |k: &str| m[k].as_i64().expect("number");
            (n("seq"), n("dataOffset"), n("messageType"), m["content"].as_str().expect("content").to_string())
        })
        .collect()
}

/// A conversation whose two sides hold different partial copies; returns the chat id and
/// (visitor copy, agent copy).
async fn conversation(env: &Env, visitor: &Person, ann: &Person) -> (String, Copy, Copy) {
    let node = env.node();
    let (mut vc, mut ac) = (Copy::default(), Copy::default());
    let answer = ok(node, "chat.request", visitor, json!({"message": "hello"}), None).await;
    let chat = chat_id(&answer["data"]);
    vc.take(&answer);
    ac.take(&ok(node, "chat.agent_accept", ann, json!({"chatId": chat}), None).await);
    let send = |c: &str, t: &str, id: &str| json!({"chatId": c, "content": t, "clientMessageId": id});
    ac.take(&ok(node, "chat.agent_send_message", ann, send(&chat, "hi there", "a1"), ac.offsets()).await);
    vc.take(&ok(node, "chat.visitor_send_message", visitor, send(&chat, "my order", "v1"), vc.offsets()).await);
    ac.take(&ok(node, "chat.agent_heartbeat", ann, json!({"chatId": chat}), ac.offsets()).await);
    // The last message of each side never reaches the other's copy.
    vc.take(&ok(node, "chat.visitor_send_message", visitor, send(&chat, "is late", "v2"), vc.offsets()).await);
    ac.take(&ok(node, "chat.agent_send_message", ann, send(&chat, "checking", "a2"), ac.offsets()).await);
    (chat, vc, ac)
}

/// Forgets a chat in the runtime state, as a state store lost or restored from an old
/// snapshot would; with a Redis of the test's own, the whole server is flushed (FLUSHALL).
async fn lose(env: &Env, chat: &str) {
    if let Some(redis) = &env.own_redis {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "FLUSHALL"])
            .output()
            .expect("redis-cli");
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "FLUSHALL: {out:?}");
        return;
    }
    for what in ["meta", "msgs", "cmids"] {
        env.state.del(&[&format!("fd:{{c:{chat}}}:{what}")]).await.expect("del");
    }
}

#[tokio::test]
async fn a_lost_chat_is_rebuilt_from_both_copies_and_goes_on_without_loss_or_duplicate_embedded() {
    a_lost_chat_is_rebuilt_from_both_copies_and_goes_on_without_loss_or_duplicate(Env::embedded().await).await
}

#[tokio::test]
async fn a_lost_chat_is_rebuilt_from_both_copies_and_goes_on_without_loss_or_duplicate_after_redis_flushall() {
    a_lost_chat_is_rebuilt_from_both_copies_and_goes_on_without_loss_or_duplicate(Env::cluster_on_own_redis().await)
        .await
}

#[tokio::test]
async fn a_lost_chat_is_rebuilt_from_both_copies_and_goes_on_without_loss_or_duplicate_on_redis() {
    a_lost_chat_is_rebuilt_from_both_copies_and_goes_on_without_loss_or_duplicate(Env::cluster(1).await).await
}

async fn a_lost_chat_is_rebuilt_from_both_copies_and_goes_on_without_loss_or_duplicate(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 3).await;
    let visitor = env.visitor().await;
    let (chat, vc, ac) = conversation(&env, &visitor, &ann).await;
    let before = ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat}), Some((0, 0))).await;
    assert_eq!(before["messages"].as_array().expect("messages").len(), 6);

    // A second chat's message and a tampered one, to smuggle in.
    let other_visitor = env.visitor().await;
    let other = ok(node, "chat.request", &other_visitor, json!({"message": "elsewhere"}), None).await;
    let foreign = other["messages"][0].clone();
    let mut forged = vc.messages.values().next().expect("a message").clone();
    forged["content"] = json!("I was promised a refund");
    forged["id"] = json!("1");
    // A real message of this chat, signed, claimed by another author.
    let mut impostor = vc.messages.values().next().expect("a message").clone();
    impostor["senderId"] = json!(ann.id.to_string());

    lose(&env, &chat).await;
    let told =
        call(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "x"}), vc.offsets()).await;
    assert_eq!(
        (told.1["code"].as_i64(), told.1["visitorDataOffset"].as_i64(), told.1["agentDataOffset"].as_i64()),
        (Some(1), Some(-1), Some(-1))
    );
    // While waiting for a copy, every caller is told to rebuild; nothing is appended.
    let agent_told = call(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat}), ac.offsets()).await;
    assert_eq!(agent_told.1["code"], 1);

    let r1 = ok(node, "chat.rebuild", &visitor, vc.upload(&chat, vec![forged, foreign, impostor]), None).await;
    assert_eq!((r1["data"]["rejected"].as_i64(), r1["data"]["accepted"].as_i64()), (Some(3), Some(5)));
    let r2 = ok(node, "chat.rebuild", &ann, ac.upload(&chat, vec![]), None).await;
    assert_eq!((r2["data"]["rejected"].as_i64(), r2["data"]["added"].as_i64()), (Some(0), Some(1)));
    assert_eq!(r2["messages"], json!([]), "the agent's copy was complete");
    // The visitor lacked the agent's last message: its next call carries it.
    let v_sync = ok(node, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat}), vc.offsets()).await;
    let lacked: Vec<(String, i64)> = shape(&v_sync).into_iter().map(|s| (s.3, s.0)).collect();
    assert_eq!(lacked, vec![("checking".to_string(), 6)]);

    let after = ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat}), Some((0, 0))).await;
    assert_eq!(shape(&after), shape(&before), "the rebuilt chat is the chat as it was");
    let ids = |a: &Value| a["messages"].as_array().expect("m").iter().map(|m| m["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before), "message ids never change");

    // The conversation goes on where it was; a resent message is not duplicated.
    let next = ok(
        node,
        "chat.visitor_send_message",
        &visitor,
        json!({"chatId": chat, "content": "still there?"}),
        Some((3, 3)),
    )
    .await;
    assert_eq!(
        (next["data"]["message"]["seq"].as_i64(), next["data"]["message"]["dataOffset"].as_i64()),
        (Some(7), Some(4))
    );
    let resent = ok(
        node,
        "chat.visitor_send_message",
        &visitor,
        json!({"chatId": chat, "content": "is late", "clientMessageId": "v2"}),
        None,
    )
    .await;
    let original = before["messages"].as_array().expect("m").iter().find(|m| m["content"] == "is late").cloned();
    assert_eq!(resent["data"]["message"]["id"], original.expect("original")["id"], "not stored twice");
    assert_eq!(resent["data"]["message"]["seq"], 5);
    env.stop().await;
}

#[tokio::test]
async fn the_rebuilt_chat_is_the_same_whichever_side_uploads_first_or_both_at_once_embedded() {
    the_rebuilt_chat_is_the_same_whichever_side_uploads_first_or_both_at_once(Env::embedded().await).await
}

#[tokio::test]
async fn the_rebuilt_chat_is_the_same_whichever_side_uploads_first_or_both_at_once_on_redis() {
    the_rebuilt_chat_is_the_same_whichever_side_uploads_first_or_both_at_once(Env::cluster(1).await).await
}

async fn the_rebuilt_chat_is_the_same_whichever_side_uploads_first_or_both_at_once(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 3).await;
    let mut results = Vec::new();
    for order in ["visitor first", "agent first", "at once"] {
        let visitor = env.visitor().await;
        let (chat, vc, ac) = conversation(&env, &visitor, &ann).await;
        lose(&env, &chat).await;
        let (v_body, a_body) = (vc.upload(&chat, vec![]), ac.upload(&chat, vec![]));
        match order {
            "visitor first" => {
                ok(node, "chat.rebuild", &visitor, v_body, None).await;
                ok(node, "chat.rebuild", &ann, a_body, None).await;
            }
            "agent first" => {
                ok(node, "chat.rebuild", &ann, a_body, None).await;
                ok(node, "chat.rebuild", &visitor, v_body, None).await;
            }
            _ => {
                let (x, y) = tokio::join!(
                    ok(node, "chat.rebuild", &visitor, v_body, None),
                    ok(node, "chat.rebuild", &ann, a_body, None)
                );
                assert_eq!((x["code"].as_i64(), y["code"].as_i64()), (Some(0), Some(0)));
            }
        }
        let all = ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat}), Some((0, 0))).await;
        results.push((order, shape(&all), (all["visitorDataOffset"].clone(), all["agentDataOffset"].clone())));
        ok(node, "chat.end", &ann, json!({"chatId": chat}), None).await;
    }
    assert_eq!(results[0].1.len(), 6);
    for r in &results[1..] {
        assert_eq!((&r.1, &r.2), (&results[0].1, &results[0].2), "{} differs from {}", r.0, results[0].0);
    }
    env.stop().await;
}

#[tokio::test]
async fn only_the_chats_visitor_or_an_agent_of_its_site_may_rebuild_it_embedded() {
    only_the_chats_visitor_or_an_agent_of_its_site_may_rebuild_it(Env::embedded().await).await
}

#[tokio::test]
async fn only_the_chats_visitor_or_an_agent_of_its_site_may_rebuild_it_on_redis() {
    only_the_chats_visitor_or_an_agent_of_its_site_may_rebuild_it(Env::cluster(1).await).await
}

async fn only_the_chats_visitor_or_an_agent_of_its_site_may_rebuild_it(env: Env) {
    let node = env.node();
    let visitor = env.visitor().await;
    let chat = chat_id(&request(node, &visitor, json!({"message": "hello"})).await);
    lose(&env, &chat).await;
    let stranger = env.visitor().await;
    let r = call(node, "chat.rebuild", &stranger, json!({"chatId": chat, "messages": []}), None).await;
    assert_eq!(kind(&r), (404, "not_found".to_string()));
    let r = call(node, "chat.visitor_heartbeat", &stranger, json!({"chatId": chat}), None).await;
    assert_eq!(kind(&r), (404, "not_found".to_string()));
    assert!(
        env.state.hgetall(&format!("fd:{{c:{chat}}}:meta")).await.expect("meta").is_empty(),
        "a stranger recreated nothing"
    );
    // An agent of the site may (durable membership says whose chat it is).
    let r = ok(node, "chat.rebuild", &env.admin, json!({"chatId": chat, "messages": []}), None).await;
    assert_eq!(r["data"]["rejected"], 0);
    env.stop().await;
}

#[tokio::test]
async fn a_memory_node_restarted_on_its_data_dir_rebuilds_from_the_visitors_copy() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let store = frontdesk_store::connect(&db).await.expect("store");
    let site = store.agent_by_email(ADMIN).await.expect("read").expect("admin").site_id;
    let tokens = frontdesk_modules::tokens::Tokens::load(store.as_ref()).await.expect("tokens");
    let vid = frontdesk_core::id::IdGenerator::new(1001).expect("ids").next().expect("id");
    let visitor = Person { id: vid, token: tokens.issue_visitor(site, vid, Duration::from_secs(600)).expect("token") };
    let mut copy = Copy::default();
    let answer = ok(&server, "chat.request", &visitor, json!({"message": "one"}), None).await;
    let chat = chat_id(&answer["data"]);
    copy.take(&answer);
    for text in ["two", "three"] {
        copy.take(
            &ok(
                &server,
                "chat.visitor_send_message",
                &visitor,
                json!({"chatId": chat, "content": text}),
                copy.offsets(),
            )
            .await,
        );
    }
    let dir = server.data_dir.clone();
    server.stop().await;

    let server = TestServer::start_in(RawSettings::default(), dir).await;
    let told = call(
        &server,
        "chat.visitor_send_message",
        &visitor,
        json!({"chatId": chat, "content": "four"}),
        copy.offsets(),
    )
    .await;
    assert_eq!((told.1["code"].as_i64(), told.1["visitorDataOffset"].as_i64()), (Some(1), Some(-1)), "{}", told.1);
    let rebuilt = ok(&server, "chat.rebuild", &visitor, copy.upload(&chat, vec![]), None).await;
    assert_eq!((rebuilt["data"]["accepted"].as_i64(), rebuilt["data"]["rejected"].as_i64()), (Some(3), Some(0)));
    assert_eq!(rebuilt["messages"], json!([]), "the visitor lacks nothing");
    let four =
        ok(&server, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "four"}), copy.offsets())
            .await;
    assert_eq!(
        (four["data"]["message"]["seq"].as_i64(), four["data"]["message"]["dataOffset"].as_i64()),
        (Some(4), Some(4))
    );
    let all = ok(&server, "chat.visitor_heartbeat", &visitor, json!({"chatId": chat}), Some((0, 0))).await;
    let contents: Vec<String> = shape(&all).into_iter().map(|s| s.3).collect();
    assert_eq!(contents, vec!["one", "two", "three", "four"]);
    server.stop().await;
}

#[tokio::test]
async fn chats_of_an_older_generation_are_rebuilt_when_the_state_comes_back_from_a_snapshot_embedded() {
    chats_of_an_older_generation_are_rebuilt_when_the_state_comes_back_from_a_snapshot(Env::embedded().await).await
}

#[tokio::test]
async fn chats_of_an_older_generation_are_rebuilt_when_the_state_comes_back_from_a_snapshot_on_redis() {
    chats_of_an_older_generation_are_rebuilt_when_the_state_comes_back_from_a_snapshot(Env::cluster(1).await).await
}

/// The chat's keys are still there, but the generation key says the store was restored from
/// an old snapshot (an epoch lower than the node has seen): the node moves to a new
/// generation and the chat, stamped with the old one, is treated as unknown (SPEC §6).
async fn chats_of_an_older_generation_are_rebuilt_when_the_state_comes_back_from_a_snapshot(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 3).await;
    let visitor = env.visitor().await;
    let (chat, vc, ac) = conversation(&env, &visitor, &ann).await;
    let before = ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat}), Some((0, 0))).await;

    let key = frontdesk_core::keys::generation();
    let was = env.state.get(&key).await.expect("get").expect("a generation");
    env.state.set(&key, "0:restored-from-snapshot", frontdesk_core::state::SetMode::Always, None).await.expect("set");
    // The node notices within its watch period and moves to a newer generation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = env.state.get(&key).await.expect("get").unwrap_or_default();
        if now != "0:restored-from-snapshot" && now != was {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the node never moved to a new generation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let told =
        call(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "x"}), vc.offsets()).await;
    assert_eq!((told.1["code"].as_i64(), told.1["visitorDataOffset"].as_i64()), (Some(1), Some(-1)), "{}", told.1);
    ok(node, "chat.rebuild", &visitor, vc.upload(&chat, vec![]), None).await;
    ok(node, "chat.rebuild", &ann, ac.upload(&chat, vec![]), None).await;
    let after = ok(node, "chat.agent_heartbeat", &ann, json!({"chatId": chat}), Some((0, 0))).await;
    assert_eq!(shape(&after), shape(&before), "the rebuilt chat is the chat as the clients saw it");
    env.stop().await;
}
