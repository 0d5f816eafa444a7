//! The invitation handlers: `invitation/send` (agent), `invitation/check` and the visitor's
//! steps `invitation/show`, `invitation/accept`, `invitation/refuse`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::id::{AgentId, Id, IdGenerator, SiteId, VisitorId};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Step};
use frontdesk_core::push::{Push, Recipient};
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;
use frontdesk_core::time::now_ms;
use serde::Deserialize;
use serde_json::json;

use super::pending::{self, LogEntry, Pending};
use super::{pending_key, MAX_MESSAGE};
use crate::model::{agent_key, visitor_key, VisitorRecord};

fn agent_caller(ctx: &Ctx) -> Result<(SiteId, AgentId), Failure> {
    match ctx.caller {
        Caller::Agent { site_id, agent_id, .. } => Ok((site_id, agent_id)),
        _ => Err(Failure::forbidden(format!("{} is called with an agent's access token", ctx.event))),
    }
}

fn visitor_caller(ctx: &Ctx) -> Result<(SiteId, VisitorId), Failure> {
    match ctx.caller {
        Caller::Visitor { site_id, visitor_id } => Ok((site_id, visitor_id)),
        _ => Err(Failure::forbidden(format!("{} is called with a visitor token (from visitor.enter_site)", ctx.event))),
    }
}

/// Whether the visitor is in a chat already (or on its way into one).
fn in_chat(record: &VisitorRecord) -> bool {
    record.chat_id.is_some() && matches!(record.state.as_str(), "prechat" | "queued" | "chatting")
}

/// Drops a lapsed invitation and moves a visitor still marked `invited` back to `browsing`.
async fn clear_lapsed(state: &dyn StateStore, site: SiteId, visitor: VisitorId) -> Result<(), Failure> {
    let key = pending_key(site, visitor);
    if state.exists(&key).await? {
        state.del(&[key.as_str()]).await?;
        state.hcas(&visitor_key(site, visitor), "state", Some("invited"), Some("browsing")).await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendRequest {
    visitor_id: Id,
    message: Option<String>,
}

/// `invitation.send` `{visitorId, message?}` → `{invitationId, visitorId, expiresAt}`.
pub(super) struct Send {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub ids: IdGenerator,
    pub push: Arc<dyn Push>,
    pub ttl: Duration,
}

impl Send {
    /// The inviting agent's display name: its presence hash, else the durable record.
    async fn agent_name(&self, site: SiteId, agent: AgentId) -> Result<String, Failure> {
        if let Some(name) = self.state.hget(&agent_key(site, agent), "name").await?.filter(|n| !n.trim().is_empty()) {
            return Ok(name);
        }
        let stored = self.store.agent(site, agent).await?;
        Ok(stored.map(|a| a.name).filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "Support".into()))
    }
}

#[async_trait]
impl Handler for Send {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, agent) = agent_caller(ctx)?;
        let req: SendRequest = ctx.decode()?;
        let message = req.message.unwrap_or_default().trim().to_string();
        let chars = message.chars().count();
        if chars > MAX_MESSAGE {
            return Err(Failure::bad_request(format!("data.message: at most {MAX_MESSAGE} characters (got {chars})")));
        }
        let vkey = visitor_key(site, req.visitor_id);
        let Some(record) = object::load::<VisitorRecord>(self.state.as_ref(), &vkey).await? else {
            return Err(Failure::not_found(format!("no live visitor {} on this site", req.visitor_id)));
        };
        if record.banned {
            return Err(Failure::conflict(format!("visitor {} is banned and cannot be invited", req.visitor_id)));
        }
        if in_chat(&record) {
            return Err(Failure::conflict(format!("visitor {} is already in a chat", req.visitor_id)));
        }
        let invitation_id = self.ids.next().map_err(|e| {
            tracing::error!(error = %e, "cannot make an id");
            Failure::unavailable("this node cannot make ids right now; try again shortly")
        })?;
        let now = now_ms();
        let invitation = Pending {
            invitation_id,
            agent_id: agent,
            agent_name: self.agent_name(site, agent).await?,
            message,
            sent_at: now,
            shown_at: 0,
        };
        let key = pending_key(site, req.visitor_id);
        // One pending invitation per visitor: a newer one replaces the older.
        self.state.del(&[key.as_str()]).await?;
        object::save(self.state.as_ref(), &key, &invitation).await?;
        self.state.expire(&key, self.ttl).await?;
        self.state.hset(&vkey, &[("state", "invited")]).await?;
        let entry = LogEntry { site, visitor: req.visitor_id, invitation: invitation_id, agent, step: "sent", at: now };
        pending::log_step(self.state.as_ref(), &entry).await?;
        let pop = json!({
            "invitationId": invitation_id,
            "agentName": invitation.agent_name,
            "message": invitation.message,
            "expiresAt": invitation.expires_at(self.ttl),
        });
        self.push.push(&[Recipient::Visitor(req.visitor_id)], "invitation.pop", &pop).await?;
        ctx.set_result("invitationId", json!(invitation_id));
        ctx.set_result("visitorId", json!(req.visitor_id));
        ctx.set_result("expiresAt", json!(invitation.expires_at(self.ttl)));
        Ok(Step::Next)
    }
}

