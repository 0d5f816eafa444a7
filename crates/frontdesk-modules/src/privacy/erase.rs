//! `privacy/erase_visitor` (`visitors.erase`, `POST /api/v1/visitors/{id}/erase`, admins;
//! GDPR's right to erasure): deletes a visitor of the caller's site from the durable store
//! (the visitor row, their chats with members and messages, and with them the search
//! entries, and the offline messages they left) and their runtime record and place in the
//! live visitor list. Answers what was
//! deleted; a visitor the site does not know (another site's included) is `not_found`.
//!
//! A visitor still on the site when erased comes back as a new record at their next call,
//! which is what erasure means for someone who keeps visiting.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::Id;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use serde_json::{json, Value};

use super::{admin, only, Privacy};
use crate::model::{live_visitors_key, visitor_key};
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, p: &Arc<Privacy>) -> Result<(), RegisterError> {
    registry.register("privacy/erase_visitor", Arc::new(EraseVisitor(p.clone())))?;
    Ok(())
}

struct EraseVisitor(Arc<Privacy>);

#[async_trait]
impl Handler for EraseVisitor {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = admin(ctx)?;
        only(ctx, &["id", "visitorId"])?;
        let named = ctx.request.data.get("id").or_else(|| ctx.request.data.get("visitorId"));
        let visitor = match named {
            Some(Value::String(s)) => s.parse::<Id>().ok(),
            _ => None,
        }
        .ok_or_else(|| Failure::bad_request("visitorId is required: the visitor's id (a string of digits)"))?;
        let erased = self.0.store.erase_visitor(site, visitor).await?;
        // A second statement, not one transaction with the above: a failure between the two
        // answers an error and the admin's retry finishes the erase (both are idempotent).
        let offline = self.0.store.erase_visitor_offline_messages(site, visitor).await?;
        let key = visitor_key(site, visitor);
        let runtime = self.0.state.del(&[&key]).await?;
        self.0.state.zrem(&live_visitors_key(site), &[&visitor.to_string()]).await?;
        if erased.visitors + erased.chats + erased.messages + offline + runtime == 0 {
            return Err(Failure::not_found(format!("no visitor {visitor} on your site")));
        }
        ctx.set_result("visitorId", json!(visitor));
        ctx.set_result("visitors", json!(erased.visitors));
        ctx.set_result("chats", json!(erased.chats));
        ctx.set_result("messages", json!(erased.messages));
        ctx.set_result("offlineMessages", json!(offline));
        ctx.set_result("runtimeRecords", json!(runtime));
        Ok(Step::Next)
    }
}
