//! The chat module (SPEC §4, §5.4, §6): chats, their messages and the two data offsets,
//! rebuild, typing flags and read cursors.
//!
//! # Layout
//! - [`append`] — the append script (one message, its `seq` and side offset, idempotent by
//!   `clientMessageId`) and the rebuild's merge script.
//! - [`sig`] — the per-site message MAC (`sig`, SPEC §5.2).
//! - [`offsets`] — `chat/offsets` (SPEC §6's check before an event) and `chat/sync` (the
//!   messages a client lacks).
//! - [`messages`] — sending messages, heartbeats (typing, read cursors).
//! - [`lifecycle`] — `chat/create`, `chat/accept`, `chat/join`, `chat/monitor`.
//! - [`ending`] — `chat/end`, `chat/agent_leave`, `chat/post_chat`, `chat/wrap_up`.
//! - [`rebuild`] — `chat/rebuild`.
//! - [`limits`] — `chat/rate_limit` (how fast a visitor may send messages).
//!
//! Dispatch (queues, offers, capacity) is another module; the two meet in the pipelines:
//! chat stages leave `ctx.values["dispatch"]` (see [`DispatchNote`]) for dispatch's `did`
//! stages, and dispatch stages leave `ctx.values["offerClaimed"]` for `chat/accept`.

mod append;
mod ending;
mod lifecycle;
mod limits;
mod messages;
mod offsets;
mod rebuild;
mod sig;

use std::sync::Arc;

use frontdesk_core::id::{AgentId, ChatId, Id, IdGenerator, SiteId, VisitorId};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Registry};
use frontdesk_core::push::{Push, Recipient};
use frontdesk_core::state::StateStore;
use frontdesk_core::store::{Role, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{chat_meta_key, ChatCore, ChatMessage, ChatMeta, ParticipantRole};
use crate::{Deps, RegisterError};

pub use append::{AppendOutcome, APPEND_MESSAGE, CREATE_META, MERGE_MESSAGES};
pub use limits::{MessageRate, GCRA};
pub use messages::ADVANCE_CURSOR;
/// The rebuild's merge, public only for the micro-benchmarks (`benches/hot_paths.rs`).
#[doc(hidden)]
pub use rebuild::union as rebuild_union;
pub use sig::MacKeys;

/// Registers the chat module's handlers.
pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let chats = Arc::new(Chats {
        state: deps.backends.state.clone(),
        store: deps.backends.store.clone(),
        ids: deps.ids.clone(),
        push: deps.push.clone(),
        macs: MacKeys::new(deps.backends.store.clone()),
        generation: deps.generation.clone(),
    });
    offsets::register(registry, &chats)?;
    messages::register(registry, &chats)?;
    lifecycle::register(registry, &chats)?;
    ending::register(registry, &chats)?;
    rebuild::register(registry, &chats)?;
    limits::register(registry, deps.backends.state.clone(), deps.settings.visitor_messages)?;
    Ok(())
}

const EDIT_LOCK_LEASE: std::time::Duration = std::time::Duration::from_secs(5);
const EDIT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(20);
const EDIT_LOCK_TRIES: usize = 150;

/// What every chat handler works with.
pub(crate) struct Chats {
    /// The runtime state's generation: new chats are stamped with it.
    pub generation: Arc<frontdesk_core::generation::Generation>,
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub ids: IdGenerator,
    pub push: Arc<dyn Push>,
    pub macs: MacKeys,
}

/// The caller's relation to the chat, found by `chat/offsets` and kept in
/// `ctx.extensions` for the stages after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    Visitor(VisitorId),
    /// An agent of the chat's site; `part` is its role in the chat, if it has one.
    Agent {
        agent_id: AgentId,
        role: Role,
        part: Option<ParticipantRole>,
    },
}

/// The chat a request concerns, as `chat/offsets` found it.
#[derive(Debug, Clone)]
pub(crate) struct ChatAccess {
    pub chat_id: ChatId,
    pub who: Who,
}

