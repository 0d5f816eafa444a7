//! The dispatch offer script over the availability index, on both state backends: a site
//! big enough that the script trusts the index's order (more than `EXACT_BELOW` agents),
//! priority before load, round robin by last offer, departments, exclusions, stale
//! presence, and an index made stale behind dispatch's back (status or capacity written
//! directly to a presence hash) never giving a chat to an agent who cannot take it.

use std::sync::Arc;

use frontdesk_core::state::{ScriptValue, StateStore};
use frontdesk_modules::dispatch::{ADJUST_CAPACITY, OFFER};
use frontdesk_modules::model::availability::{INDEX_AGENT, UNAVAILABLE};
use frontdesk_state::memory::MemoryState;
use frontdesk_state::redis_state::RedisState;
use frontdesk_testkit::env::{redis_url, unique_name};

const QUEUE: &str = "fd:{s:7}:queue:0";
const OFFERS: &str = "fd:{s:7}:offers";
const AGENTS: &str = "fd:{s:7}:agents";
const AVAIL: &str = "fd:{s:7}:avail";
const TURNS: &str = "fd:{s:7}:turns";
const SEQ: &str = "fd:{s:7}:offer_seq";
const NOW: i64 = 1_000_000;

async fn backends() -> Vec<(&'static str, Arc<dyn StateStore>)> {
    let redis = RedisState::connect(&redis_url(), &format!("{}:", unique_name("fdindex"))).await.expect("redis");
    vec![("memory", Arc::new(MemoryState::new())), ("redis", Arc::new(redis))]
}

fn agent_key(id: u64) -> String {
    format!("fd:{{s:7}}:agent:{id}")
}

/// Agent ids of equal length (as snowflakes are), so ties sort numerically.
fn id(n: u64) -> u64 {
    1000 + n
}

async fn agent(state: &dyn StateStore, n: u64, status: &str, max: i64, active: i64, priority: i64, depts: &str) {
    let (max, active, priority, seen) = (max.to_string(), active.to_string(), priority.to_string(), NOW.to_string());
    let fields = [
        ("status", status),
        ("maxChats", max.as_str()),
        ("activeChats", active.as_str()),
        ("priority", priority.as_str()),
        ("lastSeen", seen.as_str()),
        ("departments", depts),
    ];
    state.hset(&agent_key(id(n)), &fields).await.expect("hset");
    state.sadd(AGENTS, &[&id(n).to_string()]).await.expect("sadd");
}

struct Ask<'a> {
    chat: &'a str,
    round_robin: bool,
    sticky: Option<u64>,
    only: Option<u64>,
    department: &'a str,
    excluded: Vec<u64>,
    members: Vec<u64>,
}

impl<'a> Ask<'a> {
    fn new(chat: &'a str) -> Self {
        Ask { chat, round_robin: false, sticky: None, only: None, department: "", excluded: vec![], members: vec![] }
    }
}

