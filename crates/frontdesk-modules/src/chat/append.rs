//! The chat's atomic steps (SPEC §6), each a [`Script`] over the chat's hash tag:
//!
//! - [`APPEND_MESSAGE`]: one message. If its `clientMessageId` was seen, the message stored
//!   then is returned unchanged (both calls answer alike); otherwise `seq` and the side
//!   counter (`visitorDataOffset` for type 1, `agentDataOffset` for 2–4) go up by one, the
//!   message is stored in the zset scored by `seq`, and `clientMessageId → seq` recorded.
//! - [`MERGE_MESSAGES`]: a rebuild's result replaces the chat's messages and counters, only
//!   if no message was appended since the rebuild read the chat (optimistic concurrency) and
//!   the chat still exists: a chat forgotten meanwhile (a generation change) must not come
//!   back as a fragment holding only counters, which would read as a chat of the current
//!   generation with no visitor.
//!
//! Messages are stored as JSON without `sig` (computed when sent). The script writes `seq`
//! and `dataOffset` by prefixing the JSON text, so Lua needs no JSON library.

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::id::ChatId;
use frontdesk_core::keys;
use frontdesk_core::pipeline::Failure;
use frontdesk_core::state::{Script, ScriptTx, ScriptValue, StateStore};

use crate::model::{chat_messages_key, chat_meta_key, message_type, ChatMessage};

/// `clientMessageId → seq` of one chat.
pub(crate) fn client_ids_key(chat: ChatId) -> String {
    keys::chat(chat, "cmids")
}

pub static APPEND_MESSAGE: Script = Script {
    name: "chat_append_message",
    lua: r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
if redis.call('HGET', KEYS[1], 'status') == 'ended' then return {-1} end
if ARGV[3] ~= '' then
  local seen = redis.call('HGET', KEYS[3], ARGV[3])
  if seen then
    local m = redis.call('ZRANGEBYSCORE', KEYS[2], seen, seen)
    if m[1] then
      return {0, m[1], redis.call('HGET', KEYS[1], 'visitorDataOffset') or '0', redis.call('HGET', KEYS[1], 'agentDataOffset') or '0'}
    end
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local off = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local msg = '{"seq":' .. seq .. ',"dataOffset":' .. off .. ',' .. string.sub(ARGV[2], 2)
redis.call('ZADD', KEYS[2], seq, msg)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], seq) end
return {1, msg, redis.call('HGET', KEYS[1], 'visitorDataOffset') or '0', redis.call('HGET', KEYS[1], 'agentDataOffset') or '0'}
"#,
    local: append_local,
};

fn arg<'a>(v: &'a [String], i: usize, script: &str) -> BackendResult<&'a str> {
    v.get(i).map(String::as_str).ok_or_else(|| BackendError::other("script", format!("{script}: missing argument {i}")))
}

fn offsets(tx: &mut dyn ScriptTx, meta: &str) -> BackendResult<(ScriptValue, ScriptValue)> {
    let v = tx.hget(meta, "visitorDataOffset")?.unwrap_or_else(|| "0".into());
    let a = tx.hget(meta, "agentDataOffset")?.unwrap_or_else(|| "0".into());
    Ok((ScriptValue::Str(v), ScriptValue::Str(a)))
}

fn append_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    const S: &str = "chat_append_message";
    let (meta, msgs, cmids) = (arg(keys, 0, S)?, arg(keys, 1, S)?, arg(keys, 2, S)?);
    let (side, body, cmid) = (arg(args, 0, S)?, arg(args, 1, S)?, arg(args, 2, S)?);
    if !tx.exists(meta)? {
        return Ok(ScriptValue::List(vec![ScriptValue::Int(-2)]));
    }
    if tx.hget(meta, "status")?.as_deref() == Some("ended") {
        return Ok(ScriptValue::List(vec![ScriptValue::Int(-1)]));
    }
    if !cmid.is_empty() {
        if let Some(seen) = tx.hget(cmids, cmid)? {
            let score: f64 = seen.parse().map_err(|_| BackendError::other("script", "bad stored seq"))?;
            if let Some((m, _)) = tx.zrange_by_score(msgs, score, score, None)?.into_iter().next() {
                let (v, a) = offsets(tx, meta)?;
                return Ok(ScriptValue::List(vec![ScriptValue::Int(0), ScriptValue::Str(m), v, a]));
            }
        }
    }
    let seq = tx.hincrby(meta, "seq", 1)?;
    let off = tx.hincrby(meta, side, 1)?;
    let msg = format!("{{\"seq\":{seq},\"dataOffset\":{off},{}", body.get(1..).unwrap_or(""));
    tx.zadd(msgs, &[(seq as f64, &msg)])?;
    if !cmid.is_empty() {
        tx.hset(cmids, &[(cmid, &seq.to_string())])?;
    }
    let (v, a) = offsets(tx, meta)?;
    Ok(ScriptValue::List(vec![ScriptValue::Int(1), ScriptValue::Str(msg), v, a]))
}

