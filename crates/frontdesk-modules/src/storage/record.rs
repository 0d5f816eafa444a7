//! `storage/record`: the last `did` stage of the events that change something durable. It
//! reads what the event left (the chat id in the request or the answer, the messages in the
//! answer) and the runtime state as it now stands (chat metadata, visitor record), and
//! publishes one history job per effect to [`HISTORY_QUEUE`] in one bus call.
//!
//! Which messages: every message an event appends has a side offset above the caller's
//! (SPEC §6: the client cannot have seen it), so `chat/sync`'s answer, which runs before
//! this stage, carries them all; `chat.send_message`'s own message is in `data.message`.
//! A client that sends no offsets gets the whole chat back and the jobs repeat messages
//! already stored — harmless, since an ordinary message record only ever inserts.
//!
//! Versions (issue #8, `frontdesk_core::history`): an ordinary message record carries as
//! `rev` the time this stage ran, after the event appended or read the message, so a
//! rebuild whose `rev` is later saw it in the state store. `chat.rebuild` may renumber any
//! message and keeps one message per `clientMessageId`, so it records every message of the
//! merged chat from the state store as rebuild records, all with one `rev` taken just
//! before that read: any message appended before that instant is in what it read, which is
//! what lets the store drop ordinary records older than the chat's last rebuild.
//!
//! A publish that fails fails the request (`unavailable`): the client retries (with its
//! `clientMessageId`, so nothing is appended twice) rather than a history write being lost.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use frontdesk_core::history::{ChatRecord, HistoryJob, HistoryWrite, MessageRecord, VisitorHistory, HISTORY_QUEUE};
use frontdesk_core::id::{Id, SiteId, VisitorId};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::params::parse_rfc3339;
use super::{now_us, Storage};
use crate::model::{
    chat_messages_key, chat_meta_key, visitor_key, ChatMessage, ChatMeta, ChatStatus, ParticipantRole, VisitorRecord,
};
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, storage: &Arc<Storage>) -> Result<(), RegisterError> {
    registry.register("storage/record", Arc::new(Record(storage.clone())))?;
    registry.register("storage/record_messages", Arc::new(RecordMessages(storage.clone())))?;
    Ok(())
}

struct Record(Arc<Storage>);

#[async_trait]
impl Handler for Record {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let writes = if ctx.event.starts_with("visitor.") {
            self.visitor_writes(ctx).await?
        } else {
            self.chat_writes(ctx).await?
        };
        publish(&self.0, writes).await?;
        Ok(Step::Next)
    }
}

/// `storage/record_messages`: the `did` stage of sending a message. Only the messages of
/// the answer are recorded: sending changes no field of the chat's history record (its
/// first response time is derived from the messages by the store), so the chat is not
/// read, nor recorded again, per message. The chat's record is written by the events that
/// change it (`storage/record`).
struct RecordMessages(Arc<Storage>);

#[async_trait]
impl Handler for RecordMessages {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (Some(chat_id), Some(site)) = (id_at(&ctx.request.data, "chatId"), ctx.caller.site_id()) else {
            return Ok(Step::Next);
        };
        let rev = now_us();
        let writes = answered_messages(ctx, chat_id)
            .into_iter()
            .map(|m| HistoryWrite::Message(message_record(site, m, rev, false)))
            .collect();
        publish(&self.0, writes).await?;
        Ok(Step::Next)
    }
}

/// Publishes the history jobs in one bus call (none: no call).
async fn publish(storage: &Storage, writes: Vec<HistoryWrite>) -> Result<(), Failure> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut payloads = Vec::with_capacity(writes.len());
    for write in writes {
        let job = HistoryJob::of(write);
        let bytes =
            serde_json::to_vec(&job).map_err(|e| Failure::internal(format!("cannot encode a history job: {e}")))?;
        payloads.push(Bytes::from(bytes));
    }
    storage.bus.publish_batch(HISTORY_QUEUE, payloads).await?;
    Ok(())
}

/// The messages of `chat_id` in the answer (`messages`, then `data.message`), each once.
fn answered_messages(ctx: &Ctx, chat_id: Id) -> Vec<ChatMessage> {
    let answered = ctx.response.messages.iter().flatten().chain(ctx.response.data.get("message"));
    once_each(chat_id, answered.filter_map(decode::<ChatMessage>))
}

/// The messages of `chat_id`, each id once (the first), in order.
fn once_each(chat_id: Id, messages: impl Iterator<Item = ChatMessage>) -> Vec<ChatMessage> {
    let mut seen = HashSet::new();
    messages.filter(|m| m.chat_id == chat_id && seen.insert(m.id)).collect()
}

/// `value` as a `T`, if it is one.
fn decode<T: DeserializeOwned>(value: &Value) -> Option<T> {
    T::deserialize(value).ok()
}

/// An id at `key` of a JSON object, if it is one.
fn id_at(data: &Value, key: &str) -> Option<Id> {
    data.get(key).and_then(decode::<Id>)
}

