//! `GET /api/v1/ws` (SPEC §5.6): any event as a frame `{"id", "event", "data",
//! "visitorDataOffset", "agentDataOffset"}`, answered `{"id", "result": ReturnResult}`.
//!
//! One reader loop per socket runs calls in the order they arrive (a visitor's messages
//! keep their order); one writer task per socket, fed by a bounded channel, owns the sink
//! and batches whatever is queued into one flush. Buffers are sized explicitly: the
//! library defaults cost ~128 KiB per socket; here the read buffer is 1 KiB, and a frame's
//! call is boxed so an idle socket's task stays small.
//!
//! A socket that stops reading is closed, not waited for: when its outbox ([`OUTBOX`]
//! frames) is full, the push hub raises its [`Overflow`] and drops it; the reader loop
//! ends, the writer sends close code [`TOO_SLOW`] (4008, "too slow") if the socket takes it
//! within [`CLOSE_GRACE`], and the connection is dropped either way. An answer that cannot
//! be queued within [`ANSWER_WAIT`] counts the same. The client reconnects and resumes by
//! offsets (SPEC §6); `frontdesk_ws_closed_total{reason="too_slow"}` counts these closes.
//!
//! Refusals happen before the upgrade, as plain HTTP answers with a `ReturnResult` body
//! (issue #8): more than `ws_max_connections_per_ip` open sockets from one address on this
//! node → 429 `rate_limited`; a token `socket.connect` refuses → 401 `unauthorized`; a
//! visitor socket whose `Origin` is not one of its site's allowed domains → 403
//! `domain_not_allowed`. A socket without a token is let in unattached (it may call
//! `visitor.enter_site`, which checks the origin itself). Once open, a socket closes with
//! [`SESSION_CLOSED`] (4001, "session logged out") when its agent session is revoked
//! (`agent.logout`, a reused refresh token), on whichever node the revocation ran: clients
//! should not reconnect with the same token. 1009 closes a frame over [`MAX_FRAME`], 1003 a
//! binary frame, 1001 a node shutting down.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use frontdesk_core::error::ErrorKind;
use frontdesk_core::pipeline::{Caller, ClientInfo, Failure, Offsets, Request, Transport};
use frontdesk_core::push::Recipient;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::event::{bearer, client_info, json_response};
use crate::push::{Overflow, TOO_SLOW};
use crate::{wire, AppState};

