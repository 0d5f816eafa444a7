//! The history API (SPEC §5.3): `storage/list_chats` (`chats.list`, `GET /api/v1/chats`),
//! `storage/get_chat` (`chats.get`, the transcript) and `storage/export_chat`
//! (`chats.export`, JSON or CSV). Every read is scoped to the caller's site; agents see the
//! chats they took part in, supervisors and admins all of the site's. A chat the caller
//! may not see reads as `not_found`, so ids of other tenants reveal nothing.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::history::Transcript;
use frontdesk_core::id::{AgentId, SiteId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::store::Role;
use serde_json::{json, Value};

use super::export::transcript_csv;
use super::params::{chat_id, encode_cursor, list_query};
use super::Storage;
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, storage: &Arc<Storage>) -> Result<(), RegisterError> {
    registry.register("storage/list_chats", Arc::new(ListChats(storage.clone())))?;
    registry.register("storage/get_chat", Arc::new(GetChat(storage.clone())))?;
    registry.register("storage/export_chat", Arc::new(ExportChat(storage.clone())))?;
    Ok(())
}

/// The calling agent: site, id, and whether it sees every chat of the site.
fn agent(ctx: &Ctx) -> Result<(SiteId, AgentId, bool), Failure> {
    match ctx.caller {
        Caller::Agent { site_id, agent_id, role, .. } => Ok((site_id, agent_id, role != Role::Agent)),
        _ => Err(Failure::forbidden(format!("{} is called with an agent's access token", ctx.event))),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::internal(format!("cannot encode: {e}")))
}

struct ListChats(Arc<Storage>);

#[async_trait]
impl Handler for ListChats {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, me, sees_all) = agent(ctx)?;
        let mut query = list_query(site, &ctx.request.data)?;
        if !sees_all {
            query.member = Some(me);
        }
        let page = self.0.store.list_chats(&query).await?;
        let search = query.text.is_some();
        ctx.set_result("chats", to_value(&page.chats)?);
        ctx.set_result("nextCursor", json!(page.next.map(|c| encode_cursor(&c, search))));
        Ok(Step::Next)
    }
}

/// The transcript the caller may see, or `not_found`.
async fn transcript(storage: &Storage, ctx: &Ctx) -> Result<Transcript, Failure> {
    let (site, me, sees_all) = agent(ctx)?;
    let id = chat_id(&ctx.request.data)?;
    let not_found = || {
        Failure::not_found(format!(
            "no chat {id} in your history: check the id; agents see only the chats they took part in, and a new \
             chat's history appears a moment after it changes"
        ))
    };
    let t = storage.store.chat_transcript(site, id).await?.ok_or_else(not_found)?;
    if !sees_all && !t.chat.agent_ids.contains(&me) {
        return Err(not_found());
    }
    Ok(t)
}

struct GetChat(Arc<Storage>);

#[async_trait]
impl Handler for GetChat {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let t = transcript(&self.0, ctx).await?;
        ctx.set_result("chat", to_value(&t.chat)?);
        ctx.set_result("messages", to_value(&t.messages)?);
        Ok(Step::Next)
    }
}

struct ExportChat(Arc<Storage>);

#[async_trait]
impl Handler for ExportChat {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let format = match ctx.request.data.get("format") {
            None | Some(Value::Null) => "json".to_string(),
            Some(Value::String(f)) => f.trim().to_ascii_lowercase(),
            Some(_) => return Err(Failure::bad_request("format must be json or csv")),
        };
        if format != "json" && format != "csv" {
            return Err(Failure::bad_request(format!("format must be json or csv, got {format:?}")));
        }
        let t = transcript(&self.0, ctx).await?;
        ctx.set_result("format", json!(format));
        if format == "csv" {
            // The REST route sends `body` as the response itself, with this content type.
            ctx.set_result("contentType", json!("text/csv; charset=utf-8"));
            ctx.set_result("filename", json!(format!("chat-{}.csv", t.chat.chat_id)));
            ctx.set_result("body", json!(transcript_csv(&t)));
        } else {
            ctx.set_result("chat", to_value(&t.chat)?);
            ctx.set_result("messages", to_value(&t.messages)?);
        }
        Ok(Step::Next)
    }
}
