//! The history checker of the chaos scenarios: clients log every operation they make and
//! everything they are told (sends invoked / acknowledged / failed / of unknown outcome,
//! answers with their offsets and messages, pushed messages, the final full read of each
//! chat by each participant, the durable transcript), and [`History::check`] judges the log
//! against five invariants afterwards:
//!
//! - **I1 no loss**: every acknowledged message (by `clientMessageId`, with the id it was
//!   acknowledged with) is in the final history of its chat as each participant reads it
//!   after the fault, and in the durable transcript. Present under another id counts too:
//!   SPEC §6 says a message once shown never changes its id. The one exception SPEC §6
//!   itself makes: after a rebuild (the chat had a `code: 1`), a send whose first attempt
//!   was stored and shown but whose answer was lost, resent with its clientMessageId, may
//!   survive under the first attempt's id (the union is by id *and* clientMessageId);
//!   counted in `merged`, not as a loss. Likewise every message any
//!   reader was shown (in an answer or a push) is in every final history: a rebuild is the
//!   union of what anyone saw.
//! - **I2 no duplicate**: no final history or transcript holds an id or a `clientMessageId`
//!   twice; two acknowledgements of one `clientMessageId` name the same message id.
//! - **I3 one gap-free order**: in every final history `seq` runs 1, 2, 3 … in order, the
//!   visitor side's `dataOffset` 1, 2, 3 … and the agent side's likewise; every participant
//!   and the transcript hold the same (id, seq) sequence; a message id always carries the
//!   same chat and content wherever it is seen.
//! - **I4 offsets never go backwards**: per reader and chat, the offsets of `code: 0`
//!   answers (taken in the order the reader received them; one call at a time per reader)
//!   are component-wise non-decreasing. The one documented exception is SPEC §6's rebuild
//!   signal: a `code: 1` answer (`-1/-1` for a lost chat, or the server's lower offsets for a
//!   client ahead of it) is not a position, it is exempt and counted in `rebuilds`. Since a
//!   rebuild merges the client's copy and takes the maximum offsets, the first `code: 0`
//!   answer after it must again be at or above everything that reader was answered before.
//!   Pushes are not answers (they carry the offsets of their message's moment and may
//!   overtake an answer on the socket), so they are not held to this.
//! - **I5 nothing crosses sites**: every message a reader receives (answer, push, final read)
//!   belongs to the chat it came for, that chat belongs to the reader's site, a visitor
//!   message was sent by the chat's own visitor and an agent message by an agent of the
//!   chat's site.
//!
//! The [`Report`] counts sent / acknowledged / failed / unknown / lost / duplicated, the
//! rebuild signals, and the recovery time after the mark named [`RECOVER_FROM`].

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

/// The mark from which [`Report::recovery`] is measured.
pub const RECOVER_FROM: &str = "recover-from";

/// A chat message as the checker needs it. `offset` is -1 when the source has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub id: String,
    pub chat: String,
    pub seq: i64,
    pub offset: i64,
    pub kind: i64,
    pub sender: String,
    pub cmid: Option<String>,
    pub content: String,
}

