//! Durable chat history (SPEC §2, §5.3): the write-behind contract and the history query
//! shapes of the [`Store`](crate::store::Store) port, offline messages included.
//!
//! Write-behind: the storage module (and the offline module, for offline messages) turns
//! each durable effect of an event into one [`HistoryJob`] on the bus queue
//! [`HISTORY_QUEUE`]; the storage worker applies batches of them with
//! [`Store::apply_history`](crate::store::Store::apply_history) in one transaction.
//! Applying is idempotent: offline messages are keyed by id, chats and visitors are
//! snapshots applied last-writer-wins by `version`, so a replayed or late job never undoes
//! a newer state. The job is versioned (`v`); a node meeting a newer `v` fails the job back
//! to the bus, where a newer node picks it up.
//!
//! Messages are versioned by `rev` (issue #8), so that the durable transcript ends up equal
//! to the chat a rebuild (SPEC §6) merged, in whatever order the jobs arrive:
//! - an ordinary [`MessageRecord`] (an event appended or answered the message; `rev` is
//!   when the record stage read it) is only ever inserted: it never changes a stored row's
//!   `seq` or offset, is dropped when a row with its id or its (chat, `clientMessageId`)
//!   already exists, and is dropped when its `rev` is older than the last rebuild applied
//!   to its chat (that rebuild, read later, already carried every message the chat kept);
//! - a rebuild record (`rebuild: true`: `chat.rebuild` records every message of the merged
//!   chat, all with the `rev` taken just before it read them) inserts or renumbers its row,
//!   removes the chat's other rows with its `clientMessageId` (the union kept one per
//!   `clientMessageId`), and raises the chat's merged `rev`; one older than the chat's last
//!   applied rebuild changes nothing. It renumbers whatever ordinary record stored the row,
//!   even one with a later `rev`: only rebuilds change a `seq`, and an event that read the
//!   message before the merge may record it after the rebuild's read.
//!
//! A rebuild never removes a stored message it does not hold under another id with the
//! same `clientMessageId`: the durable history may hold what every client lost. `rev`s
//! are wall-clock microseconds of different nodes, so the rules hold up to their clocks'
//! skew (an ordinary record read on a node whose clock is behind, right after a rebuild,
//! could be taken for an older one).

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, ChatId, DepartmentId, Id, SiteId, VisitorId};

/// The bus queue of history writes.
pub const HISTORY_QUEUE: &str = "storage.write";

/// The version of [`HistoryJob`] this build writes for chats, messages and visitors.
pub const HISTORY_JOB_VERSION: u32 = 1;

/// The version written for [`HistoryWrite::AgentStatus`] (added in version 2): a node that
/// only knows version 1 fails such a job back to the bus, where a newer node takes it.
pub const AGENT_STATUS_JOB_VERSION: u32 = 2;

/// The version written for [`HistoryWrite::OfflineMessage`] (added in version 3).
pub const OFFLINE_MESSAGE_JOB_VERSION: u32 = 3;

/// The version written for [`HistoryWrite::Message`] since messages carry `rev` and
/// `rebuild` (version 4). A node of version 3 or older would apply a rebuild record as a
/// plain renumbering and never take a merged-away copy out, so it leaves these jobs to
/// newer nodes; version 1 message jobs (no `rev`) still apply, as the oldest of all.
pub const MESSAGE_JOB_VERSION: u32 = 4;

/// The newest [`HistoryJob`] version this build reads.
pub const HISTORY_JOB_MAX_READ: u32 = MESSAGE_JOB_VERSION;

/// One job on [`HISTORY_QUEUE`]: one durable effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryJob {
    pub v: u32,
    pub write: HistoryWrite,
}

