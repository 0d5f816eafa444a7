//! `storage/record_status`: the `did` stage of `agent.set_status` that writes the agent's
//! new status behind through [`HISTORY_QUEUE`], for the online/away report (issue 5).
//! Going `offline` is written by the presence sweeper, which makes that change.
//!
//! [`HISTORY_QUEUE`]: frontdesk_core::history::HISTORY_QUEUE

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use frontdesk_core::history::{HistoryJob, HISTORY_QUEUE};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::reports::AgentStatusChange;
use frontdesk_core::time::now_ms;
use serde_json::Value;

use super::Storage;
use crate::RegisterError;

pub(super) fn register(registry: &mut Registry, storage: &Arc<Storage>) -> Result<(), RegisterError> {
    registry.register("storage/record_status", Arc::new(RecordStatus(storage.clone())))?;
    Ok(())
}

struct RecordStatus(Arc<Storage>);

#[async_trait]
impl Handler for RecordStatus {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let Caller::Agent { site_id, agent_id, .. } = ctx.caller else { return Ok(Step::Next) };
        let Some(status) = ctx.response.data.get("status").and_then(Value::as_str) else { return Ok(Step::Next) };
        let change = AgentStatusChange { site_id, agent_id, status: status.to_owned(), at: now_ms() };
        let payload = HistoryJob::agent_status_payload(change)
            .map_err(|e| Failure::internal(format!("cannot encode a status job: {e}")))?;
        self.0.bus.publish(HISTORY_QUEUE, Bytes::from(payload)).await?;
        Ok(Step::Next)
    }
}
