//! Departments as an admin resource (SPEC §5.3 `/api/v1/departments`): a name, a routing
//! strategy and member agents of the same site. Reads for every agent of the site; changes
//! for its admins. Members' presence hashes follow, so dispatch routes by the new teams.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{AgentId, Id};
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::store::{Department, DepartmentUpdate};
use serde::Deserialize;
use serde_json::{json, Value};

use super::agents::{into_map, ById};
use super::{caller_site, department_view, now_ms, validate, Directory};
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, d: &Arc<Directory>) -> Result<(), RegisterError> {
    registry.register("directory/departments_list", Arc::new(List(d.clone())))?;
    registry.register("directory/departments_get", Arc::new(Get(d.clone())))?;
    registry.register("directory/departments_create", Arc::new(Create(d.clone())))?;
    registry.register("directory/departments_update", Arc::new(Update(d.clone())))?;
    registry.register("directory/departments_delete", Arc::new(Delete(d.clone())))?;
    Ok(())
}

/// The routing strategies dispatch knows.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Strategy {
    RoundRobin,
    LeastBusy,
}

impl Strategy {
    fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastBusy => "least_busy",
        }
    }
}

fn no_department(id: Id) -> Failure {
    Failure::not_found(format!("there is no department {id} in this site"))
}

struct List(Arc<Directory>);

#[async_trait]
impl Handler for List {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let all = self.0.store.departments(site).await?;
        ctx.set_result("departments", Value::Array(all.iter().map(department_view).collect()));
        Ok(Step::Next)
    }
}

struct Get(Arc<Directory>);

#[async_trait]
impl Handler for Get {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let ById { id } = ctx.decode()?;
        let d = self.0.store.department(site, id).await?.ok_or_else(|| no_department(id))?;
        ctx.merge_result(into_map(department_view(&d)));
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
struct CreateData {
    name: String,
    strategy: Strategy,
    #[serde(default)]
    members: Vec<AgentId>,
}

struct Create(Arc<Directory>);

#[async_trait]
impl Handler for Create {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let data: CreateData = ctx.decode()?;
        let name = validate::name("name", &data.name)?;
        let d = &self.0;
        validate::members(&data.members, &d.store.agents(site).await?)?;
        let mut members = data.members;
        members.sort_unstable();
        members.dedup();
        let department = Department {
            id: d.ids.next().map_err(|e| Failure::unavailable(format!("cannot make an id: {e}")))?,
            site_id: site,
            name,
            strategy: data.strategy.as_str().to_string(),
            members,
            created_at: now_ms(),
        };
        // Conflict when the site has a department of that name.
        d.store.insert_department(&department).await?;
        d.sync_presence(site, &department.members).await?;
        ctx.merge_result(into_map(department_view(&department)));
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
struct UpdateData {
    id: Id,
    name: Option<String>,
    strategy: Option<Strategy>,
    members: Option<Vec<AgentId>>,
}

struct Update(Arc<Directory>);

#[async_trait]
impl Handler for Update {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = caller_site(&ctx.caller, &ctx.event)?;
        let data: UpdateData = ctx.decode()?;
        let d = &self.0;
        let before = d.store.department(site, data.id).await?.ok_or_else(|| no_department(data.id))?;
        let name = data.name.as_deref().map(|n| validate::name("name", n)).transpose()?;
        if let Some(members) = &data.members {
            validate::members(members, &d.store.agents(site).await?)?;
        }
        let update =
            DepartmentUpdate { name, strategy: data.strategy.map(|s| s.as_str().to_string()), members: data.members };
        let after = d.store.update_department(site, data.id, &update).await?.ok_or_else(|| no_department(data.id))?;
        let mut touched: Vec<AgentId> = before.members.iter().chain(&after.members).copied().collect();
        touched.sort_unstable();
        touched.dedup();
        d.sync_presence(site, &touched).await?;
        ctx.merge_result(into_map(department_view(&after)));
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
        let before = d.store.department(site, id).await?.ok_or_else(|| no_department(id))?;
        if !d.store.delete_department(site, id).await? {
            return Err(no_department(id));
        }
        d.sync_presence(site, &before.members).await?;
        ctx.set_result("id", json!(id));
        ctx.set_result("deleted", json!(true));
        Ok(Step::Next)
    }
}