impl Record {
    async fn chat_writes(&self, ctx: &Ctx) -> Result<Vec<HistoryWrite>, Failure> {
        let data = Value::Object(ctx.response.data.clone());
        let Some(chat_id) = id_at(&ctx.request.data, "chatId").or_else(|| id_at(&data, "chatId")) else {
            return Ok(vec![]);
        };
        let state = self.0.state.as_ref();
        let Some(meta) = object::load::<ChatMeta>(state, &chat_meta_key(chat_id)).await? else {
            return Ok(vec![]);
        };
        if meta.rebuilding {
            // Recreated empty after a state loss: nothing durable changed yet.
            return Ok(vec![]);
        }
        let visitor = object::load::<VisitorRecord>(state, &visitor_key(meta.site_id, meta.visitor_id)).await?;
        let mut writes = vec![HistoryWrite::Chat(chat_record(&meta, visitor.as_ref()))];
        let rebuild = &*ctx.event == "chat.rebuild";
        // After the event appended or read its messages, and before a rebuild's read of the
        // merged chat (see the module's notes on versions).
        let rev = now_us();
        let messages = if rebuild {
            let all =
                state.zrange_by_score(&chat_messages_key(chat_id), f64::NEG_INFINITY, f64::INFINITY, None).await?;
            let stored = all.into_iter().filter_map(|(member, _)| match serde_json::from_str::<ChatMessage>(&member) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(chat = %chat_id, error = %e, "a stored message is not a ChatMessage");
                    None
                }
            });
            once_each(chat_id, stored)
        } else {
            answered_messages(ctx, chat_id)
        };
        writes
            .extend(messages.into_iter().map(|m| HistoryWrite::Message(message_record(meta.site_id, m, rev, rebuild))));
        Ok(writes)
    }

    async fn visitor_writes(&self, ctx: &Ctx) -> Result<Vec<HistoryWrite>, Failure> {
        let who: Option<(SiteId, VisitorId)> = match ctx.caller {
            Caller::Visitor { site_id, visitor_id } => Some((site_id, visitor_id)),
            // visitor.enter_site runs without a caller: its site is in the request and the
            // visitor it made or recognised in the answer.
            _ => id_at(&ctx.request.data, "siteId").zip(ctx.response.data.get("visitorId").and_then(decode::<Id>)),
        };
        let Some((site, visitor)) = who else { return Ok(vec![]) };
        let Some(record) = object::load::<VisitorRecord>(self.0.state.as_ref(), &visitor_key(site, visitor)).await?
        else {
            return Ok(vec![]);
        };
        Ok(vec![HistoryWrite::Visitor(VisitorHistory {
            visitor_id: visitor,
            site_id: site,
            name: record.name,
            email: record.email,
            custom_variables: record.custom_variables,
            first_seen: record.first_seen,
            last_seen: record.last_seen,
            visit_count: record.visit_count,
            page_views: record.page_views,
            version: now_us(),
        })])
    }
}

fn status_name(status: ChatStatus) -> String {
    match status {
        ChatStatus::Queued => "queued",
        ChatStatus::Offered => "offered",
        ChatStatus::Bot => "bot",
        ChatStatus::Active => "active",
        ChatStatus::Ended => "ended",
    }
    .to_string()
}

fn chat_record(meta: &ChatMeta, visitor: Option<&VisitorRecord>) -> ChatRecord {
    let positive = |v: i64| (v > 0).then_some(v);
    ChatRecord {
        chat_id: meta.chat_id,
        site_id: meta.site_id,
        visitor_id: meta.visitor_id,
        department_id: meta.department_id,
        status: status_name(meta.status),
        agent_id: meta.agent_id,
        // Monitoring supervisors are silent: they do not take part.
        participants: meta
            .participants
            .iter()
            .filter(|p| p.role != ParticipantRole::Monitoring)
            .map(|p| p.agent_id)
            .collect(),
        created_at: meta.created_at,
        started_at: positive(meta.started_at),
        ended_at: positive(meta.ended_at),
        rating: meta.rating,
        comment: meta.comment.clone(),
        wrap_up_notes: meta.wrap_up_notes.clone(),
        tags: meta.tags.clone(),
        visitor_name: meta.visitor_name.clone(),
        visitor_email: visitor.map(|v| v.email.clone()).unwrap_or_default(),
        version: now_us(),
    }
}

fn message_record(site: SiteId, m: ChatMessage, rev: i64, rebuild: bool) -> MessageRecord {
    let send_time_ms = parse_rfc3339(&m.send_time).unwrap_or(0);
    MessageRecord {
        id: m.id,
        chat_id: m.chat_id,
        site_id: site,
        seq: m.seq,
        data_offset: m.data_offset,
        message_type: m.message_type,
        sender_id: m.sender_id,
        sender_name: m.sender_name,
        content: m.content,
        client_message_id: m.client_message_id,
        send_time: m.send_time,
        send_time_ms,
        rev,
        rebuild,
    }
}
