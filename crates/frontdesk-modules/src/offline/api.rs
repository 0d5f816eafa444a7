//! The agents' side of offline messages (SPEC §5.3 `/api/v1/offline-messages`):
//! `offline/list` (`offline_messages.list`), `offline/get` (`offline_messages.get`) and
//! `offline/update` (`offline_messages.update`, `{handled: true|false}`). Any agent of the
//! site may read and mark its messages; every read and write is scoped to the caller's
//! site, so another site's id reads as `not_found`. From a REST query string every value
//! arrives as a string, from `POST /api/v1/offline_messages.list` as JSON: both are taken.
//! Unknown parameters are refused, so a misspelt filter never silently lists everything.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::history::{OfflineMessage, OfflineQuery};
use frontdesk_core::id::{AgentId, Id, SiteId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::time::now_ms;
use serde_json::{json, Map, Value};

use super::Offline;
use crate::RegisterError;

pub(super) const DEFAULT_LIMIT: u32 = 20;
pub(super) const MAX_LIMIT: u32 = 100;

pub(super) fn register(registry: &mut Registry, offline: &Arc<Offline>) -> Result<(), RegisterError> {
    registry.register("offline/list", Arc::new(List(offline.clone())))?;
    registry.register("offline/get", Arc::new(Get(offline.clone())))?;
    registry.register("offline/update", Arc::new(Update(offline.clone())))?;
    Ok(())
}

/// The calling agent's site and id.
fn agent(ctx: &Ctx) -> Result<(SiteId, AgentId), Failure> {
    match ctx.caller {
        Caller::Agent { site_id, agent_id, .. } => Ok((site_id, agent_id)),
        _ => Err(Failure::forbidden(format!("{} is called with an agent's access token", ctx.event))),
    }
}

fn params(ctx: &Ctx, known: &[&str]) -> Result<Map<String, Value>, Failure> {
    let data = ctx.request.data.as_object().cloned().unwrap_or_default();
    if let Some(unknown) = data.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Failure::bad_request(format!("{unknown} is not a parameter of {}; use {known:?}", ctx.event)));
    }
    Ok(data)
}

/// A parameter as text (numbers and booleans written out); absent, null or blank is `None`.
fn text(data: &Map<String, Value>, key: &str) -> Option<String> {
    match data.get(key)? {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => Some(String::new()),
    }
}

fn flag(data: &Map<String, Value>, key: &str) -> Result<Option<bool>, Failure> {
    match text(data, key).as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(Failure::bad_request(format!("{key} must be true or false, got {other:?}"))),
    }
}

fn id(data: &Map<String, Value>, key: &str) -> Result<Option<Id>, Failure> {
    text(data, key)
        .map(|s| s.parse::<Id>().map_err(|_| Failure::bad_request(format!("{key} must be an id (decimal digits)"))))
        .transpose()
}

/// The message's id: the path's `id`, or `offlineMessageId`.
fn message_id(data: &Map<String, Value>) -> Result<Id, Failure> {
    match id(data, "id")? {
        Some(id) => Ok(id),
        None => id(data, "offlineMessageId")?
            .ok_or_else(|| Failure::bad_request("offlineMessageId is required (or the id in the path)")),
    }
}

fn not_found(id: Id) -> Failure {
    Failure::not_found(format!(
        "no offline message {id} on your site: check the id; a new message appears a moment after it is sent"
    ))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::internal(format!("cannot encode: {e}")))
}

/// The list query of `offline_messages.list`.
pub(super) fn list_query(site: SiteId, data: &Map<String, Value>) -> Result<OfflineQuery, Failure> {
    let limit = match text(data, "limit") {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| Failure::bad_request(format!("limit must be 1 to {MAX_LIMIT}, got {s:?}")))?,
    };
    let before = id(data, "cursor")
        .map_err(|_| Failure::bad_request("cursor must be the nextCursor of an earlier page, unchanged"))?;
    Ok(OfflineQuery { site_id: site, handled: flag(data, "handled")?, limit, before })
}

struct List(Arc<Offline>);

#[async_trait]
impl Handler for List {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = agent(ctx)?;
        let query = list_query(site, &params(ctx, &["handled", "limit", "cursor"])?)?;
        let page = self.0.store.list_offline_messages(&query).await?;
        ctx.set_result("offlineMessages", to_value(&page.messages)?);
        ctx.set_result("nextCursor", json!(page.next.map(|id| id.to_string())));
        Ok(Step::Next)
    }
}

struct Get(Arc<Offline>);

#[async_trait]
impl Handler for Get {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = agent(ctx)?;
        let id = message_id(ctx.request.data.as_object().unwrap_or(&Map::new()))?;
        let message = self.0.store.offline_message(site, id).await?.ok_or_else(|| not_found(id))?;
        params(ctx, &["id", "offlineMessageId"])?;
        ctx.set_result("offlineMessage", to_value(&message)?);
        Ok(Step::Next)
    }
}

struct Update(Arc<Offline>);

#[async_trait]
impl Handler for Update {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, me) = agent(ctx)?;
        let id = message_id(ctx.request.data.as_object().unwrap_or(&Map::new()))?;
        // Another site's id is `not_found` whatever the body says, so a probe learns nothing.
        if self.0.store.offline_message(site, id).await?.is_none() {
            return Err(not_found(id));
        }
        let data = params(ctx, &["id", "offlineMessageId", "handled"])?;
        let handled = match data.get("handled") {
            Some(Value::Bool(b)) => *b,
            _ => return Err(Failure::bad_request("handled is required: true or false")),
        };
        let by = handled.then(|| (me, now_ms()));
        let message: OfflineMessage =
            self.0.store.set_offline_message_handled(site, id, by).await?.ok_or_else(|| not_found(id))?;
        ctx.set_result("offlineMessage", to_value(&message)?);
        Ok(Step::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::error::ErrorKind;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn list_parameters_from_a_query_string_or_json() {
        let q = list_query(Id(1), &map(json!({"handled": "false", "limit": "5", "cursor": "77"}))).expect("query");
        assert_eq!(q, OfflineQuery { site_id: Id(1), handled: Some(false), limit: 5, before: Some(Id(77)) });
        let q = list_query(Id(1), &map(json!({"handled": true, "limit": 100}))).expect("query");
        assert_eq!((q.handled, q.limit, q.before), (Some(true), 100, None));
        assert_eq!(list_query(Id(1), &Map::new()).expect("defaults").limit, DEFAULT_LIMIT);
        for bad in [json!({"limit": "0"}), json!({"limit": "101"}), json!({"handled": "yes"}), json!({"cursor": "x"})] {
            let e = list_query(Id(1), &map(bad.clone())).expect_err("refused");
            assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}");
        }
    }

    #[test]
    fn the_path_id_wins_over_the_body() {
        assert_eq!(message_id(&map(json!({"id": "5", "offlineMessageId": "6"}))).expect("id"), Id(5));
        assert_eq!(message_id(&map(json!({"offlineMessageId": "6"}))).expect("id"), Id(6));
        assert!(message_id(&Map::new()).is_err());
    }
}
