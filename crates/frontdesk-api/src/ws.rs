//! `GET /api/v1/ws` (SPEC §5.6): any event as a frame `{"id", "event", "data",
//! "visitorDataOffset", "agentDataOffset"}`, answered `{"id", "result": ReturnResult}`.
//!
//! One reader loop per socket runs calls in the order they arrive (a visitor's messages
//! keep their order); one writer task per socket, fed by a bounded channel, owns the sink
//! and batches whatever is queued into one flush. Buffers are sized explicitly: the
//! library defaults cost ~128 KiB per socket.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use frontdesk_core::pipeline::{Caller, ClientInfo, Failure, Offsets, Request, Transport};
use frontdesk_core::push::Recipient;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::event::{bearer, client_info};
use crate::{wire, AppState};

/// Largest frame a client may send; a larger one closes the socket with 1009.
pub const MAX_FRAME: usize = 64 * 1024;
/// Outgoing frames queued per socket before the socket counts as too slow.
const OUTBOX: usize = 256;

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
    let token = query.token.filter(|t| !t.is_empty()).or_else(|| bearer(&headers));
    let connection_id = format!("{:016x}", rand_id());
    let client = client_info(Transport::WebSocket, peer, &headers, Some(connection_id));
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| session(socket, app, token, client))
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

async fn session(socket: WebSocket, app: AppState, token: Option<String>, client: ClientInfo) {
    metrics::gauge!("frontdesk_ws_connections").increment(1.0);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Message>(OUTBOX);
    let writer = tokio::spawn(write_loop(sink, rx));
    let mut shutting_down = app.inner.shutdown.subscribe();
    let conn_id = client.connection_id.clone().unwrap_or_default();

    // A socket with a token is attached for pushes under its caller's route keys. The
    // `socket.connect` event resolves the caller once (and lets modules see it: presence).
    let attached = match &token {
        Some(_) => match connect(&app, &token, &client).await {
            Ok(caller) => {
                let keys = route_keys(&caller);
                if let Err(e) = app.inner.hub.attach(&conn_id, &keys, tx.clone()).await {
                    tracing::warn!(error = %e, "socket not attached for pushes");
                }
                Some((caller, keys))
            }
            Err(failure) => {
                // A bad token: say why in one frame, then close (4401, in the private range:
                // clients treat it as "log in again").
                let refusal = serde_json::json!({"push": "socket.refused", "data": {"error": failure}});
                let text = String::from_utf8(wire::to_json(&refusal)).unwrap_or_default();
                let _ = tx.send(Message::Text(Utf8Bytes::from(text))).await;
                let _ = tx.send(close(4401, "unauthorized")).await;
                drop(tx);
                let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
                metrics::gauge!("frontdesk_ws_connections").decrement(1.0);
                return;
            }
        },
        None => None,
    };

    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = stopped(&mut shutting_down) => {
                let _ = tx.send(close(1001, "server shutting down")).await;
                break;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let _ = tx.send(close(1003, "frames must be JSON text")).await;
                break;
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                // tungstenite refuses an oversized frame while reading it.
                if e.to_string().contains("too long") || e.to_string().contains("Space limit") {
                    let _ = tx.send(close(1009, "frame too large")).await;
                }
                break;
            }
        };
        let answer = handle_frame(&app, &token, &client, text.as_str()).await;
        if tx.send(Message::Text(answer)).await.is_err() {
            break;
        }
    }
    if let Some((caller, keys)) = attached {
        app.inner.hub.detach(&conn_id, &keys).await;
        let data = serde_json::json!({"caller": caller, "connectionId": conn_id});
        if let Err(f) = app.inner.engine.call_internal("socket.disconnect", data).await {
            if f.kind != frontdesk_core::error::ErrorKind::UnknownEvent {
                tracing::warn!(error = %f, "socket.disconnect failed");
            }
        }
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    metrics::gauge!("frontdesk_ws_connections").decrement(1.0);
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
    let (id, result) = match serde_json::from_str::<Frame>(text) {
        Ok(frame) => {
            let request =
                to_request(frame.event, frame.data, frame.visitor_data_offset, frame.agent_data_offset, token, client);
            let result = match request {
                Ok(request) => app.inner.engine.call(request).await,
                Err(f) => Err(f),
            };
            (frame.id, result)
        }
        Err(e) => {
            // Keep the id if the frame had one, so the client can match the error.
            let id = serde_json::from_str::<Value>(text).ok().and_then(|v| v.get("id").cloned()).unwrap_or(Value::Null);
            (id, Err(Failure::bad_request(format!("malformed frame: {e}"))))
        }
    };
    // The encoded ReturnResult is spliced in as it is: no parse and re-encode per frame.
    let (_, body) = wire::encode(&result);
    let mut answer = Vec::with_capacity(body.len() + 32);
    answer.extend_from_slice(b"{\"id\":");
    answer.extend_from_slice(&wire::to_json(&id));
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

/// Owns the sink: sends what is queued, flushing once per batch rather than per frame.
async fn write_loop(mut sink: futures::stream::SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(first) = rx.recv().await {
        let closing = matches!(first, Message::Close(_));
        if sink.feed(first).await.is_err() {
            return;
        }
        let mut closed = closing;
        while !closed {
            match rx.try_recv() {
                Ok(next) => {
                    closed = matches!(next, Message::Close(_));
                    if sink.feed(next).await.is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() || closed {
            let _ = sink.close().await;
            return;
        }
    }
    let _ = sink.close().await;
}
