//! Every runtime-state key in one place. Keys are Redis Cluster-ready: the part in `{…}` is
//! the hash tag, one per site, chat or user, so each atomic step touches one slot.
//!
//! A deployment may share one Redis between several installations by giving each a key
//! prefix; backends apply it, so these functions never see it.

use crate::id::{ChatId, SiteId};

/// The generation id of the runtime state (SPEC §6): set once when a node finds the store
/// empty; a change tells nodes the store was lost.
pub fn generation() -> String {
    "fd:generation".to_string()
}

/// The lease on snowflake node id `node_id`.
pub fn node_lease(node_id: u16) -> String {
    format!("fd:node:{node_id}")
}

/// user → connection → node (the route table).
pub fn route(user: &str) -> String {
    format!("fd:route:{{u:{user}}}")
}

/// The pub/sub channel of one node: pushes for users connected there.
pub fn node_channel(node_id: u16) -> String {
    format!("fd:push:node:{node_id}")
}

/// Everything of one site that moves together (settings cache, visitor lists, queues).
pub fn site(site: SiteId, what: &str) -> String {
    format!("fd:{{s:{site}}}:{what}")
}

/// Everything of one chat that moves together (metadata, messages, cursors, the rebuild
/// lock), so one script can append a message and bump the offsets atomically.
pub fn chat(chat: ChatId, what: &str) -> String {
    format!("fd:{{c:{chat}}}:{what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use crate::state::hash_tag;

    #[test]
    fn keys_of_one_chat_share_a_slot() {
        let c = Id(99);
        assert_eq!(hash_tag(&chat(c, "meta")), hash_tag(&chat(c, "msgs")));
        assert_ne!(hash_tag(&chat(c, "meta")), hash_tag(&chat(Id(100), "meta")));
        assert_eq!(hash_tag(&site(Id(5), "queue:1")), "s:5");
    }
}
