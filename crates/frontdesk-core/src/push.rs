//! The real-time push port (SPEC §5.6): modules push `{"push": NAME, "data": …}` frames to
//! users without knowing where their sockets are. The transport's hub delivers to sockets
//! on this node and publishes to the other nodes that the route table names (seed 003).
//!
//! Delivery is at most once per socket; a client that misses a push catches up by offsets
//! (SPEC §6), so pushes never carry anything that cannot be fetched again.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::BackendResult;
use crate::id::{AgentId, SiteId, VisitorId};

/// Who a push is for. Each is one key of the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recipient {
    Agent(AgentId),
    Visitor(VisitorId),
    /// Every agent of a site with a socket open (live visitor list, queue, presence).
    SiteAgents(SiteId),
}

impl Recipient {
    /// The route-table user key: `a:<id>`, `v:<id>`, `s:<site>:agents`.
    pub fn route_key(&self) -> String {
        match self {
            Recipient::Agent(id) => format!("a:{id}"),
            Recipient::Visitor(id) => format!("v:{id}"),
            Recipient::SiteAgents(site) => format!("s:{site}:agents"),
        }
    }
}

#[async_trait]
pub trait Push: Send + Sync + 'static {
    /// Sends push `name` with `data` to every socket of every recipient, on any node.
    async fn push(&self, to: &[Recipient], name: &str, data: &Value) -> BackendResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    #[test]
    fn route_keys_are_distinct_per_kind() {
        assert_eq!(Recipient::Agent(Id(7)).route_key(), "a:7");
        assert_eq!(Recipient::Visitor(Id(7)).route_key(), "v:7");
        assert_eq!(Recipient::SiteAgents(Id(7)).route_key(), "s:7:agents");
    }
}