impl Msg {
    /// From a `ChatMessage` (SPEC §5.2), a pushed `chat.message`'s data, or a transcript row.
    pub fn from_json(v: &Value) -> Option<Msg> {
        Some(Msg {
            id: v["id"].as_str()?.to_string(),
            chat: v["chatId"].as_str()?.to_string(),
            seq: v["seq"].as_i64()?,
            offset: v["dataOffset"].as_i64().unwrap_or(-1),
            kind: v["messageType"].as_i64()?,
            sender: v["senderId"].as_str().unwrap_or_default().to_string(),
            cmid: v["clientMessageId"].as_str().map(str::to_string),
            content: v["content"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Every message of an answer's `messages` (malformed ones are a violation of their own:
    /// the caller passes them through [`History::answer`], which keeps what parses).
    pub fn all(v: &Value) -> Vec<Msg> {
        v.as_array().into_iter().flatten().filter_map(Msg::from_json).collect()
    }

    fn visitor_side(&self) -> bool {
        self.kind == 1
    }
}

/// What happened, in the order the log received it.
#[derive(Clone, Debug)]
pub enum Event {
    Invoke { op: u64, reader: String, chat: String, cmid: String },
    Ok { op: u64, msg: Msg },
    Fail { op: u64, kind: String },
    Unknown { op: u64, why: String },
    Answer { reader: String, chat: String, code: i64, offsets: (i64, i64), messages: Vec<Msg> },
    Push { reader: String, chat: String, msg: Msg },
    Final { reader: String, chat: String, messages: Vec<Msg> },
    Durable { chat: String, messages: Vec<Msg> },
    Mark { name: String },
}

#[derive(Clone, Debug)]
struct ChatInfo {
    site: String,
    visitor: String,
    agents: Vec<String>,
}

#[derive(Default)]
struct Log {
    events: Vec<(Instant, Event)>,
    chats: HashMap<String, ChatInfo>,
    /// reader ("v:<id>" or "a:<id>") → site.
    readers: HashMap<String, String>,
    next_op: u64,
}

/// The shared log. Cheap to call from many tasks (one short lock per entry).
#[derive(Default)]
pub struct History {
    log: Mutex<Log>,
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// What a run amounts to.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Distinct messages (clientMessageIds) clients tried to send.
    pub sent: usize,
    /// Distinct messages acknowledged with `code: 0`.
    pub acknowledged: usize,
    /// Send attempts answered with an error (`code: -1`).
    pub failed: usize,
    /// Send attempts with no answer (socket lost, timeout).
    pub unknown: usize,
    /// Distinct messages never acknowledged (the client gave up).
    pub abandoned: usize,
    /// Acknowledged (or shown) messages missing from a final history or the transcript.
    pub lost: usize,
    /// Extra copies of messages in final histories or transcripts.
    pub duplicated: usize,
    /// Acknowledged messages that survive under an earlier id with the same
    /// clientMessageId after a rebuild (see I1).
    pub merged: usize,
    /// `code: 1` answers (SPEC §6 rebuild signals).
    pub rebuilds: usize,
    pub pushes: usize,
    /// From the [`RECOVER_FROM`] mark until every reader that sent after it had an
    /// acknowledgement (the slowest reader's first one).
    pub recovery: Option<Duration>,
    /// Longest wait of any single send attempt that failed (how fast failures are).
    pub slowest_failure: Option<Duration>,
    pub violations: Vec<Violation>,
}

impl Report {
    /// Panics with every violation when the run broke an invariant.
    pub fn assert_clean(&self) {
        assert!(
            self.violations.is_empty() && self.lost == 0 && self.duplicated == 0,
            "the history checker found {} violation(s):\n{}",
            self.violations.len(),
            self.violations.iter().map(|v| format!("  {}: {}", v.invariant, v.detail)).collect::<Vec<_>>().join("\n")
        );
    }

    pub fn broke(&self, invariant: &str) -> bool {
        self.violations.iter().any(|v| v.invariant == invariant)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
        write!(
            f,
            "sent={} acknowledged={} failed={} unknown={} abandoned={} lost={} duplicated={} merged={} rebuilds={} \
             pushes={} recovery={} slowest_failure={} violations={}",
            self.sent,
            self.acknowledged,
            self.failed,
            self.unknown,
            self.abandoned,
            self.lost,
            self.duplicated,
            self.merged,
            self.rebuilds,
            self.pushes,
            ms(self.recovery),
            ms(self.slowest_failure),
            self.violations.len()
        )
    }
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn reader(&self, reader: &str, site: &str) {
        self.log.lock().readers.insert(reader.to_string(), site.to_string());
    }

    /// A chat of `site` between visitor reader `visitor` and agent readers `agents`.
    pub fn chat(&self, chat: &str, site: &str, visitor: &str, agents: &[&str]) {
        let info = ChatInfo {
            site: site.to_string(),
            visitor: visitor.to_string(),
            agents: agents.iter().map(|a| a.to_string()).collect(),
        };
        self.log.lock().chats.insert(chat.to_string(), info);
    }

    fn push_event(&self, event: Event) {
        self.log.lock().events.push((Instant::now(), event));
    }

    /// A send attempt; returns its op number.
    pub fn invoke(&self, reader: &str, chat: &str, cmid: &str) -> u64 {
        let mut log = self.log.lock();
        log.next_op += 1;
        let op = log.next_op;
        let event = Event::Invoke { op, reader: reader.into(), chat: chat.into(), cmid: cmid.into() };
        log.events.push((Instant::now(), event));
        op
    }

    pub fn ok(&self, op: u64, msg: Msg) {
        self.push_event(Event::Ok { op, msg });
    }

    pub fn fail(&self, op: u64, kind: &str) {
        self.push_event(Event::Fail { op, kind: kind.into() });
    }

    pub fn unknown(&self, op: u64, why: &str) {
        self.push_event(Event::Unknown { op, why: why.into() });
    }

    /// An answer to a chat event (`code` 0 or 1) with its offsets and messages.
    pub fn answer(&self, reader: &str, chat: &str, answer: &Value) {
        let code = answer["code"].as_i64().unwrap_or(-1);
        let at = |k: &str| answer[k].as_i64().unwrap_or(i64::MIN);
        let event = Event::Answer {
            reader: reader.into(),
            chat: chat.into(),
            code,
            offsets: (at("visitorDataOffset"), at("agentDataOffset")),
            messages: Msg::all(&answer["messages"]),
        };
        self.push_event(event);
    }

    pub fn push(&self, reader: &str, chat: &str, msg: Msg) {
        self.push_event(Event::Push { reader: reader.into(), chat: chat.into(), msg });
    }

    /// The reader's full read of the chat after the fault.
    pub fn final_view(&self, reader: &str, chat: &str, messages: Vec<Msg>) {
        self.push_event(Event::Final { reader: reader.into(), chat: chat.into(), messages });
    }

    /// The chat's durable transcript (`GET /api/v1/chats/{id}`) once the write-behind drained.
    pub fn durable(&self, chat: &str, messages: Vec<Msg>) {
        self.push_event(Event::Durable { chat: chat.into(), messages });
    }

    pub fn mark(&self, name: &str) {
        self.push_event(Event::Mark { name: name.into() });
    }

    /// Every logged event about `chat`, one a line with its time since the first event (for
    /// a failing scenario's output).
    pub fn dump_chat(&self, chat: &str) -> String {
        let log = self.log.lock();
        let Some(t0) = log.events.first().map(|e| e.0) else { return String::new() };
        let mut op_chat: HashMap<u64, bool> = HashMap::new();
        let mut out = String::new();
        for (at, e) in &log.events {
            let about = match e {
                Event::Invoke { op, chat: c, .. } => {
                    op_chat.insert(*op, c == chat);
                    c == chat
                }
                Event::Ok { op, .. } | Event::Fail { op, .. } | Event::Unknown { op, .. } => {
                    op_chat.get(op).copied().unwrap_or(false)
                }
                Event::Answer { chat: c, .. } | Event::Push { chat: c, .. } | Event::Final { chat: c, .. } => c == chat,
                Event::Durable { chat: c, .. } => c == chat,
                Event::Mark { .. } => true,
            };
            if about {
                let short = format!("{e:?}").replace(&format!("chat: \"{chat}\", "), "");
                out.push_str(&format!("{:>7} ms {short}\n", at.duration_since(t0).as_millis()));
            }
        }
        out
    }

    pub fn events(&self) -> Vec<Event> {
        self.log.lock().events.iter().map(|(_, e)| e.clone()).collect()
    }

    /// Judges the log (see the module comment).
    pub fn check(&self) -> Report {
        let log = self.log.lock();
        let mut c = Checker { log: &log, report: Report::default() };
        c.counts();
        c.no_loss_no_duplicate();
        c.order();
        c.offsets_monotonic();
        c.sites();
        c.recovery();
        c.report
    }
}

/// A view's (id, seq) sequence.
type Shape = Vec<(String, i64)>;

struct Checker<'a> {
    log: &'a Log,
    report: Report,
}

impl<'a> Checker<'a> {
    fn violate(&mut self, invariant: &'static str, detail: String) {
        self.report.violations.push(Violation { invariant, detail });
    }

    /// op → (reader, chat, cmid) of every invoke.
    fn invokes(&self) -> HashMap<u64, (&'a str, &'a str, &'a str)> {
        let mut ops = HashMap::new();
        let log: &'a Log = self.log;
        for (_, e) in &log.events {
            if let Event::Invoke { op, reader, chat, cmid } = e {
                ops.insert(*op, (reader.as_str(), chat.as_str(), cmid.as_str()));
            }
        }
        ops
    }

    /// cmid → (chat, ids it was acknowledged with).
    fn acknowledged(&self) -> BTreeMap<String, (String, Vec<String>)> {
        let ops = self.invokes();
        let mut acked: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for (_, e) in &self.log.events {
            if let Event::Ok { op, msg } = e {
                if let Some((_, chat, cmid)) = ops.get(op) {
                    let entry = acked.entry(cmid.to_string()).or_insert_with(|| (chat.to_string(), Vec::new()));
                    entry.1.push(msg.id.clone());
                }
            }
        }
        acked
    }

    fn counts(&mut self) {
        let ops = self.invokes();
        let sent: HashSet<&str> = ops.values().map(|o| o.2).collect();
        let acked = self.acknowledged();
        self.report.sent = sent.len();
        self.report.acknowledged = acked.len();
        self.report.abandoned = sent.iter().filter(|c| !acked.contains_key(**c)).count();
        let mut invoked_at = HashMap::new();
        for (at, e) in &self.log.events {
            match e {
                Event::Invoke { op, .. } => {
                    invoked_at.insert(*op, *at);
                }
                Event::Fail { op, .. } => {
                    self.report.failed += 1;
                    if let Some(start) = invoked_at.get(op) {
                        let took = at.duration_since(*start);
                        self.report.slowest_failure = Some(self.report.slowest_failure.map_or(took, |d| d.max(took)));
                    }
                }
                Event::Unknown { .. } => self.report.unknown += 1,
                Event::Answer { code: 1, .. } => self.report.rebuilds += 1,
                Event::Push { .. } => self.report.pushes += 1,
                _ => {}
            }
        }
    }

    /// The views the loss and duplicate checks read: (who, chat, messages).
    fn views(&self) -> Vec<(String, &'a str, &'a [Msg])> {
        let mut views = Vec::new();
        let log: &'a Log = self.log;
        for (_, e) in &log.events {
            match e {
                Event::Final { reader, chat, messages } => views.push((reader.clone(), chat.as_str(), &messages[..])),
                Event::Durable { chat, messages } => {
                    views.push(("the transcript".into(), chat.as_str(), &messages[..]))
                }
                _ => {}
            }
        }
        views
    }

    /// I1 and I2.
    fn no_loss_no_duplicate(&mut self) {
        let acked = self.acknowledged();
        for (cmid, (chat, ids)) in &acked {
            let distinct: HashSet<&String> = ids.iter().collect();
            if distinct.len() > 1 {
                self.violate("I2", format!("clientMessageId {cmid} of chat {chat} was acknowledged as {ids:?}"));
            }
        }
        // Every participant of every chat with a send must have read it at the end.
        let mut readers_of: HashMap<&str, HashSet<&str>> = HashMap::new();
        let mut durable: HashSet<&str> = HashSet::new();
        for (_, e) in &self.log.events {
            match e {
                Event::Final { reader, chat, .. } => {
                    readers_of.entry(chat.as_str()).or_default().insert(reader.as_str());
                }
                Event::Durable { chat, .. } => {
                    durable.insert(chat.as_str());
                }
                _ => {}
            }
        }
        let chats: HashSet<&str> = acked.values().map(|(c, _)| c.as_str()).collect();
        let mut missing_reads = Vec::new();
        for chat in &chats {
            if let Some(info) = self.log.chats.get(*chat) {
                for r in std::iter::once(&info.visitor).chain(&info.agents) {
                    if !readers_of.get(chat).is_some_and(|s| s.contains(r.as_str())) {
                        missing_reads.push(format!("{r} never read chat {chat} at the end"));
                    }
                }
            }
            if !durable.contains(chat) {
                missing_reads.push(format!("the transcript of chat {chat} was never read"));
            }
        }
        for m in missing_reads {
            self.violate("I1", m);
        }
        let mut lost: HashSet<String> = HashSet::new();
        let mut merged: HashSet<String> = HashSet::new();
        let mut found = Vec::new();
        let rebuilt: HashSet<&str> = self
            .log
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Answer { chat, code: 1, .. } => Some(chat.as_str()),
                _ => None,
            })
            .collect();
        for (who, chat, messages) in self.views() {
            let by_id: HashSet<&str> = messages.iter().map(|m| m.id.as_str()).collect();
            let by_cmid: HashMap<&str, &str> =
                messages.iter().filter_map(|m| Some((m.cmid.as_deref()?, m.id.as_str()))).collect();
            for (cmid, (c, ids)) in &acked {
                if c != chat {
                    continue;
                }
                for id in ids {
                    if by_id.contains(id.as_str()) {
                        continue;
                    }
                    match by_cmid.get(cmid.as_str()) {
                        // SPEC §6's union by clientMessageId after a lost state: the send
                        // was stored once before the loss (and shown to the other side) but
                        // its answer never came; resent, it was stored again, and the merge
                        // kept the earlier copy. One message, under the earlier id.
                        Some(_) if rebuilt.contains(chat) => {
                            merged.insert(cmid.clone());
                        }
                        Some(other) => {
                            lost.insert(cmid.clone());
                            found.push(format!("{who}: chat {chat}: {cmid} acknowledged as {id} shows as {other}"));
                        }
                        None => {
                            lost.insert(cmid.clone());
                            found.push(format!("{who}: chat {chat}: acknowledged {cmid} ({id}) is missing"));
                        }
                    }
                }
            }
            let (mut ids, mut cmids) = (HashSet::new(), HashSet::new());
            for m in messages {
                let twice_id = !ids.insert(m.id.as_str());
                let twice_cmid = m.cmid.as_deref().is_some_and(|c| !cmids.insert(c));
                if twice_id || twice_cmid {
                    self.report.duplicated += 1;
                    let what = if twice_id { format!("id {}", m.id) } else { format!("clientMessageId {:?}", m.cmid) };
                    self.violate("I2", format!("{who}: chat {chat} holds {what} twice"));
                }
            }
        }
        // What any reader was shown must survive too (SPEC §6: a rebuild is the union of
        // what anyone saw, and a message once shown keeps its id).
        let mut shown: HashMap<&str, BTreeMap<&str, (&str, Option<&str>)>> = HashMap::new();
        for (_, e) in &self.log.events {
            let (reader, chat, msgs): (&str, &str, Vec<&Msg>) = match e {
                Event::Push { reader, chat, msg } => (reader, chat, vec![msg]),
                Event::Answer { reader, chat, messages, .. } => (reader, chat, messages.iter().collect()),
                _ => continue,
            };
            for m in msgs {
                shown.entry(chat).or_default().entry(m.id.as_str()).or_insert((reader, m.cmid.as_deref()));
            }
        }
        for (who, chat, messages) in self.views() {
            let by_id: HashSet<&str> = messages.iter().map(|m| m.id.as_str()).collect();
            let cmids: HashSet<&str> = messages.iter().filter_map(|m| m.cmid.as_deref()).collect();
            for (id, (reader, cmid)) in shown.get(chat).into_iter().flatten() {
                if cmid.is_some_and(|c| cmids.contains(c)) && rebuilt.contains(chat) {
                    continue;
                }
                if !by_id.contains(id) {
                    lost.insert(format!("shown {id}"));
                    found.push(format!("{who}: chat {chat}: message {id} shown to {reader} is missing"));
                }
            }
        }
        self.report.lost = lost.len();
        self.report.merged = merged.len();
        for f in found {
            self.violate("I1", f);
        }
    }

    /// I3.
    fn order(&mut self) {
        let mut by_chat: BTreeMap<&str, Vec<(String, Shape)>> = BTreeMap::new();
        let mut problems = Vec::new();
        for (who, chat, messages) in self.views() {
            let mut expect = (1, 1, 1);
            for m in messages {
                if m.seq != expect.0 {
                    problems.push(format!("{who}: chat {chat}: seq {} where {} was due", m.seq, expect.0));
                    break;
                }
                expect.0 += 1;
                let side = if m.visitor_side() { &mut expect.1 } else { &mut expect.2 };
                if m.offset >= 0 && m.offset != *side {
                    problems.push(format!(
                        "{who}: chat {chat}: message {} has dataOffset {} where {side} was due",
                        m.id, m.offset
                    ));
                    break;
                }
                *side += 1;
            }
            let shape = messages.iter().map(|m| (m.id.clone(), m.seq)).collect();
            by_chat.entry(chat).or_default().push((who, shape));
        }
        for (chat, views) in by_chat {
            let (first_who, first) = &views[0];
            for (who, shape) in &views[1..] {
                if shape != first {
                    problems.push(format!("chat {chat}: {who} reads {shape:?} but {first_who} reads {first:?}"));
                }
            }
        }
        // A message id always names the same chat and content.
        let mut seen: HashMap<&str, (&str, &str)> = HashMap::new();
        for (_, e) in &self.log.events {
            let msgs: Vec<&Msg> = match e {
                Event::Ok { msg, .. } | Event::Push { msg, .. } => vec![msg],
                Event::Answer { messages, .. } | Event::Final { messages, .. } | Event::Durable { messages, .. } => {
                    messages.iter().collect()
                }
                _ => vec![],
            };
            for m in msgs {
                let now = (m.chat.as_str(), m.content.as_str());
                if let Some(was) = seen.insert(m.id.as_str(), now) {
                    if was != now {
                        problems.push(format!("message {} changed from {was:?} to {now:?}", m.id));
                    }
                }
            }
        }
        for p in problems {
            self.violate("I3", p);
        }
    }

    /// I4.
    fn offsets_monotonic(&mut self) {
        let mut high: HashMap<(&str, &str), (i64, i64)> = HashMap::new();
        let mut problems = Vec::new();
        for (_, e) in &self.log.events {
            if let Event::Answer { reader, chat, code: 0, offsets, .. } = e {
                let h = high.entry((reader.as_str(), chat.as_str())).or_insert((0, 0));
                if offsets.0 < h.0 || offsets.1 < h.1 {
                    problems.push(format!("{reader} in chat {chat} was answered {offsets:?} after {h:?}"));
                }
                *h = (h.0.max(offsets.0), h.1.max(offsets.1));
            }
        }
        for p in problems {
            self.violate("I4", p);
        }
    }

    /// I5.
    fn sites(&mut self) {
        let log = self.log;
        let mut problems = Vec::new();
        let mut check = |reader: Option<&str>, chat: &str, m: &Msg| {
            let Some(info) = log.chats.get(chat) else {
                problems.push(format!("a message of unknown chat {chat} reached {reader:?}"));
                return;
            };
            if m.chat != chat {
                problems.push(format!("message {} of chat {} came as part of chat {chat}", m.id, m.chat));
            }
            if let Some(r) = reader {
                if log.readers.get(r) != Some(&info.site) {
                    problems.push(format!(
                        "{r} (site {:?}) received message {} of site {}",
                        log.readers.get(r),
                        m.id,
                        info.site
                    ));
                }
            }
            let sender_ok = match m.kind {
                1 => format!("v:{}", m.sender) == info.visitor,
                2 => log.readers.get(&format!("a:{}", m.sender)) == Some(&info.site),
                _ => true,
            };
            if !sender_ok {
                problems.push(format!("message {} (type {}) of chat {chat} was sent by {}", m.id, m.kind, m.sender));
            }
        };
        for (_, e) in &log.events {
            match e {
                Event::Push { reader, chat, msg } => check(Some(reader), chat, msg),
                Event::Answer { reader, chat, messages, .. } | Event::Final { reader, chat, messages } => {
                    messages.iter().for_each(|m| check(Some(reader), chat, m))
                }
                Event::Durable { chat, messages } => messages.iter().for_each(|m| check(None, chat, m)),
                _ => {}
            }
        }
        for p in problems {
            self.violate("I5", p);
        }
    }

    fn recovery(&mut self) {
        let Some(from) = self.log.events.iter().rev().find_map(|(at, e)| match e {
            Event::Mark { name } if name == RECOVER_FROM => Some(*at),
            _ => None,
        }) else {
            return;
        };
        let ops = self.invokes();
        let mut waiting: HashSet<&str> = HashSet::new();
        let mut first_ack: HashMap<&str, Instant> = HashMap::new();
        for (at, e) in &self.log.events {
            if *at < from {
                continue;
            }
            match e {
                Event::Invoke { reader, .. } => {
                    waiting.insert(reader.as_str());
                }
                Event::Ok { op, .. } => {
                    if let Some((reader, _, _)) = ops.get(op) {
                        first_ack.entry(reader).or_insert(*at);
                    }
                }
                _ => {}
            }
        }
        if waiting.iter().any(|r| !first_ack.contains_key(r)) {
            let never: Vec<&&str> = waiting.iter().filter(|r| !first_ack.contains_key(**r)).collect();
            self.violate("recovery", format!("readers never acknowledged after the fault: {never:?}"));
        }
        self.report.recovery = first_ack.values().max().map(|last| last.duration_since(from));
    }
}
