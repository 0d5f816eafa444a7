//! `agent/set_preference` (SPEC §5.4 "agent"): one console preference of the calling agent,
//! kept in its durable record; answers all of them.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use serde::Deserialize;
use serde_json::Value;

use super::{agent_caller, AgentModule};
use crate::RegisterError;

const MAX_KEY_CHARS: usize = 64;
const MAX_VALUE_BYTES: usize = 4 * 1024;
/// Keeps one agent's record small whatever a client does.
const MAX_PREFERENCES: usize = 100;

pub(super) fn register(registry: &mut Registry, m: &Arc<AgentModule>) -> Result<(), RegisterError> {
    registry.register("agent/set_preference", Arc::new(SetPreference(m.clone())))?;
    Ok(())
}

#[derive(Deserialize)]
struct PreferenceData {
    key: String,
    value: Value,
}

struct SetPreference(Arc<AgentModule>);

#[async_trait]
impl Handler for SetPreference {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, agent, _) = agent_caller(&ctx.caller, &ctx.event)?;
        let data: PreferenceData = ctx.decode()?;
        let chars = data.key.chars().count();
        if chars == 0 || chars > MAX_KEY_CHARS {
            return Err(Failure::bad_request(format!(
                "data.key: must be 1 to {MAX_KEY_CHARS} characters (got {chars})"
            )));
        }
        let size = serde_json::to_vec(&data.value).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_VALUE_BYTES {
            return Err(Failure::bad_request(format!(
                "data.value: at most {MAX_VALUE_BYTES} bytes of JSON (got {size})"
            )));
        }
        let store = &self.0.store;
        let missing = || Failure::not_found("your agent account no longer exists");
        let current = store.agent_preferences(site, agent).await?.ok_or_else(missing)?;
        if !current.contains_key(&data.key) && current.len() >= MAX_PREFERENCES {
            return Err(Failure::bad_request(format!(
                "data.key: an agent keeps at most {MAX_PREFERENCES} preferences; reuse or overwrite one"
            )));
        }
        let all = store.set_agent_preference(site, agent, &data.key, &data.value).await?.ok_or_else(missing)?;
        ctx.set_result("preferences", Value::Object(all));
        Ok(Step::Next)
    }
}