/// Largest frame a client may send; a larger one closes the socket with 1009.
pub const MAX_FRAME: usize = 64 * 1024;
/// Outgoing frames queued per socket before the socket counts as too slow. Site-wide
/// pushes come in bursts (2,000 visitors entering within a second is 2,000 `visitor.updated`
/// frames for every agent socket), so this is sized for bursts a reading client absorbs;
/// the channel allocates only as it fills.
pub const OUTBOX: usize = 4096;
/// The largest frame the server sends. tungstenite buffers a whole frame before writing
/// it and fails the socket on one bigger than this, so it bounds a catch-up answer (a
/// heartbeat after a long absence carries every message the client lacks), not memory in
/// general: the buffer grows only as far as the frame in hand.
const MAX_OUT_FRAME: usize = 64 * 1024 * 1024;
/// How long an answer may wait for room in a full outbox before the socket is too slow.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// The close code of a socket whose session was logged out or revoked (private range).
pub const SESSION_CLOSED: u16 = 4001;
/// How the hub serialises the `session.closed` push (the agent module's revocation notice).
const SESSION_CLOSED_PUSH: &str = r#"{"push":"session.closed","#;
/// How long the writer tries to send the close frame to a socket found too slow.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
) -> Response {
    // Everything that can refuse a socket runs before the upgrade, answered like an HTTP
    // call (status and ReturnResult): the per-address cap, then the token and the origin.
    let Some(slot) = SocketSlot::take(&app.inner.sockets_per_ip, peer.ip()) else {
        metrics::counter!("frontdesk_ws_refused_total", "reason" => "per_ip").increment(1);
        let limit = app.inner.sockets_per_ip.limit;
        return json_response(wire::encode(&Err(Failure::new(
            ErrorKind::RateLimited,
            format!("this address already holds {limit} open sockets on this server; close one and retry"),
        ))));
    };
    let token = query.token.filter(|t| !t.is_empty()).or_else(|| bearer(&headers));
    let connection_id = format!("{:016x}", rand_id());
    let client = client_info(Transport::WebSocket, peer, &headers, Some(connection_id));
    // A socket with a token runs `socket.connect` (the caller resolved once, the visitor's
    // Origin checked against the site's allowed domains, presence for agents).
    let caller = match &token {
        Some(_) => match connect(&app, &token, &client).await {
            Ok(caller) => Some(caller),
            Err(failure) => {
                metrics::counter!("frontdesk_ws_refused_total", "reason" => failure.kind.as_str()).increment(1);
                return json_response(wire::encode(&Err(failure)));
            }
        },
        None => None,
    };
    let undo = (app.clone(), caller.clone(), client.connection_id.clone().unwrap_or_default());
    // A 1 KiB read buffer (allocated up front per socket; a bigger frame grows it while it
    // is read) instead of 4 KiB: `bench idle` 12.4 → 9.5 KiB per socket.
    ws.read_buffer_size(1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(MAX_OUT_FRAME)
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_failed_upgrade(move |e| {
            // `socket.connect` ran, but no socket came of it: undo what it counted.
            tracing::debug!(error = %e, "WebSocket upgrade failed");
            let (app, caller, conn_id) = undo;
            if let Some(caller) = caller {
                tokio::spawn(async move { disconnected(&app, &caller, &conn_id).await });
            }
        })
        .on_upgrade(move |socket| session(socket, app, token, client, caller, slot))
}

/// Open sockets per client address on this node, against a cap (0: none). Sockets are a
/// node's own resource (memory, file descriptors), so the count is per node, not shared.
pub struct SocketsPerIp {
    limit: usize,
    open: parking_lot::Mutex<HashMap<IpAddr, usize>>,
}

impl SocketsPerIp {
    /// Whether no socket is open on this node (every session has ended).
    pub fn none_open(&self) -> bool {
        self.open.lock().is_empty()
    }

    pub fn new(limit: usize) -> Arc<SocketsPerIp> {
        Arc::new(SocketsPerIp { limit, open: parking_lot::Mutex::new(HashMap::new()) })
    }

    /// Sockets open (or being opened) from `ip` on this node.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.lock().get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

/// One socket's place in [`SocketsPerIp`], given back when dropped (socket closed, or the
/// upgrade never happened).
struct SocketSlot {
    owner: Arc<SocketsPerIp>,
    ip: IpAddr,
}

impl SocketSlot {
    fn take(owner: &Arc<SocketsPerIp>, ip: IpAddr) -> Option<SocketSlot> {
        let ip = ip.to_canonical();
        let mut open = owner.open.lock();
        let n = open.entry(ip).or_insert(0);
        if owner.limit > 0 && *n >= owner.limit {
            return None;
        }
        *n += 1;
        Some(SocketSlot { owner: owner.clone(), ip })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per process from the OS; mixing in a counter gives distinct ids
    // without a dependency on `rand` in the transport.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish()
}

/// A call as a frame.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Frame {
    #[serde(default)]
    id: Value,
    event: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    visitor_data_offset: Option<i64>,
    #[serde(default)]
    agent_data_offset: Option<i64>,
}

async fn session(
    socket: WebSocket,
    app: AppState,
    token: Option<String>,
    client: ClientInfo,
    caller: Option<Caller>,
    _slot: SocketSlot,
) {
    metrics::gauge!("frontdesk_ws_connections").increment(1.0);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = flume::bounded::<Message>(OUTBOX);
    let overflow = Overflow::default();
    // An agent socket ends when its session is revoked (`session.closed` pushed from any
    // node): its writer recognises the push, closes with 4001 and wakes the reader.
    let revoked = Arc::new(Notify::new());
    let session = match &caller {
        Some(Caller::Agent { session_id, .. }) => Some(Session { id: session_id.clone(), revoked: revoked.clone() }),
        _ => None,
    };
    let writer = tokio::spawn(write_loop(sink, rx, overflow.clone(), session));
    let mut shutting_down = app.inner.shutdown.subscribe();
    let conn_id = client.connection_id.clone().unwrap_or_default();

    // A socket with a caller is attached for pushes under its caller's route keys.
    let attached = match caller {
        Some(caller) => {
            let keys = route_keys(&caller);
            let pushes = tx.clone();
            if let Err(e) = app.inner.hub.attach(&conn_id, &keys, pushes, overflow.clone()).await {
                tracing::warn!(error = %e, "socket not attached for pushes");
            }
            Some((caller, keys))
        }
        None => None,
    };

    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            // Too slow: the writer closes the socket; leave and detach.
            _ = overflow.raised() => break,
            _ = revoked.notified() => {
                let _ = tokio::time::timeout(ANSWER_WAIT, tx.send_async(close(SESSION_CLOSED, "session logged out"))).await;
                break;
            }
            _ = stopped(&mut shutting_down) => {
                let _ = tx.send_async(close(1001, "server shutting down")).await;
                break;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let _ = tx.send_async(close(1003, "frames must be JSON text")).await;
                break;
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                // tungstenite refuses an oversized frame while reading it.
                if e.to_string().contains("too long") || e.to_string().contains("Space limit") {
                    let _ = tx.send_async(close(1009, "frame too large")).await;
                }
                break;
            }
        };
        // Boxed: a call's future (the whole pipeline) is large, and inline it would make
        // every idle socket's task that large for its whole life (issue #7, `bench idle`).
        let answer = Box::pin(handle_frame(&app, &token, &client, text.as_str())).await;
        let queued = tokio::select! {
            queued = tokio::time::timeout(ANSWER_WAIT, tx.send_async(Message::Text(answer))) => queued,
            _ = overflow.raised() => break,
        };
        match queued {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                overflow.raise();
                break;
            }
        }
    }
    if let Some((caller, keys)) = attached {
        app.inner.hub.detach(&conn_id, &keys).await;
        Box::pin(disconnected(&app, &caller, &conn_id)).await;
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    metrics::gauge!("frontdesk_ws_connections").decrement(1.0);
}

