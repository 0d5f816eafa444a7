//! The sweeper: once a second, on every node, it expires offers past their deadline (each
//! claimed with `ZREM`, so exactly one node handles it — the same claim accept and refuse
//! make) as refusals, and retries every queued chat, so a chat waits until an agent
//! becomes available. `dispatch/start` (in `server.start`) starts it; `dispatch/stop` (in
//! `server.end`) stops it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::id::{Id, SiteId};
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use tokio::task::JoinHandle;

use super::{now_ms, offers_key, sites_key, Dispatch};
use crate::RegisterError;

const TICK: Duration = Duration::from_secs(1);

pub(super) fn register(registry: &mut Registry, d: &Arc<Dispatch>) -> Result<(), RegisterError> {
    let task = Arc::new(Mutex::new(None));
    registry.register("dispatch/start", Arc::new(Start { d: d.clone(), task: task.clone() }))?;
    registry.register("dispatch/stop", Arc::new(Stop { task }))?;
    Ok(())
}

type Task = Arc<Mutex<Option<JoinHandle<()>>>>;

struct Start {
    d: Arc<Dispatch>,
    task: Task,
}

#[async_trait]
impl Handler for Start {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        let mut slot = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(Step::Next);
        }
        let d = self.d.clone();
        *slot = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = d.sweep().await {
                    tracing::warn!(error = %e, "dispatch sweep failed; retrying next tick");
                }
            }
        }));
        Ok(Step::Next)
    }
}

struct Stop {
    task: Task,
}

#[async_trait]
impl Handler for Stop {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        Ok(Step::Next)
    }
}

impl Dispatch {
    pub(crate) async fn sweep(&self) -> Result<(), Failure> {
        for site in self.state.smembers(&sites_key()).await? {
            let Ok(site) = site.parse::<Id>() else { continue };
            self.expire_offers(site).await?;
            self.drain_site(site).await?;
        }
        Ok(())
    }

    async fn expire_offers(&self, site: SiteId) -> Result<(), Failure> {
        let offers = offers_key(site);
        let due = self.state.zrange_by_score(&offers, f64::NEG_INFINITY, now_ms() as f64, None).await?;
        for (chat, _) in due {
            // The claim: only the node that removes the entry handles the expiry.
            if self.state.zrem(&offers, &[&chat]).await? != 1 {
                continue;
            }
            let Ok(chat_id) = chat.parse::<Id>() else { continue };
            let Some(meta) = self.load_chat(chat_id).await? else { continue };
            if let Some(agent) = meta.offered_to {
                tracing::info!(chat = %chat_id, agent = %agent, "offer timed out");
                self.offer_declined(chat_id, agent).await?;
            }
        }
        Ok(())
    }
}
