//! Dispatch's atomic steps, each on one site's hash tag (queues, offers, agents' presence
//! hashes and the availability index all live under `{s:<site>}`).
//!
//! [`OFFER`] picks the agent inside the script from the availability index
//! ([`crate::model::availability`]), so an attempt costs one round trip and reads only the
//! agents it considers, not every agent of the site. Agents' presence keys are built in the
//! script from the agents set's key (same hash tag, so the same Redis Cluster slot and the
//! same memory shard).

use std::collections::HashSet;

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::state::{Script, ScriptTx, ScriptValue};

use crate::model::availability::{reindex_local, Indexed, UNAVAILABLE};

/// Below this many agents in a site an offer weighs every agent exactly (each hash read
/// inside the script); above it, the index's order is trusted up to the first agent whose
/// entry proves current.
pub const EXACT_BELOW: u64 = 32;
/// Index entries read per step of a scan.
const SCAN_BATCH: usize = 64;

/// `KEYS`: 1 the queue, 2 the site's offers, 3 the site's agents set, 4 the least-busy
/// index, 5 the round-robin index, 6 the site's offer counter.
/// `ARGV`: 1 chat id, 2 offer deadline (ms), 3 `"1"` to skip the "still queued" check (a
/// transfer to a named agent), 4 now (ms), 5 presence timeout (ms), 6 `"1"` for round
/// robin, 7 the returning visitor's last agent (or empty), 8 the only agent allowed (or
/// empty), 9 the department (or empty), 10 agents excluded (comma-separated), 11 the
/// department's members from the durable store (comma-separated).
///
/// An agent may take the chat when its presence says `online`, under `maxChats`, seen
/// within the timeout, not excluded, and (for a department) a member by the store or by
/// its presence's `departments`. Preference: the returning visitor's last agent, then the
/// index order (priority, then load or turn, then id).
///
/// Returns -1 when the chat is no longer queued (another node offered it), 0 when nobody
/// can take it, else the agent id (a string): its `activeChats` went up, its `lastOffer`
/// is the site's next offer number, the chat left the queue and its offer is pending.
pub static OFFER: Script = Script {
    name: "dispatch_offer",
    lua: concat!(
        crate::reindex_lua!(),
        r#"
if ARGV[3] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
local agents, avail, turns = KEYS[3], KEYS[4], KEYS[5]
local prefix = string.sub(agents, 1, #agents - 6) .. 'agent:'
if redis.call('SCARD', agents) ~= redis.call('ZCARD', avail) then
  local known = {}
  for _, id in ipairs(redis.call('SMEMBERS', agents)) do
    known[id] = true
    if not fd_reindex(prefix .. id, avail, turns, id) then redis.call('SREM', agents, id) end
  end
  for _, id in ipairs(redis.call('ZRANGE', avail, 0, -1)) do
    if not known[id] then redis.call('ZREM', avail, id) redis.call('ZREM', turns, id) end
  end
end
local function set_of(s)
  local t = {}
  for x in string.gmatch(s, '[^,]+') do t[x] = true end
  return t
end
local excluded, members = set_of(ARGV[10]), set_of(ARGV[11])
local now, timeout, rr, dept = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1', ARGV[9]
local index = avail
if rr then index = turns end
local function score(id)
  if excluded[id] then return nil end
  local e = fd_reindex(prefix .. id, avail, turns, id)
  if not e then return nil end
  local s = e[1]
  if rr then s = e[2] end
  if s >= FD_UNAVAILABLE or now - e[3] > timeout then return nil end
  if dept ~= '' and not members[id] and not string.find(e[4], '"' .. dept .. '"', 1, true) then return nil end
  return s
end
local best, best_score = nil, nil
local function consider(id, s)
  if s and (not best or s < best_score or (s == best_score and (#id < #best or (#id == #best and id < best)))) then
    best, best_score = id, s
  end
end
if ARGV[8] ~= '' then
  consider(ARGV[8], score(ARGV[8]))
else
  if ARGV[7] ~= '' and score(ARGV[7]) then best = ARGV[7] end
  if not best then
    if redis.call('ZCARD', index) < "#,
        "32",
        r#" then
      for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do consider(id, score(id)) end
    else
      local offset = 0
      while true do
        local batch = redis.call('ZRANGEBYSCORE', index, '-inf', FD_UNAVAILABLE - 1, 'WITHSCORES', 'LIMIT', offset, "#,
        "64",
        r#")
        if #batch == 0 then break end
        local settled = false
        for i = 1, #batch, 2 do
          local s = score(batch[i])
          consider(batch[i], s)
          if s and s == tonumber(batch[i + 1]) then settled = true break end
        end
        if settled then break end
        offset = offset + "#,
        "64",
        r#"
      end
    end
  end
end
if not best then return 0 end
local akey = prefix .. best
redis.call('HINCRBY', akey, 'activeChats', 1)
redis.call('HSET', akey, 'lastOffer', redis.call('INCR', KEYS[6]))
fd_reindex(akey, avail, turns, best)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return best
"#
    ),
    local: offer_local,
};

fn bad(script: &str) -> BackendError {
    BackendError::other("script", format!("{script}: missing keys or arguments"))
}

fn arg(args: &[String], i: usize) -> BackendResult<&str> {
    args.get(i).map(String::as_str).ok_or_else(|| bad("offer"))
}

/// The presence key prefix of a site from its agents set's key (`…:agents` → `…:agent:`).
fn agent_prefix(agents: &str) -> BackendResult<String> {
    let base = agents.strip_suffix("agents").ok_or_else(|| bad("offer: KEYS[3] is not an agents set"))?;
    Ok(format!("{base}agent:"))
}

/// Shorter ids first, then by text: decimal ids in numeric order, as the Lua compares.
fn id_less(a: &str, b: &str) -> bool {
    (a.len(), a) < (b.len(), b)
}

struct Pick<'a> {
    excluded: HashSet<&'a str>,
    members: HashSet<&'a str>,
    now: i64,
    timeout: i64,
    round_robin: bool,
    department: &'a str,
    prefix: String,
    avail: &'a str,
    turns: &'a str,
    best: Option<(String, f64)>,
}

impl Pick<'_> {
    fn score(&self, tx: &mut dyn ScriptTx, id: &str) -> BackendResult<Option<f64>> {
        if self.excluded.contains(id) {
            return Ok(None);
        }
        let Some(Indexed { least_busy, round_robin, last_seen, departments }) =
            reindex_local(tx, &format!("{}{id}", self.prefix), self.avail, self.turns, id)?
        else {
            return Ok(None);
        };
        let s = if self.round_robin { round_robin } else { least_busy };
        if s >= UNAVAILABLE || self.now.saturating_sub(last_seen) > self.timeout {
            return Ok(None);
        }
        let member = self.members.contains(id) || departments.contains(&format!("\"{}\"", self.department));
        if !self.department.is_empty() && !member {
            return Ok(None);
        }
        Ok(Some(s))
    }

    fn consider(&mut self, id: &str, s: Option<f64>) {
        let Some(s) = s else { return };
        let better = match &self.best {
            None => true,
            Some((b, bs)) => s < *bs || (s == *bs && id_less(id, b)),
        };
        if better {
            self.best = Some((id.to_string(), s));
        }
    }
}

fn offer_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    let [queue, offers, agents, avail, turns, seq] = keys else { return Err(bad("offer")) };
    let chat = arg(args, 0)?;
    if arg(args, 2)? != "1" && tx.zscore(queue, chat)?.is_none() {
        return Ok(ScriptValue::Int(-1));
    }
    let deadline: f64 = arg(args, 1)?.parse().map_err(|_| bad("offer"))?;
    let prefix = agent_prefix(agents)?;
    let members_now = tx.smembers(agents)?;
    if members_now.len() as u64 != tx.zcard(avail)? {
        for id in &members_now {
            if reindex_local(tx, &format!("{prefix}{id}"), avail, turns, id)?.is_none() {
                tx.srem(agents, &[id])?;
            }
        }
        let known: HashSet<&str> = members_now.iter().map(String::as_str).collect();
        for (id, _) in tx.zrange_by_score(avail, f64::NEG_INFINITY, f64::INFINITY, None)? {
            if !known.contains(id.as_str()) {
                tx.zrem(avail, &[&id])?;
                tx.zrem(turns, &[&id])?;
            }
        }
    }
    let split = |s: &'_ str| -> Vec<String> { s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect() };
    let (excluded, members) = (split(arg(args, 9)?), split(arg(args, 10)?));
    let mut pick = Pick {
        excluded: excluded.iter().map(String::as_str).collect(),
        members: members.iter().map(String::as_str).collect(),
        now: arg(args, 3)?.parse().map_err(|_| bad("offer"))?,
        timeout: arg(args, 4)?.parse().map_err(|_| bad("offer"))?,
        round_robin: arg(args, 5)? == "1",
        department: arg(args, 8)?,
        prefix,
        avail,
        turns,
        best: None,
    };
    let (sticky, only) = (arg(args, 6)?, arg(args, 7)?);
    let index = if pick.round_robin { turns } else { avail };
    if !only.is_empty() {
        let s = pick.score(tx, only)?;
        pick.consider(only, s);
    } else {
        if !sticky.is_empty() && pick.score(tx, sticky)?.is_some() {
            pick.best = Some((sticky.to_string(), 0.0));
        }
        if pick.best.is_none() {
            if tx.zcard(index)? < EXACT_BELOW {
                for (id, _) in tx.zrange_by_score(index, f64::NEG_INFINITY, f64::INFINITY, None)? {
                    let s = pick.score(tx, &id)?;
                    pick.consider(&id, s);
                }
            } else {
                let mut offset = 0;
                loop {
                    let batch =
                        tx.zrange_by_score(index, f64::NEG_INFINITY, UNAVAILABLE - 1.0, Some((offset, SCAN_BATCH)))?;
                    if batch.is_empty() {
                        break;
                    }
                    let mut settled = false;
                    for (id, was) in &batch {
                        let s = pick.score(tx, id)?;
                        pick.consider(id, s);
                        if s == Some(*was) {
                            settled = true;
                            break;
                        }
                    }
                    if settled {
                        break;
                    }
                    offset += SCAN_BATCH;
                }
            }
        }
    }
    let Some((best, _)) = pick.best else { return Ok(ScriptValue::Int(0)) };
    let agent = format!("{}{best}", pick.prefix);
    tx.hincrby(&agent, "activeChats", 1)?;
    let n = tx.incrby(seq, 1)?;
    tx.hset(&agent, &[("lastOffer", &n.to_string())])?;
    reindex_local(tx, &agent, avail, turns, &best)?;
    tx.zrem(queue, &[chat])?;
    tx.zadd(offers, &[(deadline, chat)])?;
    Ok(ScriptValue::Str(best))
}

fn int_field(tx: &mut dyn ScriptTx, key: &str, field: &str) -> BackendResult<i64> {
    Ok(tx.hget(key, field)?.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// `KEYS[1]`: an agent's presence hash, then optionally the site's least-busy and
/// round-robin indexes; `ARGV[1]`: +1 or -1, `ARGV[2]` (with the indexes): the agent id,
/// re-scored there. Never below zero; nothing happens (-1) when the agent has no presence
/// hash.
pub static ADJUST_CAPACITY: Script = Script {
    name: "dispatch_adjust_capacity",
    lua: concat!(
        crate::reindex_lua!(),
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local act = (tonumber(redis.call('HGET', KEYS[1], 'activeChats') or '0') or 0) + tonumber(ARGV[1])
if act < 0 then act = 0 end
redis.call('HSET', KEYS[1], 'activeChats', act)
if KEYS[3] then fd_reindex(KEYS[1], KEYS[2], KEYS[3], ARGV[2]) end
return act
"
    ),
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
    if let (Some(avail), Some(turns)) = (keys.get(1), keys.get(2)) {
        let id = args.get(1).ok_or_else(|| bad("adjust"))?;
        reindex_local(tx, key, avail, turns, id)?;
    }
    Ok(ScriptValue::Int(act))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lua_uses_the_same_limits_as_the_rust() {
        assert!(OFFER.lua.contains(&format!("< {EXACT_BELOW} then")));
        assert!(OFFER.lua.contains(&format!("'LIMIT', offset, {SCAN_BATCH})")));
        assert_eq!(agent_prefix("fd:{s:1}:agents").ok().as_deref(), Some("fd:{s:1}:agent:"));
        assert!(id_less("9", "10") && id_less("10", "11") && !id_less("11", "11"));
    }
}