impl HistoryJob {
    /// The job of an agent's status change, encoded for [`HISTORY_QUEUE`] at
    /// [`AGENT_STATUS_JOB_VERSION`]. Both writers (the `agent.set_status` stage and the
    /// presence sweeper) use this, so they cannot drift apart.
    pub fn agent_status_payload(change: crate::reports::AgentStatusChange) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&HistoryJob { v: AGENT_STATUS_JOB_VERSION, write: HistoryWrite::AgentStatus(change) })
    }

    /// The job of a history write, at the version its kind needs: [`MESSAGE_JOB_VERSION`]
    /// for messages, [`AGENT_STATUS_JOB_VERSION`] and [`OFFLINE_MESSAGE_JOB_VERSION`] for
    /// theirs, [`HISTORY_JOB_VERSION`] for the rest.
    pub fn of(write: HistoryWrite) -> HistoryJob {
        let v = match &write {
            HistoryWrite::Message(_) => MESSAGE_JOB_VERSION,
            HistoryWrite::AgentStatus(_) => AGENT_STATUS_JOB_VERSION,
            HistoryWrite::OfflineMessage(_) => OFFLINE_MESSAGE_JOB_VERSION,
            HistoryWrite::Chat(_) | HistoryWrite::Visitor(_) => HISTORY_JOB_VERSION,
        };
        HistoryJob { v, write }
    }

    /// The job of an offline message, encoded for [`HISTORY_QUEUE`] at
    /// [`OFFLINE_MESSAGE_JOB_VERSION`].
    pub fn offline_message_payload(record: OfflineMessageRecord) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&HistoryJob { v: OFFLINE_MESSAGE_JOB_VERSION, write: HistoryWrite::OfflineMessage(record) })
    }
}

/// What happened, as the durable store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryWrite {
    /// The chat as it stands (created, status, participants, rating, wrap-up).
    Chat(ChatRecord),
    /// A message appended, or (with `rebuild`) as a rebuild left it (job version 4).
    Message(MessageRecord),
    /// A visitor record upserted.
    Visitor(VisitorHistory),
    /// An agent's status changed (job version 2).
    AgentStatus(crate::reports::AgentStatusChange),
    /// A visitor left an offline message (job version 3). Keyed by its id: a replay
    /// inserts nothing and never clears the handled flag.
    OfflineMessage(OfflineMessageRecord),
}

/// A snapshot of a chat. Applied when `version` is at least the stored one; fields that
/// only ever gain a value (timestamps, rating, wrap-up) keep the stored value when the
/// snapshot has none, so a snapshot of a chat recreated empty after a state loss never
/// erases them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatRecord {
    pub chat_id: ChatId,
    pub site_id: SiteId,
    pub visitor_id: VisitorId,
    pub department_id: Option<DepartmentId>,
    /// queued, offered, bot, active, ended.
    pub status: String,
    /// The owner.
    pub agent_id: Option<AgentId>,
    /// Every agent that took part (owner, joined); added to the chat's members.
    pub participants: Vec<AgentId>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub rating: Option<i64>,
    pub comment: Option<String>,
    pub wrap_up_notes: Option<String>,
    pub tags: Vec<String>,
    pub visitor_name: String,
    pub visitor_email: String,
    /// Microseconds when the snapshot was read: the last writer wins.
    pub version: i64,
}

/// A message (SPEC §4), keyed by its id; as a write-behind job also versioned by `rev`
/// (see the module's notes). `rev` and `rebuild` are the job's, not the message's: a
/// transcript read from the store carries 0 and `false`, and they are left out of JSON then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecord {
    pub id: Id,
    pub chat_id: ChatId,
    pub site_id: SiteId,
    pub seq: i64,
    pub data_offset: i64,
    pub message_type: i64,
    pub sender_id: Id,
    pub sender_name: String,
    pub content: String,
    #[serde(default)]
    pub client_message_id: Option<String>,
    /// RFC 3339 as the clients saw it.
    pub send_time: String,
    /// The same instant in Unix milliseconds (for first-response times and filters).
    pub send_time_ms: i64,
    /// Microseconds (wall clock) when the record stage read the message; for a rebuild
    /// record, when it began reading the merged chat. 0 in jobs of version 1 (older than
    /// any rebuild).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rev: i64,
    /// Recorded by `chat.rebuild` from the merged chat: its `seq`, offset and its being the
    /// one message of its `clientMessageId` are the rebuild's, newer than any ordinary
    /// record read before `rev`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rebuild: bool,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// A snapshot of a visitor, last-writer-wins by `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitorHistory {
    pub visitor_id: VisitorId,
    pub site_id: SiteId,
    pub name: String,
    pub email: String,
    pub custom_variables: serde_json::Map<String, serde_json::Value>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub visit_count: i64,
    pub page_views: i64,
    /// Microseconds when the snapshot was read.
    pub version: i64,
}

