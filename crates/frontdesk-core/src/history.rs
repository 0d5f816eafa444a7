//! Durable chat history (SPEC §2, §5.3): the write-behind contract and the history query
//! shapes of the [`Store`](crate::store::Store) port.
//!
//! Write-behind: the storage module turns each durable effect of an event into one
//! [`HistoryJob`] on the bus queue [`HISTORY_QUEUE`]; its worker applies batches of them
//! with [`Store::apply_history`](crate::store::Store::apply_history) in one transaction.
//! Applying is idempotent: messages are keyed by id, chats and visitors are snapshots
//! applied last-writer-wins by `version`, so a replayed or late job never undoes a newer
//! state. The job is versioned (`v`); a node meeting a newer `v` fails the job back to the
//! bus, where a newer node picks it up.

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, ChatId, DepartmentId, Id, SiteId, VisitorId};

/// The bus queue of history writes.
pub const HISTORY_QUEUE: &str = "storage.write";

/// The version of [`HistoryJob`] this build writes for chats, messages and visitors.
pub const HISTORY_JOB_VERSION: u32 = 1;

/// The version written for [`HistoryWrite::AgentStatus`] (added in version 2): a node that
/// only knows version 1 fails such a job back to the bus, where a newer node takes it.
pub const AGENT_STATUS_JOB_VERSION: u32 = 2;

/// The newest [`HistoryJob`] version this build reads.
pub const HISTORY_JOB_MAX_READ: u32 = AGENT_STATUS_JOB_VERSION;

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
}

/// What happened, as the durable store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryWrite {
    /// The chat as it stands (created, status, participants, rating, wrap-up).
    Chat(ChatRecord),
    /// A message appended (or renumbered by a rebuild).
    Message(MessageRecord),
    /// A visitor record upserted.
    Visitor(VisitorHistory),
    /// An agent's status changed (job version 2).
    AgentStatus(crate::reports::AgentStatusChange),
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

/// A message (SPEC §4), keyed by its id.
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
}