/// `invitation.check` → `{status: "none"}` or `{status: "pop", invitation}` (manual
/// invitations only; automatic rules are not implemented).
pub(super) struct Check {
    pub state: Arc<dyn StateStore>,
    pub ttl: Duration,
}

#[async_trait]
impl Handler for Check {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, visitor) = visitor_caller(ctx)?;
        let now = now_ms();
        let live = pending::load_live(self.state.as_ref(), site, visitor, now, self.ttl).await?;
        let record = object::load::<VisitorRecord>(self.state.as_ref(), &visitor_key(site, visitor)).await?;
        match live {
            Some(p) if !record.as_ref().is_some_and(in_chat) => {
                ctx.set_result("status", json!("pop"));
                ctx.set_result("invitation", p.view(self.ttl));
            }
            Some(_) => ctx.set_result("status", json!("none")),
            None => {
                clear_lapsed(self.state.as_ref(), site, visitor).await?;
                ctx.set_result("status", json!("none"));
            }
        }
        Ok(Step::Next)
    }
}

/// A visitor's step on a pending invitation.
#[derive(Debug, Clone, Copy)]
pub(super) enum Visible {
    Show,
    Accept,
    Refuse,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StepRequest {
    invitation_id: Id,
}

/// `invitation.show` / `.accept` / `.refuse` `{invitationId}` → `{invitationId, state}`.
pub(super) struct VisitorStep {
    pub state: Arc<dyn StateStore>,
    pub ttl: Duration,
    pub step: Visible,
}

#[async_trait]
impl Handler for VisitorStep {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, visitor) = visitor_caller(ctx)?;
        let req: StepRequest = ctx.decode()?;
        let now = now_ms();
        let live = pending::load_live(self.state.as_ref(), site, visitor, now, self.ttl).await?;
        let Some(p) = live.filter(|p| p.invitation_id == req.invitation_id) else {
            return Err(Failure::not_found(format!(
                "no pending invitation {} for this visitor (it may have expired or been answered)",
                req.invitation_id
            )));
        };
        let key = pending_key(site, visitor);
        let vkey = visitor_key(site, visitor);
        let (name, visitor_state) = match self.step {
            Visible::Show => {
                if p.shown_at == 0 {
                    self.state.hset(&key, &[("shownAt", &now.to_string())]).await?;
                    // Keeps the hash's own expiry (a racing accept may have just removed it).
                    let left = p.expires_at(self.ttl).saturating_sub(now).max(1);
                    self.state.expire(&key, Duration::from_millis(left as u64)).await?;
                }
                ("shown", "invited")
            }
            Visible::Accept => {
                self.state.del(&[key.as_str()]).await?;
                self.state.hcas(&vkey, "state", Some("invited"), Some("prechat")).await?;
                ("accepted", "prechat")
            }
            Visible::Refuse => {
                self.state.del(&[key.as_str()]).await?;
                self.state.hcas(&vkey, "state", Some("invited"), Some("browsing")).await?;
                ("refused", "browsing")
            }
        };
        let entry = LogEntry { site, visitor, invitation: p.invitation_id, agent: p.agent_id, step: name, at: now };
        pending::log_step(self.state.as_ref(), &entry).await?;
        ctx.set_result("invitationId", json!(p.invitation_id));
        ctx.set_result("state", json!(visitor_state));
        Ok(Step::Next)
    }
}
