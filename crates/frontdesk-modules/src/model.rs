//! The runtime objects more than one module reads, as they are stored in the state store:
//! hashes of fields (SPEC §7), read with `frontdesk_core::object::load` (missing fields take
//! defaults, unknown ones are ignored) and written with `object::save_changes` / `hset` of
//! single fields, so older and newer nodes never erase each other's fields. This file is
//! the schema modules agree on, as a database schema would be; each key names its owner.

use frontdesk_core::id::{AgentId, ChatId, DepartmentId, Id, SiteId, VisitorId};
use frontdesk_core::keys;
use serde::{Deserialize, Serialize};

pub mod availability;

/// An agent's chosen status (SPEC §4). `offline` is also what presence sets when the
/// agent's last socket closed and no call followed within the presence timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Away,
    #[default]
    Offline,
}

/// An agent as dispatch sees it. Owner: the agent module (status, lastSeen, sockets,
/// profile fields); `activeChats` is owned by dispatch and changed only by its scripts.
/// Key: [`agent_key`]. Every agent with a presence hash is in [`agents_key`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentPresence {
    pub agent_id: AgentId,
    pub site_id: SiteId,
    pub name: String,
    pub role: String,
    pub status: AgentStatus,
    pub max_chats: i64,
    pub active_chats: i64,
    /// Higher first.
    pub priority: i64,
    pub departments: Vec<DepartmentId>,
    /// Unix milliseconds of the last sign of life (a call or a socket heartbeat).
    pub last_seen: i64,
    /// Open sockets.
    pub sockets: i64,
}

/// A presence hash field outside [`AgentPresence`] (struct literals elsewhere stay valid):
/// the site's offer count when the agent was last offered a chat (round robin: the agent
/// offered longest ago goes first). Owner: dispatch's offer script.
pub const LAST_OFFER_FIELD: &str = "lastOffer";

/// A chat's lifecycle (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatStatus {
    #[default]
    Queued,
    Offered,
    Bot,
    Active,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    Owner,
    Joined,
    Monitoring,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub agent_id: AgentId,
    pub name: String,
    pub role: ParticipantRole,
}

/// A chat's metadata. Owner: the chat module; dispatch writes `status`, `agentId`,
/// `offeredTo`, `offeredAt`. The counters `seq`, `visitorDataOffset`, `agentDataOffset` are
/// changed only by the chat module's append script. Key: [`chat_meta_key`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatMeta {
    pub chat_id: ChatId,
    pub site_id: SiteId,
    pub visitor_id: VisitorId,
    pub visitor_name: String,
    pub department_id: Option<DepartmentId>,
    pub status: ChatStatus,
    /// The owning agent once accepted.
    pub agent_id: Option<AgentId>,
    pub participants: Vec<Participant>,
    pub offered_to: Option<AgentId>,
    pub offered_at: i64,
    /// Agents that refused or let an offer time out, not offered again.
    pub refused_by: Vec<AgentId>,
    pub seq: i64,
    pub visitor_data_offset: i64,
    pub agent_data_offset: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    pub started_at: i64,
    pub ended_at: i64,
    /// Set while the chat was recreated empty and waits for clients' copies (SPEC §6).
    pub rebuilding: bool,
    /// The runtime state's generation the chat was made in; another generation means the
    /// state was lost or restored from a snapshot, and the chat counts as unknown (SPEC §6).
    pub generation: String,
    // Fields below: owners the chat and dispatch modules (issue 4, part 3).
    /// Unix milliseconds the chat (last) entered a queue; its score there, so a refused
    /// chat goes back to where it stood.
    pub queued_at: i64,
    /// The queue position last pushed to the visitor (`queue.updated`); 0 when not queued.
    pub queue_position: i64,
    /// While a transfer is offered: the owner handing the chat over.
    pub transfer_from: Option<AgentId>,
    /// While a transfer to a department is pending: that department.
    pub transfer_department: Option<DepartmentId>,
    /// Post-chat survey (`chat.post_chat`).
    pub rating: Option<i64>,
    pub comment: Option<String>,
    /// Wrap-up by the owner after the end (`chat.wrap_up`).
    pub wrap_up_notes: Option<String>,
    pub tags: Vec<String>,
}

/// The fields of a chat's metadata the message path reads (`chat/offsets`, a send, typing,
/// seen): one `HMGET` of [`ChatCore::FIELDS`] instead of the whole hash, whose ~25 fields
/// were copied and parsed on every message. Same field names as [`ChatMeta`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatCore {
    pub chat_id: ChatId,
    pub site_id: SiteId,
    pub visitor_id: VisitorId,
    pub visitor_name: String,
    pub status: ChatStatus,
    pub participants: Vec<Participant>,
    pub seq: i64,
    pub visitor_data_offset: i64,
    pub agent_data_offset: i64,
    pub rebuilding: bool,
    pub generation: String,
}

impl ChatCore {
    /// The hash fields [`ChatCore`] is read from.
    pub const FIELDS: [&'static str; 11] = [
        "chatId",
        "siteId",
        "visitorId",
        "visitorName",
        "status",
        "participants",
        "seq",
        "visitorDataOffset",
        "agentDataOffset",
        "rebuilding",
        "generation",
    ];
}

impl ChatMeta {
    /// The message path's view of this chat.
    pub fn core(&self) -> ChatCore {
        ChatCore {
            chat_id: self.chat_id,
            site_id: self.site_id,
            visitor_id: self.visitor_id,
            visitor_name: self.visitor_name.clone(),
            status: self.status,
            participants: self.participants.clone(),
            seq: self.seq,
            visitor_data_offset: self.visitor_data_offset,
            agent_data_offset: self.agent_data_offset,
            rebuilding: self.rebuilding,
            generation: self.generation.clone(),
        }
    }
}