/// The chat as `chat/offsets` read it (its [`ChatCore`] fields), for the stages after it in
/// the same request: the hash is read once per request, not once per stage. Stages that
/// change the chat's status or participants read it again under the edit lock; appends are
/// checked atomically by the append script whatever this copy says.
#[derive(Debug, Clone)]
pub(crate) struct ReadMeta(pub Arc<ChatCore>);

/// What `chat/send_message` appended, for `chat/sync` to answer from: the chat's counters
/// right after the append (taken in the append's atomic step, so `seq` and both offsets
/// agree) and the message as signed, so the answer neither reads the chat nor signs the
/// message again.
pub(crate) struct Appended {
    pub site_id: SiteId,
    pub counters: Counters,
    pub message_id: Id,
    /// The message counts on the visitor's side (type 1), not the agents' (2–4).
    pub visitor_side: bool,
    pub signed: Value,
}

impl Appended {
    /// Whether this message is all a client at `client` lacks: it had every message before
    /// it (the usual send). Each side's offsets run without gaps, so the client lacks
    /// exactly the message that took its side's counter one past the client's.
    pub(crate) fn is_all_new_for(&self, client: frontdesk_core::pipeline::Offsets) -> bool {
        let c = self.counters;
        let visitor = c.visitor_data_offset - client.visitor_data_offset;
        let agent = c.agent_data_offset - client.agent_data_offset;
        if self.visitor_side {
            visitor == 1 && agent <= 0
        } else {
            agent == 1 && visitor <= 0
        }
    }
}

/// A chat's message counters at one instant: what `chat/sync` needs to find the messages a
/// client lacks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters {
    pub chat_id: ChatId,
    pub seq: i64,
    pub visitor_data_offset: i64,
    pub agent_data_offset: i64,
}

impl Counters {
    pub(crate) fn of(meta: &ChatCore) -> Counters {
        Counters {
            chat_id: meta.chat_id,
            seq: meta.seq,
            visitor_data_offset: meta.visitor_data_offset,
            agent_data_offset: meta.agent_data_offset,
        }
    }
}

/// What a chat stage asks dispatch's `did` stages to do, in `ctx.values["dispatch"]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchNote {
    pub site_id: SiteId,
    pub chat_id: ChatId,
    /// Agents whose capacity the chat no longer uses.
    #[serde(default)]
    pub release: Vec<AgentId>,
    /// Agents that now hold the chat without an offer (a joined agent promoted to owner).
    #[serde(default)]
    pub claim: Vec<AgentId>,
    /// The chat left every queue and every pending offer (it ended).
    #[serde(default)]
    pub withdrawn: bool,
    /// The agent the chat was offered to when it ended, if any (its offer is withdrawn).
    #[serde(default)]
    pub offered_to: Option<AgentId>,
}

/// Not found rather than forbidden for another tenant's chat, so chat ids reveal nothing.
pub(crate) fn no_such_chat() -> Failure {
    Failure::not_found("no such chat (or it is not yours): check data.chatId")
}

impl Chats {
    pub(crate) fn next_id(&self) -> Result<Id, Failure> {
        self.ids.next().map_err(|e| {
            tracing::error!(error = %e, "cannot make an id");
            Failure::unavailable("this node cannot make ids right now; try again shortly")
        })
    }

    pub(crate) async fn meta(&self, chat_id: ChatId) -> Result<Option<ChatMeta>, Failure> {
        Ok(object::load::<ChatMeta>(self.state.as_ref(), &chat_meta_key(chat_id)).await?)
    }

    /// The message path's fields of the chat (one `HMGET`, see [`ChatCore`]).
    pub(crate) async fn core(&self, chat_id: ChatId) -> Result<Option<ChatCore>, Failure> {
        Ok(object::load_fields::<ChatCore>(self.state.as_ref(), &chat_meta_key(chat_id), &ChatCore::FIELDS).await?)
    }

