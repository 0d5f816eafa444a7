//! `visitor.enter_site` (SPEC §5.3, §5.4): a page with the widget announces its visitor.
//! `will`: `visitor/check_domain` (the site exists and the page is on one of its allowed
//! domains), `visitor/check_ban`; `do`: `visitor/create` (recognise the visitor by the
//! token of an earlier visit, or make a new one) → `{visitorId, visitorToken, returning,
//! visitCount}`. The same `check_ban` guards the calls of a visitor already in.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::error::ErrorKind;
use frontdesk_core::id::{IdGenerator, SiteId};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Step};
use frontdesk_core::state::StateStore;
use frontdesk_core::store::{Site, Store};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{check_len, current_of_caller, domain, fresh_record, now_ms, store_record, variables, Current, Touched};
use crate::model::{visitor_key, VisitorRecord};
use crate::tokens::Tokens;

/// The request of `visitor.enter_site`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnterSite {
    site_id: SiteId,
    url: String,
    title: Option<String>,
    referrer: Option<String>,
    name: Option<String>,
    email: Option<String>,
    custom_variables: Option<Map<String, Value>>,
    visitor_token: Option<String>,
}

fn decode(ctx: &Ctx) -> Result<EnterSite, Failure> {
    let req: EnterSite = ctx.decode()?;
    if req.url.trim().is_empty() {
        return Err(Failure::bad_request("data.url: the page's address is required (the widget sends location.href)"));
    }
    check_len("url", Some(&req.url), 4096)?;
    check_len("title", req.title.as_deref(), 1024)?;
    check_len("referrer", req.referrer.as_deref(), 4096)?;
    check_len("name", req.name.as_deref(), 200)?;
    check_len("email", req.email.as_deref(), 254)?;
    Ok(req)
}

/// The site, checked by `check_domain`, for the stages after it.
#[derive(Clone)]
struct CheckedSite(SiteId);

async fn load_site(store: &dyn Store, id: SiteId) -> Result<Site, Failure> {
    store
        .site(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("site {id} does not exist; check the siteId in the widget snippet")))
}

/// `visitor/check_domain`: the site exists; when it lists allowed domains, the page's host
/// (the `Origin` header's, or without one the `url`'s) is one of them or a subdomain.
pub(super) struct CheckDomain {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl Handler for CheckDomain {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let req = decode(ctx)?;
        let site = load_site(self.store.as_ref(), req.site_id).await?;
        if !site.allowed_domains.is_empty() {
            let origin = ctx.request.client.origin.as_deref().filter(|o| !o.trim().is_empty() && *o != "null");
            let (host, from) = match origin {
                Some(o) => (domain::host_of(o), "the Origin header"),
                None => (domain::host_of(&req.url), "data.url"),
            };
            let Some(host) = host else {
                return Err(Failure::new(
                    ErrorKind::DomainNotAllowed,
                    format!("site {} accepts only its allowed domains, and {from} names no http(s) host", site.id),
                ));
            };
            if !domain::allowed(&host, &site.allowed_domains) {
                return Err(Failure::new(
                    ErrorKind::DomainNotAllowed,
                    format!(
                        "pages on {host} may not use the widget of site {}; an admin can add {host} to the site's allowed domains",
                        site.id
                    ),
                ));
            }
        }
        ctx.extensions.insert(CheckedSite(site.id));
        Ok(Step::Next)
    }
}

/// The visitor an `enter_site` call names by the token of an earlier visit: only a valid
/// visitor token of the same site counts; any other token means a new visitor.
async fn recognise(tokens: &Tokens, state: &dyn StateStore, ctx: &mut Ctx) -> Result<Option<Current>, Failure> {
    if let Some(c) = ctx.extensions.get::<Option<Current>>() {
        return Ok(c.clone());
    }
    let req = decode(ctx)?;
    let claimed = req.visitor_token.as_deref().filter(|t| !t.is_empty()).and_then(|t| tokens.verify(t).ok());
    let current = match claimed {
        Some(Caller::Visitor { site_id, visitor_id }) if site_id == req.site_id => {
            let record = object::load::<VisitorRecord>(state, &visitor_key(site_id, visitor_id)).await?;
            Some(Current { site: site_id, visitor: visitor_id, record })
        }
        _ => None,
    };
    ctx.extensions.insert(current.clone());
    Ok(current)
}