/// What an append did.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// The stored message (without `sig`): the new one, or the earlier one with the same
    /// `clientMessageId`.
    pub message: ChatMessage,
    pub is_new: bool,
    pub visitor_data_offset: i64,
    pub agent_data_offset: i64,
}

/// A message as the append script takes it: every field of [`ChatMessage`] but `seq`,
/// `dataOffset` (the script writes those) and `sig` (computed when sent), borrowed.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    id: frontdesk_core::id::Id,
    chat_id: ChatId,
    message_type: i64,
    sender_id: frontdesk_core::id::Id,
    sender_name: &'a str,
    content: &'a str,
    send_time: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachment: Option<&'a serde_json::Value>,
}

/// The message JSON the scripts take (see [`Body`]).
fn body(msg: &ChatMessage) -> Result<String, Failure> {
    let body = Body {
        id: msg.id,
        chat_id: msg.chat_id,
        message_type: msg.message_type,
        sender_id: msg.sender_id,
        sender_name: &msg.sender_name,
        content: &msg.content,
        send_time: &msg.send_time,
        client_message_id: msg.client_message_id.as_deref(),
        attachment: msg.attachment.as_ref(),
    };
    serde_json::to_string(&body).map_err(|e| Failure::internal(format!("cannot encode a message: {e}")))
}

/// `seq` and `dataOffset` from the front of a message the append script just wrote
/// (`{"seq":N,"dataOffset":M,…`), so a new message need not be parsed back whole.
fn counters_of(stored: &str) -> Option<(i64, i64)> {
    let rest = stored.strip_prefix(r#"{"seq":"#)?;
    let (seq, rest) = rest.split_once(',')?;
    let rest = rest.strip_prefix(r#""dataOffset":"#)?;
    let (offset, _) = rest.split_once(',')?;
    Some((seq.parse().ok()?, offset.parse().ok()?))
}

pub(crate) fn parse_stored(text: &str) -> Result<ChatMessage, Failure> {
    serde_json::from_str(text).map_err(|e| {
        tracing::error!(error = %e, "a stored message is not a ChatMessage");
        Failure::internal("a stored message cannot be read")
    })
}

pub(crate) async fn append(state: &dyn StateStore, chat: ChatId, msg: ChatMessage) -> Result<AppendOutcome, Failure> {
    let side = if msg.message_type == message_type::VISITOR { "visitorDataOffset" } else { "agentDataOffset" };
    let (meta, msgs, cmids) = (chat_meta_key(chat), chat_messages_key(chat), client_ids_key(chat));
    let body = body(&msg)?;
    let cmid = msg.client_message_id.clone().unwrap_or_default();
    let out = state.eval(&APPEND_MESSAGE, &[&meta, &msgs, &cmids], &[side, &body, &cmid]).await?;
    let ScriptValue::List(items) = out else { return Err(Failure::internal("the append script answered oddly")) };
    let code = items.first().and_then(ScriptValue::as_int).unwrap_or(-3);
    match code {
        -2 => return Err(super::no_such_chat()),
        -1 => return Err(Failure::conflict(format!("chat {chat} has ended: no more messages can be sent to it"))),
        0 | 1 => {}
        _ => return Err(Failure::internal("the append script answered oddly")),
    }
    let text = items.get(1).and_then(ScriptValue::as_str).unwrap_or_default();
    let message = match (code, counters_of(text)) {
        // New: exactly what was sent, with the counters the script gave it.
        (1, Some((seq, data_offset))) => ChatMessage { seq, data_offset, ..msg },
        // A repeated clientMessageId: the message stored the first time.
        _ => parse_stored(text)?,
    };
    Ok(AppendOutcome {
        message,
        is_new: code == 1,
        visitor_data_offset: items.get(2).and_then(ScriptValue::as_int).unwrap_or(0),
        agent_data_offset: items.get(3).and_then(ScriptValue::as_int).unwrap_or(0),
    })
}

pub static MERGE_MESSAGES: Script = Script {
    name: "chat_merge_messages",
    lua: r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if cur ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2])
local i = 5
while ARGV[i] do
  redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[3], ARGV[i + 2], ARGV[i]) end
  i = i + 3
end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'visitorDataOffset', ARGV[3], 'agentDataOffset', ARGV[4], 'rebuilding', 'false')
return 1
"#,
    local: merge_local,
};

fn merge_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    const S: &str = "chat_merge_messages";
    let (meta, msgs, cmids) = (arg(keys, 0, S)?, arg(keys, 1, S)?, arg(keys, 2, S)?);
    if !tx.exists(meta)? {
        return Ok(ScriptValue::Int(0));
    }
    let cur = tx.hget(meta, "seq")?.unwrap_or_else(|| "0".into());
    if cur.parse::<i64>().ok() != arg(args, 0, S)?.parse::<i64>().ok() {
        return Ok(ScriptValue::Int(0));
    }
    tx.del(msgs)?;
    for triple in args.get(4..).unwrap_or_default().chunks(3) {
        let [seq, json, cmid] = triple else {
            return Err(BackendError::other("script", "chat_merge_messages: arguments come in threes"));
        };
        let score: f64 = seq.parse().map_err(|_| BackendError::other("script", "bad seq"))?;
        tx.zadd(msgs, &[(score, json)])?;
        if !cmid.is_empty() {
            tx.hset(cmids, &[(cmid, seq)])?;
        }
    }
    tx.hset(
        meta,
        &[
            ("seq", arg(args, 1, S)?),
            ("visitorDataOffset", arg(args, 2, S)?),
            ("agentDataOffset", arg(args, 3, S)?),
            ("rebuilding", "false"),
        ],
    )?;
    Ok(ScriptValue::Int(1))
}