/// Where a page of [`ChatQuery`] results ends; the next page starts after it. Keyset, so a
/// page boundary stays put while chats are added.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChatCursor {
    /// The relevance of the last chat of a full-text page (lower is better); 0 otherwise.
    pub score: f64,
    pub created_at: i64,
    pub chat_id: ChatId,
}

/// A history query of one site. Without `text`, newest first; with it, most relevant first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatQuery {
    pub site_id: SiteId,
    /// Only chats this agent took part in (an agent's own view).
    pub member: Option<AgentId>,
    /// Created at or after (Unix ms).
    pub from: Option<i64>,
    /// Created before (Unix ms).
    pub to: Option<i64>,
    /// Chats this agent took part in.
    pub agent_id: Option<AgentId>,
    pub department_id: Option<DepartmentId>,
    pub visitor_id: Option<VisitorId>,
    pub status: Option<String>,
    pub rating: Option<i64>,
    pub tag: Option<String>,
    /// Full-text words over message content and the visitor's name and email.
    pub text: Option<String>,
    pub limit: u32,
    pub after: Option<ChatCursor>,
}

/// A chat as history lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSummary {
    pub chat_id: ChatId,
    pub site_id: SiteId,
    pub visitor_id: VisitorId,
    pub visitor_name: String,
    pub visitor_email: String,
    pub department_id: Option<DepartmentId>,
    /// `None` until the first snapshot arrived.
    pub status: Option<String>,
    pub agent_id: Option<AgentId>,
    /// Agents that took part, in the order they joined.
    pub agent_ids: Vec<AgentId>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub first_response_at: Option<i64>,
    pub rating: Option<i64>,
    pub comment: Option<String>,
    pub wrap_up_notes: Option<String>,
    pub tags: Vec<String>,
}

/// One page of chats.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPage {
    pub chats: Vec<ChatSummary>,
    /// Present when more may follow.
    pub next: Option<ChatCursor>,
}

/// A chat with its messages in `seq` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcript {
    pub chat: ChatSummary,
    pub messages: Vec<MessageRecord>,
}

/// An offline message as submitted (`offline_message.submit`), the write-behind job's body
/// and the e-mail job's too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflineMessageRecord {
    pub id: Id,
    pub site_id: SiteId,
    pub visitor_id: VisitorId,
    pub name: String,
    pub email: String,
    pub message: String,
    /// The page the visitor was on, when known.
    #[serde(default)]
    pub page_url: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// An offline message as stored: the submission and whether an agent handled it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflineMessage {
    pub id: Id,
    pub site_id: SiteId,
    pub visitor_id: VisitorId,
    pub name: String,
    pub email: String,
    pub message: String,
    pub page_url: Option<String>,
    pub created_at: i64,
    pub handled: bool,
    /// When and by whom it was marked handled (`None` while it is not).
    pub handled_at: Option<i64>,
    pub handled_by: Option<AgentId>,
}

/// A page of one site's offline messages, newest (highest id) first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OfflineQuery {
    pub site_id: SiteId,
    /// Only handled (`Some(true)`) or unhandled (`Some(false)`) ones.
    pub handled: Option<bool>,
    pub limit: u32,
    /// Keyset: messages with a lower id than this one.
    pub before: Option<Id>,
}

