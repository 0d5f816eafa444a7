//! `chat/rate_limit`: how fast one visitor may send messages (issue #8's floods). A visitor
//! may send a burst (default 20) at once and then a steady rate (default 5/s); past that the
//! call is refused with `rate_limited` before anything is stored, and the message says in
//! how many milliseconds the next one will be accepted.
//!
//! The limit is a GCRA ("generic cell rate algorithm", a token bucket kept as one
//! timestamp) in the state store, one key per visitor updated by one script, so it holds
//! across every node of a cluster: a visitor spreading a flood over many nodes or sockets
//! meets one budget. The time comes from the calling node's clock; nodes' clocks a few
//! milliseconds apart only shift the budget by as much.
//!
//! Key: `fd:{rate:msg:v:<visitorId>}` — the "theoretical arrival time" in ms, expiring
//! when the budget is full again. Agents and the system are not limited here.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::error::{BackendError, BackendResult, ErrorKind};
use frontdesk_core::id::VisitorId;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::state::{Script, ScriptTx, ScriptValue, StateStore};

use crate::RegisterError;

/// The visitor message budget. `per_second == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRate {
    /// Messages accepted at once from a full budget (at least 1).
    pub burst: u32,
    /// Messages per second accepted after the burst.
    pub per_second: u32,
}

impl Default for MessageRate {
    fn default() -> Self {
        MessageRate { burst: 20, per_second: 5 }
    }
}

impl MessageRate {
    /// Milliseconds between two messages at the steady rate, and the burst tolerance.
    fn params(self) -> Option<(i64, i64)> {
        if self.per_second == 0 {
            return None;
        }
        let interval = (1000 / i64::from(self.per_second)).max(1);
        Some((interval, interval * i64::from(self.burst.max(1) - 1)))
    }
}

pub(super) fn register(
    registry: &mut Registry,
    state: Arc<dyn StateStore>,
    rate: MessageRate,
) -> Result<(), RegisterError> {
    registry.register("chat/rate_limit", Arc::new(RateLimit { state, rate }))?;
    Ok(())
}

fn rate_key(visitor: VisitorId) -> String {
    format!("fd:{{rate:msg:v:{visitor}}}")
}

/// GCRA over one key: `ARGV = [now_ms, interval_ms, tolerance_ms]`; answers 0 when the
/// message is accepted (and takes its share of the budget), else the milliseconds to wait.
/// Numbers are written with `%d`: Lua would print a large one as `1.7e+12`.
pub static GCRA: Script = Script {
    name: "rate_gcra",
    lua: r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', new_tat - now))
return 0
",
    local: gcra_local,
};

fn gcra_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
    let bad = || BackendError::other("script", "rate_gcra needs 1 key and 3 whole-number args");
    let key = keys.first().ok_or_else(bad)?;
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<i64>().ok()).ok_or_else(bad);
    let (now, interval, tolerance) = (num(0)?, num(1)?, num(2)?);
    let stored = tx.get(key)?.and_then(|v| v.parse::<i64>().ok());
    match gcra(now, stored, interval, tolerance) {
        Ok(new_tat) => {
            let ttl = Duration::from_millis(u64::try_from(new_tat - now).unwrap_or(1).max(1));
            tx.set(key, &new_tat.to_string(), Some(ttl))?;
            Ok(ScriptValue::Int(0))
        }
        Err(wait) => Ok(ScriptValue::Int(wait)),
    }
}

/// One GCRA step, the rule both script bodies implement: the new theoretical arrival time
/// when the message is accepted, or the milliseconds to wait.
fn gcra(now: i64, stored: Option<i64>, interval: i64, tolerance: i64) -> Result<i64, i64> {
    let tat = stored.unwrap_or(0).max(now);
    let allow_at = tat - tolerance;
    if now < allow_at {
        return Err(allow_at - now);
    }
    Ok(tat + interval)
}

struct RateLimit {
    state: Arc<dyn StateStore>,
    rate: MessageRate,
}

#[async_trait]
impl Handler for RateLimit {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let Caller::Visitor { visitor_id, .. } = ctx.caller else {
            return Ok(Step::Next);
        };
        let Some((interval, tolerance)) = self.rate.params() else {
            return Ok(Step::Next);
        };
        let now = frontdesk_core::time::now_ms().to_string();
        let key = rate_key(visitor_id);
        let answer = self.state.eval(&GCRA, &[&key], &[&now, &interval.to_string(), &tolerance.to_string()]).await?;
        let wait = answer.as_int().ok_or_else(|| Failure::internal("the rate-limit script answered oddly"))?;
        if wait <= 0 {
            return Ok(Step::Next);
        }
        Err(Failure::new(
            ErrorKind::RateLimited,
            format!(
                "too many messages: a visitor may send {} at once and {} per second after that; retry in {wait} ms",
                self.rate.burst.max(1),
                self.rate.per_second
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `gcra` like the script does, keeping the stored value in `tat`.
    fn at(tat: &mut Option<i64>, now: i64, rate: MessageRate) -> i64 {
        let (interval, tolerance) = rate.params().expect("limited");
        match gcra(now, *tat, interval, tolerance) {
            Ok(new) => {
                *tat = Some(new);
                0
            }
            Err(wait) => wait,
        }
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let rate = MessageRate { burst: 20, per_second: 5 };
        let mut tat = None;
        let now = 1_800_000_000_000;
        for i in 0..20 {
            assert_eq!(at(&mut tat, now, rate), 0, "message {i} of the burst");
        }
        assert_eq!(at(&mut tat, now, rate), 200, "the 21st waits one interval");
        assert_eq!(at(&mut tat, now + 199, rate), 1);
        assert_eq!(at(&mut tat, now + 200, rate), 0, "one more after 200 ms");
        assert_eq!(at(&mut tat, now + 200, rate), 200);
        // A quiet minute refills the whole burst.
        let later = now + 60_000;
        for _ in 0..20 {
            assert_eq!(at(&mut tat, later, rate), 0);
        }
        assert!(at(&mut tat, later, rate) > 0);
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        assert_eq!(MessageRate { burst: 20, per_second: 0 }.params(), None);
        assert_eq!(MessageRate { burst: 0, per_second: 5 }.params(), Some((200, 0)), "a burst of 0 counts as 1");
    }
}
