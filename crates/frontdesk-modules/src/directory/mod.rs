//! The directory module (SPEC §4, §5.3): sites, agents and departments as admin
//! resources, each scoped to the caller's site (its token), never another's.
//!
//! # Layout
//! - [`agents`] — `directory/agents_list|agents_get|agents_create|agents_update|agents_delete`.
//! - [`departments`] — `directory/departments_list|…_get|…_create|…_update|…_delete`.
//! - [`sites`] — `directory/sites_create` (the operator only).
//! - [`validate`] — the input rules, each failure naming its field.
//!
//! Who may do what (as in Chatwoot and Intercom): every agent of a site may list and read
//! its agents and departments (a console needs them to transfer chats); only admins
//! create, change or delete them (`auth/require_admin` in the pipelines).
//!
//! Changes reach the agents' presence hashes (`model::agent_key`) when there is one, so
//! dispatch sees new names, capacities and departments at once. A role or password change,
//! and a deletion, revoke the agent's sessions (`model::session_key`).

mod agents;
mod departments;
mod sites;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use frontdesk_core::id::{AgentId, IdGenerator, SiteId};
use frontdesk_core::pipeline::{Caller, Failure, Registry};
use frontdesk_core::push::{Push, Recipient};
use frontdesk_core::state::StateStore;
use frontdesk_core::store::{Agent, Department, Store};
use serde_json::{json, Value};

use crate::model::{agent_key, session_key, SESSION_CLOSED_PUSH};
use crate::{Deps, RegisterError};

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let d = Arc::new(Directory {
        state: deps.backends.state.clone(),
        store: deps.backends.store.clone(),
        push: deps.push.clone(),
        ids: deps.ids.clone(),
        access_token_ttl: deps.settings.access_token_ttl,
    });
    agents::register(registry, &d)?;
    departments::register(registry, &d)?;
    sites::register(registry, &d)?;
    Ok(())
}

pub(crate) struct Directory {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub push: Arc<dyn Push>,
    pub ids: IdGenerator,
    pub access_token_ttl: Duration,
}

/// The caller's site and agent id; anyone but an agent is refused (the operator has no
/// site; it creates sites and logs in as their admins).
pub(crate) fn caller_site(caller: &Caller, event: &str) -> Result<(SiteId, AgentId), Failure> {
    match caller {
        Caller::Agent { site_id, agent_id, .. } => Ok((*site_id, *agent_id)),
        _ => Err(Failure::forbidden(format!("{event} works on the caller's site: call it with an agent's token"))),
    }
}

/// An agent as admin resources show it: never its password hash.
pub(crate) fn agent_view(agent: &Agent, departments: &[Department], status: Option<&str>) -> Value {
    let member_of: Vec<_> = departments.iter().filter(|d| d.members.contains(&agent.id)).map(|d| d.id).collect();
    json!({
        "id": agent.id,
        "siteId": agent.site_id,
        "email": agent.email,
        "name": agent.name,
        "role": agent.role,
        "maxChats": agent.max_chats,
        "priority": agent.priority,
        "departments": member_of,
        "status": status.unwrap_or("offline"),
        "createdAt": agent.created_at,
    })
}

pub(crate) fn department_view(d: &Department) -> Value {
    json!({
        "id": d.id,
        "siteId": d.site_id,
        "name": d.name,
        "strategy": d.strategy,
        "members": d.members,
        "createdAt": d.created_at,
    })
}

pub(crate) use frontdesk_core::time::now_ms;

impl Directory {
    /// The presence status of an agent (`offline` without presence).
    pub(crate) async fn status(&self, site: SiteId, agent: AgentId) -> Result<Option<String>, Failure> {
        Ok(self.state.hget(&agent_key(site, agent), "status").await?)
    }

    /// Copies the profile of `agents` (name, role, capacity, priority, departments) into
    /// their presence hashes, for those that have one.
    pub(crate) async fn sync_presence(&self, site: SiteId, agents: &[AgentId]) -> Result<(), Failure> {
        if agents.is_empty() {
            return Ok(());
        }
        let departments = self.store.departments(site).await?;
        for &id in agents {
            let key = agent_key(site, id);
            if self.state.hget(&key, "agentId").await?.is_none() {
                continue;
            }
            let Some(agent) = self.store.agent(site, id).await? else { continue };
            let member_of: Vec<_> = departments.iter().filter(|d| d.members.contains(&id)).map(|d| d.id).collect();
            let member_of = serde_json::to_string(&member_of).map_err(|e| Failure::internal(e.to_string()))?;
            let (max_chats, priority) = (agent.max_chats.to_string(), agent.priority.to_string());
            let fields = [
                ("name", agent.name.as_str()),
                ("role", agent.role.as_str()),
                ("maxChats", max_chats.as_str()),
                ("priority", priority.as_str()),
                ("departments", member_of.as_str()),
            ];
            self.state.hset(&key, &fields).await?;
        }
        Ok(())
    }

    /// Revokes every session of an agent: its access tokens stop working at once, and its
    /// open sockets, on whichever node, are told to close ([`SESSION_CLOSED_PUSH`]).
    pub(crate) async fn revoke_sessions(&self, site: SiteId, agent: AgentId, reason: &str) -> Result<(), Failure> {
        for session in self.store.revoke_agent_sessions(site, agent).await? {
            let key = session_key(&session);
            self.state.hset(&key, &[("revoked", "1")]).await?;
            self.state.expire(&key, self.access_token_ttl + Duration::from_secs(60)).await?;
            // At most once, like every push: a socket that misses it is still refused on its
            // next call, as the session is revoked.
            let data = json!({"sessionId": session, "reason": reason});
            if let Err(e) = self.push.push(&[Recipient::Agent(agent)], SESSION_CLOSED_PUSH, &data).await {
                tracing::warn!(error = %e, "could not tell the revoked session's sockets to close");
            }
        }
        Ok(())
    }
}
