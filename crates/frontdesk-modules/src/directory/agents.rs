//! Agents as an admin resource (SPEC §5.3 `/api/v1/agents`): list and read for every agent
//! of the site, create / update / delete for its admins. Every store call carries the
//! caller's site, so another site's agent reads as "not found".

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{DepartmentId, Id};
use frontdesk_core::password;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::store::{Agent, AgentUpdate, Role};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{agent_view, caller_site, now_ms, validate, Directory};
use crate::model::{agent_key, agents_key};
use crate::RegisterError;

/// New agents take this many chats at once unless told otherwise.
const DEFAULT_MAX_CHATS: i32 = 5;

pub(super) fn register(registry: &mut Registry, d: &Arc<Directory>) -> Result<(), RegisterError> {
    registry.register("directory/agents_list", Arc::new(List(d.clone())))?;
    registry.register("directory/agents_get", Arc::new(Get(d.clone())))?;
    registry.register("directory/agents_create", Arc::new(Create(d.clone())))?;
    registry.register("directory/agents_update", Arc::new(Update(d.clone())))?;
    registry.register("directory/agents_delete", Arc::new(Delete(d.clone())))?;
    Ok(())
}

#[derive(Deserialize)]
pub(super) struct ById {
    pub id: Id,
}

fn no_agent(id: Id) -> Failure {
    Failure::not_found(format!("there is no agent {id} in this site"))
}

pub(super) async fn hash_password(password: &str) -> Result<String, Failure> {
    password::hash(password.to_string()).await.map_err(|e| {
        tracing::error!(error = %e, "cannot hash a password");
        Failure::internal("cannot hash the password; try again")
    })
}

struct List(Arc<Directory>);

#[async_trait]
impl Handler for List {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let d = &self.0;
        let departments = d.store.departments(site).await?;
        let mut out = Vec::new();
        for agent in d.store.agents(site).await? {
            let status = d.status(site, agent.id).await?;
            out.push(agent_view(&agent, &departments, status.as_deref()));
        }
        ctx.set_result("agents", Value::Array(out));
        Ok(Step::Next)
    }
}

struct Get(Arc<Directory>);

#[async_trait]
impl Handler for Get {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let ById { id } = ctx.decode()?;
        let d = &self.0;
        let agent = d.store.agent(site, id).await?.ok_or_else(|| no_agent(id))?;
        let view = agent_view(&agent, &d.store.departments(site).await?, d.status(site, id).await?.as_deref());
        ctx.merge_result(into_map(view));
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateData {
    email: String,
    password: String,
    name: String,
    role: Role,
    #[serde(default)]
    departments: Vec<DepartmentId>,
    max_chats: Option<i32>,
    priority: Option<i32>,
}

struct Create(Arc<Directory>);

#[async_trait]
impl Handler for Create {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let data: CreateData = ctx.decode()?;
        let email = validate::email("email", &data.email)?;
        validate::password("password", &data.password)?;
        let name = validate::name("name", &data.name)?;
        let max_chats = validate::max_chats(data.max_chats.unwrap_or(DEFAULT_MAX_CHATS))?;
        let priority = validate::priority(data.priority.unwrap_or(0))?;
        let d = &self.0;
        let existing = d.store.departments(site).await?;
        validate::departments(&data.departments, &existing)?;
        let agent = Agent {
            id: d.ids.next().map_err(|e| Failure::unavailable(format!("cannot make an id: {e}")))?,
            site_id: site,
            email,
            name,
            password_hash: hash_password(&data.password).await?,
            role: data.role,
            max_chats,
            priority,
            created_at: now_ms(),
        };
        // Conflict (the email is taken, in any site) answers 409 with the store's words.
        d.store.insert_agent(&agent).await?;
        if !data.departments.is_empty() {
            let update = AgentUpdate { departments: Some(data.departments), ..AgentUpdate::default() };
            d.store.update_agent(site, agent.id, &update).await?;
        }
        let view = agent_view(&agent, &d.store.departments(site).await?, None);
        ctx.merge_result(into_map(view));
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateData {
    id: Id,
    name: Option<String>,
    role: Option<Role>,
    max_chats: Option<i32>,
    priority: Option<i32>,
    departments: Option<Vec<DepartmentId>>,
    password: Option<String>,
}

struct Update(Arc<Directory>);

#[async_trait]
impl Handler for Update {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let data: UpdateData = ctx.decode()?;
        let d = &self.0;
        let before = d.store.agent(site, data.id).await?.ok_or_else(|| no_agent(data.id))?;
        let name = data.name.as_deref().map(|n| validate::name("name", n)).transpose()?;
        let max_chats = data.max_chats.map(validate::max_chats).transpose()?;
        let priority = data.priority.map(validate::priority).transpose()?;
        if let Some(p) = &data.password {
            validate::password("password", p)?;
        }
        let departments = d.store.departments(site).await?;
        if let Some(ids) = &data.departments {
            validate::departments(ids, &departments)?;
        }
        let password_hash = match &data.password {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        let update =
            AgentUpdate { name, role: data.role, max_chats, priority, password_hash, departments: data.departments };
        // Conflict when it would demote the site's last admin.
        let after = d.store.update_agent(site, data.id, &update).await?.ok_or_else(|| no_agent(data.id))?;
        // Tokens carry the role; a new password shuts out whoever had the old one.
        if after.role != before.role || update.password_hash.is_some() {
            d.revoke_sessions(site, data.id, "role or password changed").await?;
        }
        d.sync_presence(site, &[data.id]).await?;
        let view = agent_view(&after, &d.store.departments(site).await?, d.status(site, data.id).await?.as_deref());
        ctx.merge_result(into_map(view));
        Ok(Step::Next)
    }
}

struct Delete(Arc<Directory>);

#[async_trait]
impl Handler for Delete {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let ById { id } = ctx.decode()?;
        let d = &self.0;
        let agent = d.store.agent(site, id).await?.ok_or_else(|| no_agent(id))?;
        // Checked before the sessions are revoked, so a refused delete logs nobody out;
        // the store checks again in the transaction that deletes.
        if agent.role == Role::Admin {
            let admins = d.store.agents(site).await?.iter().filter(|a| a.role == Role::Admin).count();
            if admins <= 1 {
                return Err(Failure::conflict("this agent is the site's last admin; make another agent admin first"));
            }
        }
        d.revoke_sessions(site, id, "agent deleted").await?;
        if !d.store.delete_agent(site, id).await? {
            return Err(no_agent(id));
        }
        d.state.del(&[&agent_key(site, id)]).await?;
        d.state.srem(&agents_key(site), &[&id.to_string()]).await?;
        ctx.set_result("id", json!(id));
        ctx.set_result("deleted", json!(true));
        Ok(Step::Next)
    }
}

pub(super) fn into_map(view: Value) -> serde_json::Map<String, Value> {
    match view {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}