    /// The chat as `chat/offsets` read it in this request (see [`ReadMeta`]), or as it
    /// stands now when no earlier stage read it.
    pub(crate) async fn request_meta(&self, ctx: &Ctx, chat_id: ChatId) -> Result<Arc<ChatCore>, Failure> {
        match ctx.extensions.get::<ReadMeta>() {
            Some(ReadMeta(meta)) if meta.chat_id == chat_id => Ok(meta.clone()),
            _ => self.core(chat_id).await?.map(Arc::new).ok_or_else(no_such_chat),
        }
    }

    /// The chat's metadata, or `not_found` when the runtime state has no such chat.
    pub(crate) async fn meta_or_404(&self, chat_id: ChatId) -> Result<ChatMeta, Failure> {
        self.meta(chat_id).await?.ok_or_else(no_such_chat)
    }

    /// Changes a chat's metadata under the chat's edit lock (so two nodes changing
    /// participants or status at once never lose each other's change) and writes only the
    /// fields `change` touched. Returns the metadata after the change and `change`'s value.
    pub(crate) async fn edit<T>(
        &self,
        chat_id: ChatId,
        change: impl FnOnce(&mut ChatMeta) -> Result<T, Failure> + Send,
    ) -> Result<(ChatMeta, T), Failure> {
        let lock = frontdesk_core::keys::chat(chat_id, "edit");
        let owner = self.next_id()?.to_string();
        let mut held = false;
        for _ in 0..EDIT_LOCK_TRIES {
            if self.state.lock_acquire(&lock, &owner, EDIT_LOCK_LEASE).await? {
                held = true;
                break;
            }
            tokio::time::sleep(EDIT_LOCK_WAIT).await;
        }
        if !held {
            return Err(Failure::conflict(format!("chat {chat_id} is being changed by another call; try again")));
        }
        let result = async {
            let before = self.meta_or_404(chat_id).await?;
            let mut after = before.clone();
            let value = change(&mut after)?;
            object::save_changes(self.state.as_ref(), &chat_meta_key(chat_id), &before, &after).await?;
            Ok::<_, Failure>((after, value))
        }
        .await;
        if let Err(e) = self.state.lock_release(&lock, &owner).await {
            tracing::warn!(error = %e, "cannot release a chat's edit lock; it lapses on its own");
        }
        result
    }

    /// An agent's display name, from the durable store.
    pub(crate) async fn agent_name(&self, site: SiteId, agent: AgentId) -> Result<String, Failure> {
        Ok(self.store.agent(site, agent).await?.map(|a| a.name).unwrap_or_else(|| format!("Agent {agent}")))
    }

    /// Everybody in the chat but `except`: the visitor and every agent participant.
    pub(crate) fn recipients(meta: &ChatCore, except: Option<Id>, with_visitor: bool) -> Vec<Recipient> {
        let mut to = Vec::new();
        if with_visitor && except != Some(meta.visitor_id) {
            to.push(Recipient::Visitor(meta.visitor_id));
        }
        for p in &meta.participants {
            if Some(p.agent_id) != except {
                to.push(Recipient::Agent(p.agent_id));
            }
        }
        to
    }

    /// Pushes, logging a failure instead of failing the request: pushes are at most once
    /// and clients catch up by offsets (SPEC §6).
    pub(crate) async fn push_to(&self, to: &[Recipient], name: &str, data: &Value) {
        if to.is_empty() {
            return;
        }
        if let Err(e) = self.push.push(to, name, data).await {
            tracing::warn!(error = %e, push = name, "push failed");
        }
    }

    /// Appends a message and pushes `chat.message` to everyone in the chat but its sender
    /// (and never to the visitor when `visible_to_visitor` is false).
    ///
    /// Also returns the message as signed (without the offsets the push adds): the one
    /// signature serves the push, the caller's answer and `chat/sync`.
    pub(crate) async fn post(&self, meta: &ChatCore, msg: ChatMessage) -> Result<(AppendOutcome, Value), Failure> {
        let outcome = append::append(self.state.as_ref(), meta.chat_id, msg).await?;
        let signed = self.macs.signed_json(meta.site_id, &outcome.message).await?;
        if outcome.is_new {
            let mut data = signed.clone();
            if let Value::Object(map) = &mut data {
                map.insert("visitorDataOffset".into(), outcome.visitor_data_offset.into());
                map.insert("agentDataOffset".into(), outcome.agent_data_offset.into());
            }
            let to = Self::recipients(meta, Some(outcome.message.sender_id), true);
            self.push_to(&to, "chat.message", &data).await;
        }
        Ok((outcome, signed))
    }