/// One page of offline messages.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflinePage {
    pub messages: Vec<OfflineMessage>,
    /// The id to pass as [`OfflineQuery::before`] for the next page, when more may follow.
    pub next: Option<Id>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_carry_their_version_and_kind() {
        let job = HistoryJob {
            v: HISTORY_JOB_VERSION,
            write: HistoryWrite::Visitor(VisitorHistory {
                visitor_id: Id(7),
                site_id: Id(1),
                name: "Ann".into(),
                email: String::new(),
                custom_variables: serde_json::Map::new(),
                first_seen: 1,
                last_seen: 2,
                visit_count: 1,
                page_views: 3,
                version: 9,
            }),
        };
        let v = serde_json::to_value(&job).expect("encode");
        assert_eq!(v["v"], json!(1));
        assert_eq!(v["write"]["kind"], json!("visitor"));
        assert_eq!(v["write"]["visitorId"], json!("7"));
        assert_eq!(serde_json::from_value::<HistoryJob>(v).expect("decode"), job);
    }

    fn message(rev: i64, rebuild: bool) -> MessageRecord {
        MessageRecord {
            id: Id(5),
            chat_id: Id(9),
            site_id: Id(1),
            seq: 2,
            data_offset: 1,
            message_type: 1,
            sender_id: Id(7),
            sender_name: "Ann".into(),
            content: "Hi".into(),
            client_message_id: Some("c1".into()),
            send_time: "2026-01-01T00:00:00.000Z".into(),
            send_time_ms: 1_767_225_600_000,
            rev,
            rebuild,
        }
    }

    #[test]
    fn message_jobs_are_version_4_and_carry_rev_and_rebuild() {
        let job = HistoryJob::of(HistoryWrite::Message(message(1_700_000_000_000_000, true)));
        assert_eq!(job.v, MESSAGE_JOB_VERSION);
        assert!(job.v <= HISTORY_JOB_MAX_READ);
        let v = serde_json::to_value(&job).expect("encode");
        assert_eq!(v["write"]["rev"], json!(1_700_000_000_000_000_i64));
        assert_eq!(v["write"]["rebuild"], json!(true));
        assert_eq!(serde_json::from_value::<HistoryJob>(v).expect("decode"), job);
        // Chats keep the version every node reads.
        let chat = HistoryJob::of(HistoryWrite::Visitor(VisitorHistory {
            visitor_id: Id(7),
            site_id: Id(1),
            name: String::new(),
            email: String::new(),
            custom_variables: serde_json::Map::new(),
            first_seen: 1,
            last_seen: 1,
            visit_count: 1,
            page_views: 1,
            version: 1,
        }));
        assert_eq!(chat.v, HISTORY_JOB_VERSION);
    }

    #[test]
    fn a_version_1_message_job_reads_as_rev_0_and_transcripts_leave_rev_out() {
        let mut v =
            serde_json::to_value(HistoryJob { v: 1, write: HistoryWrite::Message(message(0, false)) }).expect("encode");
        assert!(v["write"].get("rev").is_none() && v["write"].get("rebuild").is_none(), "{v}");
        v["write"].as_object_mut().expect("object").remove("rev");
        let job: HistoryJob = serde_json::from_value(v).expect("decode");
        assert_eq!(job.write, HistoryWrite::Message(message(0, false)));
    }

    #[test]
    fn offline_message_jobs_are_version_3() {
        let record = OfflineMessageRecord {
            id: Id(5),
            site_id: Id(1),
            visitor_id: Id(7),
            name: "Ann".into(),
            email: "ann@shop.example".into(),
            message: "Hi".into(),
            page_url: None,
            created_at: 3,
        };
        let bytes = HistoryJob::offline_message_payload(record.clone()).expect("encode");
        let job: HistoryJob = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(job.v, OFFLINE_MESSAGE_JOB_VERSION);
        assert!(job.v <= HISTORY_JOB_MAX_READ);
        assert_eq!(job.write, HistoryWrite::OfflineMessage(record));
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["write"]["kind"], json!("offline_message"));
    }
}
