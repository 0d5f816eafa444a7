//! The visitor module (SPEC §4, §5.4 "visitor"): visitors entering a site and browsing it,
//! their custom variables and segments, bans, and the live visitor list agents watch.
//!
//! Owns [`crate::model::VisitorRecord`] (key [`crate::model::visitor_key`]) and the live
//! list [`crate::model::live_visitors_key`] (visitor ids scored by last sign of life).
//!
//! # Layout
//! - [`enter`] — `visitor/check_domain`, `visitor/check_ban`, `visitor/create`.
//! - [`socket_origin`] — `visitor/check_socket_origin` (a visitor socket's `Origin`).
//! - [`browse`] — `visitor/page_visit`, `visitor/page_heartbeat`, `visitor/set_custom_variables`.
//! - [`segments`] — `visitor/segments` and `visitor/publish` (the `visitor.updated` push).
//! - [`live`] — `visitor/list` and `visitor/ban`.
//! - [`domain`], [`variables`] — the pure rules: allowed domains, custom-variable limits.
//!
//! Stages of one request hand the visitor they touched to later stages through
//! [`Touched`] in the context's extensions, so `did` stages need no second read.

mod browse;
mod domain;
mod enter;
mod live;
mod segments;
mod socket_origin;
mod variables;

use std::sync::Arc;
use std::time::Duration;

use frontdesk_core::id::{SiteId, VisitorId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Registry};
use frontdesk_core::state::StateStore;
use frontdesk_core::{object, push::Push};
use serde_json::{json, Value};

use crate::model::{live_visitors_key, visitor_key, VisitorRecord};
use crate::{Deps, RegisterError};

/// A visitor record outlives the visitor's last sign of life by this long; a returning
/// visitor whose record expired keeps its id (the token proves it) with fresh counters.
const RECORD_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let state = deps.backends.state.clone();
    let store = deps.backends.store.clone();
    registry.register("visitor/check_domain", Arc::new(enter::CheckDomain { store: store.clone() }))?;
    registry
        .register("visitor/check_socket_origin", Arc::new(socket_origin::CheckSocketOrigin { store: store.clone() }))?;
    registry.register(
        "visitor/check_ban",
        Arc::new(enter::CheckBan { state: state.clone(), tokens: deps.tokens.clone() }),
    )?;
    registry.register(
        "visitor/create",
        Arc::new(enter::Create {
            state: state.clone(),
            store,
            tokens: deps.tokens.clone(),
            ids: deps.ids.clone(),
            token_ttl: deps.settings.visitor_token_ttl,
        }),
    )?;
    registry.register("visitor/page_visit", Arc::new(browse::PageVisit { state: state.clone() }))?;
    registry.register("visitor/page_heartbeat", Arc::new(browse::PageHeartbeat { state: state.clone() }))?;
    registry.register("visitor/set_custom_variables", Arc::new(browse::SetCustomVariables { state: state.clone() }))?;
    registry.register("visitor/segments", Arc::new(segments::Segments { state: state.clone() }))?;
    registry.register("visitor/publish", Arc::new(segments::Publish { push: deps.push.clone() }))?;
    registry.register("visitor/list", Arc::new(live::List { state: state.clone() }))?;
    registry.register("visitor/ban", Arc::new(live::Ban { state, push: deps.push.clone() }))?;
    Ok(())
}

/// The visitor a request changed: the record as it was before (`None`: new, or its
/// record had expired) and as it is stored now. Put in the extensions by the `do` stages.
#[derive(Debug, Clone)]
pub(crate) struct Touched {
    pub before: Option<VisitorRecord>,
    pub record: VisitorRecord,
}

/// The visitor behind the request, once looked up: from the caller's visitor token, or
/// on `visitor.enter_site` from the `visitorToken` of an earlier visit. Cached in the
/// extensions so `check_ban` and the `do` stage read the record once.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub site: SiteId,
    pub visitor: VisitorId,
    pub record: Option<VisitorRecord>,
}

