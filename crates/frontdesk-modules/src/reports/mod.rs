//! The reports module (SPEC §4, §8 "statistics"; issue 5): supervisor reports over the
//! durable history, each one SQL aggregate in the store, scoped to the caller's site.
//!
//! - `reports/chats` (`reports.chats`, `GET /api/v1/reports/chats`): chats per day or
//!   hour, total and missed (ended without ever being accepted).
//! - `reports/wait_times`, `reports/first_response`, `reports/durations`: average and p90
//!   (nearest rank, exact on both dialects) of wait (created → accepted), first response
//!   (accepted → first agent message) and duration (accepted → ended), in milliseconds.
//! - `reports/ratings`: chats per rating 1..5 and the average.
//! - `reports/agent_time`: seconds each agent spent online and away, from the agent status
//!   history (written behind by `storage/record_status` and the presence sweeper).
//!
//! Every report takes `from` / `to` (default: the last 7 days) and, but for agent time,
//! `by=agent|department`. History is written behind, so a report lags the live state by
//! the write-behind's drain time (normally well under a second).

mod params;

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::{Id, SiteId};
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::reports::{GroupBy, ReportQuery, Span};
use frontdesk_core::store::Store;
use frontdesk_core::time::{now_ms, rfc3339};
use serde_json::{json, Map, Value};

use crate::{Deps, RegisterError};

/// Registers the reports module's handlers.
pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let store = deps.backends.store.clone();
    registry.register("reports/chats", Arc::new(Chats(store.clone())))?;
    for (name, span) in [
        ("reports/wait_times", Span::Wait),
        ("reports/first_response", Span::FirstResponse),
        ("reports/durations", Span::Duration),
    ] {
        registry.register(name, Arc::new(Spans { store: store.clone(), span }))?;
    }
    registry.register("reports/ratings", Arc::new(Ratings(store.clone())))?;
    registry.register("reports/agent_time", Arc::new(AgentTimes(store)))?;
    Ok(())
}

fn site(ctx: &Ctx) -> Result<SiteId, Failure> {
    match ctx.caller {
        Caller::Agent { site_id, .. } => Ok(site_id),
        _ => Err(Failure::forbidden(format!("{} is called with a supervisor's or admin's access token", ctx.event))),
    }
}

/// The range and grouping as the answer repeats them.
fn describe(ctx: &mut Ctx, q: &ReportQuery) {
    ctx.set_result("from", json!(rfc3339(q.from)));
    ctx.set_result("to", json!(rfc3339(q.to)));
    ctx.set_result(
        "by",
        match q.by {
            None => Value::Null,
            Some(GroupBy::Agent) => json!("agent"),
            Some(GroupBy::Department) => json!("department"),
        },
    );
}

/// A row's group as `agentId` / `departmentId` (nothing when the report is not grouped).
fn grouped(by: Option<GroupBy>, group: Option<Id>, mut row: Map<String, Value>) -> Value {
    match by {
        None => {}
        Some(GroupBy::Agent) => {
            row.insert("agentId".into(), json!(group));
        }
        Some(GroupBy::Department) => {
            row.insert("departmentId".into(), json!(group));
        }
    }
    Value::Object(row)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

struct Chats(Arc<dyn Store>);

#[async_trait]
impl Handler for Chats {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let q = params::report_query(site(ctx)?, &ctx.request.data, now_ms(), &["interval"])?;
        let interval = params::interval(&ctx.request.data, &q)?;
        let buckets = self.0.report_chats(&q, interval).await?;
        let (total, missed) = buckets.iter().fold((0, 0), |(t, m), b| (t + b.total, m + b.missed));
        let rows = buckets
            .iter()
            .map(|b| {
                let row = json!({"start": rfc3339(b.start), "startMs": b.start, "total": b.total, "missed": b.missed});
                grouped(q.by, b.group, object(row))
            })
            .collect();
        describe(ctx, &q);
        ctx.set_result("interval", json!(if interval.millis() == params::DAY_MS { "day" } else { "hour" }));
        ctx.set_result("total", json!(total));
        ctx.set_result("missed", json!(missed));
        ctx.set_result("buckets", Value::Array(rows));
        Ok(Step::Next)
    }
}

struct Spans {
    store: Arc<dyn Store>,
    span: Span,
}

#[async_trait]
impl Handler for Spans {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let q = params::report_query(site(ctx)?, &ctx.request.data, now_ms(), &[])?;
        let stats = self.store.report_spans(&q, self.span).await?;
        let rows = stats
            .iter()
            .map(|s| {
                let row = json!({"count": s.count, "averageMs": s.average_ms(), "p90Ms": s.p90_ms});
                grouped(q.by, s.group, object(row))
            })
            .collect();
        describe(ctx, &q);
        ctx.set_result("rows", Value::Array(rows));
        Ok(Step::Next)
    }
}

struct Ratings(Arc<dyn Store>);

#[async_trait]
impl Handler for Ratings {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let q = params::report_query(site(ctx)?, &ctx.request.data, now_ms(), &[])?;
        let stats = self.0.report_ratings(&q).await?;
        let rows = stats
            .iter()
            .map(|s| {
                let [r1, r2, r3, r4, r5] = s.counts;
                let counts = json!({"1": r1, "2": r2, "3": r3, "4": r4, "5": r5});
                let row = json!({"count": s.count(), "counts": counts, "average": s.average()});
                grouped(q.by, s.group, object(row))
            })
            .collect();
        describe(ctx, &q);
        ctx.set_result("rows", Value::Array(rows));
        Ok(Step::Next)
    }
}

struct AgentTimes(Arc<dyn Store>);

#[async_trait]
impl Handler for AgentTimes {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let now = now_ms();
        let q = params::report_query(site(ctx)?, &ctx.request.data, now, &[])?;
        if q.by.is_some() {
            return Err(Failure::bad_request("by: the agent-time report is always per agent"));
        }
        let times = self.0.report_agent_time(q.site_id, q.from, q.to, now).await?;
        let rows = times
            .iter()
            .map(|t| {
                json!({"agentId": t.agent_id, "onlineSeconds": t.online_ms / 1000, "awaySeconds": t.away_ms / 1000,
                       "onlineMs": t.online_ms, "awayMs": t.away_ms})
            })
            .collect();
        describe(ctx, &q);
        ctx.set_result("rows", Value::Array(rows));
        Ok(Step::Next)
    }
}
