//! A slow consumer (issue #8): a visitor's socket that completes the handshake and then
//! stops reading while the agent floods its chat. The server closes it (close code 4008,
//! counted in `frontdesk_ws_closed_total{reason="too_slow"}`) within bounded time, queues
//! no more than one outbox for it (exactly one push is dropped: the one that found the
//! outbox full), another chat on the same node keeps its push latency meanwhile, and the
//! slow visitor reconnects and resumes by offsets, holding every message exactly once.

mod chat_support;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_support::*;
use frontdesk_core::store::Role;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::TestServer;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The longest the flood may run before the server must have closed the slow socket.
const CLOSE_WITHIN: Duration = Duration::from_secs(60);
/// The most messages the flood sends (a bound on the loop; the close comes far earlier).
const FLOOD_MAX: usize = 20_000;
/// Each flood message's size (the most a message may hold), so that the kernel's socket
/// buffers fill after a few hundred and the outbox of 4,096 frames after that.
const FLOOD_CONTENT: usize = 10_000;
/// Concurrent senders in the flood.
const FLOOD_TASKS: usize = 6;
/// The loose bound on the other chat's push latency while the flood runs (on a loaded
/// 2-core machine with a debug build).
const OTHER_CHAT_MAX_LATENCY: Duration = Duration::from_secs(5);

type RawSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A counter or gauge from `/metrics` (0 when absent).
async fn metric(node: &TestServer, series: &str) -> f64 {
    let (_, text) = node.get("/metrics").await;
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0)
}

const TOO_SLOW: &str = "frontdesk_ws_closed_total{reason=\"too_slow\"}";
const DROPPED: &str = "frontdesk_push_dropped_total{reason=\"slow_socket\"}";

/// A socket over a TCP connection with a small receive buffer, so that a client that stops
/// reading fills the server's side quickly. It says hello (and reads the answer), so it is
/// attached for pushes when this returns.
async fn small_buffer_socket(node: &TestServer, who: &Person) -> RawSocket {
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(4 * 1024).expect("SO_RCVBUF");
    let stream = tcp.connect(node.addr).await.expect("connect");
    let url = format!("ws://{}/api/v1/ws?token={}", node.addr, who.token);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("handshake");
    ws.send(Message::text(json!({"id": "hello", "event": "auth.whoami"}).to_string())).await.expect("send");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = until.checked_duration_since(Instant::now()).expect("no hello answer within 10 s");
        let msg = tokio::time::timeout(left, ws.next()).await.expect("hello answer").expect("open").expect("frame");
        if let Message::Text(t) = msg {
            if serde_json::from_str::<Value>(t.as_str()).expect("json")["id"] == "hello" {
                return ws;
            }
        }
    }
}

/// What a client knows of a chat: its messages by seq.
#[derive(Default)]
struct Copy {
    by_seq: BTreeMap<i64, Value>,
    /// Messages that arrived a second time (must stay empty).
    twice: Vec<i64>,
}

impl Copy {
    fn add(&mut self, m: &Value) {
        let seq = m["seq"].as_i64().expect("seq");
        if self.by_seq.insert(seq, m.clone()).is_some() {
            self.twice.push(seq);
        }
    }

    fn add_all(&mut self, answer: &Value) {
        for m in answer["messages"].as_array().into_iter().flatten() {
            self.add(m);
        }
    }

