//! Chats coming to life and gaining people: `chat/create` (a visitor's `chat.request`; one
//! open chat per visitor; durable membership written before the answer), `chat/accept`
//! (after dispatch claimed the offer: the agent becomes owner; on a transfer the previous
//! owner leaves), `chat/join` and `chat/monitor` (silent: the visitor never hears of it).

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{ChatId, DepartmentId, Id};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::push::Recipient;
use serde::Deserialize;
use serde_json::{json, Value};

use super::messages::MAX_CONTENT_CHARS;
use super::{access, caller_agent, new_message, now_ms, ChatAccess, Chats, DispatchNote, Who};
use crate::model::{
    chat_meta_key, message_type, visitor_key, ChatMeta, ChatStatus, Participant, ParticipantRole, VisitorRecord,
};
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, chats: &Arc<Chats>) -> Result<(), RegisterError> {
    registry.register("chat/create", Arc::new(Create(chats.clone())))?;
    registry.register("chat/accept", Arc::new(Accept(chats.clone())))?;
    registry.register("chat/join", Arc::new(Join { chats: chats.clone(), role: ParticipantRole::Joined }))?;
    registry.register("chat/monitor", Arc::new(Join { chats: chats.clone(), role: ParticipantRole::Monitoring }))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody {
    #[serde(default)]
    department_id: Option<DepartmentId>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    email: Option<String>,
}

struct Create(Arc<Chats>);

impl Create {
    /// The visitor's open chat, if any.
    async fn open_chat(&self, chat: Option<&str>) -> Result<Option<ChatMeta>, Failure> {
        let Some(id) = chat.and_then(|c| c.parse::<Id>().ok()) else { return Ok(None) };
        Ok(self.0.meta(id).await?.filter(|m| m.status != ChatStatus::Ended))
    }

    fn answer_existing(ctx: &mut Ctx, meta: &ChatMeta, visitor: Id) {
        ctx.extensions.insert(ChatAccess { chat_id: meta.chat_id, who: Who::Visitor(visitor) });
        ctx.set_result("chatId", json!(meta.chat_id));
        ctx.set_result("status", json!(meta.status));
        ctx.set_result("queuePosition", json!(meta.queue_position));
        ctx.set_result("existing", json!(true));
    }
}

#[async_trait]
impl Handler for Create {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let Caller::Visitor { site_id, visitor_id } = ctx.caller else {
            return Err(Failure::forbidden(format!("only a visitor may call {}", ctx.event)));
        };
        let body: RequestBody = ctx.decode()?;
        let message = body.message.as_deref().map(str::trim).filter(|m| !m.is_empty()).map(str::to_string);
        if message.as_ref().is_some_and(|m| m.chars().count() > MAX_CONTENT_CHARS) {
            return Err(Failure::bad_request(format!("data.message must be at most {MAX_CONTENT_CHARS} characters")));
        }
        if body.name.as_ref().is_some_and(|n| n.chars().count() > 100) {
            return Err(Failure::bad_request("data.name must be at most 100 characters"));
        }
        let chats = &self.0;
        let vkey = visitor_key(site_id, visitor_id);
        let previous = chats.state.hget(&vkey, "chatId").await?;
        if let Some(open) = self.open_chat(previous.as_deref()).await? {
            Self::answer_existing(ctx, &open, visitor_id);
            return Ok(Step::Next);
        }
        let chat_id: ChatId = chats.next_id()?;
        // Compare-and-set: of two concurrent requests of one visitor, one creates the chat.
        let claimed = chats.state.hcas(&vkey, "chatId", previous.as_deref(), Some(&chat_id.to_string())).await?;
        if !claimed {
            let now = chats.state.hget(&vkey, "chatId").await?;
            return match self.open_chat(now.as_deref()).await? {
                Some(open) => {
                    Self::answer_existing(ctx, &open, visitor_id);
                    Ok(Step::Next)
                }
                None => Err(Failure::conflict("another chat request of this visitor is running; try again")),
            };
        }
        let created_at = now_ms();
        // Durable membership before anything else (SPEC §6).
        if let Err(e) = chats.store.insert_chat(chat_id, site_id, visitor_id, created_at).await {
            let _ = chats.state.hcas(&vkey, "chatId", Some(&chat_id.to_string()), previous.as_deref()).await;
            return Err(e.into());
        }
        let record: Option<VisitorRecord> = object::load(chats.state.as_ref(), &vkey).await?;
        let visitor_name = body
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| record.map(|r| r.name).filter(|n| !n.is_empty()))
            .unwrap_or_else(|| "Visitor".into());
        let meta = ChatMeta {
            chat_id,
            site_id,
            visitor_id,
            visitor_name: visitor_name.clone(),
            department_id: body.department_id,
            status: ChatStatus::Queued,
            created_at,
            queued_at: created_at,
            generation: chats.generation.current(),
            ..ChatMeta::default()
        };
        object::save(chats.state.as_ref(), &chat_meta_key(chat_id), &meta).await?;
        chats.state.hset(&vkey, &[("state", "queued")]).await?;
        if let Some(text) = message {
            let msg =
                new_message(chats.next_id()?, chat_id, message_type::VISITOR, visitor_id, &visitor_name, text, None);
            chats.post(&meta.core(), msg).await?;
        }
        ctx.extensions.insert(ChatAccess { chat_id, who: Who::Visitor(visitor_id) });
        ctx.values.insert("chatCreated".into(), json!({"siteId": site_id, "chatId": chat_id}));
        ctx.set_result("chatId", json!(chat_id));
        ctx.set_result("status", json!(ChatStatus::Queued));
        ctx.set_result("queuePosition", json!(0));
        Ok(Step::Next)
    }
}

