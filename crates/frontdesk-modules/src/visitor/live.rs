//! The live visitor list agents watch (SPEC §5.6 `visitor.updated`, §9 console): `visitor/list`
//! answers the visitors seen in the last [`LIVE_WINDOW_MS`], newest first; `visitor/ban`
//! (supervisors and admins) sets or lifts a visitor's ban. Both stay inside the caller's
//! site: another site's visitor id is simply not found.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::VisitorId;
use frontdesk_core::object;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Step};
use frontdesk_core::push::Push;
use frontdesk_core::state::StateStore;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{agent_site, now_ms, public_view, push_updated};
use crate::model::{live_visitors_key, visitor_key, VisitorRecord};

/// Visitors seen within this window are live.
const LIVE_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Entries older than this leave the live list when it is read (no sweeper needed).
const TRIM_AFTER_MS: i64 = 60 * 60 * 1000;
/// The most visitors one answer lists.
const MAX_LISTED: usize = 500;
/// Records read at once while building the list.
const READ_CONCURRENCY: usize = 32;

pub(super) struct List {
    pub state: Arc<dyn StateStore>,
}

#[async_trait]
impl Handler for List {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let site = agent_site(ctx)?;
        let key = live_visitors_key(site);
        let now = now_ms();
        self.state.zremrange_by_score(&key, f64::NEG_INFINITY, (now - TRIM_AFTER_MS) as f64).await?;
        let live = self.state.zrange_by_score(&key, (now - LIVE_WINDOW_MS) as f64, f64::INFINITY, None).await?;
        // Ascending by last seen: the newest are at the end.
        let ids: Vec<String> = live.into_iter().rev().take(MAX_LISTED).map(|(member, _)| member).collect();
        let state = self.state.clone();
        let records: Vec<(String, Option<VisitorRecord>)> = stream::iter(ids)
            .map(|member| {
                let state = state.clone();
                async move {
                    let record = match member.parse::<VisitorId>() {
                        Ok(id) => object::load::<VisitorRecord>(state.as_ref(), &visitor_key(site, id)).await?,
                        Err(_) => None,
                    };
                    Ok::<_, Failure>((member, record))
                }
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut visitors = Vec::with_capacity(records.len());
        let mut gone = Vec::new();
        for (member, record) in records {
            match record {
                Some(r) => visitors.push(public_view(&r)),
                None => gone.push(member),
            }
        }
        if !gone.is_empty() {
            // Records that expired leave the list too.
            let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
            self.state.zrem(&key, &gone).await?;
        }
        ctx.set_result("visitors", Value::Array(visitors));
        Ok(Step::Next)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BanRequest {
    visitor_id: VisitorId,
    banned: bool,
}

pub(super) struct Ban {
    pub state: Arc<dyn StateStore>,
    pub push: Arc<dyn Push>,
}

#[async_trait]
impl Handler for Ban {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let site = agent_site(ctx)?;
        let req: BanRequest = ctx.decode()?;
        let key = visitor_key(site, req.visitor_id);
        let Some(before) = object::load::<VisitorRecord>(self.state.as_ref(), &key).await? else {
            return Err(Failure::not_found(format!(
                "visitor {} is not known in your site (visitors are kept 30 days after their last visit)",
                req.visitor_id
            )));
        };
        if before.banned != req.banned {
            let after = VisitorRecord { banned: req.banned, ..before.clone() };
            object::save_changes(self.state.as_ref(), &key, &before, &after).await?;
            push_updated(self.push.as_ref(), &after).await?;
        }
        ctx.set_result("visitorId", json!(req.visitor_id));
        ctx.set_result("banned", json!(req.banned));
        Ok(Step::Next)
    }
}
