//! `offline/availability`, `offline/validate` and `offline/submit`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::id::{Id, IdGenerator, SiteId};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Step};
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;
use serde::Deserialize;
use serde_json::json;

use super::validate::{check, is_online, Submission};
use super::{messages_key, KEEP_MESSAGES};
use crate::model::{agent_key, agents_key, AgentPresence};

use frontdesk_core::time::now_ms;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AvailabilityRequest {
    site_id: SiteId,
}

pub(super) struct Availability {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub presence_timeout: Duration,
}

#[async_trait]
impl Handler for Availability {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let req: AvailabilityRequest = ctx.decode()?;
        if self.store.site(req.site_id).await?.is_none() {
            return Err(Failure::not_found(format!(
                "data.siteId: site {} does not exist; check the siteId in the widget snippet",
                req.site_id
            )));
        }
        let now = now_ms();
        let timeout = i64::try_from(self.presence_timeout.as_millis()).unwrap_or(i64::MAX);
        let mut online = false;
        for id in self.state.smembers(&agents_key(req.site_id)).await? {
            let Ok(id) = id.parse::<Id>() else { continue };
            let presence = object::load::<AgentPresence>(self.state.as_ref(), &agent_key(req.site_id, id)).await?;
            if presence.is_some_and(|p| is_online(&p, now, timeout)) {
                online = true;
                break;
            }
        }
        ctx.set_result("agentsOnline", json!(online));
        Ok(Step::Next)
    }
}

/// The checked submission, for `offline/submit`.
#[derive(Clone)]
struct Checked(Submission);

pub(super) struct Validate;

#[async_trait]
impl Handler for Validate {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let s = check(ctx.decode::<Submission>()?)?;
        ctx.extensions.insert(Checked(s));
        Ok(Step::Next)
    }
}

pub(super) struct Submit {
    pub state: Arc<dyn StateStore>,
    pub ids: IdGenerator,
}

#[async_trait]
impl Handler for Submit {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let Caller::Visitor { site_id, visitor_id } = ctx.caller else {
            return Err(Failure::forbidden("offline_message.submit is called with a visitor token"));
        };
        let s = match ctx.extensions.get::<Checked>() {
            Some(Checked(s)) => s.clone(),
            None => check(ctx.decode::<Submission>()?)?,
        };
        if s.site_id.is_some_and(|given| given != site_id) {
            return Err(Failure::forbidden("data.siteId: not the site of your visitor token; leave it out"));
        }
        let id = self.ids.next().map_err(|e| Failure::unavailable(format!("cannot make an id: {e}")))?;
        let record = json!({
            "id": id.to_string(),
            "siteId": site_id.to_string(),
            "visitorId": visitor_id.to_string(),
            "name": s.name,
            "email": s.email,
            "message": s.message,
            "createdAt": now_ms(),
        });
        let key = messages_key(site_id);
        let len = self.state.rpush(&key, &[record.to_string().as_str()]).await?;
        if len > KEEP_MESSAGES as u64 {
            self.state.ltrim(&key, -KEEP_MESSAGES, -1).await?;
        }
        ctx.set_result("id", json!(id.to_string()));
        Ok(Step::Next)
    }
}
