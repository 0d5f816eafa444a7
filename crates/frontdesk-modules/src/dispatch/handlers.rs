//! Dispatch's stages in the chat events' pipelines: `dispatch/route` (`chat.request`'s
//! `did`), `dispatch/accept` and `dispatch/refuse` (claim the pending offer),
//! `dispatch/transfer`, and `dispatch/release` (capacity back, queues drained, after a chat
//! ends or changes hands; driven by the note the chat stage leaves in `ctx.values`).

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{AgentId, ChatId, DepartmentId, SiteId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::store::Role;
use serde::Deserialize;
use serde_json::json;

use super::{offers_key, queues_key, Dispatch};
use crate::model::{chat_meta_key, queue_key, ChatMeta, ChatStatus};
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, d: &Arc<Dispatch>) -> Result<(), RegisterError> {
    registry.register("dispatch/route", Arc::new(Route(d.clone())))?;
    registry.register("dispatch/accept", Arc::new(Claim { d: d.clone(), accept: true }))?;
    registry.register("dispatch/refuse", Arc::new(Claim { d: d.clone(), accept: false }))?;
    registry.register("dispatch/transfer", Arc::new(Transfer(d.clone())))?;
    registry.register("dispatch/release", Arc::new(Release(d.clone())))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatRef {
    chat_id: ChatId,
}

fn agent_of(caller: &Caller) -> Result<(SiteId, AgentId, Role), Failure> {
    match caller {
        Caller::Agent { site_id, agent_id, role, .. } => Ok((*site_id, *agent_id, *role)),
        _ => Err(Failure::forbidden("only an agent may call this event")),
    }
}

impl Dispatch {
    async fn site_chat(&self, site: SiteId, chat: ChatId) -> Result<ChatMeta, Failure> {
        self.load_chat(chat)
            .await?
            .filter(|m| m.site_id == site)
            .ok_or_else(|| Failure::not_found("no such chat (or it is not yours): check data.chatId"))
    }
}

/// Queues a new chat and offers it if an agent is available; answers its status and queue
/// position.
struct Route(Arc<Dispatch>);

#[async_trait]
impl Handler for Route {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let Some(chat) = ctx.response.data.get("chatId").and_then(|v| v.as_str()).and_then(|s| s.parse().ok()) else {
            return Err(Failure::internal(format!("{}: chat/create must run before dispatch/route", ctx.event)));
        };
        let d = &self.0;
        let Some(meta) = d.load_chat(chat).await? else {
            return Err(Failure::not_found("no such chat (or it is not yours): check data.chatId"));
        };
        if ctx.values.contains_key("chatCreated") {
            d.enqueue(&meta).await?;
            // First in line: offered here and now, whether or not a drain of the queue is
            // running on this node (a drain running elsewhere coalesces this request's).
            let queue = queue_key(meta.site_id, meta.department_id);
            if d.state.zrank(&queue, &chat.to_string()).await? == Some(0) {
                d.offer(&meta, None).await?;
            }
            d.drain(meta.site_id, meta.department_id).await?;
        }
        let status = d.state.hget(&chat_meta_key(chat), "status").await?.unwrap_or_else(|| "queued".into());
        // The place in the queue now (the visitors' positions are pushed behind, coalesced).
        let position = if status == "queued" {
            let rank = d.state.zrank(&queue_key(meta.site_id, meta.department_id), &chat.to_string()).await?;
            rank.map_or(0, |r| r as i64 + 1)
        } else {
            0
        };
        ctx.set_result("status", json!(status));
        ctx.set_result("queuePosition", json!(position));
        Ok(Step::Next)
    }
}

/// Claims the caller's pending offer of the chat (`ZREM` from the offers set: exactly one
/// of accept, refuse and expiry wins it). Accepting leaves `offerClaimed` for
/// `chat/accept`; refusing hands the chat on.
struct Claim {
    d: Arc<Dispatch>,
    accept: bool,
}