/// `visitor/check_ban`: a banned visitor goes no further (`banned`). On `enter_site` the
/// visitor is the one its `visitorToken` names; otherwise the calling visitor.
pub(super) struct CheckBan {
    pub state: Arc<dyn StateStore>,
    pub tokens: Arc<Tokens>,
}

#[async_trait]
impl Handler for CheckBan {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let current = match ctx.caller {
            Caller::Visitor { .. } => Some(current_of_caller(self.state.as_ref(), ctx).await?),
            _ => recognise(&self.tokens, self.state.as_ref(), ctx).await?,
        };
        if let Some(c) = current {
            if c.record.as_ref().is_some_and(|r| r.banned) {
                return Err(Failure::new(
                    ErrorKind::Banned,
                    format!("visitor {} is banned from site {}; the site's agents can lift the ban", c.visitor, c.site),
                ));
            }
        }
        Ok(Step::Next)
    }
}

/// `visitor/create`: recognises the returning visitor (same id, one more visit) or makes a
/// new one; writes the record, the live list, and answers with a visitor token.
pub(super) struct Create {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub tokens: Arc<Tokens>,
    pub ids: IdGenerator,
    pub token_ttl: Duration,
}

#[async_trait]
impl Handler for Create {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let req = decode(ctx)?;
        if ctx.extensions.get::<CheckedSite>().is_none_or(|s| s.0 != req.site_id) {
            // Run without visitor/check_domain (a custom pipeline): the site must exist all the same.
            load_site(self.store.as_ref(), req.site_id).await?;
        }
        let now = now_ms();
        let recognised = recognise(&self.tokens, self.state.as_ref(), ctx).await?;
        let returning = recognised.is_some();
        let (visitor, before) = match recognised {
            Some(c) => (c.visitor, c.record),
            None => {
                (self.ids.next().map_err(|e| Failure::unavailable(format!("cannot make a visitor id: {e}")))?, None)
            }
        };
        let mut record = before.clone().unwrap_or_else(|| fresh_record(req.site_id, visitor, now));
        record.visitor_id = visitor;
        record.site_id = req.site_id;
        if record.first_seen == 0 {
            record.first_seen = now;
        }
        if let Some(update) = &req.custom_variables {
            variables::merge(&mut record.custom_variables, update)?;
        }
        record.current_url = req.url.trim().to_string();
        record.current_title = req.title.unwrap_or_default().trim().to_string();
        record.referrer = req.referrer.unwrap_or_default().trim().to_string();
        if let Some(name) = req.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            record.name = name.to_string();
        }
        if let Some(email) = req.email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            record.email = email.to_string();
        }
        record.ip = ctx.request.client.ip.map(|ip| ip.to_string()).unwrap_or_default();
        record.user_agent = ctx.request.client.user_agent.clone().unwrap_or_default();
        record.last_seen = now;
        // A visitor with a chat in progress keeps the state the chat module gave it.
        let in_chat = record.chat_id.is_some() && matches!(record.state.as_str(), "prechat" | "queued" | "chatting");
        if !in_chat {
            record.state = "browsing".into();
        }

        match &before {
            Some(before) => {
                // Counters move by HINCRBY so concurrent calls of one visitor lose no count.
                store_record(self.state.as_ref(), Some(before), &record, true).await?;
                let key = visitor_key(record.site_id, visitor);
                record.visit_count = self.state.hincrby(&key, "visitCount", 1).await?;
                record.page_views = self.state.hincrby(&key, "pageViews", 1).await?;
            }
            None => {
                // A token without a record (expired from the state store) still proves an
                // earlier visit.
                record.visit_count = if returning { 2 } else { 1 };
                record.page_views = 1;
                store_record(self.state.as_ref(), None, &record, true).await?;
            }
        }

        let token = self.tokens.issue_visitor(record.site_id, visitor, self.token_ttl)?;
        ctx.set_result("visitorId", json!(visitor));
        ctx.set_result("visitorToken", json!(token));
        ctx.set_result("returning", json!(returning));
        ctx.set_result("visitCount", json!(record.visit_count));
        ctx.extensions.insert(Touched { before, record });
        Ok(Step::Next)
    }
}