/// Runs `socket.disconnect` for a socket that `socket.connect` let in.
async fn disconnected(app: &AppState, caller: &Caller, conn_id: &str) {
    let data = serde_json::json!({"caller": caller, "connectionId": conn_id});
    if let Err(f) = app.inner.engine.call_internal("socket.disconnect", data).await {
        if f.kind != ErrorKind::UnknownEvent {
            tracing::warn!(error = %f, "socket.disconnect failed");
        }
    }
}

/// Runs `socket.connect` with the socket's token; answers the caller.
async fn connect(app: &AppState, token: &Option<String>, client: &ClientInfo) -> Result<Caller, Failure> {
    let request = Request {
        event: "socket.connect".into(),
        data: Value::Object(Default::default()),
        bearer: token.clone(),
        offsets: None,
        client: client.clone(),
    };
    let response = app.inner.engine.call(request).await?;
    let caller = response.data.get("caller").cloned().unwrap_or(Value::Null);
    serde_json::from_value(caller).map_err(|e| Failure::internal(format!("socket.connect answered no caller: {e}")))
}

/// The route keys a caller's socket is attached under.
fn route_keys(caller: &Caller) -> Vec<String> {
    match caller {
        Caller::Agent { site_id, agent_id, .. } => {
            vec![Recipient::Agent(*agent_id).route_key(), Recipient::SiteAgents(*site_id).route_key()]
        }
        Caller::Visitor { visitor_id, .. } => vec![Recipient::Visitor(*visitor_id).route_key()],
        _ => Vec::new(),
    }
}

async fn handle_frame(
    app: &AppState,
    token: &Option<String>,
    client: &frontdesk_core::pipeline::ClientInfo,
    text: &str,
) -> Utf8Bytes {
    let (id, request) = decode_frame(text, token, client);
    let result = match request {
        Ok(request) => app.inner.engine.call(request).await,
        Err(f) => Err(f),
    };
    answer_frame(&id, &result)
}

/// A frame's id (to echo) and the call it makes, or why it makes none.
fn decode_frame(text: &str, token: &Option<String>, client: &ClientInfo) -> (Value, Result<Request, Failure>) {
    match serde_json::from_str::<Frame>(text) {
        Ok(frame) => {
            let request =
                to_request(frame.event, frame.data, frame.visitor_data_offset, frame.agent_data_offset, token, client);
            (frame.id, request)
        }
        Err(e) => {
            // Keep the id if the frame had one, so the client can match the error.
            let id = serde_json::from_str::<Value>(text).ok().and_then(|v| v.get("id").cloned()).unwrap_or(Value::Null);
            (id, Err(Failure::bad_request(format!("malformed frame: {e}"))))
        }
    }
}

