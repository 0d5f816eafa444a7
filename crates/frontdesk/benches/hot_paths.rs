//! Micro-benchmarks of the hot paths below the engine: id generation, state-store
//! operations (memory; Redis when `FRONTDESK_BENCH_REDIS` names a server), the wire
//! encoding of an answer and the decoding of a request body, and the rebuild's merge of a
//! client's copy into the chat (SPEC §6).
//! Run: `cargo bench -p frontdesk --bench hot_paths` (add `FRONTDESK_BENCH_REDIS=redis://…`).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use frontdesk_core::id::IdGenerator;
use frontdesk_core::pipeline::Response;
use frontdesk_core::state::StateStore;
use frontdesk_state::memory::MemoryState;
use frontdesk_state::redis_state::RedisState;
use serde_json::json;

fn ids(c: &mut Criterion) {
    let g = IdGenerator::new(1).expect("generator");
    c.bench_function("id: next snowflake", |b| b.iter(|| g.next().expect("id")));
}

fn state_ops(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, state: Arc<dyn StateStore>) {
    let key = "fd:{c:1}:meta";
    rt.block_on(state.hset(key, &[("status", "active"), ("seq", "0")])).expect("seed");
    c.bench_function(&format!("state {name}: hget"), |b| {
        b.iter(|| rt.block_on(state.hget(key, "status")).expect("hget"))
    });
    c.bench_function(&format!("state {name}: hset one field"), |b| {
        b.iter(|| rt.block_on(state.hset(key, &[("typing", "1")])).expect("hset"))
    });
    c.bench_function(&format!("state {name}: hincrby"), |b| {
        b.iter(|| rt.block_on(state.hincrby(key, "seq", 1)).expect("hincrby"))
    });
    let msgs = "fd:{c:1}:msgs";
    let mut n = 0u64;
    c.bench_function(&format!("state {name}: zadd + zrange tail"), |b| {
        b.iter(|| {
            n += 1;
            let member = format!("{{\"seq\":{n},\"content\":\"hello there\"}}");
            rt.block_on(state.zadd(msgs, &[(n as f64, &member)])).expect("zadd");
            rt.block_on(state.zrange_by_score(msgs, (n.saturating_sub(5)) as f64, f64::INFINITY, None)).expect("range")
        })
    });
}

fn state(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    state_ops(c, "memory", &rt, Arc::new(MemoryState::new()));
    if let Ok(url) = std::env::var("FRONTDESK_BENCH_REDIS") {
        let redis = rt.block_on(RedisState::connect(&url, "bench:")).expect("redis");
        state_ops(c, "redis", &rt, Arc::new(redis));
    }
}

fn wire(c: &mut Criterion) {
    let mut response =
        Response { code: 0, visitor_data_offset: Some(12), agent_data_offset: Some(9), ..Response::default() };
    response.messages = Some(vec![json!({
        "id": "383553708379602944", "chatId": "383553708379600000", "seq": 21, "dataOffset": 12,
        "messageType": 1, "senderId": "383553708379601111", "senderName": "Ada",
        "content": "Hello, is the blue one still in stock in size 38?", "sendTime": "2026-11-24T09:45:30.158Z",
        "clientMessageId": "c-7f3a", "sig": "n4bQgNh0sV1dq1eB7W0yq3f5oY0lO9h1rS1tYkq9c2E"
    })]);
    let answer = Ok(response);
    c.bench_function("wire: encode a ReturnResult with one message", |b| {
        b.iter(|| frontdesk_api::wire::encode(&answer))
    });
    let body = br#"{"chatId": "383553708379600000", "content": "Hello, is the blue one still in stock in size 38?", "clientMessageId": "c-7f3a"}"#;
    c.bench_function("wire: decode a request body", |b| {
        b.iter(|| frontdesk_api::event::decode_data(body).expect("decode"))
    });
}

/// A chat of `n` messages, alternating sides, as the server stored them.
fn chat(n: i64, seq_from: i64) -> Vec<frontdesk_modules::model::ChatMessage> {
    use frontdesk_core::id::Id;
    (0..n)
        .map(|i| {
            let visitor = i % 2 == 0;
            frontdesk_modules::model::ChatMessage {
                id: Id(383_553_708_379_600_000 + (seq_from + i) as u64),
                chat_id: Id(383_553_708_379_500_000),
                seq: seq_from + i,
                data_offset: (seq_from + i + 1) / 2,
                message_type: if visitor { 1 } else { 2 },
                sender_id: Id(if visitor { 11 } else { 22 }),
                sender_name: if visitor { "Ada".into() } else { "Bo".into() },
                content: "Hello, is the blue one still in stock in size 38?".into(),
                send_time: format!("2026-11-24T09:45:{:02}.{:03}Z", (seq_from + i) / 1000 % 60, (seq_from + i) % 1000),
                client_message_id: Some(format!("c-{}", seq_from + i)),
                attachment: None,
                sig: None,
            }
        })
        .collect()
}

fn merge(c: &mut Criterion) {
    // The usual rebuild: the state lost the chat, the client uploads its 200 messages.
    let uploaded = chat(200, 1);
    c.bench_function("rebuild merge: 200 uploaded into an empty chat", |b| {
        b.iter(|| frontdesk_modules::chat::rebuild_union(Vec::new(), uploaded.clone()))
    });
    // Both sides hold messages: 180 the server kept plus 20 newer it lost, against the
    // client's full copy (ids overlap; nothing renumbered).
    let existing = chat(180, 1);
    c.bench_function("rebuild merge: 180 kept + 200 uploaded, overlapping", |b| {
        b.iter(|| frontdesk_modules::chat::rebuild_union(existing.clone(), uploaded.clone()))
    });
    // The worst case: the chat was recreated empty and counted again, so two counts of
    // seq meet and everything is renumbered by send time.
    let recounted = chat(50, 1).into_iter().map(|mut m| {
        m.id = frontdesk_core::id::Id(m.id.0 + 1_000_000);
        m.client_message_id = Some(format!("n-{}", m.seq));
        m
    });
    let recounted: Vec<_> = recounted.collect();
    c.bench_function("rebuild merge: 200 uploaded + 50 recounted, renumbered", |b| {
        b.iter(|| frontdesk_modules::chat::rebuild_union(recounted.clone(), uploaded.clone()))
    });
}

criterion_group!(benches, ids, state, wire, merge);
criterion_main!(benches);
