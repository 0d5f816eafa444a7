//! Micro-benchmarks of the hot paths below the engine: id generation, state-store
//! operations (memory; Redis when `FRONTDESK_BENCH_REDIS` names a server), the wire
//! encoding of an answer and the decoding of a request body.
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

criterion_group!(benches, ids, state, wire);
criterion_main!(benches);