    /// A system message (type 4, agent side), e.g. "Ann joined the chat".
    pub(crate) async fn system_message(&self, meta: &ChatCore, text: String) -> Result<(), Failure> {
        let msg = new_message(self.next_id()?, meta.chat_id, crate::model::message_type::SYSTEM, Id(0), "", text, None);
        self.post(meta, msg).await.map(|_| ())
    }
}

/// A message before the append script gives it `seq` and `dataOffset`.
pub(crate) fn new_message(
    id: Id,
    chat_id: ChatId,
    message_type: i64,
    sender_id: Id,
    sender_name: &str,
    content: String,
    client_message_id: Option<String>,
) -> ChatMessage {
    ChatMessage {
        id,
        chat_id,
        seq: 0,
        data_offset: 0,
        message_type,
        sender_id,
        sender_name: sender_name.to_string(),
        content,
        send_time: rfc3339(now_ms()),
        client_message_id,
        attachment: None,
        sig: None,
    }
}

/// The `ChatAccess` left by `chat/offsets`; its absence is a pipeline-file mistake.
pub(crate) fn access(ctx: &Ctx) -> Result<ChatAccess, Failure> {
    ctx.extensions.get::<ChatAccess>().cloned().ok_or_else(|| {
        Failure::internal(format!("{}: chat/offsets must run before this stage (check the pipeline file)", ctx.event))
    })
}

/// The caller as an agent of `site`, or `forbidden`.
pub(crate) fn caller_agent(caller: &Caller) -> Option<(SiteId, AgentId, Role)> {
    match caller {
        Caller::Agent { site_id, agent_id, role, .. } => Some((*site_id, *agent_id, *role)),
        _ => None,
    }
}

pub(crate) fn is_supervisor(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::Admin)
}

pub(crate) use frontdesk_core::time::now_ms;

pub(crate) use frontdesk_core::time::rfc3339;

#[cfg(test)]
mod tests {
    use frontdesk_core::id::Id;
    use frontdesk_core::pipeline::Offsets;

    use super::{Appended, Counters};

    fn appended(visitor_side: bool, visitor: i64, agent: i64) -> Appended {
        Appended {
            site_id: Id(1),
            counters: Counters {
                chat_id: Id(2),
                seq: visitor + agent,
                visitor_data_offset: visitor,
                agent_data_offset: agent,
            },
            message_id: Id(3),
            visitor_side,
            signed: serde_json::json!({}),
        }
    }

    fn at(visitor: i64, agent: i64) -> Offsets {
        Offsets { visitor_data_offset: visitor, agent_data_offset: agent }
    }

    #[test]
    fn the_new_message_is_all_a_client_lacks_only_when_it_had_everything_before_it() {
        // A visitor's 5th message; the agents have written 3.
        let visitor_message = appended(true, 5, 3);
        assert!(visitor_message.is_all_new_for(at(4, 3)));
        // It missed the agents' last message, or its own previous one: the chat is read.
        assert!(!visitor_message.is_all_new_for(at(4, 2)));
        assert!(!visitor_message.is_all_new_for(at(3, 3)));
        // A client that already counts it (or is ahead) lacks nothing of this message.
        assert!(!visitor_message.is_all_new_for(at(5, 3)));

        let agent_message = appended(false, 5, 3);
        assert!(agent_message.is_all_new_for(at(5, 2)));
        assert!(!agent_message.is_all_new_for(at(4, 2)));
        assert!(!agent_message.is_all_new_for(at(5, 3)));
        assert!(!agent_message.is_all_new_for(at(5, 1)));
    }
}
