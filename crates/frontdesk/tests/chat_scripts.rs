//! The chat and dispatch scripts give the same answers on both state backends: each is
//! written twice (Lua for Redis, Rust for the in-memory store), and the same sequence of
//! calls runs here on a `MemoryState` and on Redis, compared step by step.

use std::sync::Arc;

use frontdesk_core::state::{Script, ScriptValue, StateStore};
use frontdesk_modules::chat::{ADVANCE_CURSOR, APPEND_MESSAGE, CREATE_META, MERGE_MESSAGES};
use frontdesk_modules::dispatch::{ADJUST_CAPACITY, OFFER};
use frontdesk_state::memory::MemoryState;
use frontdesk_state::redis_state::RedisState;
use frontdesk_testkit::env::{redis_url, unique_name};

async fn backends() -> Vec<Arc<dyn StateStore>> {
    let redis = RedisState::connect(&redis_url(), &format!("{}:", unique_name("fdscript"))).await.expect("redis");
    vec![Arc::new(MemoryState::new()), Arc::new(redis)]
}

/// Runs `steps` on every backend and asserts the answers agree; returns them.
async fn same_everywhere(steps: &[(&'static Script, Vec<&str>, Vec<&str>)]) -> Vec<ScriptValue> {
    let mut answers: Vec<Vec<ScriptValue>> = Vec::new();
    for state in backends().await {
        let mut got = Vec::new();
        for (script, keys, args) in steps {
            got.push(state.eval(script, keys, args).await.unwrap_or_else(|e| panic!("{}: {e}", script.name)));
        }
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1], "memory and Redis disagree");
    answers.remove(0)
}

fn int(v: &ScriptValue) -> i64 {
    v.as_int().expect("int")
}

fn list(v: &ScriptValue) -> Vec<ScriptValue> {
    match v {
        ScriptValue::List(l) => l.clone(),
        other => panic!("not a list: {other:?}"),
    }
}

#[tokio::test]
async fn append_counts_sides_and_recognises_a_client_message_id() {
    let (meta, msgs, cmids) = ("fd:{c:1}:meta", "fd:{c:1}:msgs", "fd:{c:1}:cmids");
    let keys = vec![meta, msgs, cmids];
    let setup: (&'static Script, Vec<&str>, Vec<&str>) = (&ADVANCE_CURSOR, vec![meta], vec!["status", "1"]); // creates the meta hash
    let got = same_everywhere(&[
        (&APPEND_MESSAGE, keys.clone(), vec!["visitorDataOffset", r#"{"content":"no chat"}"#, ""]),
        setup,
        (&APPEND_MESSAGE, keys.clone(), vec!["visitorDataOffset", r#"{"content":"a"}"#, "c1"]),
        (&APPEND_MESSAGE, keys.clone(), vec!["agentDataOffset", r#"{"content":"b"}"#, ""]),
        (&APPEND_MESSAGE, keys.clone(), vec!["visitorDataOffset", r#"{"content":"a again"}"#, "c1"]),
        (&APPEND_MESSAGE, keys.clone(), vec!["visitorDataOffset", r#"{"content":"c"}"#, "c2"]),
    ])
    .await;
    assert_eq!(got[0], ScriptValue::List(vec![ScriptValue::Int(-2)]), "no chat, no message");
    let first = list(&got[2]);
    assert_eq!(int(&first[0]), 1);
    assert_eq!(first[1], ScriptValue::Str(r#"{"seq":1,"dataOffset":1,"content":"a"}"#.into()));
    let second = list(&got[3]);
    assert_eq!(second[1], ScriptValue::Str(r#"{"seq":2,"dataOffset":1,"content":"b"}"#.into()));
    let again = list(&got[4]);
    assert_eq!((int(&again[0]), &again[1]), (0, &first[1]), "the same clientMessageId answers the first message");
    let third = list(&got[5]);
    assert_eq!(third[1], ScriptValue::Str(r#"{"seq":3,"dataOffset":2,"content":"c"}"#.into()));
    assert_eq!((int(&third[2]), int(&third[3])), (2, 1));
}

#[tokio::test]
async fn merge_replaces_only_when_nothing_was_appended_meanwhile() {
    let (meta, msgs, cmids) = ("fd:{c:2}:meta", "fd:{c:2}:msgs", "fd:{c:2}:cmids");
    let keys = vec![meta, msgs, cmids];
    let got = same_everywhere(&[
        (&APPEND_MESSAGE, keys.clone(), vec!["visitorDataOffset", r#"{"content":"x"}"#, ""]),
        (&ADVANCE_CURSOR, vec![meta], vec!["status", "1"]),
        (&APPEND_MESSAGE, keys.clone(), vec!["visitorDataOffset", r#"{"content":"x"}"#, ""]),
        // Read at seq 0, but seq is 1 now: refused.
        (&MERGE_MESSAGES, keys.clone(), vec!["0", "2", "1", "1", "1", "{}", "", "2", "{}", "k"]),
        (&MERGE_MESSAGES, keys.clone(), vec!["1", "2", "1", "1", "1", "m1", "", "2", "m2", "k"]),
        (&APPEND_MESSAGE, keys.clone(), vec!["agentDataOffset", r#"{"content":"y"}"#, "k"]),
    ])
    .await;
    assert_eq!(int(&got[3]), 0);
    assert_eq!(int(&got[4]), 1);
    let after = list(&got[5]);
    assert_eq!((int(&after[0]), &after[1]), (0, &ScriptValue::Str("m2".into())), "merged clientMessageIds are known");
}

#[tokio::test]
async fn offer_takes_the_best_available_agent_once_and_capacity_never_goes_below_zero() {
    let (queue, offers, agents) = ("fd:{s:1}:queue:0", "fd:{s:1}:offers", "fd:{s:1}:agents");
    let (avail, turns, seq) = ("fd:{s:1}:avail", "fd:{s:1}:turns", "fd:{s:1}:offer_seq");
    let (busy, free, away) = ("fd:{s:1}:agent:1", "fd:{s:1}:agent:2", "fd:{s:1}:agent:3");
    let mut results = Vec::new();
    for state in backends().await {
        state.hset(busy, &[("status", "online"), ("maxChats", "1"), ("activeChats", "1")]).await.expect("hset");
        state.hset(free, &[("status", "online"), ("maxChats", "1"), ("activeChats", "0")]).await.expect("hset");
        state.hset(away, &[("status", "away"), ("maxChats", "5"), ("activeChats", "0")]).await.expect("hset");
        for key in [busy, free, away] {
            state.hset(key, &[("lastSeen", "1000")]).await.expect("hset");
        }
        // Agent 9 is in the set but its presence is gone: the script drops it.
        state.sadd(agents, &["1", "2", "3", "9"]).await.expect("sadd");
        state.zadd(queue, &[(1.0, "c1"), (2.0, "c2")]).await.expect("zadd");
        let keys = [queue, offers, agents, avail, turns, seq];
        let mut got = Vec::new();
        for (chat, force, only) in [("c1", "0", ""), ("c1", "0", ""), ("c2", "0", ""), ("c9", "1", "3")] {
            let args = [chat, "500", force, "1500", "30000", "0", "", only, "", "", ""];
            got.push(state.eval(&OFFER, &keys, &args).await.expect("offer"));
        }
        for by in ["-1", "-1", "-1"] {
            got.push(state.eval(&ADJUST_CAPACITY, &[free, avail, turns], &[by, "2"]).await.expect("adjust"));
        }
        got.push(state.eval(&ADJUST_CAPACITY, &["fd:{s:1}:agent:404"], &["1"]).await.expect("adjust"));
        got.push(ScriptValue::Int(state.zcard(queue).await.expect("zcard") as i64));
        got.push(ScriptValue::Int(state.zcard(offers).await.expect("zcard") as i64));
        got.push(ScriptValue::Int(state.scard(agents).await.expect("scard") as i64));
        got.push(ScriptValue::Int(state.zcard(avail).await.expect("zcard") as i64));
        got.push(ScriptValue::Str(state.hget(free, "lastOffer").await.expect("hget").unwrap_or_default()));
        results.push(got);
    }
    assert_eq!(results[0], results[1], "memory and Redis disagree");
    let int = ScriptValue::Int;
    // c1 → the free agent; again → no longer queued; c2 → nobody left; a forced offer to
    // an away agent → 0; capacity 1 → 0 → 0 → 0; unknown agent -1; one chat still queued,
    // one offer pending; the agent without presence left the set and the index.
    assert_eq!(
        results[0],
        vec![
            ScriptValue::Str("2".into()),
            int(-1),
            int(0),
            int(0),
            int(0),
            int(0),
            int(0),
            int(-1),
            int(1),
            int(1),
            int(3),
            int(3),
            ScriptValue::Str("1".into()),
        ]
    );
}

#[tokio::test]
async fn a_lost_chat_is_recreated_once_and_cursors_only_move_forward() {
    let meta = "fd:{c:3}:meta";
    let cursors = "fd:{c:3}:cursors";
    let got = same_everywhere(&[
        (&CREATE_META, vec![meta], vec!["chatId", "3", "rebuilding", "true"]),
        (&CREATE_META, vec![meta], vec!["chatId", "3", "rebuilding", "false"]),
        (&ADVANCE_CURSOR, vec![cursors], vec!["visitor", "5"]),
        (&ADVANCE_CURSOR, vec![cursors], vec!["visitor", "2"]),
    ])
    .await;
    assert_eq!((int(&got[0]), int(&got[1])), (1, 0));
    assert_eq!(list(&got[2]), vec![ScriptValue::Int(1), ScriptValue::Int(5)]);
    assert_eq!(list(&got[3]), vec![ScriptValue::Int(0), ScriptValue::Int(5)]);
}
