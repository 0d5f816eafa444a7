//! The presence sweeper (SPEC §4): every [`TICK`], agents of every site with presence whose
//! last socket closed and who made no call within the presence timeout become `offline`,
//! and the site's agents are told (`agent.status`). Agents with an open socket are alive:
//! their `lastSeen` is moved to now, so dispatch, which reads only `lastSeen`, sees them.
//! The sweep also re-scores agents whose entry in the site's availability index
//! (`model::availability`) no longer matches their presence hash — a status it changed, or
//! a field another writer changed (an admin raising `maxChats`) — so the index is never
//! more than one sweep out of date; when nothing changed that costs two reads per site.
//!
//! `agent/start` (in `server.start`) spawns it once per process. The loop holds the module
//! weakly, so it ends when the engine that owns the module is dropped, or with the runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::bus::Bus;
use frontdesk_core::history::{HistoryJob, HISTORY_QUEUE};
use frontdesk_core::id::{AgentId, Id, SiteId};
use frontdesk_core::object;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::push::{Push, Recipient};
use frontdesk_core::reports::AgentStatusChange;
use frontdesk_core::state::StateStore;
use serde_json::json;
use tokio::task::JoinHandle;

use super::presence::{reindex, status_name};
use super::{now_ms, presence_sites_key, AgentModule};
use crate::model::availability::{available_key, int_of, scores, turns_key};
use crate::model::{agent_key, agents_key, AgentPresence, AgentStatus, LAST_OFFER_FIELD};
use crate::RegisterError;

const TICK: Duration = Duration::from_secs(5);

pub(super) fn register(registry: &mut Registry, m: &Arc<AgentModule>) -> Result<(), RegisterError> {
    registry.register("agent/start", Arc::new(Start { m: Arc::downgrade(m), task: Mutex::new(None) }))?;
    Ok(())
}

struct Start {
    m: Weak<AgentModule>,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[async_trait]
impl Handler for Start {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        {
            let mut slot = self.task.lock().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_none_or(|t| t.is_finished()) {
                let weak = self.m.clone();
                *slot = Some(tokio::spawn(run_sweeper(weak)));
            }
        }
        // Made now, so the first login with an unknown email does not pay for it.
        super::session::dummy_hash().await;
        Ok(Step::Next)
    }
}

async fn run_sweeper(weak: Weak<AgentModule>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(m) = weak.upgrade() else { return };
        let now = now_ms();
        match sweep_presence(m.state.as_ref(), m.push.as_ref(), m.settings.presence_timeout, now).await {
            Ok(offline) => record_offline(m.bus.as_ref(), &offline, now).await,
            Err(e) => tracing::warn!(error = %e, "presence sweep failed; retrying next tick"),
        }
    }
}

/// Writes the sweep's `offline` transitions behind to the history queue, for the online/away
/// report (issue 5). Best effort: a bus that refuses costs the report a transition, never
/// the sweep.
async fn record_offline(bus: &dyn Bus, offline: &[(SiteId, AgentId)], at: i64) {
    let mut payloads = Vec::with_capacity(offline.len());
    for &(site_id, agent_id) in offline {
        let change = AgentStatusChange { site_id, agent_id, status: "offline".to_owned(), at };
        match HistoryJob::agent_status_payload(change) {
            Ok(p) => payloads.push(bytes::Bytes::from(p)),
            Err(e) => tracing::warn!(error = %e, %agent_id, "cannot encode a status job"),
        }
    }
    if payloads.is_empty() {
        return;
    }
    if let Err(e) = bus.publish_batch(HISTORY_QUEUE, payloads).await {
        tracing::warn!(error = %e, agents = offline.len(), "offline transitions not recorded for the report");
    }
}

/// One sweep at time `now` (Unix ms): sets `offline` every agent with no open socket whose
/// `lastSeen` is older than `timeout`, pushes `agent.status` for each, and answers them.
/// The change is a compare-and-set on `status`, so a `set_status` racing with the sweep
/// wins and no node pushes twice.
pub async fn sweep_presence(
    state: &dyn StateStore,
    push: &dyn Push,
    timeout: Duration,
    now: i64,
) -> Result<Vec<(SiteId, AgentId)>, Failure> {
    let timeout = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let mut offline = Vec::new();
    for site in state.smembers(&presence_sites_key()).await? {
        let Ok(site) = site.parse::<Id>() else { continue };
        let all = (f64::NEG_INFINITY, f64::INFINITY, None);
        let indexed: HashMap<String, f64> =
            state.zrange_by_score(&available_key(site), all.0, all.1, all.2).await?.into_iter().collect();
        let turns: HashMap<String, f64> =
            state.zrange_by_score(&turns_key(site), all.0, all.1, all.2).await?.into_iter().collect();
        for agent in state.smembers(&agents_key(site)).await? {
            let Ok(agent) = agent.parse::<Id>() else { continue };
            let key = agent_key(site, agent);
            let fields = state.hgetall(&key).await?;
            if fields.is_empty() {
                // The agent was deleted: its presence went with it.
                state.srem(&agents_key(site), &[&agent.to_string()]).await?;
                continue;
            }
            let p: AgentPresence = object::from_fields(&fields)?;
            let last_offer = int_of(fields.iter().find(|(k, _)| k == LAST_OFFER_FIELD).map(|(_, v)| v.as_str()));
            let (lb, rr) = scores(Some(status_name(p.status)), p.max_chats, p.active_chats, p.priority, last_offer);
            let id = agent.to_string();
            if indexed.get(&id) != Some(&lb) || turns.get(&id) != Some(&rr) {
                reindex(state, site, agent).await?;
            }
            if p.sockets > 0 {
                state.hset(&key, &[("lastSeen", &now.to_string())]).await?;
                continue;
            }
            if p.status == AgentStatus::Offline || now.saturating_sub(p.last_seen) <= timeout {
                continue;
            }
            let was = status_name(p.status);
            if state.hcas(&key, "status", Some(was), Some("offline")).await? {
                reindex(state, site, agent).await?;
                tracing::info!(%agent, "agent went offline: no socket and no call within the presence timeout");
                let data = json!({"agentId": agent, "status": "offline"});
                if let Err(e) = push.push(&[Recipient::SiteAgents(site)], "agent.status", &data).await {
                    tracing::warn!(error = %e, %agent, "agent.status push failed");
                }
                offline.push((site, agent));
            }
        }
    }
    Ok(offline)
}
