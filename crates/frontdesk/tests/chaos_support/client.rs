//! A chaos client: one visitor or agent over one WebSocket at a time, as a widget or console
//! would behave under faults. It keeps its own copy of each chat (messages by id) and sends
//! the highest offsets it holds without gaps (SPEC §6); it reconnects with jittered
//! exponential backoff to any node that answers; it resends an unacknowledged message with
//! the same `clientMessageId`; on `code: 1` it uploads its copy (`chat.rebuild`) and then
//! replaces the copy with the server's full chat. Every operation and everything it is
//! told goes to the [`History`].
//!
//! One call at a time per client: answers of one reader come in the order it asked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::checker::{History, Msg};

type Ws = WebSocketStream<TcpStream>;

/// How long one call may wait for its answer before its outcome counts as unknown. Generous:
/// the scenarios share two cores with the rest of the suite in CI, and a set-up call that
/// times out (1,800 chat requests in the reconnect storm) fails the scenario.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Visitor,
    Agent,
}

/// A client's copy of one chat.
#[derive(Default, Clone, Debug)]
pub struct Copy {
    pub messages: BTreeMap<String, Value>,
}

impl Copy {
    fn take(&mut self, messages: &Value) {
        for m in messages.as_array().into_iter().flatten() {
            if let Some(id) = m["id"].as_str() {
                self.messages.insert(id.to_string(), m.clone());
            }
        }
    }

    /// Per side, the highest offset n such that the copy holds 1..=n of that side.
    pub fn offsets(&self) -> (i64, i64) {
        let mut sides: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
        for m in self.messages.values() {
            let side = usize::from(m["messageType"] != 1);
            sides[side].push(m["dataOffset"].as_i64().unwrap_or(0));
        }
        let prefix = |v: &mut Vec<i64>| {
            v.sort_unstable();
            v.dedup();
            v.iter().enumerate().take_while(|(i, o)| **o == *i as i64 + 1).count() as i64
        };
        (prefix(&mut sides[0]), prefix(&mut sides[1]))
    }
}

/// Why a call got no answer.
#[derive(Debug)]
pub enum NoAnswer {
    /// No node accepted a connection: nothing was sent.
    NotSent,
    /// Sent (or maybe sent), and the socket closed or the answer did not come in time.
    Unknown(String),
}

pub struct Client {
    pub reader: String,
    pub kind: Kind,
    pub site: String,
    token: String,
    nodes: Arc<Vec<String>>,
    prefer: usize,
    ws: Option<Ws>,
    next_id: u64,
    pub chats: BTreeMap<String, Copy>,
    history: Arc<History>,
    /// Successful connections after the first.
    pub reconnects: u32,
    /// How each socket ended that the server ended (`Some(code)` from its close frame;
    /// `None`: cut without one). Sockets the client dropped itself are not counted.
    pub closes: Vec<Option<u16>>,
    /// Set by a scenario: how long after a fault this client had resumed its chats.
    pub resumed_after: Option<Duration>,
    /// The last answer or error that did not go as hoped (for failure messages).
    pub last_problem: String,
    connected_once: bool,
}

fn jitter(attempt: u32) -> Duration {
    let cap = BACKOFF_FIRST.saturating_mul(1 << attempt.min(8)).min(BACKOFF_MAX);
    cap.mul_f64(rand::random::<f64>())
}

impl Client {
    pub fn new(kind: Kind, id: &str, site: &str, token: String, nodes: Arc<Vec<String>>, prefer: usize) -> Client {
        let reader = match kind {
            Kind::Visitor => format!("v:{id}"),
            Kind::Agent => format!("a:{id}"),
        };
        Client {
            reader,
            kind,
            site: site.to_string(),
            token,
            prefer: prefer % nodes.len().max(1),
            nodes,
            ws: None,
            next_id: 0,
            chats: BTreeMap::new(),
            history: Arc::new(History::new()),
            reconnects: 0,
            closes: Vec::new(),
            resumed_after: None,
            last_problem: String::new(),
            connected_once: false,
        }
    }