/// `{"id": …, "result": ReturnResult}`.
fn answer_frame(id: &Value, result: &Result<frontdesk_core::pipeline::Response, Failure>) -> Utf8Bytes {
    // The encoded ReturnResult is spliced in as it is: no parse and re-encode per frame.
    let (_, body) = wire::encode(result);
    let mut answer = Vec::with_capacity(body.len() + 32);
    answer.extend_from_slice(b"{\"id\":");
    answer.extend_from_slice(&wire::to_json(id));
    answer.extend_from_slice(b",\"result\":");
    answer.extend_from_slice(&body);
    answer.push(b'}');
    Utf8Bytes::from(String::from_utf8(answer).unwrap_or_default())
}

fn to_request(
    event: String,
    data: Option<Value>,
    visitor: Option<i64>,
    agent: Option<i64>,
    token: &Option<String>,
    client: &frontdesk_core::pipeline::ClientInfo,
) -> Result<Request, Failure> {
    let data = match data {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(Failure::bad_request("data: expected a JSON object")),
    };
    for (name, v) in [("visitorDataOffset", visitor), ("agentDataOffset", agent)] {
        if v.is_some_and(|n| n < 0) {
            return Err(Failure::bad_request(format!("{name}: expected a whole number ≥ 0")));
        }
    }
    let offsets = (visitor.is_some() || agent.is_some())
        .then(|| Offsets { visitor_data_offset: visitor.unwrap_or(0), agent_data_offset: agent.unwrap_or(0) });
    Ok(Request { event, data, bearer: token.clone(), offsets, client: client.clone() })
}

/// Resolves once the node starts shutting down.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = *rx.borrow_and_update();
        if now {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}

/// An agent socket's session, which a `session.closed` push for it ends.
struct Session {
    id: String,
    /// Wakes the reader loop once the writer has closed the socket with 4001.
    revoked: Arc<Notify>,
}

/// What the writer does with one queued frame.
enum Outgoing {
    Frame(Message),
    /// `session.closed` for another session of the same agent: not this socket's business.
    Skip,
    /// `session.closed` for this socket's session: sent, then the socket closes with 4001.
    Revoked(Message),
}

fn outgoing(session: Option<&Session>, message: Message) -> Outgoing {
    let Some(session) = session else { return Outgoing::Frame(message) };
    let Message::Text(text) = &message else { return Outgoing::Frame(message) };
    if !text.as_str().starts_with(SESSION_CLOSED_PUSH) {
        return Outgoing::Frame(message);
    }
    let ours = serde_json::from_str::<Value>(text.as_str())
        .ok()
        .is_some_and(|v| v["data"]["sessionId"].as_str() == Some(session.id.as_str()));
    if ours {
        Outgoing::Revoked(message)
    } else {
        Outgoing::Skip
    }
}

/// Owns the sink: sends what is queued, flushing once per batch rather than per frame.
/// Ends when the queue closes, after a close frame (or this agent session's
/// `session.closed`, followed by close 4001), or when the socket is found too slow: then a
/// blocked write is abandoned, the close frame gets one bounded try, and dropping the sink
/// drops the connection.
async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    rx: flume::Receiver<Message>,
    overflow: Overflow,
    session: Option<Session>,
) {
    let too_slow = tokio::select! {
        _ = pump(&mut sink, &rx, session.as_ref()) => false,
        _ = overflow.raised() => true,
    };
    if too_slow {
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close(TOO_SLOW, "too slow"))).await;
    }
}

async fn pump(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    rx: &flume::Receiver<Message>,
    session: Option<&Session>,
) {
    while let Ok(first) = rx.recv_async().await {
        let mut next = Some(first);
        let mut ended = false;
        while let Some(message) = next.take() {
            match outgoing(session, message) {
                Outgoing::Skip => {}
                Outgoing::Frame(message) => {
                    ended = matches!(message, Message::Close(_));
                    if sink.feed(message).await.is_err() {
                        return;
                    }
                }
                Outgoing::Revoked(push) => {
                    if sink.feed(push).await.is_err() {
                        return;
                    }
                    let _ = sink.feed(close(SESSION_CLOSED, "session logged out")).await;
                    if let Some(session) = session {
                        session.revoked.notify_one();
                    }
                    ended = true;
                }
            }
            if ended {
                break;
            }
            next = rx.try_recv().ok();
        }
        if sink.flush().await.is_err() || ended {
            let _ = sink.close().await;
            return;
        }
    }
    let _ = sink.close().await;
}

