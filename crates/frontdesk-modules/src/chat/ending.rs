//! Chats ending and what follows: `chat/end` (`chat.end` by an agent in the chat or a
//! supervisor, `chat.visitor_leave` by the visitor), `chat/agent_leave` (an owner leaving
//! hands the chat to a joined agent, or ends it), `chat/post_chat` (the visitor's rating)
//! and `chat/wrap_up` (the owner's notes after the end). Capacity is released by dispatch's
//! `did` stage from the [`DispatchNote`] left here.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{AgentId, ChatId};
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use serde::Deserialize;
use serde_json::json;

use super::lifecycle::to_value;
use super::{access, is_supervisor, now_ms, Chats, DispatchNote, Who};
use crate::model::{visitor_key, ChatMeta, ChatStatus, ParticipantRole};
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, chats: &Arc<Chats>) -> Result<(), RegisterError> {
    registry.register("chat/end", Arc::new(End(chats.clone())))?;
    registry.register("chat/agent_leave", Arc::new(AgentLeave(chats.clone())))?;
    registry.register("chat/post_chat", Arc::new(PostChat(chats.clone())))?;
    registry.register("chat/wrap_up", Arc::new(WrapUp(chats.clone())))?;
    Ok(())
}

/// Ends the chat: a system message (while the chat still takes messages), status `ended`,
/// `chat.ended` pushed, and a note for dispatch to free the agents and the queue.
async fn end_chat(chats: &Chats, ctx: &mut Ctx, chat_id: ChatId, by: Who, text: String) -> Result<ChatMeta, Failure> {
    let meta = chats.meta_or_404(chat_id).await?;
    if meta.status == ChatStatus::Ended {
        return Err(Failure::conflict(format!("chat {chat_id} has already ended")));
    }
    chats.system_message(&meta.core(), text).await?;
    let now = now_ms();
    let (meta, (was_active_owner, offered_to)) = chats
        .edit(chat_id, |m| {
            if m.status == ChatStatus::Ended {
                return Err(Failure::conflict(format!("chat {chat_id} has already ended")));
            }
            let owner = m.agent_id.filter(|_| m.status == ChatStatus::Active);
            let offered = m.offered_to.take();
            m.status = ChatStatus::Ended;
            m.ended_at = now;
            m.queue_position = 0;
            m.transfer_from = None;
            m.transfer_department = None;
            m.offered_at = 0;
            Ok((owner, offered))
        })
        .await?;
    let state = if matches!(by, Who::Visitor(_)) { "left" } else { "browsing" };
    chats.state.hset(&visitor_key(meta.site_id, meta.visitor_id), &[("state", state)]).await?;
    let by_json = match by {
        Who::Visitor(_) => json!("visitor"),
        Who::Agent { agent_id, .. } => json!(agent_id),
    };
    let me = match by {
        Who::Visitor(v) => v,
        Who::Agent { agent_id, .. } => agent_id,
    };
    let to = Chats::recipients(&meta.core(), Some(me), true);
    chats.push_to(&to, "chat.ended", &json!({"chatId": chat_id, "endedBy": by_json, "endedAt": now})).await;
    let note = DispatchNote {
        site_id: meta.site_id,
        chat_id,
        release: was_active_owner.into_iter().collect(),
        claim: vec![],
        withdrawn: true,
        offered_to,
    };
    ctx.values.insert("dispatch".into(), to_value(&note)?);
    ctx.set_result("chatId", json!(chat_id));
    ctx.set_result("status", json!(ChatStatus::Ended));
    Ok(meta)
}

struct End(Arc<Chats>);

#[async_trait]
impl Handler for End {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let access = access(ctx)?;
        let text = match access.who {
            Who::Visitor(_) => "The visitor left the chat".to_string(),
            Who::Agent { agent_id, role, part } => {
                let in_chat = matches!(part, Some(ParticipantRole::Owner | ParticipantRole::Joined));
                if !in_chat && !is_supervisor(role) {
                    return Err(Failure::forbidden(format!(
                        "only an agent in chat {} or a supervisor may end it",
                        access.chat_id
                    )));
                }
                let meta = self.0.meta_or_404(access.chat_id).await?;
                format!("{} ended the chat", self.0.agent_name(meta.site_id, agent_id).await?)
            }
        };
        end_chat(&self.0, ctx, access.chat_id, access.who, text).await?;
        Ok(Step::Next)
    }
}

struct AgentLeave(Arc<Chats>);

