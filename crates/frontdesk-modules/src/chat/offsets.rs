//! SPEC §6 around every chat event: `chat/offsets` runs before the event (unknown chat →
//! recreate it empty and `code: 1, -1/-1`; client ahead → `code: 1` with the server's
//! offsets), and `chat/sync` answers after it (`code: 0`, the offsets, and every message
//! whose side offset is above the client's, ordered by `seq`, each with its `sig`).

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::ChatId;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::store::ChatMembership;
use serde::Deserialize;

use super::append::create_meta;
use super::{no_such_chat, Appended, ChatAccess, Chats, Counters, ReadMeta, Who};
use crate::model::{message_type, ChatCore, ChatMeta, ChatStatus, Participant, ParticipantRole};
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, chats: &Arc<Chats>) -> Result<(), RegisterError> {
    registry.register("chat/offsets", Arc::new(CheckOffsets(chats.clone())))?;
    registry.register("chat/sync", Arc::new(Sync(chats.clone())))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChatRef {
    pub chat_id: ChatId,
}

/// The caller's relation to a chat of `site` with `visitor`; `None` when the caller may not
/// see it (another site, another visitor). Not found rather than forbidden, so chat ids of
/// other tenants reveal nothing.
pub(super) fn relation(caller: &Caller, meta: &ChatCore) -> Option<Who> {
    match caller {
        Caller::Visitor { site_id, visitor_id } if *site_id == meta.site_id && *visitor_id == meta.visitor_id => {
            Some(Who::Visitor(*visitor_id))
        }
        Caller::Agent { site_id, agent_id, role, .. } if *site_id == meta.site_id => {
            let part = meta.participants.iter().find(|p| p.agent_id == *agent_id).map(|p| p.role);
            Some(Who::Agent { agent_id: *agent_id, role: *role, part })
        }
        _ => None,
    }
}

fn may_belong(caller: &Caller, m: &ChatMembership) -> bool {
    match caller {
        Caller::Visitor { site_id, visitor_id } => *site_id == m.site_id && *visitor_id == m.visitor_id,
        Caller::Agent { site_id, .. } => *site_id == m.site_id,
        _ => false,
    }
}

/// Finds a chat the runtime state lost in the durable store and, if the caller may belong
/// to it, recreates it empty and marked `rebuilding`. `None` when there is no such chat for
/// this caller.
pub(super) async fn recreate(chats: &Chats, caller: &Caller, chat_id: ChatId) -> Result<Option<ChatMeta>, Failure> {
    let Some(m) = chats.store.chat_membership(chat_id).await? else { return Ok(None) };
    // Stamped with the generation as it stands now, not as this node last saw it.
    chats.generation.check().await?;
    if !may_belong(caller, &m) {
        return Ok(None);
    }
    let owner = m.agent_ids.last().copied();
    let mut participants = Vec::new();
    for id in &m.agent_ids {
        let role = if Some(*id) == owner { ParticipantRole::Owner } else { ParticipantRole::Joined };
        participants.push(Participant { agent_id: *id, name: chats.agent_name(m.site_id, *id).await?, role });
    }
    let meta = ChatMeta {
        chat_id,
        site_id: m.site_id,
        visitor_id: m.visitor_id,
        visitor_name: "Visitor".into(),
        status: if owner.is_some() { ChatStatus::Active } else { ChatStatus::Queued },
        agent_id: owner,
        participants,
        created_at: super::now_ms(),
        rebuilding: true,
        generation: chats.generation.current(),
        ..ChatMeta::default()
    };
    // One node creates it (whole, atomically); the others read what it wrote.
    if create_meta(chats.state.as_ref(), &meta).await? {
        Ok(Some(meta))
    } else {
        Ok(chats.meta(chat_id).await?)
    }
}

impl Chats {
    /// The chat (its [`ChatCore`]) if it belongs to the current generation of the runtime
    /// state. A chat of another generation was made before the state was lost or restored
    /// from a snapshot: its counters cannot be trusted, so it is forgotten and reads as
    /// unknown.
    pub(super) async fn current_core(&self, chat_id: ChatId) -> Result<Option<ChatCore>, Failure> {
        match self.core(chat_id).await? {
            Some(meta) if !meta.generation.is_empty() && meta.generation != self.generation.current() => {
                // This node's view may be the stale one (it checks once a second): look again
                // before forgetting a chat another node made in a newer generation.
                self.generation.check().await?;
                if meta.generation == self.generation.current() {
                    return Ok(Some(meta));
                }
                forget_stale(self, &meta).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }
}

/// Drops a stale chat's runtime keys, only while it still carries its old generation (so a
/// node that already recreated it under the current one is never undone).
async fn forget_stale(chats: &Chats, meta: &ChatCore) -> Result<(), Failure> {
    let chat = meta.chat_id;
    let keys = [
        crate::model::chat_meta_key(chat),
        crate::model::chat_messages_key(chat),
        frontdesk_core::keys::chat(chat, "cmids"),
        frontdesk_core::keys::chat(chat, "cursors"),
        frontdesk_core::keys::chat(chat, "typing"),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    chats.state.eval(&FORGET_STALE, &keys, &[&meta.generation]).await?;
    Ok(())
}

/// KEYS: meta, then the chat's other keys; ARGV[1]: the stale generation.
static FORGET_STALE: frontdesk_core::state::Script = frontdesk_core::state::Script {
    name: "chat_forget_stale",
    lua: r#"
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 0 end
for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"#,
    local: forget_stale_local,
};

fn forget_stale_local(
    tx: &mut dyn frontdesk_core::state::ScriptTx,
    keys: &[String],
    args: &[String],
) -> frontdesk_core::error::BackendResult<frontdesk_core::state::ScriptValue> {
    use frontdesk_core::state::ScriptValue;
    let (Some(meta), Some(stale)) = (keys.first(), args.first()) else {
        return Err(frontdesk_core::error::BackendError::other(
            "chat",
            "chat_forget_stale needs keys and a generation",
        ));
    };
    if tx.hget(meta, "generation")?.as_deref() != Some(stale.as_str()) {
        return Ok(ScriptValue::Int(0));
    }
    for key in keys {
        tx.del(key)?;
    }
    Ok(ScriptValue::Int(1))
}

fn answer_rebuild(ctx: &mut Ctx, visitor: i64, agent: i64) -> Step {
    ctx.response.code = 1;
    ctx.response.visitor_data_offset = Some(visitor);
    ctx.response.agent_data_offset = Some(agent);
    Step::Answer
}

struct CheckOffsets(Arc<Chats>);

#[async_trait]
impl Handler for CheckOffsets {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let ChatRef { chat_id } = ctx.decode()?;
        let meta = match self.0.current_core(chat_id).await? {
            Some(meta) => meta,
            None => {
                // Rule 1: unknown to the runtime state → full rebuild, if the chat is the
                // caller's at all (durable membership).
                return match recreate(&self.0, &ctx.caller, chat_id).await? {
                    Some(_) => Ok(answer_rebuild(ctx, -1, -1)),
                    None => Err(no_such_chat()),
                };
            }
        };
        let who = relation(&ctx.caller, &meta).ok_or_else(no_such_chat)?;
        ctx.extensions.insert(ChatAccess { chat_id, who });
        if meta.rebuilding {
            // Still waiting for a client's copy: nothing is appended until it arrives.
            return Ok(answer_rebuild(ctx, -1, -1));
        }
        let client = ctx.request.offsets.unwrap_or_default();
        if client.visitor_data_offset > meta.visitor_data_offset || client.agent_data_offset > meta.agent_data_offset {
            // Rule 2: the client holds more than this server: incremental rebuild.
            return Ok(answer_rebuild(ctx, meta.visitor_data_offset, meta.agent_data_offset));
        }
        ctx.extensions.insert(ReadMeta(Arc::new(meta)));
        Ok(Step::Next)
    }
}

/// Fills the answer with the chat's offsets and the messages the client lacks.
///
/// After `chat/send_message` appended, the counters the append left and its signed message
/// are reused (see [`Appended`]); any other event reads the chat as it stands now, since
/// the event may have changed it.
pub(super) async fn sync(chats: &Chats, ctx: &mut Ctx, chat_id: ChatId) -> Result<(), Failure> {
    let appended = ctx.extensions.remove::<Appended>().filter(|a| a.counters.chat_id == chat_id);
    let (site_id, counters) = match &appended {
        Some(a) => (a.site_id, a.counters),
        None => {
            let meta = chats.core(chat_id).await?.ok_or_else(no_such_chat)?;
            (meta.site_id, Counters::of(&meta))
        }
    };
    let client = ctx.request.offsets.unwrap_or_default();
    let mut messages = Vec::new();
    match appended {
        // The client sent with every earlier message in hand: the answer is its message.
        Some(a) if a.is_all_new_for(client) => messages.push(a.signed),
        appended => {
            let mut signed = appended.map(|a| (a.message_id, a.signed));
            for m in lacking(chats.state.as_ref(), counters, client).await? {
                match signed.take_if(|(id, _)| *id == m.id) {
                    Some((_, value)) => messages.push(value),
                    None => messages.push(chats.macs.signed_json(site_id, &m).await?),
                }
            }
        }
    }
    ctx.response.code = 0;
    ctx.response.visitor_data_offset = Some(counters.visitor_data_offset);
    ctx.response.agent_data_offset = Some(counters.agent_data_offset);
    ctx.response.messages = Some(messages);
    Ok(())
}

/// The messages whose side offset is above the client's, by seq. Each side's offsets run
/// 1, 2, 3 … without gaps, so the client lacks exactly `server − client` messages per side;
/// they are the newest of their side, so a window of the newest messages by seq that holds
/// that many of each side holds them all. The window starts just big enough and grows only
/// when the other side's messages crowd it — a call costs the messages it returns, not the
/// length of the chat.
pub(super) async fn lacking(
    state: &dyn frontdesk_core::state::StateStore,
    meta: Counters,
    client: frontdesk_core::pipeline::Offsets,
) -> Result<Vec<crate::model::ChatMessage>, Failure> {
    let need_visitor = (meta.visitor_data_offset - client.visitor_data_offset).max(0);
    let need_agent = (meta.agent_data_offset - client.agent_data_offset).max(0);
    if need_visitor == 0 && need_agent == 0 {
        return Ok(Vec::new());
    }
    let key = crate::model::chat_messages_key(meta.chat_id);
    // Usually the client lacks just the newest messages (its own, the other side's last):
    // start with exactly as many as it lacks, and grow only if they are not all there.
    let mut window = (need_visitor + need_agent).max(1);
    loop {
        let from = (meta.seq - window + 1).max(1);
        let rows = state.zrange_by_score(&key, from as f64, f64::INFINITY, None).await?;
        let mut out = Vec::new();
        let (mut found_visitor, mut found_agent) = (0, 0);
        for (text, _) in &rows {
            let m = super::append::parse_stored(text)?;
            if m.message_type == message_type::VISITOR {
                if m.data_offset > client.visitor_data_offset {
                    found_visitor += 1;
                    out.push(m);
                }
            } else if m.data_offset > client.agent_data_offset {
                found_agent += 1;
                out.push(m);
            }
        }
        if from == 1 || (found_visitor >= need_visitor && found_agent >= need_agent) {
            return Ok(out);
        }
        window = window.saturating_mul(4);
    }
}

struct Sync(Arc<Chats>);

#[async_trait]
impl Handler for Sync {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let chat_id = super::access(ctx)?.chat_id;
        sync(&self.0, ctx, chat_id).await?;
        Ok(Step::Next)
    }
}