    pub fn with_history(mut self, history: Arc<History>) -> Client {
        history.reader(&self.reader, &self.site);
        self.history = history;
        self
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn is_connected(&self) -> bool {
        self.ws.is_some()
    }

    /// The node this client talks to (or will try first).
    pub fn node(&self) -> usize {
        self.prefer
    }

    /// Connects to a node that answers, starting with the preferred one, with jittered
    /// backoff between attempts, for up to `within`.
    pub async fn connect(&mut self, within: Duration) -> Result<(), NoAnswer> {
        if self.ws.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + within;
        let mut attempt = 0u32;
        loop {
            let index = (self.prefer + attempt as usize) % self.nodes.len();
            if let Ok(ws) = self.open(&self.nodes[index]).await {
                self.prefer = index;
                self.ws = Some(ws);
                if self.connected_once {
                    self.reconnects += 1;
                }
                self.connected_once = true;
                return Ok(());
            }
            attempt += 1;
            let pause = jitter(attempt);
            if Instant::now() + pause > deadline {
                return Err(NoAnswer::NotSent);
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn open(&self, addr: &str) -> anyhow::Result<Ws> {
        // Clients come from many addresses, as in life (a node caps sockets per address):
        // 127.0.0.2 … 127.0.0.61, by reader.
        let target: std::net::SocketAddr = addr.parse()?;
        let spread = self.reader.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let source = std::net::SocketAddr::from(([127, 0, 0, 2 + (spread % 60) as u8], 0));
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(source)?;
        let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await??;
        stream.set_nodelay(true)?;
        let url = format!("ws://{addr}/api/v1/ws?token={}", self.token);
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_tungstenite::client_async_with_config(url, stream, Some(config)),
        )
        .await??;
        Ok(ws)
    }

    fn lost_socket(&mut self, code: Option<u16>) {
        self.closes.push(code);
        self.ws = None;
    }

    /// Handles a pushed frame: a `chat.message` joins the chat's copy and the history.
    fn on_push(&mut self, frame: &Value) {
        if frame["push"] != "chat.message" {
            return;
        }
        let data = &frame["data"];
        let (Some(msg), Some(chat)) = (Msg::from_json(data), data["chatId"].as_str()) else { return };
        self.history.push(&self.reader, chat, msg.clone());
        if let Some(copy) = self.chats.get_mut(chat) {
            copy.messages.insert(msg.id.clone(), data.clone());
        }
    }

    /// Reads frames until `until`, handling pushes; `false` if the socket went away.
    async fn read_until(&mut self, until: Instant, want: Option<u64>) -> Result<Option<Value>, NoAnswer> {
        loop {
            let Some(ws) = self.ws.as_mut() else { return Err(NoAnswer::Unknown("no socket".into())) };
            let next = match tokio::time::timeout_at(until, ws.next()).await {
                Err(_) => return Ok(None),
                Ok(n) => n,
            };
            let text = match next {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(frame))) => {
                    self.lost_socket(frame.map(|f| u16::from(f.code)));
                    return Err(NoAnswer::Unknown("closed by the server".into()));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.lost_socket(None);
                    return Err(NoAnswer::Unknown(format!("socket error: {e}")));
                }
                None => {
                    self.lost_socket(None);
                    return Err(NoAnswer::Unknown("socket ended".into()));
                }
            };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
            if frame.get("push").is_some() {
                self.on_push(&frame);
            } else if want.is_some() && frame["id"].as_u64() == want {
                return Ok(Some(frame["result"].clone()));
            }
        }
    }

    /// Reads pushes until the socket goes away or `within` passed; true if it went away.
    pub async fn until_lost(&mut self, within: Duration) -> bool {
        if self.ws.is_none() {
            return true;
        }
        self.read_until(Instant::now() + within, None).await.is_err()
    }

    /// Reads pushes for `d` (or just waits, when not connected).
    pub async fn pump(&mut self, d: Duration) {
        if self.ws.is_none() {
            tokio::time::sleep(d).await;
            return;
        }
        let _ = self.read_until(Instant::now() + d, None).await;
    }

    /// One call over the socket; `offsets` go in the frame (SPEC §5.6).
    pub async fn call(&mut self, event: &str, data: Value, offsets: Option<(i64, i64)>) -> Result<Value, NoAnswer> {
        self.connect(Duration::from_secs(20)).await?;
        self.next_id += 1;
        let id = self.next_id;
        let mut frame = json!({"id": id, "event": event, "data": data});
        if let Some((v, a)) = offsets {
            frame["visitorDataOffset"] = json!(v);
            frame["agentDataOffset"] = json!(a);
        }
        let Some(ws) = self.ws.as_mut() else { return Err(NoAnswer::NotSent) };
        if let Err(e) = ws.send(Message::text(frame.to_string())).await {
            self.lost_socket(None);
            return Err(NoAnswer::Unknown(format!("send: {e}")));
        }
        match self.read_until(Instant::now() + ANSWER_WITHIN, Some(id)).await? {
            Some(answer) => Ok(answer),
            None => {
                // A late answer must not be taken for a later call's: start a new socket.
                self.ws = None;
                Err(NoAnswer::Unknown(format!("no answer within {ANSWER_WITHIN:?}")))
            }
        }
    }

    fn event(&self, action: &str) -> String {
        match self.kind {
            Kind::Visitor => format!("chat.visitor_{action}"),
            Kind::Agent => format!("chat.agent_{action}"),
        }
    }

    fn offsets(&self, chat: &str) -> (i64, i64) {
        self.chats.get(chat).map(Copy::offsets).unwrap_or_default()
    }

    /// Takes a `code: 0` answer about `chat` into the copy and the history.
    fn took(&mut self, chat: &str, answer: &Value) {
        self.history.answer(&self.reader, chat, answer);
        self.chats.entry(chat.to_string()).or_default().take(&answer["messages"]);
    }

    /// Sends a message (resending with the same `clientMessageId` until acknowledged or
    /// `give_up` passed); true when acknowledged.
    pub async fn send(&mut self, chat: &str, cmid: &str, give_up: Duration) -> bool {
        let deadline = Instant::now() + give_up;
        let event = self.event("send_message");
        let mut attempt = 0u32;
        while Instant::now() < deadline {
            attempt += 1;
            let op = self.history.invoke(&self.reader, chat, cmid);
            let data = json!({"chatId": chat, "content": format!("{cmid} says hello"), "clientMessageId": cmid});
            let offsets = self.offsets(chat);
            match self.call(&event, data, Some(offsets)).await {
                Err(NoAnswer::NotSent) => self.history.fail(op, "no node reachable"),
                Err(NoAnswer::Unknown(why)) => self.history.unknown(op, &why),
                Ok(answer) => match answer["code"].as_i64() {
                    Some(0) => {
                        self.took(chat, &answer);
                        let message = &answer["data"]["message"];
                        if let (Some(msg), Some(id)) = (Msg::from_json(message), message["id"].as_str()) {
                            self.history.ok(op, msg);
                            self.chats.entry(chat.to_string()).or_default().messages.insert(id.into(), message.clone());
                            return true;
                        }
                        self.history.fail(op, "an answer without data.message");
                    }
                    Some(1) => {
                        self.history.answer(&self.reader, chat, &answer);
                        self.history.fail(op, "rebuild first");
                        self.rebuild(chat, deadline).await;
                        continue;
                    }
                    _ => {
                        let kind = answer["error"]["kind"].as_str().unwrap_or("(no kind)").to_string();
                        self.history.fail(op, &kind);
                    }
                },
            }
            tokio::time::sleep(jitter(attempt)).await;
        }
        false
    }

    /// SPEC §6 rebuild: uploads the copy, then replaces it with the server's full chat.
    pub async fn rebuild(&mut self, chat: &str, deadline: Instant) -> bool {
        self.upload(chat, deadline).await && self.full_sync(chat, deadline).await.is_some()
    }

    /// `chat.rebuild` with the copy; true once answered `code: 0`.
    async fn upload(&mut self, chat: &str, deadline: Instant) -> bool {
        let mut attempt = 0u32;
        while Instant::now() < deadline {
            attempt += 1;
            let copy = self.chats.get(chat).cloned().unwrap_or_default();
            let (v, a) = copy.offsets();
            let messages: Vec<Value> = copy.messages.values().cloned().collect();
            let body = json!({"chatId": chat, "visitorDataOffset": v, "agentDataOffset": a, "messages": messages});
            match self.call("chat.rebuild", body, None).await {
                Ok(answer) if answer["code"] == 0 => {
                    self.took(chat, &answer);
                    return true;
                }
                other => self.last_problem = format!("chat.rebuild: {other:?}"),
            }
            tokio::time::sleep(jitter(attempt)).await;
        }
        false
    }

    /// The whole chat as the server has it now (a heartbeat from offsets 0/0), in `seq`
    /// order; the copy is replaced by it. Uploads the copy first when told to rebuild.
    pub async fn full_sync(&mut self, chat: &str, deadline: Instant) -> Option<Vec<Value>> {
        let event = self.event("heartbeat");
        let mut attempt = 0u32;
        while Instant::now() < deadline {
            attempt += 1;
            match self.call(&event, json!({"chatId": chat}), Some((0, 0))).await {
                Ok(answer) if answer["code"] == 0 => {
                    self.history.answer(&self.reader, chat, &answer);
                    let mut copy = Copy::default();
                    copy.take(&answer["messages"]);
                    self.chats.insert(chat.to_string(), copy);
                    return answer["messages"].as_array().cloned();
                }
                Ok(answer) if answer["code"] == 1 => {
                    self.history.answer(&self.reader, chat, &answer);
                    if !self.upload(chat, deadline).await {
                        return None;
                    }
                    continue;
                }
                other => self.last_problem = format!("{event}: {other:?}"),
            }
            tokio::time::sleep(jitter(attempt)).await;
        }
        None
    }

    /// Resumes a chat by offsets after a reconnect (a heartbeat with the copy's offsets);
    /// true once answered `code: 0` (rebuilding first if told to).
    pub async fn resume(&mut self, chat: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let event = self.event("heartbeat");
        let mut attempt = 0u32;
        while Instant::now() < deadline {
            attempt += 1;
            let offsets = self.offsets(chat);
            match self.call(&event, json!({"chatId": chat}), Some(offsets)).await {
                Ok(answer) if answer["code"] == 0 => {
                    self.took(chat, &answer);
                    return true;
                }
                Ok(answer) if answer["code"] == 1 => {
                    self.history.answer(&self.reader, chat, &answer);
                    return self.rebuild(chat, deadline).await;
                }
                _ => tokio::time::sleep(jitter(attempt)).await,
            }
        }
        false
    }

    /// The final read of every chat of this client, into the history.
    pub async fn final_reads(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let chats: Vec<String> = self.chats.keys().cloned().collect();
        for chat in chats {
            let messages = self.full_sync(&chat, deadline).await;
            let messages = messages.unwrap_or_else(|| {
                panic!("{} could not read chat {chat} at the end: {}", self.reader, self.last_problem)
            });
            let view = messages.iter().filter_map(Msg::from_json).collect();
            self.history.final_view(&self.reader, &chat, view);
        }
    }

    /// Closes the socket politely.
    pub async fn close(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
    }
}