/// Queues the chat and runs the offer script; the agent number it went to, if any.
async fn offer(state: &dyn StateStore, ask: Ask<'_>) -> Option<u64> {
    state.zadd(QUEUE, &[(1.0, ask.chat)]).await.expect("zadd");
    let join = |ids: &[u64]| ids.iter().map(|n| id(*n).to_string()).collect::<Vec<_>>().join(",");
    let args = [
        ask.chat.to_string(),
        "99999999".into(),
        if ask.only.is_some() { "1" } else { "0" }.into(),
        NOW.to_string(),
        "30000".into(),
        if ask.round_robin { "1" } else { "0" }.into(),
        ask.sticky.map(|n| id(n).to_string()).unwrap_or_default(),
        ask.only.map(|n| id(n).to_string()).unwrap_or_default(),
        ask.department.to_string(),
        join(&ask.excluded),
        join(&ask.members),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match state.eval(&OFFER, &[QUEUE, OFFERS, AGENTS, AVAIL, TURNS, SEQ], &args).await.expect("offer") {
        ScriptValue::Str(s) => Some(s.parse::<u64>().expect("agent id") - 1000),
        ScriptValue::Int(0) => None,
        other => panic!("unexpected answer {other:?}"),
    }
}

async fn active(state: &dyn StateStore, n: u64) -> i64 {
    state.hget(&agent_key(id(n)), "activeChats").await.expect("hget").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// 40 agents (the index path): agent 3 has the highest priority but is full; 10..=12 are
/// idle, the rest busy with 1; 20 is away; 21 was last seen long ago.
async fn big_site(state: &dyn StateStore) {
    for n in 0..40 {
        agent(state, n, "online", 3, 1, 0, "[]").await;
    }
    agent(state, 3, "online", 2, 2, 9, "[]").await;
    for n in 10..=12 {
        agent(state, n, "online", 3, 0, 0, "[]").await;
    }
    agent(state, 20, "away", 3, 0, 5, "[]").await;
    agent(state, 21, "online", 3, 0, 5, "[]").await;
    state.hset(&agent_key(id(21)), &[("lastSeen", "1")]).await.expect("stale");
}

#[tokio::test]
async fn a_big_site_offers_by_priority_then_load_and_never_past_capacity() {
    let mut answers = Vec::new();
    for (name, state) in backends().await {
        let s = state.as_ref();
        big_site(s).await;
        let mut got = Vec::new();
        // The idle agents first, then everyone at load 1, lowest id first among equals.
        for i in 0..5 {
            got.push(offer(s, Ask::new(&format!("c{i}"))).await);
        }
        assert_eq!(got, vec![Some(10), Some(11), Some(12), Some(0), Some(1)], "{name}");
        // Fill every slot: 37 agents can take chats (not 3, 20, 21); capacity is never passed.
        let mut n = 5;
        while offer(s, Ask::new(&format!("c{n}"))).await.is_some() {
            n += 1;
            assert!(n < 200, "{name}: more offers than slots");
        }
        let slots: i64 =
            (0..40).filter(|a| ![3, 20, 21].contains(a)).map(|a| if (10..=12).contains(&a) { 3 } else { 2 }).sum();
        assert_eq!(n as i64, slots, "{name}: every free slot taken once");
        for a in 0..40 {
            let max = match a {
                3 => 2,
                _ => 3,
            };
            assert!(active(s, a).await <= max, "{name}: agent {a} over capacity");
        }
        assert_eq!(active(s, 20).await, 0, "{name}: away agents get nothing");
        assert_eq!(active(s, 21).await, 0, "{name}: stale agents get nothing");
        // A chat ending gives its slot back: the next offer goes there.
        s.eval(&ADJUST_CAPACITY, &[&agent_key(id(7)), AVAIL, TURNS], &["-1", &id(7).to_string()])
            .await
            .expect("adjust");
        assert_eq!(offer(s, Ask::new("back")).await, Some(7), "{name}");
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1], "memory and Redis disagree");
}

#[tokio::test]
async fn an_index_stale_behind_dispatchs_back_never_offers_an_agent_who_cannot_take_it() {
    for (name, state) in backends().await {
        let s = state.as_ref();
        big_site(s).await;
        assert_eq!(offer(s, Ask::new("warm")).await, Some(10), "{name}");
        // Written directly, as an admin tool or a test would: the index still ranks 11 and
        // 12 first, but one went away and one is full now.
        s.hset(&agent_key(id(11)), &[("status", "away")]).await.expect("away");
        s.hset(&agent_key(id(12)), &[("activeChats", "3")]).await.expect("full");
        // Everyone left is at load 1: the lowest id.
        assert_eq!(offer(s, Ask::new("a")).await, Some(0), "{name}: stale entries are skipped and repaired");
        assert_eq!(s.zscore(AVAIL, &id(11).to_string()).await.expect("zscore"), Some(UNAVAILABLE), "{name}");
        // The other way: 30 comes back with priority; re-indexing (what presence does on a
        // status change) puts it first.
        s.hset(&agent_key(id(30)), &[("priority", "50"), ("activeChats", "0")]).await.expect("prio");
        let keys = [agent_key(id(30)), AVAIL.to_string(), TURNS.to_string()];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        s.eval(&INDEX_AGENT, &keys, &[&id(30).to_string()]).await.expect("index");
        assert_eq!(offer(s, Ask::new("b")).await, Some(30), "{name}");
        // An agent deleted (hash and set entry gone) leaves the index at the next offer.
        s.del(&[&agent_key(id(30))]).await.expect("del");
        s.srem(AGENTS, &[&id(30).to_string()]).await.expect("srem");
        assert_ne!(offer(s, Ask::new("c")).await, Some(30), "{name}");
        assert_eq!(s.zscore(AVAIL, &id(30).to_string()).await.expect("zscore"), None, "{name}");
    }
}

#[tokio::test]
async fn round_robin_stickiness_departments_and_exclusions_on_a_big_site() {
    let mut answers = Vec::new();
    for (name, state) in backends().await {
        let s = state.as_ref();
        big_site(s).await;
        // Round robin: every agent once before anyone twice, busy or not.
        let mut rr = Vec::new();
        for i in 0..37 {
            let mut ask = Ask::new("");
            let chat = format!("rr{i}");
            ask.chat = &chat;
            ask.round_robin = true;
            rr.push(offer(s, ask).await.expect("someone"));
        }
        let mut seen = rr.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 37, "{name}: {rr:?}");
        // Give everyone room again.
        for n in 0..40 {
            s.hset(&agent_key(id(n)), &[("activeChats", "0"), ("maxChats", "9")]).await.expect("room");
            let keys = [agent_key(id(n)), AVAIL.to_string(), TURNS.to_string()];
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            s.eval(&INDEX_AGENT, &keys, &[&id(n).to_string()]).await.expect("index");
        }
        // The returning visitor's agent first, whatever the order.
        let mut ask = Ask::new("sticky");
        ask.sticky = Some(33);
        assert_eq!(offer(s, ask).await, Some(33), "{name}");
        // A department: members by the store's list or by the presence's departments.
        s.hset(&agent_key(id(25)), &[("departments", r#"["77"]"#)]).await.expect("dept");
        let mut ask = Ask::new("dept");
        ask.department = "77";
        ask.members = vec![38];
        let first = offer(s, ask).await;
        assert!(matches!(first, Some(25) | Some(38)), "{name}: {first:?}");
        let mut ask = Ask::new("dept2");
        ask.department = "77";
        ask.members = vec![38];
        ask.excluded = vec![25, 38];
        assert_eq!(offer(s, ask).await, None, "{name}: both members excluded");
        // A transfer to a named agent: only that one, and only if it may take the chat.
        let mut ask = Ask::new("only");
        ask.only = Some(20);
        assert_eq!(offer(s, ask).await, None, "{name}: away");
        let mut ask = Ask::new("only2");
        ask.only = Some(5);
        assert_eq!(offer(s, ask).await, Some(5), "{name}");
        answers.push((rr, first));
    }
    assert_eq!(answers[0], answers[1], "memory and Redis disagree");
}
