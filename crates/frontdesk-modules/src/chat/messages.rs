//! Writing in a chat: `chat/send_message` (visitor or agent, idempotent by
//! `clientMessageId`) and `chat/heartbeat` (typing flags, read cursors that only move
//! forward — seed 003 — and, through `chat/sync`, the long-poll fallback for clients without
//! a socket).

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::id::ChatId;
use frontdesk_core::keys;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::push::Recipient;
use frontdesk_core::state::{Script, ScriptTx, ScriptValue};
use serde::Deserialize;
use serde_json::json;

use super::{access, new_message, Appended, Chats, Counters, Who};
use crate::model::{message_type, ChatCore, ChatStatus, ParticipantRole};
use crate::RegisterError;

/// Longest message, in characters (after trimming).
pub const MAX_CONTENT_CHARS: usize = 10_000;
const MAX_CLIENT_MESSAGE_ID: usize = 128;

pub(super) fn register(registry: &mut Registry, chats: &Arc<Chats>) -> Result<(), RegisterError> {
    registry.register("chat/send_message", Arc::new(SendMessage(chats.clone())))?;
    registry.register("chat/heartbeat", Arc::new(Heartbeat(chats.clone())))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    #[allow(dead_code)]
    chat_id: ChatId,
    content: String,
    #[serde(default)]
    client_message_id: Option<String>,
}

/// Who may write, as (messageType, senderId, senderName).
fn writer(who: Who, meta: &ChatCore) -> Result<(i64, frontdesk_core::id::Id, String), Failure> {
    match who {
        Who::Visitor(v) => Ok((message_type::VISITOR, v, meta.visitor_name.clone())),
        Who::Agent { agent_id, part: Some(ParticipantRole::Owner | ParticipantRole::Joined), .. } => {
            let name = meta.participants.iter().find(|p| p.agent_id == agent_id).map(|p| p.name.clone());
            Ok((message_type::AGENT, agent_id, name.unwrap_or_default()))
        }
        Who::Agent { part: Some(ParticipantRole::Monitoring), .. } => Err(Failure::forbidden(
            "you are monitoring this chat and monitoring agents may not write; call chat.agent_join to take part",
        )),
        Who::Agent { agent_id, part: None, .. } => Err(Failure::forbidden(format!(
            "agent {agent_id} is not in chat {}: accept it, or call chat.agent_join first",
            meta.chat_id
        ))),
    }
}

struct SendMessage(Arc<Chats>);

#[async_trait]
impl Handler for SendMessage {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let body: SendBody = ctx.decode()?;
        let access = access(ctx)?;
        let meta = self.0.request_meta(ctx, access.chat_id).await?;
        let content = body.content.trim();
        let chars = content.chars().count();
        if chars == 0 || chars > MAX_CONTENT_CHARS {
            return Err(Failure::bad_request(format!(
                "data.content must hold 1 to {MAX_CONTENT_CHARS} characters after trimming (got {chars})"
            )));
        }
        if let Some(c) = &body.client_message_id {
            if c.is_empty() || c.len() > MAX_CLIENT_MESSAGE_ID {
                return Err(Failure::bad_request(format!(
                    "data.clientMessageId must be 1 to {MAX_CLIENT_MESSAGE_ID} bytes when given"
                )));
            }
        }
        let (kind, sender, name) = writer(access.who, &meta)?;
        if meta.status == ChatStatus::Ended {
            return Err(Failure::conflict(format!(
                "chat {} has ended: no more messages can be sent to it",
                meta.chat_id
            )));
        }
        let msg = new_message(
            self.0.next_id()?,
            meta.chat_id,
            kind,
            sender,
            &name,
            content.to_string(),
            body.client_message_id,
        );
        let (out, signed) = self.0.post(&meta, msg).await?;
        if out.is_new {
            // The counters as the append left them, for `chat/sync` (see `Appended`). A
            // repeated clientMessageId returns an older message: sync reads the chat then.
            ctx.extensions.insert(Appended {
                site_id: meta.site_id,
                counters: Counters {
                    chat_id: meta.chat_id,
                    seq: out.message.seq,
                    visitor_data_offset: out.visitor_data_offset,
                    agent_data_offset: out.agent_data_offset,
                },
                message_id: out.message.id,
                visitor_side: out.message.message_type == crate::model::message_type::VISITOR,
                signed: signed.clone(),
            });
        }
        // No "was it new" flag: both calls with one clientMessageId answer alike (SPEC §6).
        ctx.set_result("message", signed);
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeartbeatBody {
    #[allow(dead_code)]
    chat_id: ChatId,
    #[serde(default)]
    typing: Option<bool>,
    #[serde(default)]
    seen_seq: Option<i64>,
}

fn typing_key(chat: ChatId) -> String {
    keys::chat(chat, "typing")
}

/// Read cursors of one chat: `visitor` and `a:<agentId>` → the highest `seq` seen.
fn cursors_key(chat: ChatId) -> String {
    keys::chat(chat, "cursors")
}

/// Moves a read cursor forward only; returns `{moved (0|1), cursor}`.
pub static ADVANCE_CURSOR: Script = Script {
    name: "chat_advance_cursor",
    lua: r"
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if new > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return {1, new}
end
return {0, cur}
",
    local: advance_local,
};

fn advance_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    let bad = || BackendError::other("script", "chat_advance_cursor needs 1 key and 2 args");
    let (key, field, value) =
        (keys.first().ok_or_else(bad)?, args.first().ok_or_else(bad)?, args.get(1).ok_or_else(bad)?);
    let cur: i64 = tx.hget(key, field)?.and_then(|v| v.parse().ok()).unwrap_or(0);
    let new: i64 = value.parse().map_err(|_| bad())?;
    if new > cur {
        tx.hset(key, &[(field, value)])?;
        return Ok(ScriptValue::List(vec![ScriptValue::Int(1), ScriptValue::Int(new)]));
    }
    Ok(ScriptValue::List(vec![ScriptValue::Int(0), ScriptValue::Int(cur)]))
}

