//! The audit log (SPEC §4 "audit log entry"; issue 5). `privacy/audit` is a `did` stage of
//! the admin events that change something (`agents.create|update|delete`,
//! `departments.create|update|delete`, `sites.update_settings`, `visitors.erase`): it
//! records who did what to which id, with the request and the answer as details — secrets
//! (passwords, tokens) left out. `privacy/audit_log` (`audit_log.list`, `GET
//! /api/v1/audit-log`) pages a site's entries newest first; `cursor` is the last entry's id.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{AgentId, Id, SiteId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::reports::AuditEntry;
use frontdesk_core::time::now_ms;
use serde_json::{json, Map, Value};

use super::{admin, only, Privacy};
use crate::RegisterError;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

pub(super) fn register(registry: &mut Registry, p: &Arc<Privacy>) -> Result<(), RegisterError> {
    registry.register("privacy/audit", Arc::new(Audit(p.clone())))?;
    registry.register("privacy/audit_log", Arc::new(AuditLog(p.clone())))?;
    Ok(())
}

/// Records one entry.
pub(super) async fn record(
    p: &Privacy,
    site: SiteId,
    actor: Option<AgentId>,
    action: &str,
    target: String,
    details: Value,
) -> Result<(), Failure> {
    let id = p.ids.next().map_err(|e| Failure::unavailable(format!("cannot make an id: {e}")))?;
    let entry = AuditEntry {
        id,
        site_id: site,
        actor_agent_id: actor,
        action: action.to_owned(),
        target,
        details,
        at: now_ms(),
    };
    p.store.insert_audit(&entry).await?;
    Ok(())
}

/// `value` without the fields that hold secrets, at any depth.
fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    !k.contains("password") && !k.contains("token") && !k.contains("secret")
                })
                .map(|(k, v)| (k.clone(), redacted(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// The id acted on: the answer's `id` (a created resource), else the request's `id` or
/// `visitorId`.
fn target(request: &Value, answer: &Map<String, Value>) -> String {
    let as_text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    as_text(answer.get("id"))
        .or_else(|| as_text(request.get("id")))
        .or_else(|| as_text(request.get("visitorId")))
        .unwrap_or_default()
}

struct Audit(Arc<Privacy>);

#[async_trait]
impl Handler for Audit {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let Caller::Agent { site_id, agent_id, .. } = ctx.caller else { return Ok(Step::Next) };
        let details = json!({
            "request": redacted(&ctx.request.data),
            "result": redacted(&Value::Object(ctx.response.data.clone())),
        });
        let target = target(&ctx.request.data, &ctx.response.data);
        record(&self.0, site_id, Some(agent_id), &ctx.event, target, details).await?;
        Ok(Step::Next)
    }
}

struct AuditLog(Arc<Privacy>);

#[async_trait]
impl Handler for AuditLog {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = admin(ctx)?;
        only(ctx, &["limit", "cursor"])?;
        let text = |key: &str| match ctx.request.data.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(other) => Some(other.to_string()),
        };
        let limit = match text("limit") {
            None => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| Failure::bad_request(format!("limit must be 1 to {MAX_LIMIT}, got {s:?}")))?,
        };
        let after = text("cursor")
            .map(|c| {
                c.parse::<Id>().map_err(|_| {
                    Failure::bad_request("cursor is not a cursor this server handed out; start again without it")
                })
            })
            .transpose()?;
        let mut entries = self.0.store.audit_log(site, after, limit + 1).await?;
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next = if more { entries.last().map(|e| e.id.to_string()) } else { None };
        let entries = serde_json::to_value(&entries).map_err(|e| Failure::internal(format!("cannot encode: {e}")))?;
        ctx.set_result("entries", entries);
        ctx.set_result("nextCursor", json!(next));
        Ok(Step::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_log() {
        let v = json!({"email": "a@b.c", "password": "pw", "agent": {"accessToken": "t", "name": "Ann"}});
        assert_eq!(redacted(&v), json!({"email": "a@b.c", "agent": {"name": "Ann"}}));
    }

    #[test]
    fn the_target_is_the_created_or_named_id() {
        let answer = json!({"id": "7"});
        assert_eq!(target(&json!({}), answer.as_object().expect("object")), "7");
        assert_eq!(target(&json!({"visitorId": "9"}), &Map::new()), "9");
    }
}
