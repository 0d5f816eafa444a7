//! A visitor browsing (SPEC §5.4): `visitor/page_visit` (a new page: address, title, one
//! more page view), `visitor/page_heartbeat` (still here → `{status: "online"}`) and
//! `visitor/set_custom_variables`. Each refreshes the visitor's place in the live list and
//! leaves the record in [`Touched`] for `visitor/segments` and `visitor/publish`.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Step};
use frontdesk_core::state::StateStore;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{check_len, current_of_caller, fresh_record, now_ms, store_record, variables, Touched};
use crate::model::{visitor_key, VisitorRecord};

/// The calling visitor's record as stored (`None` when it expired) and a copy to change.
async fn begin(state: &dyn StateStore, ctx: &mut Ctx) -> Result<(Option<VisitorRecord>, VisitorRecord), Failure> {
    let current = current_of_caller(state, ctx).await?;
    let now = now_ms();
    let mut record = current.record.clone().unwrap_or_else(|| fresh_record(current.site, current.visitor, now));
    record.last_seen = now;
    // A visitor that had left and shows life again is browsing.
    if record.state.is_empty() || record.state == "left" {
        record.state = "browsing".into();
    }
    Ok((current.record, record))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageVisitRequest {
    url: String,
    title: Option<String>,
    referrer: Option<String>,
}

pub(super) struct PageVisit {
    pub state: Arc<dyn StateStore>,
}

#[async_trait]
impl Handler for PageVisit {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let req: PageVisitRequest = ctx.decode()?;
        if req.url.trim().is_empty() {
            return Err(Failure::bad_request("data.url: the page's address is required"));
        }
        check_len("url", Some(&req.url), 4096)?;
        check_len("title", req.title.as_deref(), 1024)?;
        check_len("referrer", req.referrer.as_deref(), 4096)?;
        let (before, mut record) = begin(self.state.as_ref(), ctx).await?;
        record.current_url = req.url.trim().to_string();
        record.current_title = req.title.unwrap_or_default().trim().to_string();
        if let Some(referrer) = req.referrer.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            record.referrer = referrer.to_string();
        }
        match &before {
            Some(b) => {
                store_record(self.state.as_ref(), Some(b), &record, true).await?;
                let key = visitor_key(record.site_id, record.visitor_id);
                record.page_views = self.state.hincrby(&key, "pageViews", 1).await?;
            }
            None => {
                record.page_views = 1;
                store_record(self.state.as_ref(), None, &record, true).await?;
            }
        }
        ctx.set_result("visitorId", json!(record.visitor_id));
        ctx.set_result("pageViews", json!(record.page_views));
        ctx.extensions.insert(Touched { before, record });
        Ok(Step::Next)
    }
}

/// Kept cheap: one read, one field written, one live-list score; no push unless
/// something agents see changed (e.g. a visitor that had left is back).
pub(super) struct PageHeartbeat {
    pub state: Arc<dyn StateStore>,
}

#[async_trait]
impl Handler for PageHeartbeat {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (before, record) = begin(self.state.as_ref(), ctx).await?;
        store_record(self.state.as_ref(), before.as_ref(), &record, false).await?;
        ctx.set_result("status", json!("online"));
        ctx.extensions.insert(Touched { before, record });
        Ok(Step::Next)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetCustomVariablesRequest {
    custom_variables: Map<String, Value>,
}

/// Merges the given variables into the visitor's (`null` removes one) → the whole set.
pub(super) struct SetCustomVariables {
    pub state: Arc<dyn StateStore>,
}

#[async_trait]
impl Handler for SetCustomVariables {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let req: SetCustomVariablesRequest = ctx.decode()?;
        let (before, mut record) = begin(self.state.as_ref(), ctx).await?;
        variables::merge(&mut record.custom_variables, &req.custom_variables)?;
        store_record(self.state.as_ref(), before.as_ref(), &record, true).await?;
        ctx.set_result("customVariables", Value::Object(record.custom_variables.clone()));
        ctx.extensions.insert(Touched { before, record });
        Ok(Step::Next)
    }
}
