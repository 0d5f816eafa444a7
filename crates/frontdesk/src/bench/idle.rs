//! `frontdesk bench idle`: holds N visitor sockets that only heartbeat, and reports the
//! server's resident memory per connection (`--server-pid`), sampled as the sockets open so
//! the curve shows whether it stays flat. Sources spread over 127.0.0.1 … 127.0.0.k
//! (`--sources`) for runs past one address's ~28k ephemeral ports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::watch;

use super::client::{frame, login, sources, visitor, Api};
use super::probe::Probe;
use super::report::Report;
use super::Common;

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sockets to hold.
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Seconds between one socket's heartbeats.
    #[arg(long, default_value_t = 30)]
    pub heartbeat: u64,
}

pub async fn run(args: IdleArgs) -> anyhow::Result<Report> {
    let Some(probe) = Probe::of(&args.common.server_pid)? else {
        bail!("idle needs --server-pid to read the server's memory")
    };
    let api = Api::new(&args.common.url).await?;
    let (_, site) = login(&api, &args.common.admin_email, &args.common.admin_password).await?;

    // Visitor tokens first, so their cost is not counted as socket memory.
    let mut tokens = Vec::with_capacity(args.sockets);
    for chunk in (0..args.sockets).collect::<Vec<_>>().chunks(64) {
        let calls = chunk.iter().map(|n| visitor(&api, &site, *n));
        for t in futures::future::join_all(calls).await {
            tokens.push(t?);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = probe.sample()?;
    let srcs = sources(args.common.sources);
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut curve = Vec::new();
    let mut tasks = Vec::new();
    let step = (args.sockets / 4).max(1);
    for (n, token) in tokens.into_iter().enumerate() {
        let (api, opened, refused, mut stop) = (api.clone(), open.clone(), failed.clone(), stop_rx.clone());
        let source = srcs.get(n % srcs.len()).copied();
        let every = Duration::from_secs(args.heartbeat.max(1));
        tasks.push(tokio::spawn(async move {
            let Ok((mut tx, mut rx)) = api.socket(&token, source).await else {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            opened.fetch_add(1, Ordering::Relaxed);
            // Spread the heartbeats over the period rather than all at once.
            let offset = Duration::from_millis((n as u64 * 7919) % every.as_millis().max(1) as u64);
            let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
            let mut id = 0u64;
            loop {
                tokio::select! {
                    _ = beat.tick() => {
                        id += 1;
                        if tx.send(frame(id, "visitor.page_heartbeat", json!({}), None)).await.is_err() { break; }
                    }
                    msg = rx.next() => if msg.is_none() { break },
                    _ = stop.changed() => break,
                }
            }
            let _ = tx.close().await;
        }));
        if (n + 1) % step == 0 {
            // Let this quarter settle, then sample the curve.
            let want = (n + 1) as u64;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while open.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < want
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let s = probe.sample()?;
            curve.push((open.load(Ordering::Relaxed), s.rss_bytes));
        }
    }
    tokio::time::sleep(Duration::from_secs(args.common.duration)).await;
    let after = probe.sample()?;
    let held = open.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let mut report = Report { scenario: "idle", fields: Default::default() }
        .with("sockets", held as f64)
        .with("failed", failed.load(Ordering::Relaxed) as f64)
        .with("server_rss_before_mib", before.rss_bytes as f64 / 1048576.0)
        .with("server_rss_after_mib", after.rss_bytes as f64 / 1048576.0)
        .with(
            "server_kib_per_socket",
            after.rss_bytes.saturating_sub(before.rss_bytes) as f64 / 1024.0 / held.max(1) as f64,
        );
    for (i, (n, rss)) in curve.iter().enumerate() {
        report = report.with(&format!("curve_{}_sockets", i + 1), *n as f64).with(
            &format!("curve_{}_kib_per_socket", i + 1),
            rss.saturating_sub(before.rss_bytes) as f64 / 1024.0 / (*n).max(1) as f64,
        );
    }
    Ok(report)
}
