//! The availability index of a site's agents: who may be offered a chat, in which order,
//! without reading every agent's presence hash. Two sorted sets on the site's hash tag,
//! holding every agent of [`agents_key`](super::agents_key):
//!
//! - [`available_key`]: scored for least-busy routing — `(1000 − priority) · 2³² +
//!   activeChats` for an agent that is `online` and under `maxChats`, [`UNAVAILABLE`]
//!   otherwise; ties by agent id (equal-length decimal ids sort as numbers).
//! - [`turns_key`]: the same with `lastOffer` in place of `activeChats` (round robin: the
//!   agent offered a chat longest ago goes first).
//!
//! The presence hash stays the truth: dispatch's offer script re-reads the hash of every
//! agent it considers (and repairs that agent's entries), so a stale entry can only change
//! the order of preference, never let a chat go to an agent who is away or at capacity.
//! Owners: the agent module re-scores an agent when its status changes and in its sweep
//! (which also repairs what other writers changed, e.g. an admin raising `maxChats`);
//! dispatch's scripts re-score it when `activeChats` or `lastOffer` change. Both go
//! through [`reindex_local`] / the Lua of [`reindex_lua!`], the one definition of a score.

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::id::SiteId;
use frontdesk_core::keys;
use frontdesk_core::state::{Script, ScriptTx, ScriptValue};

/// The score of an agent who cannot take a chat now (above every real score).
pub const UNAVAILABLE: f64 = 1e13;
/// Width of one priority band: the load or turn part of a score stays below it.
const BAND: f64 = 4_294_967_296.0;

/// Agents of a site scored for least-busy routing.
pub fn available_key(site: SiteId) -> String {
    keys::site(site, "avail")
}

/// Agents of a site scored for round robin.
pub fn turns_key(site: SiteId) -> String {
    keys::site(site, "turns")
}

/// The site's offer counter (the source of `lastOffer`).
pub fn offer_seq_key(site: SiteId) -> String {
    keys::site(site, "offer_seq")
}

/// An integer field as the Lua reads it: missing or not an integer counts as 0.
pub fn int_of(v: Option<&str>) -> i64 {
    v.and_then(|v| v.trim().parse::<f64>().ok()).filter(|f| f.fract() == 0.0 && f.is_finite()).map_or(0, |f| f as i64)
}

/// `(least-busy score, round-robin score)` of an agent's presence fields.
pub fn scores(status: Option<&str>, max_chats: i64, active_chats: i64, priority: i64, last_offer: i64) -> (f64, f64) {
    if status != Some("online") || active_chats >= max_chats {
        return (UNAVAILABLE, UNAVAILABLE);
    }
    let base = (1000 - priority.clamp(-1000, 1000)) as f64 * BAND;
    let part = |v: i64| (v.max(0) as f64).min(BAND - 1.0);
    (base + part(active_chats), base + part(last_offer))
}

/// The presence fields the index and the offer script read, in this order.
pub const FIELDS: [&str; 7] = ["status", "maxChats", "activeChats", "priority", "lastOffer", "lastSeen", "departments"];

/// An agent's presence fields as [`reindex_local`] read them.
#[derive(Debug, Clone, Default)]
pub struct Indexed {
    pub least_busy: f64,
    pub round_robin: f64,
    pub last_seen: i64,
    pub departments: String,
}

/// Re-scores one agent from its presence hash `agent` (id `id`) in the two sorted sets;
/// removes it from both when the hash is gone. The Rust twin of `fd_reindex` in
/// [`reindex_lua!`].
pub fn reindex_local(
    tx: &mut dyn ScriptTx,
    agent: &str,
    avail: &str,
    turns: &str,
    id: &str,
) -> BackendResult<Option<Indexed>> {
    let fields = tx.hgetall(agent)?;
    if fields.is_empty() {
        tx.zrem(avail, &[id])?;
        tx.zrem(turns, &[id])?;
        return Ok(None);
    }
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (lb, rr) = scores(
        get("status"),
        int_of(get("maxChats")),
        int_of(get("activeChats")),
        int_of(get("priority")),
        int_of(get("lastOffer")),
    );
    tx.zadd(avail, &[(lb, id)])?;
    tx.zadd(turns, &[(rr, id)])?;
    Ok(Some(Indexed {
        least_busy: lb,
        round_robin: rr,
        last_seen: int_of(get("lastSeen")),
        departments: get("departments").unwrap_or_default().to_string(),
    }))
}

