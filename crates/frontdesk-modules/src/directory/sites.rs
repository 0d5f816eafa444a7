//! `directory/sites_create` (SPEC §5.3 `POST /api/v1/sites`): the operator makes a site and
//! its first admin. The same rules as the binary's bootstrap (`frontdesk site add`), which
//! a module cannot call: an email no agent has, a password of at least 8 characters.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::store::{Agent, Role, Site};
use serde::Deserialize;
use serde_json::json;

use super::agents::hash_password;
use super::{now_ms, validate, Directory};
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, d: &Arc<Directory>) -> Result<(), RegisterError> {
    registry.register("directory/sites_create", Arc::new(Create(d.clone())))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateData {
    name: String,
    admin_email: String,
    admin_password: String,
    admin_name: Option<String>,
}

struct Create(Arc<Directory>);

#[async_trait]
impl Handler for Create {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let data: CreateData = ctx.decode()?;
        let name = validate::name("name", &data.name)?;
        let email = validate::email("adminEmail", &data.admin_email)?;
        validate::password("adminPassword", &data.admin_password)?;
        let admin_name = validate::name("adminName", data.admin_name.as_deref().unwrap_or("Admin"))?;
        let d = &self.0;
        // Checked first so that a taken email leaves no site without an admin behind.
        if d.store.agent_by_email(&email).await?.is_some() {
            return Err(Failure::conflict(format!("an agent with email {email} already exists")));
        }
        let next_id = || d.ids.next().map_err(|e| Failure::unavailable(format!("cannot make an id: {e}")));
        let now = now_ms();
        let site = Site { id: next_id()?, name, allowed_domains: Vec::new(), settings: json!({}), created_at: now };
        let admin = Agent {
            id: next_id()?,
            site_id: site.id,
            email,
            name: admin_name,
            password_hash: hash_password(&data.admin_password).await?,
            role: Role::Admin,
            max_chats: 5,
            priority: 0,
            created_at: now,
        };
        d.store.insert_site(&site).await?;
        d.store.insert_agent(&admin).await?;
        tracing::info!(site = %site.id, admin = %admin.id, "site created by the operator");
        ctx.set_result("siteId", json!(site.id));
        ctx.set_result("adminAgentId", json!(admin.id));
        Ok(Step::Next)
    }
}