/// Property tests (issue #8): any frame text is answered — a request, or a `bad_request`
/// whose answer is valid JSON echoing the frame's id — never a panic, whatever the types of
/// `id`, `event`, `data` and the offsets. Cases: `PROPTEST_CASES` (default 256).
#[cfg(test)]
mod props {
    use super::*;
    use frontdesk_core::error::ErrorKind;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            Just(Value::String("chat.visitor_send_message".into())),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A frame object whose fields may be missing or of any type.
    fn frame() -> impl Strategy<Value = Value> {
        let field = |name: &'static str| prop::option::of(json_value()).prop_map(move |v| (name, v));
        (field("id"), field("event"), field("data"), field("visitorDataOffset"), field("agentDataOffset")).prop_map(
            |fields| {
                let (a, b, c, d, e) = fields;
                let mut m = serde_json::Map::new();
                for (name, v) in [a, b, c, d, e] {
                    if let Some(v) = v {
                        m.insert(name.to_string(), v);
                    }
                }
                Value::Object(m)
            },
        )
    }

    /// Decodes and answers as the session does (an accepted request stands in for the
    /// engine's answer with an empty success).
    fn answer(text: &str) -> (Value, Result<Request, Failure>, Value) {
        let (id, request) = decode_frame(text, &Some("token".into()), &ClientInfo::default());
        let result = match &request {
            Ok(_) => Ok(frontdesk_core::pipeline::Response::default()),
            Err(f) => Err(f.clone()),
        };
        let wire: Value = serde_json::from_str(answer_frame(&id, &result).as_str()).expect("the answer is JSON");
        (id, request, wire)
    }

    fn offset_ok(v: Option<&Value>) -> bool {
        v.is_none_or(|v| v.is_null() || v.as_i64().is_some_and(|n| n >= 0))
    }

    proptest! {
        #[test]
        fn any_text_is_answered_with_json(text in any::<String>()) {
            let (_, request, wire) = answer(&text);
            prop_assert!(wire.get("id").is_some() && wire["result"].is_object());
            if let Err(f) = request {
                prop_assert_eq!(f.kind, ErrorKind::BadRequest);
                prop_assert_eq!(&wire["result"]["code"], &Value::from(-1));
                prop_assert_eq!(&wire["result"]["error"]["kind"], "bad_request");
            }
        }

        #[test]
        fn frames_of_any_field_types_are_answered_and_keep_their_id(frame in frame()) {
            let text = frame.to_string();
            // As the parser reads it (floats may differ in the last digit; see event.rs).
            let frame: Value = serde_json::from_str(&text).expect("parse");
            let (id, request, wire) = answer(&text);
            prop_assert_eq!(&id, frame.get("id").unwrap_or(&Value::Null));
            let echoed: Value = serde_json::from_str(&id.to_string()).expect("parse");
            prop_assert_eq!(&wire["id"], &echoed);
            let valid = frame.get("event").is_some_and(Value::is_string)
                && frame.get("data").is_none_or(|d| d.is_null() || d.is_object())
                && offset_ok(frame.get("visitorDataOffset"))
                && offset_ok(frame.get("agentDataOffset"));
            match request {
                Ok(r) => {
                    prop_assert!(valid, "accepted an invalid frame: {}", text);
                    prop_assert_eq!(Some(&Value::String(r.event.clone())), frame.get("event"));
                    prop_assert!(r.data.is_object());
                    let given = |k: &str| frame.get(k).and_then(Value::as_i64);
                    match r.offsets {
                        Some(o) => prop_assert_eq!(
                            (Some(o.visitor_data_offset), Some(o.agent_data_offset)),
                            (given("visitorDataOffset").or(Some(0)), given("agentDataOffset").or(Some(0)))
                        ),
                        None => prop_assert!(given("visitorDataOffset").is_none() && given("agentDataOffset").is_none()),
                    }
                }
                Err(f) => {
                    prop_assert!(!valid, "refused a valid frame: {} ({})", text, f.message);
                    prop_assert_eq!(f.kind, ErrorKind::BadRequest);
                    prop_assert_eq!(&wire["result"]["error"]["kind"], "bad_request");
                }
            }
        }
    }
}
