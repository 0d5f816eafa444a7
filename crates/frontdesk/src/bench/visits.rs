//! `frontdesk bench visits`: `visitor.page_visit` events over HTTP keep-alive from W
//! concurrent visitors for `--duration` seconds; events/s and latency.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use parking_lot::Mutex;
use serde_json::json;

use super::client::{login, visitor, Api};
use super::ledger::{now_micros, Ledger, Tally};
use super::report::{Report, Run};
use super::Common;

#[derive(Debug, Clone, Args)]
pub struct VisitsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent visitors, each with its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

pub async fn run(args: VisitsArgs) -> anyhow::Result<Report> {
    let api = Api::new(&args.common.url).await?;
    let (_, site) = login(&api, &args.common.admin_email, &args.common.admin_password).await?;
    let mut tokens = Vec::with_capacity(args.concurrency);
    for n in 0..args.concurrency.max(1) {
        tokens.push(visitor(&api, &site, n).await?);
    }
    let latency = Arc::new(Mutex::new(Ledger::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut run = Run::start(&args.common)?;
    let until = tokio::time::Instant::now() + Duration::from_secs(args.common.duration);
    let mut tasks = Vec::new();
    for (n, token) in tokens.into_iter().enumerate() {
        let (api, latency, errors) = (api.clone(), latency.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut page = 0u64;
            let mut done = 0u64;
            while tokio::time::Instant::now() < until {
                page += 1;
                let key = format!("p{n}.{page}");
                let sent = now_micros();
                let url = format!("https://bench.invalid/p/{n}/{page}");
                match api.call("visitor.page_visit", Some(&token), json!({"url": url})).await {
                    Ok(_) => {
                        let mut l = latency.lock();
                        l.sent(&key);
                        l.delivered(&format!("{key}|{sent}|"), now_micros());
                        done += 1;
                    }
                    Err(_) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            done
        }));
    }
    let mut events = 0;
    for t in tasks {
        events += t.await.unwrap_or(0);
    }
    run.stop()?;
    let ledger = latency.lock();
    let tally = Tally { sent: events, delivered: events, ..Tally::default() };
    Ok(Report::new("visits", &run, events, tally, ledger.latency())
        .with("concurrency", args.concurrency as f64)
        .with("errors", errors.load(std::sync::atomic::Ordering::Relaxed) as f64))
}