/// The merged chat a rebuild writes.
pub(crate) struct Merged {
    pub seq: i64,
    pub visitor_data_offset: i64,
    pub agent_data_offset: i64,
    pub messages: Vec<ChatMessage>,
}

/// Writes a rebuild's result; false when a message was appended since `read_seq` was
/// read (the caller reads again and retries).
pub(crate) async fn merge(state: &dyn StateStore, chat: ChatId, read_seq: i64, m: &Merged) -> Result<bool, Failure> {
    let (meta, msgs, cmids) = (chat_meta_key(chat), chat_messages_key(chat), client_ids_key(chat));
    let mut args: Vec<String> = vec![
        read_seq.to_string(),
        m.seq.to_string(),
        m.visitor_data_offset.to_string(),
        m.agent_data_offset.to_string(),
    ];
    for msg in &m.messages {
        let mut stored = msg.clone();
        stored.sig = None;
        let json = serde_json::to_string(&stored).map_err(|e| Failure::internal(format!("cannot encode: {e}")))?;
        args.extend([msg.seq.to_string(), json, msg.client_message_id.clone().unwrap_or_default()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = state.eval(&MERGE_MESSAGES, &[&meta, &msgs, &cmids], &refs).await?;
    Ok(out.as_int() == Some(1))
}

/// Every stored message of a chat, ordered by `seq`.
pub(crate) async fn all_messages(state: &dyn StateStore, chat: ChatId) -> Result<Vec<ChatMessage>, Failure> {
    let rows = state.zrange_by_score(&chat_messages_key(chat), f64::NEG_INFINITY, f64::INFINITY, None).await?;
    rows.iter().map(|(text, _)| parse_stored(text)).collect()
}

/// Writes a whole chat metadata hash only if the chat does not exist (`ARGV`: field, value
/// pairs); 1 when written. Two nodes recreating a lost chat at once write it once, and
/// neither ever reads a half-written hash.
pub static CREATE_META: Script = Script {
    name: "chat_create_meta",
    lua: r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
",
    local: create_meta_local,
};

fn create_meta_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    let key = arg(keys, 0, "chat_create_meta")?;
    if tx.exists(key)? {
        return Ok(ScriptValue::Int(0));
    }
    let pairs: Vec<(&str, &str)> =
        args.chunks(2).filter_map(|p| Some((p.first()?.as_str(), p.get(1)?.as_str()))).collect();
    tx.hset(key, &pairs)?;
    Ok(ScriptValue::Int(1))
}

/// Creates the chat's metadata unless it exists; true when this call created it.
pub(crate) async fn create_meta(state: &dyn StateStore, meta: &crate::model::ChatMeta) -> Result<bool, Failure> {
    let fields = frontdesk_core::object::to_fields(meta)?;
    let args: Vec<&str> = fields.iter().filter_map(|(k, v)| v.as_deref().map(|v| [k.as_str(), v])).flatten().collect();
    let out = state.eval(&CREATE_META, &[&chat_meta_key(meta.chat_id)], &args).await?;
    Ok(out.as_int() == Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::id::Id;

    /// What the append script stores (its prefix plus the body) reads back as the message
    /// that was sent, with its counters; `counters_of` finds them at the front.
    #[test]
    fn the_stored_body_reads_back_as_the_message() {
        for (cmid, attachment) in [(None, None), (Some("c-1".to_string()), Some(serde_json::json!({"url": "x"})))] {
            let sent = ChatMessage {
                id: Id(383_553_708_379_602_944),
                chat_id: Id(7),
                seq: 0,
                data_offset: 0,
                message_type: message_type::VISITOR,
                sender_id: Id(9),
                sender_name: "Ada \"A\" ,".into(),
                content: "Hello, \"quoted\", {braces}, é".into(),
                send_time: "2026-11-24T09:45:30.158Z".into(),
                client_message_id: cmid,
                attachment,
                sig: None,
            };
            let b = body(&sent).expect("body");
            let stored = format!("{{\"seq\":12,\"dataOffset\":5,{}", &b[1..]);
            assert_eq!(counters_of(&stored), Some((12, 5)));
            let back = parse_stored(&stored).expect("parse");
            assert_eq!(back, ChatMessage { seq: 12, data_offset: 5, ..sent });
        }
        assert_eq!(counters_of(r#"{"id":"1","seq":2}"#), None);
    }
}