/// The calling visitor's site and id; any other caller is refused.
pub(crate) fn visitor_caller(ctx: &Ctx) -> Result<(SiteId, VisitorId), Failure> {
    match ctx.caller {
        Caller::Visitor { site_id, visitor_id } => Ok((site_id, visitor_id)),
        _ => Err(Failure::forbidden(format!("{} is called with a visitor token (from visitor.enter_site)", ctx.event))),
    }
}

/// The calling agent's site; any other caller is refused.
pub(crate) fn agent_site(ctx: &Ctx) -> Result<SiteId, Failure> {
    match ctx.caller {
        Caller::Agent { site_id, .. } => Ok(site_id),
        _ => Err(Failure::forbidden(format!("{} is called with an agent's access token", ctx.event))),
    }
}

/// The calling visitor's record (cached in [`Current`] by `check_ban`, else read now).
pub(crate) async fn current_of_caller(state: &dyn StateStore, ctx: &mut Ctx) -> Result<Current, Failure> {
    let (site, visitor) = visitor_caller(ctx)?;
    if let Some(c) = ctx.extensions.get::<Current>().filter(|c| c.site == site && c.visitor == visitor) {
        return Ok(c.clone());
    }
    let record = object::load::<VisitorRecord>(state, &visitor_key(site, visitor)).await?;
    let current = Current { site, visitor, record };
    ctx.extensions.insert(current.clone());
    Ok(current)
}

/// A record for a visitor whose record is missing (new, or expired from the state store).
pub(crate) fn fresh_record(site: SiteId, visitor: VisitorId, now: i64) -> VisitorRecord {
    VisitorRecord {
        visitor_id: visitor,
        site_id: site,
        first_seen: now,
        visit_count: 1,
        state: "browsing".into(),
        ..VisitorRecord::default()
    }
}

/// Writes the record (every field when it is new, else only what changed), refreshes its
/// expiry when asked and its place in the live list.
pub(crate) async fn store_record(
    state: &dyn StateStore,
    before: Option<&VisitorRecord>,
    after: &VisitorRecord,
    refresh_ttl: bool,
) -> Result<(), Failure> {
    let key = visitor_key(after.site_id, after.visitor_id);
    match before {
        Some(before) => object::save_changes(state, &key, before, after).await?,
        None => object::save(state, &key, after).await?,
    }
    if refresh_ttl || before.is_none() {
        state.expire(&key, RECORD_TTL).await?;
    }
    let member = after.visitor_id.to_string();
    state.zadd(&live_visitors_key(after.site_id), &[(after.last_seen as f64, member.as_str())]).await?;
    Ok(())
}

/// A visitor as agents see it (the `visitor.updated` push, the live list).
pub(crate) fn public_view(r: &VisitorRecord) -> Value {
    json!({
        "id": r.visitor_id,
        "name": r.name,
        "email": r.email,
        "currentUrl": r.current_url,
        "currentTitle": r.current_title,
        "referrer": r.referrer,
        "pageViews": r.page_views,
        "visitCount": r.visit_count,
        "segments": r.segments,
        "state": r.state,
        "firstSeen": r.first_seen,
        "lastSeen": r.last_seen,
        "customVariables": r.custom_variables,
        "banned": r.banned,
        "chatId": r.chat_id,
    })
}

/// Whether agents would see a difference; `lastSeen` alone does not count, so heartbeats
/// of thousands of visitors push nothing.
pub(crate) fn seen_by_agents_changed(before: Option<&VisitorRecord>, after: &VisitorRecord) -> bool {
    match before {
        None => true,
        Some(b) => {
            let mut b = b.clone();
            b.last_seen = after.last_seen;
            public_view(&b) != public_view(after)
        }
    }
}

pub(crate) async fn push_updated(push: &dyn Push, record: &VisitorRecord) -> Result<(), Failure> {
    use frontdesk_core::push::Recipient;
    push.push(&[Recipient::SiteAgents(record.site_id)], "visitor.updated", &public_view(record)).await?;
    Ok(())
}

pub(crate) use frontdesk_core::time::now_ms;

/// Checks an optional text field's length in characters, naming it when too long.
pub(crate) fn check_len(field: &str, value: Option<&str>, max: usize) -> Result<(), Failure> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(Failure::bad_request(format!("data.{field}: at most {max} characters (got {})", v.chars().count())))
        }
        _ => Ok(()),
    }
}