struct Accept(Arc<Chats>);

#[async_trait]
impl Handler for Accept {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let access = access(ctx)?;
        let (site, agent, _) =
            caller_agent(&ctx.caller).ok_or_else(|| Failure::forbidden("only an agent may accept"))?;
        if ctx.values.get("offerClaimed") != Some(&json!(access.chat_id)) {
            return Err(Failure::internal(format!("{}: dispatch/accept must run before chat/accept", ctx.event)));
        }
        let chats = &self.0;
        let name = chats.agent_name(site, agent).await?;
        let now = now_ms();
        let (meta, previous) = chats
            .edit(access.chat_id, |m| {
                let previous = m.transfer_from.take().filter(|p| *p != agent);
                m.transfer_department = None;
                m.participants.retain(|p| p.agent_id != agent && Some(p.agent_id) != previous);
                m.participants
                    .insert(0, Participant { agent_id: agent, name: name.clone(), role: ParticipantRole::Owner });
                m.status = ChatStatus::Active;
                m.agent_id = Some(agent);
                m.offered_to = None;
                m.offered_at = 0;
                m.queue_position = 0;
                if m.started_at == 0 {
                    m.started_at = now;
                }
                Ok(previous)
            })
            .await?;
        chats.store.add_chat_member(meta.chat_id, agent).await?;
        let agent_text = agent.to_string();
        chats
            .state
            .hset(&visitor_key(meta.site_id, meta.visitor_id), &[("state", "chatting"), ("lastAgentId", &agent_text)])
            .await?;
        let core = meta.core();
        chats.system_message(&core, format!("{name} joined the chat")).await?;
        let mut to = Chats::recipients(&core, None, true);
        match previous {
            Some(prev) => {
                to.push(Recipient::Agent(prev));
                let data = json!({"chatId": meta.chat_id, "from": prev, "to": agent, "agentName": name});
                chats.push_to(&to, "chat.transferred", &data).await;
                let note = DispatchNote {
                    site_id: meta.site_id,
                    chat_id: meta.chat_id,
                    release: vec![prev],
                    ..DispatchNote::default()
                };
                ctx.values.insert("dispatch".into(), to_value(&note)?);
            }
            None => {
                let data = json!({"chatId": meta.chat_id, "agentId": agent, "agentName": name,
                    "visitorId": meta.visitor_id, "startedAt": meta.started_at});
                chats.push_to(&to, "chat.started", &data).await;
            }
        }
        ctx.set_result("chatId", json!(meta.chat_id));
        ctx.set_result("status", json!(meta.status));
        Ok(Step::Next)
    }
}

pub(super) fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::internal(format!("cannot encode: {e}")))
}

/// `chat/join` (a joined participant who writes, announced) and `chat/monitor` (a silent
/// monitoring participant: no system message, nothing pushed to the visitor).
struct Join {
    chats: Arc<Chats>,
    role: ParticipantRole,
}

#[async_trait]
impl Handler for Join {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let access = access(ctx)?;
        let (site, agent, _) = caller_agent(&ctx.caller).ok_or_else(|| Failure::forbidden("only an agent may join"))?;
        let chats = &self.chats;
        let name = chats.agent_name(site, agent).await?;
        let role = self.role;
        let (meta, changed) = chats
            .edit(access.chat_id, |m| {
                if m.status == ChatStatus::Ended {
                    return Err(Failure::conflict(format!("chat {} has ended", m.chat_id)));
                }
                if role == ParticipantRole::Joined && m.status != ChatStatus::Active {
                    return Err(Failure::conflict(format!(
                        "chat {} is {:?}, not active: only an active chat can be joined",
                        m.chat_id, m.status
                    )));
                }
                match m.participants.iter_mut().find(|p| p.agent_id == agent) {
                    Some(p) if p.role == ParticipantRole::Monitoring && role == ParticipantRole::Joined => {
                        p.role = role;
                        Ok(true)
                    }
                    Some(p) if p.role == role => Ok(false),
                    Some(p) => Err(Failure::conflict(format!("you are already in chat {} as {:?}", m.chat_id, p.role))),
                    None => {
                        m.participants.push(Participant { agent_id: agent, name: name.clone(), role });
                        Ok(true)
                    }
                }
            })
            .await?;
        if changed && role == ParticipantRole::Joined {
            chats.store.add_chat_member(meta.chat_id, agent).await?;
            chats.system_message(&meta.core(), format!("{name} joined the chat")).await?;
        }
        ctx.set_result("chatId", json!(meta.chat_id));
        ctx.set_result("role", json!(role));
        Ok(Step::Next)
    }
}