    /// The highest (visitor, agent) data offsets among the messages held, as a client
    /// sends them (SPEC §6).
    fn offsets(&self) -> (i64, i64) {
        let side = |visitor: bool| {
            self.by_seq
                .values()
                .filter(|m| (m["messageType"].as_i64() == Some(1)) == visitor)
                .filter_map(|m| m["dataOffset"].as_i64())
                .max()
                .unwrap_or(0)
        };
        (side(true), side(false))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_closed_and_resumes_by_offsets_embedded() {
    let env = Env::embedded().await;
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 5).await;

    // Two chats with Ann: the slow visitor's and a well-behaved one's.
    let slow = env.visitor().await;
    let mut slow_copy = Copy::default();
    let first = ok(node, "chat.request", &slow, json!({"message": "hi", "name": "Slow"}), None).await;
    slow_copy.add_all(&first);
    let slow_chat = chat_id(&first["data"]);
    ok(node, "chat.agent_accept", &ann, json!({"chatId": slow_chat}), None).await;
    let other = env.visitor().await;
    let other_chat = chat_id(&request(node, &other, json!({"message": "hello", "name": "Other"})).await);
    ok(node, "chat.agent_accept", &ann, json!({"chatId": other_chat}), None).await;
    let mut other_ws = socket(node, &other).await;
    // The slow visitor's copy is in sync before the flood (the join message included).
    let synced =
        ok(node, "chat.visitor_heartbeat", &slow, json!({"chatId": slow_chat}), Some(slow_copy.offsets())).await;
    slow_copy.add_all(&synced);

    // The slow visitor connects, says hello, and from now on reads nothing.
    let mut slow_ws = small_buffer_socket(node, &slow).await;
    let dropped_before = metric(node, DROPPED).await;
    let closed_before = metric(node, TOO_SLOW).await;

    // The flood: Ann writes into the slow chat from several tasks until the server has closed
    // the slow socket (bounded in count and time).
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let content = "x".repeat(FLOOD_CONTENT);
    let mut flood = Vec::new();
    for _ in 0..FLOOD_TASKS {
        let (stop, sent, content) = (stop.clone(), sent.clone(), content.clone());
        let (url, token, chat) = (node.url("/api/v1/chat.agent_send_message"), ann.token.clone(), slow_chat.clone());
        let http = node.http().clone();
        flood.push(tokio::spawn(async move {
            // Ann's offsets as her answers leave them, so each answer carries only what she
            // lacks (the other tasks' messages), not the whole chat again.
            let mut at = (0, 0);
            while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < FLOOD_MAX {
                let body = json!({"chatId": chat, "content": content}).to_string();
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("X-Visitor-Data-Offset", at.0.to_string())
                    .header("X-Agent-Data-Offset", at.1.to_string())
                    .body(body)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                    .expect("flood send");
                assert_eq!(resp.status().as_u16(), 200, "flood send refused");
                let answer: Value = resp.json().await.expect("flood answer");
                assert_eq!(answer["code"], 0, "{}", answer["error"]);
                let offset = |k: &str| answer[k].as_i64().unwrap_or(0);
                at = (at.0.max(offset("visitorDataOffset")), at.1.max(offset("agentDataOffset")));
            }
        }));
    }

    // Meanwhile the other chat: Ann writes every 100 ms; its visitor's pushes keep coming.
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut n = 0;
    let closed_after = loop {
        n += 1;
        let t = Instant::now();
        let body = json!({"chatId": other_chat, "content": format!("ping {n}"), "clientMessageId": format!("p-{n}")});
        ok(node, "chat.agent_send_message", &ann, body, None).await;
        loop {
            let pushed = next_push(&mut other_ws, "chat.message").await;
            if pushed["content"] == format!("ping {n}") {
                break;
            }
        }
        latencies.push(t.elapsed());
        if metric(node, TOO_SLOW).await > closed_before {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < CLOSE_WITHIN,
            "the slow socket was not closed within {CLOSE_WITHIN:?} ({} messages flooded)",
            sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.expect("flood task");
    }
    let flooded = sent.load(Ordering::Relaxed).min(FLOOD_MAX);
    latencies.sort();
    let worst = latencies.last().copied().unwrap_or_default();
    let median = latencies[latencies.len() / 2];
    println!(
        "slow socket closed {closed_after:?} into the flood ({flooded} messages of {FLOOD_CONTENT} B sent); \
         other chat's push latency meanwhile: median {median:?}, worst {worst:?} over {} pings",
        latencies.len()
    );
    assert!(worst < OTHER_CHAT_MAX_LATENCY, "the other chat slowed down: worst {worst:?}");

    // Capped: only the push that found the outbox full was dropped; once closed, the socket
    // is out of the hub and nothing more queues for it.
    assert_eq!(metric(node, DROPPED).await - dropped_before, 1.0, "one dropped push, then the socket was gone");
    assert_eq!(metric(node, TOO_SLOW).await - closed_before, 1.0);

    // The slow client reads again: what was in flight, then the end (a 4008 close frame, or
    // the connection dropped when the close frame could not be written either).
    let until = Instant::now() + Duration::from_secs(20);
    let mut pushed_to_slow = 0;
    let ending = loop {
        let left = until.checked_duration_since(Instant::now()).expect("the slow socket did not end within 20 s");
        match tokio::time::timeout(left, slow_ws.next()).await.expect("the slow socket did not end within 20 s") {
            Some(Ok(Message::Text(t))) => {
                let frame: Value = serde_json::from_str(t.as_str()).expect("json frame");
                if frame["push"] == "chat.message" && frame["data"]["chatId"] == slow_chat.as_str() {
                    slow_copy.add(&frame["data"]);
                    pushed_to_slow += 1;
                }
            }
            Some(Ok(Message::Close(close))) => break format!("close frame {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("connection dropped ({e})"),
            None => break "connection ended".to_string(),
        }
    };
    if let Some(code) = ending.strip_prefix("close frame ") {
        assert!(code.contains(&u16::from(CloseCode::Library(4008)).to_string()), "closed with {code}");
    }
    println!("the slow socket got {pushed_to_slow} pushes, then: {ending}");
    assert!(pushed_to_slow < flooded, "the slow socket cannot have received every push");
    assert!(slow_copy.twice.is_empty(), "a push arrived twice: {:?}", slow_copy.twice);

    // Reconnect and resume by offsets: the answer carries exactly what the copy lacks.
    let config = WebSocketConfig::default().max_message_size(Some(256 << 20)).max_frame_size(Some(256 << 20));
    let url = format!("ws://{}/api/v1/ws?token={}", node.addr, slow.token);
    let (mut again, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), false).await.expect("reconnect");
    let (v, a) = slow_copy.offsets();
    let resume = json!({"id": "resume", "event": "chat.visitor_heartbeat", "data": {"chatId": slow_chat},
        "visitorDataOffset": v, "agentDataOffset": a});
    again.send(Message::text(resume.to_string())).await.expect("send resume");
    let answer = loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), again.next())
            .await
            .expect("resume answer within 20 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let frame: Value = serde_json::from_str(t.as_str()).expect("json");
            if frame["id"] == "resume" {
                break frame["result"].clone();
            }
        }
    };
    assert_eq!(answer["code"], 0, "{}", answer["error"]);
    slow_copy.add_all(&answer);
    assert!(slow_copy.twice.is_empty(), "the resume answer repeated messages the client had: {:?}", slow_copy.twice);
    let last_seq = slow_copy.by_seq.keys().next_back().copied().unwrap_or(0);
    assert_eq!(slow_copy.by_seq.keys().copied().collect::<Vec<_>>(), (1..=last_seq).collect::<Vec<_>>(), "gap-free");
    let agent_side = answer["agentDataOffset"].as_i64().expect("agentDataOffset");
    assert_eq!(slow_copy.offsets(), (answer["visitorDataOffset"].as_i64().expect("v"), agent_side));
    // Every flooded message is there once: Ann's side holds the join message and the flood.
    let flood_held = slow_copy.by_seq.values().filter(|m| m["content"].as_str().is_some_and(|c| c == content)).count();
    assert_eq!(flood_held as i64, agent_side - 1, "each flooded message exactly once");

    // And the reconnected socket is live again.
    let body = json!({"chatId": slow_chat, "content": "still there?"});
    ok(node, "chat.agent_send_message", &ann, body, None).await;
    let live = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), again.next())
            .await
            .expect("a push on the new socket within 10 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let frame: Value = serde_json::from_str(t.as_str()).expect("json");
            if frame["push"] == "chat.message" {
                break frame["data"].clone();
            }
        }
    };
    assert_eq!((live["content"].as_str(), live["seq"].as_i64()), (Some("still there?"), Some(last_seq + 1)));
    env.stop().await;
}