#[async_trait]
impl Handler for Claim {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let ChatRef { chat_id } = ctx.decode()?;
        let (site, agent, _) = agent_of(&ctx.caller)?;
        let meta = self.d.site_chat(site, chat_id).await?;
        if meta.status == ChatStatus::Ended {
            return Err(Failure::conflict(format!("chat {chat_id} has ended")));
        }
        if meta.offered_to != Some(agent) {
            return Err(Failure::conflict(format!(
                "chat {chat_id} is not offered to you (it may have been offered to someone else or timed out)"
            )));
        }
        if self.d.state.zrem(&offers_key(site), &[&chat_id.to_string()]).await? != 1 {
            return Err(Failure::conflict(format!(
                "the offer of chat {chat_id} expired or was already answered; it went to the next agent or back to the queue"
            )));
        }
        if self.accept {
            ctx.values.insert("offerClaimed".into(), json!(chat_id));
        } else {
            self.d.offer_declined(chat_id, agent).await?;
            ctx.set_result("chatId", json!(chat_id));
            ctx.set_result("refused", json!(true));
        }
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransferBody {
    chat_id: ChatId,
    #[serde(default)]
    agent_id: Option<AgentId>,
    #[serde(default)]
    department_id: Option<DepartmentId>,
}

/// `chat.agent_transfer`: by the owner or a supervisor; to a named agent (offered now, or
/// `conflict` when that agent cannot take it) or to a department (queued there while the
/// owner keeps the chat). On acceptance the new agent becomes owner (`chat/accept`).
struct Transfer(Arc<Dispatch>);

#[async_trait]
impl Handler for Transfer {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let body: TransferBody = ctx.decode()?;
        let (site, caller, role) = agent_of(&ctx.caller)?;
        let d = &self.0;
        let mut meta = d.site_chat(site, body.chat_id).await?;
        if meta.agent_id != Some(caller) && !matches!(role, Role::Supervisor | Role::Admin) {
            return Err(Failure::forbidden("only the chat's owner or a supervisor may transfer it"));
        }
        if meta.status != ChatStatus::Active {
            return Err(Failure::conflict(format!(
                "chat {} is not active: only an active chat can be transferred",
                meta.chat_id
            )));
        }
        if meta.offered_to.is_some() || meta.transfer_from.is_some() {
            return Err(Failure::conflict(format!("chat {} already has a transfer pending", meta.chat_id)));
        }
        let Some(owner) = meta.agent_id else {
            return Err(Failure::conflict(format!("chat {} has no owner to transfer from", meta.chat_id)));
        };
        let key = chat_meta_key(meta.chat_id);
        let owner_s = owner.to_string();
        // Whoever refused the chat before may take a transfer of it.
        d.state.hset(&key, &[("transferFrom", &owner_s), ("refusedBy", "[]")]).await?;
        meta.transfer_from = Some(owner);
        meta.refused_by.clear();
        match (body.agent_id, body.department_id) {
            (Some(target), None) => {
                if target == owner {
                    d.state.hdel(&key, &["transferFrom"]).await?;
                    return Err(Failure::bad_request("data.agentId is the chat's owner already"));
                }
                if d.store.agent(site, target).await?.is_none() {
                    d.state.hdel(&key, &["transferFrom"]).await?;
                    return Err(Failure::not_found("no such agent in this site: check data.agentId"));
                }
                if d.offer(&meta, Some(target)).await?.is_none() {
                    d.state.hdel(&key, &["transferFrom"]).await?;
                    return Err(Failure::conflict(format!(
                        "agent {target} cannot take the chat now (offline, away or at capacity)"
                    )));
                }
                ctx.set_result("offeredTo", json!(target));
            }
            (None, Some(dept)) => {
                let dept_s = dept.to_string();
                d.state.hset(&key, &[("transferDepartment", &dept_s), ("departmentId", &dept_s)]).await?;
                meta.transfer_department = Some(dept);
                meta.department_id = Some(dept);
                meta.queued_at = super::now_ms();
                d.enqueue(&meta).await?;
                d.drain(site, Some(dept)).await?;
                ctx.set_result("departmentId", json!(dept));
            }
            _ => {
                d.state.hdel(&key, &["transferFrom"]).await?;
                return Err(Failure::bad_request("give exactly one of data.agentId and data.departmentId"));
            }
        }
        ctx.set_result("chatId", json!(meta.chat_id));
        ctx.set_result("status", json!("transferring"));
        Ok(Step::Next)
    }
}

/// Mirror of the chat module's note in `ctx.values["dispatch"]` (the two modules agree on
/// this JSON, not on a Rust type).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Note {
    site_id: SiteId,
    chat_id: ChatId,
    #[serde(default)]
    release: Vec<AgentId>,
    #[serde(default)]
    claim: Vec<AgentId>,
    #[serde(default)]
    withdrawn: bool,
    #[serde(default)]
    offered_to: Option<AgentId>,
}

struct Release(Arc<Dispatch>);

#[async_trait]
impl Handler for Release {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let Some(note) = ctx.values.get("dispatch").cloned() else { return Ok(Step::Next) };
        let note: Note = serde_json::from_value(note)
            .map_err(|e| Failure::internal(format!("ctx.values.dispatch is not a dispatch note: {e}")))?;
        let d = &self.0;
        for agent in &note.release {
            d.adjust(note.site_id, *agent, -1).await?;
        }
        for agent in &note.claim {
            d.adjust(note.site_id, *agent, 1).await?;
        }
        if note.withdrawn {
            let chat = note.chat_id.to_string();
            for dept in d.state.smembers(&queues_key(note.site_id)).await? {
                let dept = dept.parse::<u64>().ok().filter(|x| *x != 0).map(frontdesk_core::id::Id);
                d.state.zrem(&queue_key(note.site_id, dept), &[&chat]).await?;
            }
            if let Some(agent) = note.offered_to {
                if d.state.zrem(&offers_key(note.site_id), &[&chat]).await? == 1 {
                    d.adjust(note.site_id, agent, -1).await?;
                }
            }
        }
        // Capacity came back or a queue changed: the next waiting chats may go now.
        d.drain_site(note.site_id).await?;
        Ok(Step::Next)
    }
}
