//! `offline/availability`, `offline/validate` and `offline/submit` (the write-behind job
//! and, with SMTP configured, the e-mail job).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use frontdesk_core::history::{HistoryJob, OfflineMessageRecord, HISTORY_QUEUE};
use frontdesk_core::id::{Id, SiteId};
use frontdesk_core::mail::{EmailJob, EmailKind, EMAIL_JOB_VERSION, EMAIL_QUEUE};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Step};
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;
use serde::Deserialize;
use serde_json::json;

use super::validate::{check, is_online, Submission};
use super::Offline;
use crate::model::{agent_key, agents_key, visitor_key, AgentPresence, VisitorRecord};

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

pub(super) struct Submit(pub Arc<Offline>);

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
        let page_url = match s.url {
            Some(url) => Some(url),
            None => object::load::<VisitorRecord>(self.0.state.as_ref(), &visitor_key(site_id, visitor_id))
                .await?
                .map(|v| v.current_url)
                .filter(|u| !u.is_empty()),
        };
        let id = self.0.ids.next().map_err(|e| Failure::unavailable(format!("cannot make an id: {e}")))?;
        let record = OfflineMessageRecord {
            id,
            site_id,
            visitor_id,
            name: s.name,
            email: s.email,
            message: s.message,
            page_url,
            created_at: now_ms(),
        };
        let encode = |e: serde_json::Error| Failure::internal(format!("cannot encode a job: {e}"));
        // The record first: a message that is kept but not e-mailed is still on the
        // agents' list; one e-mailed but not kept would be gone at the next look.
        let history = HistoryJob::offline_message_payload(record.clone()).map_err(encode)?;
        self.0.bus.publish(HISTORY_QUEUE, Bytes::from(history)).await?;
        if self.0.mailer.is_some() {
            let job = EmailJob { v: EMAIL_JOB_VERSION, mail: EmailKind::OfflineMessage(record) };
            let payload = serde_json::to_vec(&job).map_err(encode)?;
            self.0.bus.publish(EMAIL_QUEUE, Bytes::from(payload)).await?;
        }
        ctx.set_result("id", json!(id.to_string()));
        Ok(Step::Next)
    }
}
