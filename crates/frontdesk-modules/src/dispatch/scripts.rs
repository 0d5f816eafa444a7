//! Dispatch's atomic steps, each on one site's hash tag (queues, offers and agents' presence
//! hashes all live under `{s:<site>}`).

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::state::{Script, ScriptTx, ScriptValue};

/// `KEYS`: the queue, the site's offers, then candidate agents' presence hashes in order.
/// `ARGV`: chat id, offer deadline (ms), `"1"` to skip the "still queued" check (a
/// transfer to a named agent). Returns -1 when the chat is no longer queued (another node
/// offered it), 0 when no candidate is available, else the 1-based index of the agent that
/// took it: its `activeChats` went up, the chat left the queue and its offer is pending.
pub static OFFER: Script = Script {
    name: "dispatch_offer",
    lua: r"
if ARGV[3] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
for i = 3, #KEYS do
  local st = redis.call('HGET', KEYS[i], 'status')
  local max = tonumber(redis.call('HGET', KEYS[i], 'maxChats') or '0') or 0
  local act = tonumber(redis.call('HGET', KEYS[i], 'activeChats') or '0') or 0
  if st == 'online' and act < max then
    redis.call('HINCRBY', KEYS[i], 'activeChats', 1)
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
    return i - 2
  end
end
return 0
",
    local: offer_local,
};

fn bad(script: &str) -> BackendError {
    BackendError::other("script", format!("{script}: missing keys or arguments"))
}

fn int_field(tx: &mut dyn ScriptTx, key: &str, field: &str) -> BackendResult<i64> {
    Ok(tx.hget(key, field)?.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn offer_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    let (queue, offers) = (keys.first().ok_or_else(|| bad("offer"))?, keys.get(1).ok_or_else(|| bad("offer"))?);
    let (chat, deadline) = (args.first().ok_or_else(|| bad("offer"))?, args.get(1).ok_or_else(|| bad("offer"))?);
    let force = args.get(2).map(String::as_str) == Some("1");
    if !force && tx.zscore(queue, chat)?.is_none() {
        return Ok(ScriptValue::Int(-1));
    }
    let deadline: f64 = deadline.parse().map_err(|_| bad("offer"))?;
    for (i, agent) in keys.iter().enumerate().skip(2) {
        let online = tx.hget(agent, "status")?.as_deref() == Some("online");
        if online && int_field(tx, agent, "activeChats")? < int_field(tx, agent, "maxChats")? {
            tx.hincrby(agent, "activeChats", 1)?;
            tx.zrem(queue, &[chat])?;
            tx.zadd(offers, &[(deadline, chat)])?;
            return Ok(ScriptValue::Int(i as i64 - 1));
        }
    }
    Ok(ScriptValue::Int(0))
}

/// `KEYS[1]`: an agent's presence hash; `ARGV[1]`: +1 or -1. Never below zero; nothing
/// happens (-1) when the agent has no presence hash.
pub static ADJUST_CAPACITY: Script = Script {
    name: "dispatch_adjust_capacity",
    lua: r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local act = (tonumber(redis.call('HGET', KEYS[1], 'activeChats') or '0') or 0) + tonumber(ARGV[1])
if act < 0 then act = 0 end
redis.call('HSET', KEYS[1], 'activeChats', act)
return act
",
    local: adjust_local,
};

fn adjust_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    let key = keys.first().ok_or_else(|| bad("adjust"))?;
    let by: i64 = args.first().and_then(|a| a.parse().ok()).ok_or_else(|| bad("adjust"))?;
    if !tx.exists(key)? {
        return Ok(ScriptValue::Int(-1));
    }
    let act = (int_field(tx, key, "activeChats")? + by).max(0);
    tx.hset(key, &[("activeChats", &act.to_string())])?;
    Ok(ScriptValue::Int(act))
}