/// The Lua of the index, for scripts that re-score agents: `fd_num(v)`, `fd_scores(…)` and
/// `fd_reindex(agent_key, avail_key, turns_key, id)`, which answers the hash's [`FIELDS`]
/// (or `nil`, removing the agent, when the hash is gone). A macro so that `concat!` can put
/// it in front of each script's body.
#[macro_export]
macro_rules! reindex_lua {
    () => {
        r#"
local FD_UNAVAILABLE = 1e13
local FD_BAND = 4294967296
local function fd_num(v)
  local n = tonumber(v or '0')
  if not n or n ~= math.floor(n) then return 0 end
  return n
end
local function fd_scores(st, max, act, prio, last)
  act = fd_num(act)
  if st ~= 'online' or act >= fd_num(max) then return FD_UNAVAILABLE, FD_UNAVAILABLE end
  local p = math.max(-1000, math.min(1000, fd_num(prio)))
  local base = (1000 - p) * FD_BAND
  return base + math.min(math.max(act, 0), FD_BAND - 1), base + math.min(math.max(fd_num(last), 0), FD_BAND - 1)
end
local function fd_reindex(akey, avail, turns, id)
  if redis.call('EXISTS', akey) == 0 then
    redis.call('ZREM', avail, id)
    redis.call('ZREM', turns, id)
    return nil
  end
  local f = redis.call('HMGET', akey, 'status', 'maxChats', 'activeChats', 'priority', 'lastOffer', 'lastSeen', 'departments')
  local lb, rr = fd_scores(f[1], f[2], f[3], f[4], f[5])
  redis.call('ZADD', avail, lb, id)
  redis.call('ZADD', turns, rr, id)
  return {lb, rr, fd_num(f[6]), f[7] or ''}
end
"#
    };
}

fn bad(script: &str) -> BackendError {
    BackendError::other("script", format!("{script}: missing keys or arguments"))
}

/// `KEYS`: an agent's presence hash, [`available_key`], [`turns_key`]; `ARGV`: the agent
/// id. Re-scores the agent (after its status or profile changed); answers 1, or 0 when
/// the hash is gone (the agent left both sets).
pub static INDEX_AGENT: Script = Script {
    name: "availability_index_agent",
    lua: concat!(reindex_lua!(), "if fd_reindex(KEYS[1], KEYS[2], KEYS[3], ARGV[1]) then return 1 end\nreturn 0\n"),
    local: index_agent_local,
};

fn index_agent_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    let [agent, avail, turns] = keys else { return Err(bad("index_agent")) };
    let id = args.first().ok_or_else(|| bad("index_agent"))?;
    Ok(ScriptValue::Int(i64::from(reindex_local(tx, agent, avail, turns, id)?.is_some())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_comes_before_load_and_unavailable_agents_sort_last() {
        let senior_busy = scores(Some("online"), 5, 4, 5, 0).0;
        let idle = scores(Some("online"), 5, 0, 0, 0).0;
        assert!(senior_busy < idle, "higher priority first, whatever the load");
        assert!(idle < scores(Some("online"), 5, 1, 0, 0).0, "then fewer active chats");
        assert_eq!(scores(Some("online"), 2, 2, 0, 0), (UNAVAILABLE, UNAVAILABLE), "at capacity");
        assert_eq!(scores(Some("away"), 2, 0, 0, 0).0, UNAVAILABLE);
        assert_eq!(scores(None, 2, 0, 0, 0).0, UNAVAILABLE);
        // Extremes stay below the sentinel and inside their band.
        let lowest = scores(Some("online"), i64::MAX, i64::MAX - 1, i64::MIN, i64::MAX);
        assert!(lowest.0 < UNAVAILABLE && lowest.1 < UNAVAILABLE);
        assert!(scores(Some("online"), 9, 0, -1000, 0).0 > scores(Some("online"), 9, 8, -999, 0).0);
    }

    #[test]
    fn fields_read_as_the_lua_reads_them() {
        assert_eq!(int_of(Some("7")), 7);
        assert_eq!(int_of(Some("-3")), -3);
        assert_eq!(int_of(Some("1.5")), 0);
        assert_eq!(int_of(Some("x")), 0);
        assert_eq!(int_of(None), 0);
    }
}