#[async_trait]
impl Handler for AgentLeave {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let access = access(ctx)?;
        let Who::Agent { agent_id, part, .. } = access.who else {
            return Err(Failure::forbidden("only an agent may call chat.agent_leave"));
        };
        let chats = &self.0;
        let meta = chats.meta_or_404(access.chat_id).await?;
        if meta.status == ChatStatus::Ended {
            return Err(Failure::conflict(format!("chat {} has already ended", meta.chat_id)));
        }
        let Some(part) = part else {
            return Err(Failure::forbidden(format!("you are not in chat {}", meta.chat_id)));
        };
        let name = chats.agent_name(meta.site_id, agent_id).await?;
        let successor = meta.participants.iter().find(|p| p.role == ParticipantRole::Joined).map(|p| p.agent_id);
        if part == ParticipantRole::Owner && successor.is_none() {
            end_chat(chats, ctx, meta.chat_id, access.who, format!("{name} left the chat")).await?;
            return Ok(Step::Next);
        }
        let (meta, new_owner) = chats
            .edit(meta.chat_id, |m| {
                let was_owner = m.agent_id == Some(agent_id);
                m.participants.retain(|p| p.agent_id != agent_id);
                let mut new_owner: Option<AgentId> = None;
                if was_owner {
                    if let Some(p) = m.participants.iter_mut().find(|p| p.role == ParticipantRole::Joined) {
                        p.role = ParticipantRole::Owner;
                        new_owner = Some(p.agent_id);
                    }
                    m.agent_id = new_owner;
                }
                Ok(new_owner)
            })
            .await?;
        if part != ParticipantRole::Monitoring {
            chats.system_message(&meta.core(), format!("{name} left the chat")).await?;
        }
        if let Some(owner) = new_owner {
            let note = DispatchNote {
                site_id: meta.site_id,
                chat_id: meta.chat_id,
                release: vec![agent_id],
                claim: vec![owner],
                ..DispatchNote::default()
            };
            ctx.values.insert("dispatch".into(), to_value(&note)?);
            let owner_text = owner.to_string();
            chats.state.hset(&visitor_key(meta.site_id, meta.visitor_id), &[("lastAgentId", &owner_text)]).await?;
        }
        ctx.set_result("chatId", json!(meta.chat_id));
        ctx.set_result("status", json!(meta.status));
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostChatBody {
    rating: i64,
    #[serde(default)]
    comment: Option<String>,
}

struct PostChat(Arc<Chats>);

#[async_trait]
impl Handler for PostChat {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let access = access(ctx)?;
        if !matches!(access.who, Who::Visitor(_)) {
            return Err(Failure::forbidden("only the chat's visitor may rate it"));
        }
        let body: PostChatBody = ctx.decode()?;
        if !(1..=5).contains(&body.rating) {
            return Err(Failure::bad_request(format!("data.rating must be 1 to 5 (got {})", body.rating)));
        }
        if body.comment.as_ref().is_some_and(|c| c.chars().count() > 2000) {
            return Err(Failure::bad_request("data.comment must be at most 2000 characters"));
        }
        let (meta, ()) = self
            .0
            .edit(access.chat_id, |m| {
                if !matches!(m.status, ChatStatus::Active | ChatStatus::Ended) {
                    return Err(Failure::conflict(format!(
                        "chat {} has not started yet: rate it during or after the conversation",
                        m.chat_id
                    )));
                }
                m.rating = Some(body.rating);
                m.comment = body.comment.clone().filter(|c| !c.trim().is_empty());
                Ok(())
            })
            .await?;
        ctx.set_result("chatId", json!(meta.chat_id));
        ctx.set_result("rating", json!(meta.rating));
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrapUpBody {
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

struct WrapUp(Arc<Chats>);

#[async_trait]
impl Handler for WrapUp {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let access = access(ctx)?;
        let Who::Agent { agent_id, .. } = access.who else {
            return Err(Failure::forbidden("only the chat's owner may wrap it up"));
        };
        let body: WrapUpBody = ctx.decode()?;
        if body.notes.as_ref().is_some_and(|n| n.chars().count() > 10_000) {
            return Err(Failure::bad_request("data.notes must be at most 10000 characters"));
        }
        let tags = body.tags.unwrap_or_default();
        if tags.len() > 20 || tags.iter().any(|t| t.trim().is_empty() || t.chars().count() > 50) {
            return Err(Failure::bad_request("data.tags must be at most 20 tags of 1 to 50 characters"));
        }
        let (meta, ()) = self
            .0
            .edit(access.chat_id, |m| {
                if m.agent_id != Some(agent_id) {
                    return Err(Failure::forbidden(format!("only the owner of chat {} may wrap it up", m.chat_id)));
                }
                if m.status != ChatStatus::Ended {
                    return Err(Failure::conflict(format!(
                        "chat {} has not ended: wrap it up after chat.end",
                        m.chat_id
                    )));
                }
                m.wrap_up_notes = body.notes.clone();
                m.tags = tags.iter().map(|t| t.trim().to_string()).collect();
                Ok(())
            })
            .await?;
        ctx.set_result("chatId", json!(meta.chat_id));
        ctx.set_result("tags", json!(meta.tags));
        Ok(Step::Next)
    }
}
