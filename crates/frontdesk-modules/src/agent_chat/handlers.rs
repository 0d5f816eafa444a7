//! `agent_chat/send_message` `{toAgentId, content}` → `{message}` (and the push
//! `agent_chat.message` to the recipient), and `agent_chat/get_messages` `{withAgentId,
//! before?, limit?}` → `{messages (ascending by seq), hasMore}`, the newest page first.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{AgentId, IdGenerator, SiteId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Step};
use frontdesk_core::push::{Push, Recipient};
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;
use serde::Deserialize;
use serde_json::{json, Value};

use super::message::rfc3339_utc;
use super::{messages_key, seq_key, AgentChatMessage, KEEP_MESSAGES};

const MAX_CONTENT_CHARS: usize = 4000;
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

/// The calling agent and the other agent of the pair, who must be a different agent of the
/// same site (another site's agent reads as not found, so nothing crosses sites).
async fn pair(store: &dyn Store, ctx: &Ctx, other: AgentId, field: &str) -> Result<(SiteId, AgentId), Failure> {
    let Caller::Agent { site_id, agent_id, .. } = ctx.caller else {
        return Err(Failure::forbidden(format!("{} is called with an agent's access token", ctx.event)));
    };
    if other == agent_id {
        return Err(Failure::bad_request(format!(
            "data.{field}: that is your own id; name another agent of your site"
        )));
    }
    if store.agent(site_id, other).await?.is_none() {
        return Err(Failure::not_found(format!("data.{field}: agent {other} is not an agent of your site")));
    }
    Ok((site_id, agent_id))
}

use frontdesk_core::time::now_ms;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendRequest {
    to_agent_id: AgentId,
    content: String,
}

pub(super) struct SendMessage {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
    pub ids: IdGenerator,
    pub push: Arc<dyn Push>,
}

#[async_trait]
impl Handler for SendMessage {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let req: SendRequest = ctx.decode()?;
        let content = req.content.trim();
        let chars = content.chars().count();
        if chars == 0 || chars > MAX_CONTENT_CHARS {
            return Err(Failure::bad_request(format!(
                "data.content: 1 to {MAX_CONTENT_CHARS} characters after trimming spaces (got {chars})"
            )));
        }
        let (_, from) = pair(self.store.as_ref(), ctx, req.to_agent_id, "toAgentId").await?;
        let to = req.to_agent_id;
        let id = self.ids.next().map_err(|e| Failure::unavailable(format!("cannot make a message id: {e}")))?;
        // The counter orders the pair's messages; each send takes a distinct seq, so
        // concurrent sends (on any node) need no lock.
        let seq = self.state.incrby(&seq_key(from, to), 1).await?;
        let message = AgentChatMessage {
            id,
            seq,
            from_agent_id: from,
            to_agent_id: to,
            content: content.to_string(),
            send_time: rfc3339_utc(now_ms()),
        };
        let value = serde_json::to_value(&message).map_err(|e| Failure::internal(format!("cannot encode: {e}")))?;
        let key = messages_key(from, to);
        self.state.zadd(&key, &[(seq as f64, value.to_string().as_str())]).await?;
        if seq > KEEP_MESSAGES {
            self.state.zremrange_by_score(&key, f64::NEG_INFINITY, (seq - KEEP_MESSAGES) as f64).await?;
        }
        // The message is stored: a lost push is caught up by get_messages, so it does not
        // fail the send.
        if let Err(e) = self.push.push(&[Recipient::Agent(to)], "agent_chat.message", &value).await {
            tracing::warn!(error = %e, agent = %to, "agent_chat.message not pushed");
        }
        ctx.set_result("message", value);
        Ok(Step::Next)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetRequest {
    with_agent_id: AgentId,
    before: Option<i64>,
    limit: Option<i64>,
}

pub(super) struct GetMessages {
    pub state: Arc<dyn StateStore>,
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl Handler for GetMessages {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let req: GetRequest = ctx.decode()?;
        let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Failure::bad_request(format!("data.limit: 1 to {MAX_LIMIT} (got {limit})")));
        }
        if let Some(before) = req.before.filter(|b| *b < 1) {
            return Err(Failure::bad_request(format!("data.before: a seq of 1 or more (got {before})")));
        }
        let (_, me) = pair(self.store.as_ref(), ctx, req.with_agent_id, "withAgentId").await?;
        let other = req.with_agent_id;
        let newest = match req.before {
            Some(before) => before - 1,
            None => self.state.get(&seq_key(me, other)).await?.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0),
        };
        let key = messages_key(me, other);
        let mut messages = Vec::new();
        let mut has_more = false;
        if newest >= 1 {
            // Seqs are consecutive, so the page is a score range; gaps (a send that failed
            // between counter and write) only make a page shorter.
            let oldest = (newest - limit + 1).max(1);
            for (member, _) in self.state.zrange_by_score(&key, oldest as f64, newest as f64, None).await? {
                match serde_json::from_str::<Value>(&member) {
                    Ok(m) => messages.push(m),
                    Err(e) => tracing::warn!(error = %e, %key, "unreadable agent chat message skipped"),
                }
            }
            has_more = oldest > 1
                && !self
                    .state
                    .zrange_by_score(&key, f64::NEG_INFINITY, (oldest - 1) as f64, Some((0, 1)))
                    .await?
                    .is_empty();
        }
        ctx.set_result("messages", Value::Array(messages));
        ctx.set_result("hasMore", json!(has_more));
        Ok(Step::Next)
    }
}
