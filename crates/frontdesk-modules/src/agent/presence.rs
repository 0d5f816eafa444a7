//! An agent's presence (SPEC §4): `agent/set_status` (online / away), `agent/touch` (any
//! call is a sign of life), `agent/socket_opened` / `agent/socket_closed` (open sockets).
//! All of it lives in the agent's [`AgentPresence`] hash; each handler writes only the
//! fields it owns (SPEC §7), never `activeChats`, which belongs to dispatch. A status change
//! re-scores the agent in the site's availability index ([`reindex`]); signs of life do
//! not (dispatch checks `lastSeen` itself when it weighs an agent).

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{AgentId, SiteId};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::push::Recipient;
use frontdesk_core::state::StateStore;
use serde::Deserialize;
use serde_json::json;

use super::{agent_caller, now_ms, presence_sites_key, AgentModule};
use crate::model::availability::{available_key, turns_key, INDEX_AGENT};
use crate::model::{agent_key, agents_key, AgentPresence, AgentStatus};
use crate::RegisterError;

/// The presence fields copied from the agent's durable record.
const PROFILE: [&str; 7] = ["agentId", "siteId", "name", "role", "maxChats", "priority", "departments"];

pub(super) fn register(registry: &mut Registry, m: &Arc<AgentModule>) -> Result<(), RegisterError> {
    registry.register("agent/set_status", Arc::new(SetStatus(m.clone())))?;
    registry.register("agent/touch", Arc::new(Touch(m.clone())))?;
    registry.register("agent/socket_opened", Arc::new(SocketOpened(m.clone())))?;
    registry.register("agent/socket_closed", Arc::new(SocketClosed(m.clone())))?;
    Ok(())
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Status {
    Online,
    Away,
    Offline,
}

#[derive(Deserialize)]
struct SetStatusData {
    status: Status,
}

struct SetStatus(Arc<AgentModule>);

#[async_trait]
impl Handler for SetStatus {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, agent, _) = agent_caller(&ctx.caller, &ctx.event)?;
        let data: SetStatusData = ctx.decode()?;
        let status = match data.status {
            Status::Online => AgentStatus::Online,
            Status::Away => AgentStatus::Away,
            Status::Offline => {
                return Err(Failure::bad_request(
                    "data.status: `offline` is set by presence (no socket and no call for the presence timeout); \
                     choose `online` or `away`",
                ))
            }
        };
        let m = &self.0;
        m.ensure_presence(site, agent).await?;
        let name = status_name(status);
        let now = now_ms().to_string();
        m.state.hset(&agent_key(site, agent), &[("status", name), ("lastSeen", &now)]).await?;
        reindex(m.state.as_ref(), site, agent).await?;
        m.push_status(site, agent, name).await;
        ctx.set_result("agentId", json!(agent));
        ctx.set_result("status", json!(name));
        Ok(Step::Next)
    }
}

/// `lastSeen` = now for the calling agent (in the `did` of agents' events); others pass.
struct Touch(Arc<AgentModule>);

#[async_trait]
impl Handler for Touch {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        if let Caller::Agent { site_id, agent_id, .. } = &ctx.caller {
            let now = now_ms().to_string();
            self.0.state.hset(&agent_key(*site_id, *agent_id), &[("lastSeen", &now)]).await?;
        }
        Ok(Step::Next)
    }
}

/// In `socket.connect`'s `did`: one more open socket for an agent; visitors pass.
struct SocketOpened(Arc<AgentModule>);

#[async_trait]
impl Handler for SocketOpened {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        if let Caller::Agent { site_id, agent_id, .. } = &ctx.caller {
            let key = agent_key(*site_id, *agent_id);
            let now = now_ms().to_string();
            self.0.state.hincrby(&key, "sockets", 1).await?;
            self.0.state.hset(&key, &[("lastSeen", &now)]).await?;
        }
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct SocketClosedData {
    caller: Caller,
    #[serde(default)]
    connection_id: Option<String>,
}

/// `socket.disconnect` (called by the transport with `{caller, connectionId}`): one socket
/// fewer. Closing counts as a sign of life, so the presence timeout runs from here.
struct SocketClosed(Arc<AgentModule>);

#[async_trait]
impl Handler for SocketClosed {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let data: SocketClosedData = ctx.decode()?;
        if let Caller::Agent { site_id, agent_id, .. } = data.caller {
            let key = agent_key(site_id, agent_id);
            let now = now_ms().to_string();
            let left = self.0.state.hincrby(&key, "sockets", -1).await?;
            if left < 0 {
                // A close without its open (e.g. the hash was deleted meanwhile): back to 0,
                // unless another socket opened in between.
                let seen = left.to_string();
                self.0.state.hcas(&key, "sockets", Some(&seen), Some("0")).await?;
            }
            self.0.state.hset(&key, &[("lastSeen", &now)]).await?;
        }
        Ok(Step::Next)
    }
}

/// Re-scores an agent in its site's availability index from its presence hash (after its
/// status changed, or when the sweep finds the index out of date).
pub(super) async fn reindex(state: &dyn StateStore, site: SiteId, agent: AgentId) -> Result<(), Failure> {
    let keys = [agent_key(site, agent), available_key(site), turns_key(site)];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    state.eval(&INDEX_AGENT, &keys, &[&agent.to_string()]).await?;
    Ok(())
}

pub(super) fn status_name(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Online => "online",
        AgentStatus::Away => "away",
        AgentStatus::Offline => "offline",
    }
}

impl AgentModule {
    /// Makes the agent's presence hash whole on first use: its profile from the durable
    /// record, and its membership of the site's presence sets. Fields written by sockets
    /// and touches before that (`sockets`, `lastSeen`) are kept.
    async fn ensure_presence(&self, site: SiteId, agent: AgentId) -> Result<(), Failure> {
        let key = agent_key(site, agent);
        if self.state.hget(&key, "agentId").await?.is_none() {
            let Some(record) = self.store.agent(site, agent).await? else {
                return Err(Failure::not_found("your agent account no longer exists"));
            };
            let departments =
                self.store.departments(site).await?.into_iter().filter(|d| d.members.contains(&agent)).map(|d| d.id);
            let presence = AgentPresence {
                agent_id: agent,
                site_id: site,
                name: record.name,
                role: record.role.as_str().to_string(),
                max_chats: i64::from(record.max_chats),
                priority: i64::from(record.priority),
                departments: departments.collect(),
                ..AgentPresence::default()
            };
            let fields = object::to_fields(&presence)?;
            let profile: Vec<(&str, &str)> = fields
                .iter()
                .filter(|(k, _)| PROFILE.contains(&k.as_str()))
                .filter_map(|(k, v)| v.as_deref().map(|v| (k.as_str(), v)))
                .collect();
            self.state.hset(&key, &profile).await?;
        }
        self.state.sadd(&agents_key(site), &[&agent.to_string()]).await?;
        self.state.sadd(&presence_sites_key(), &[&site.to_string()]).await?;
        Ok(())
    }

    /// Tells the site's agents; a push that cannot be delivered is logged, not an error
    /// (clients catch up by reading presence again).
    pub(super) async fn push_status(&self, site: SiteId, agent: AgentId, status: &str) {
        let data = json!({"agentId": agent, "status": status});
        if let Err(e) = self.push.push(&[Recipient::SiteAgents(site)], "agent.status", &data).await {
            tracing::warn!(error = %e, %agent, "agent.status push failed");
        }
    }
}