/// `messageType` (SPEC §4).
pub mod message_type {
    pub const VISITOR: i64 = 1;
    pub const AGENT: i64 = 2;
    pub const BOT: i64 = 3;
    pub const SYSTEM: i64 = 4;
}

/// A message as stored (one JSON member of [`chat_messages_key`], scored by `seq`) and as
/// sent (SPEC §5.2's `ChatMessage`, plus `sig` computed when sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: Id,
    pub chat_id: ChatId,
    pub seq: i64,
    pub data_offset: i64,
    pub message_type: i64,
    pub sender_id: Id,
    pub sender_name: String,
    pub content: String,
    /// RFC 3339, UTC.
    pub send_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

/// A visitor's live record. Owner: the visitor module. Key: [`visitor_key`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VisitorRecord {
    pub visitor_id: VisitorId,
    pub site_id: SiteId,
    pub name: String,
    pub email: String,
    pub custom_variables: serde_json::Map<String, serde_json::Value>,
    pub segments: Vec<String>,
    pub current_url: String,
    pub current_title: String,
    pub referrer: String,
    pub page_views: i64,
    pub visit_count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub ip: String,
    pub user_agent: String,
    /// browsing, invited, prechat, queued, chatting, offline_message, left.
    pub state: String,
    pub banned: bool,
    /// The visitor's open chat, if any.
    pub chat_id: Option<ChatId>,
    /// The last agent who served this visitor (returning-visitor stickiness).
    pub last_agent_id: Option<AgentId>,
}

pub fn agent_key(site: SiteId, agent: AgentId) -> String {
    keys::site(site, &format!("agent:{agent}"))
}

/// Set of agent ids with a presence hash in the site.
pub fn agents_key(site: SiteId) -> String {
    keys::site(site, "agents")
}

/// Dispatch's FIFO queue of chats waiting in a department (`None`: the site-wide queue);
/// a sorted set of chat ids scored by the time they entered the queue. Owner: dispatch.
pub fn queue_key(site: SiteId, department: Option<DepartmentId>) -> String {
    keys::site(site, &format!("queue:{}", department.map(|d| d.0).unwrap_or(0)))
}

pub fn visitor_key(site: SiteId, visitor: VisitorId) -> String {
    keys::site(site, &format!("visitor:{visitor}"))
}

/// The live visitor list: visitor ids scored by last sign of life. Owner: the visitor module.
pub fn live_visitors_key(site: SiteId) -> String {
    keys::site(site, "visitors")
}

pub fn chat_meta_key(chat: ChatId) -> String {
    keys::chat(chat, "meta")
}

/// Messages scored by `seq`. Owner: the chat module.
pub fn chat_messages_key(chat: ChatId) -> String {
    keys::chat(chat, "msgs")
}

/// The push that closes a revoked session's sockets (`{sessionId, reason}`); the transport
/// closes each socket of that session with code 4001. Sent by the agent module (logout, a
/// reused refresh token) and the directory (an agent deleted or its role or password
/// changed).
pub const SESSION_CLOSED_PUSH: &str = "session.closed";

/// An agent session (one login): `revoked` when logged out. Owner: the agent module; read
/// by `auth/resolve_caller`.
pub fn session_key(session_id: &str) -> String {
    format!("fd:{{sess:{session_id}}}")
}

#[cfg(test)]
mod tests {
    use frontdesk_core::object::{from_fields, to_fields};

    use super::*;

    fn meta() -> ChatMeta {
        ChatMeta {
            chat_id: Id(7),
            site_id: Id(3),
            visitor_id: Id(9),
            visitor_name: "Vic".into(),
            department_id: Some(Id(4)),
            status: ChatStatus::Active,
            agent_id: Some(Id(5)),
            participants: vec![Participant { agent_id: Id(5), name: "Ann".into(), role: ParticipantRole::Owner }],
            seq: 12,
            visitor_data_offset: 7,
            agent_data_offset: 5,
            rebuilding: true,
            generation: "g1".into(),
            tags: vec!["vip".into()],
            comment: Some("fine".into()),
            ..ChatMeta::default()
        }
    }

    #[test]
    fn chat_core_fields_are_its_own_names_and_chat_meta_names() {
        let core: Vec<String> = to_fields(&ChatCore::default()).expect("fields").into_keys().collect();
        let mut listed: Vec<String> = ChatCore::FIELDS.iter().map(|f| f.to_string()).collect();
        listed.sort();
        assert_eq!(core, listed, "FIELDS lists exactly ChatCore's fields");
        let meta = to_fields(&ChatMeta::default()).expect("fields");
        for f in ChatCore::FIELDS {
            assert!(meta.contains_key(f), "{f} is not a ChatMeta field");
        }
    }

    #[test]
    fn chat_core_read_from_its_fields_of_a_stored_meta_equals_meta_core() {
        let m = meta();
        let stored: Vec<(String, String)> =
            to_fields(&m).expect("fields").into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        let picked: Vec<(String, String)> =
            stored.into_iter().filter(|(k, _)| ChatCore::FIELDS.contains(&k.as_str())).collect();
        assert_eq!(picked.len(), ChatCore::FIELDS.len());
        let core: ChatCore = from_fields(&picked).expect("core");
        assert_eq!(core, m.core());
    }
}
