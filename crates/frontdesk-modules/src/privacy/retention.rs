//! Retention (issue 5): a site with `settings.retentionDays = N` keeps transcripts for N
//! days after they ended (or were created, when they never ended), and offline messages for
//! N days after they were sent; older ones are deleted, or with `retentionMode =
//! "anonymise"` kept as counts with their text (and the sender's name and e-mail) removed. Each sweep
//! that touched something is recorded in the site's audit log (`retention.run`, no actor
//! for the timer).
//!
//! `privacy/start` (in `server.start`) spawns the hourly timer once per process,
//! `privacy/stop` (in `server.end`) ends it; `privacy/retention_run` (`retention.run`)
//! sweeps now: the caller's site for an admin, every site for the server itself.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::id::{AgentId, SiteId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::reports::{Purged, RetentionMode};
use frontdesk_core::store::Site;
use frontdesk_core::time::now_ms;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::settings::MAX_RETENTION_DAYS;
use super::{audit, only, Privacy};
use crate::RegisterError;

const PERIOD: Duration = Duration::from_secs(3600);
/// The first sweep waits this long after start, so a starting node serves first.
const FIRST_DELAY: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

type Task = Arc<Mutex<Option<JoinHandle<()>>>>;

pub(super) fn register(registry: &mut Registry, p: &Arc<Privacy>) -> Result<(), RegisterError> {
    let task: Task = Arc::new(Mutex::new(None));
    registry.register("privacy/start", Arc::new(Start { p: Arc::downgrade(p), task: task.clone() }))?;
    registry.register("privacy/stop", Arc::new(Stop(task)))?;
    registry.register("privacy/retention_run", Arc::new(RunNow(p.clone())))?;
    Ok(())
}

/// The site's retention, when it has one.
fn policy(site: &Site) -> Option<(i64, RetentionMode)> {
    let days = site.settings.get("retentionDays")?.as_i64().filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))?;
    let mode = match site.settings.get("retentionMode").and_then(Value::as_str) {
        Some("anonymise") => RetentionMode::Anonymise,
        _ => RetentionMode::Delete,
    };
    Some((days, mode))
}

/// What one site's sweep touched: transcripts, and offline messages.
type Swept = (i64, RetentionMode, Purged, u64);

/// Applies one site's retention at `now`; `None` when it keeps transcripts forever.
async fn sweep_site(p: &Privacy, site: &Site, actor: Option<AgentId>, now: i64) -> Result<Option<Swept>, Failure> {
    let Some((days, mode)) = policy(site) else { return Ok(None) };
    let before = now - days * DAY_MS;
    let purged = p.store.purge_history(site.id, before, mode).await?;
    let offline = p.store.purge_offline_messages(site.id, before, mode).await?;
    if purged.chats > 0 || purged.messages > 0 || offline > 0 {
        let details = json!({"retentionDays": days, "mode": mode, "before": before,
                             "chats": purged.chats, "messages": purged.messages, "offlineMessages": offline});
        audit::record(p, site.id, actor, "retention.run", String::new(), details).await?;
        let (chats, messages) = (purged.chats, purged.messages);
        tracing::info!(site = %site.id, chats, messages, offline_messages = offline, ?mode, "retention applied");
    }
    Ok(Some((days, mode, purged, offline)))
}

fn outcome(site: SiteId, swept: Option<Swept>) -> Value {
    match swept {
        None => json!({"siteId": site, "retentionDays": null, "chats": 0, "messages": 0, "offlineMessages": 0}),
        Some((days, mode, purged, offline)) => json!({"siteId": site, "retentionDays": days, "mode": mode,
                                             "chats": purged.chats, "messages": purged.messages,
                                             "offlineMessages": offline}),
    }
}

struct Start {
    p: Weak<Privacy>,
    task: Task,
}

#[async_trait]
impl Handler for Start {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        let mut slot = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|t| t.is_finished()) {
            *slot = Some(tokio::spawn(timer(self.p.clone())));
        }
        Ok(Step::Next)
    }
}

/// Holds the module weakly, so it ends with the engine that owns it.
async fn timer(weak: Weak<Privacy>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST_DELAY, PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(p) = weak.upgrade() else { return };
        let sites = match p.store.sites().await {
            Ok(sites) => sites,
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot list sites; retrying next hour");
                continue;
            }
        };
        for site in &sites {
            if let Err(e) = sweep_site(&p, site, None, now_ms()).await {
                tracing::warn!(site = %site.id, error = %e.message, "retention sweep failed; retrying next hour");
            }
        }
    }
}

struct Stop(Task);

#[async_trait]
impl Handler for Stop {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        if let Some(task) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        Ok(Step::Next)
    }
}

struct RunNow(Arc<Privacy>);

#[async_trait]
impl Handler for RunNow {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        only(ctx, &[])?;
        let now = now_ms();
        let (sites, actor) = match ctx.caller {
            Caller::Agent { site_id, agent_id, .. } => {
                let site = self
                    .0
                    .store
                    .site(site_id)
                    .await?
                    .ok_or_else(|| Failure::not_found("your site no longer exists"))?;
                (vec![site], Some(agent_id))
            }
            Caller::System | Caller::Operator => (self.0.store.sites().await?, None),
            _ => return Err(Failure::forbidden("only an admin may call retention.run")),
        };
        let mut out = Vec::with_capacity(sites.len());
        for site in &sites {
            out.push(outcome(site.id, sweep_site(&self.0, site, actor, now).await?));
        }
        ctx.set_result("sites", Value::Array(out));
        Ok(Step::Next)
    }
}
