//! The agent_chat module (SPEC §5.4 "agent_chat"): messages between two agents of one site.
//! One conversation per unordered pair of agents, kept in the runtime state: a sorted set
//! of messages scored by `seq` ([`messages_key`]) and a counter for `seq` ([`seq_key`]),
//! both under one hash tag per pair. The newest [`KEEP_MESSAGES`] messages of a pair are
//! kept. The other agent must be of the caller's site, so no agent reads or writes across
//! sites.
//!
//! # Layout
//! - [`message`] — the stored/sent message and its `sendTime` (RFC 3339, UTC).
//! - [`handlers`] — `agent_chat/send_message`, `agent_chat/get_messages`.

mod handlers;
mod message;

use std::sync::Arc;

use frontdesk_core::id::AgentId;
use frontdesk_core::pipeline::Registry;

use crate::{Deps, RegisterError};

pub use message::AgentChatMessage;

/// Messages kept per pair of agents; older ones are trimmed as new ones arrive.
pub const KEEP_MESSAGES: i64 = 1000;

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    registry.register(
        "agent_chat/send_message",
        Arc::new(handlers::SendMessage {
            state: deps.backends.state.clone(),
            store: deps.backends.store.clone(),
            ids: deps.ids.clone(),
            push: deps.push.clone(),
        }),
    )?;
    registry.register(
        "agent_chat/get_messages",
        Arc::new(handlers::GetMessages { state: deps.backends.state.clone(), store: deps.backends.store.clone() }),
    )?;
    Ok(())
}

/// The hash tag of a pair: the same for (a, b) and (b, a). Agent ids are unique across
/// sites (snowflakes), so the pair names one conversation.
fn pair_tag(a: AgentId, b: AgentId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("ac:{lo}:{hi}")
}

/// A pair's messages: JSON [`AgentChatMessage`]s scored by `seq`. Owner: this module.
pub fn messages_key(a: AgentId, b: AgentId) -> String {
    format!("fd:{{{}}}:msgs", pair_tag(a, b))
}

/// A pair's last `seq`. Owner: this module.
pub fn seq_key(a: AgentId, b: AgentId) -> String {
    format!("fd:{{{}}}:seq", pair_tag(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::id::Id;
    use frontdesk_core::state::hash_tag;

    #[test]
    fn a_pair_has_one_slot_whichever_agent_asks() {
        assert_eq!(messages_key(Id(5), Id(9)), "fd:{ac:5:9}:msgs");
        assert_eq!(messages_key(Id(9), Id(5)), messages_key(Id(5), Id(9)));
        assert_eq!(hash_tag(&seq_key(Id(9), Id(5))), hash_tag(&messages_key(Id(5), Id(9))));
        assert_ne!(messages_key(Id(5), Id(9)), messages_key(Id(5), Id(10)));
    }
}
