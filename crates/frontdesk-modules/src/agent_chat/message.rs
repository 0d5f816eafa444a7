//! An agent-to-agent message as stored (one JSON member of the pair's sorted set) and as
//! sent (`agent_chat.message` push, `agent_chat.get_messages`), and its `sendTime` in
//! RFC 3339, UTC, with milliseconds.

use frontdesk_core::id::{AgentId, MessageId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentChatMessage {
    pub id: MessageId,
    pub seq: i64,
    pub from_agent_id: AgentId,
    pub to_agent_id: AgentId,
    pub content: String,
    pub send_time: String,
}

pub use frontdesk_core::time::rfc3339 as rfc3339_utc;