struct Heartbeat(Arc<Chats>);

#[async_trait]
impl Handler for Heartbeat {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let body: HeartbeatBody = ctx.decode()?;
        let access = access(ctx)?;
        let chats = &self.0;
        let meta = chats.request_meta(ctx, access.chat_id).await?;
        let (side, other, cursor_field, me) = match access.who {
            Who::Visitor(v) => ("visitor", "agent", "visitor".to_string(), v),
            Who::Agent { agent_id, .. } => ("agent", "visitor", format!("a:{agent_id}"), agent_id),
        };
        let monitoring = matches!(access.who, Who::Agent { part: Some(ParticipantRole::Monitoring), .. });
        let typing_key = typing_key(meta.chat_id);
        if let (Some(typing), false) = (body.typing, monitoring) {
            let flag = if typing { "1" } else { "0" };
            let before = chats.state.hget(&typing_key, side).await?;
            if before.as_deref().unwrap_or("0") != flag {
                chats.state.hset(&typing_key, &[(side, flag)]).await?;
                let to = if side == "visitor" {
                    Chats::recipients(&meta, Some(me), false)
                } else {
                    vec![Recipient::Visitor(meta.visitor_id)]
                };
                chats
                    .push_to(&to, "chat.typing", &json!({"chatId": meta.chat_id, "side": side, "typing": typing}))
                    .await;
            }
        }
        let cursors = cursors_key(meta.chat_id);
        let mut cursor: i64 =
            chats.state.hget(&cursors, &cursor_field).await?.and_then(|v| v.parse().ok()).unwrap_or(0);
        if let Some(seen) = body.seen_seq {
            if seen < 0 {
                return Err(Failure::bad_request("data.seenSeq must be 0 or more"));
            }
            let seen = seen.min(meta.seq).to_string();
            let out = chats.state.eval(&ADVANCE_CURSOR, &[&cursors], &[&cursor_field, &seen]).await?;
            let ScriptValue::List(v) = out else { return Err(Failure::internal("the cursor script answered oddly")) };
            cursor = v.get(1).and_then(ScriptValue::as_int).unwrap_or(cursor);
            if v.first().and_then(ScriptValue::as_int) == Some(1) {
                let by = if side == "visitor" { json!("visitor") } else { json!(me) };
                let to = Chats::recipients(&meta, Some(me), !monitoring);
                chats.push_to(&to, "chat.seen", &json!({"chatId": meta.chat_id, "by": by, "seq": cursor})).await;
            }
        }
        let other_typing = chats.state.hget(&typing_key, other).await?.as_deref() == Some("1");
        ctx.set_result("unread", json!((meta.seq - cursor).max(0)));
        ctx.set_result("seenSeq", json!(cursor));
        ctx.set_result("typing", json!(other_typing));
        ctx.set_result("status", json!(meta.status));
        Ok(Step::Next)
    }
}
