//! `frontdesk bench chat`: C concurrent chats, each a visitor socket; one agent socket serves
//! K chats. Visitors send at a fixed total rate or closed-loop (the next message once the
//! agent's reply arrived); agents reply to every message. Every message is keyed and
//! stamped, so the run reports latency percentiles, delivered messages/s, and messages lost
//! or delivered twice (both must be 0). With `--agent-url` naming another node of the same
//! cluster, agents are on one node and visitors on the other, so every message crosses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use futures::SinkExt;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::client::{frame, login, sources, visitor, Api, WsTx};
use super::ledger::{body, now_micros, Ledger};
use super::report::{Report, Run};
use super::Common;

#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent chats (one visitor socket each).
    #[arg(long, default_value_t = 100)]
    pub chats: usize,
    /// Chats served by one agent socket.
    #[arg(long, default_value_t = 5)]
    pub per_agent: usize,
    /// Visitor messages per second in total; 0 = closed loop.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Bytes per message body.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Another node of the same cluster for the agents (their login and sockets), so every
    /// message crosses nodes; default: `--url`.
    #[arg(long)]
    pub agent_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    Measure,
    Drain,
    Done,
}

#[derive(Default)]
struct Stats {
    started: AtomicU64,
    errors: AtomicU64,
    rebuilds: AtomicU64,
}

struct Shared {
    ledger: Mutex<Ledger>,
    stats: Stats,
    body_bytes: usize,
}

pub async fn run(args: ChatArgs) -> anyhow::Result<Report> {
    if args.chats == 0 || args.per_agent == 0 {
        bail!("--chats and --per-agent must be at least 1");
    }
    let api = Api::new(&args.common.url).await?;
    let agent_api = match &args.agent_url {
        Some(url) => Api::new(url).await?,
        None => api.clone(),
    };
    let (admin, site) = login(&api, &args.common.admin_email, &args.common.admin_password).await?;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let n_agents = args.chats.div_ceil(args.per_agent);
    let shared =
        Arc::new(Shared { ledger: Mutex::new(Ledger::new()), stats: Stats::default(), body_bytes: args.body_bytes });
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let srcs = sources(args.common.sources);

    let mut tasks = Vec::new();
    for i in 0..n_agents {
        let email = format!("bench-{run_id}-{i}@bench.invalid");
        let created = api
            .call(
                "agents.create",
                Some(&admin),
                json!({"email": email, "password": "bench-password", "name": format!("Bench agent {i}"),
                       "role": "agent", "maxChats": args.per_agent}),
            )
            .await?;
        if created["code"] != 0 {
            bail!("agents.create: {created}");
        }
        let (token, _) = login(&agent_api, &email, "bench-password").await?;
        let (api, shared, phase) = (agent_api.clone(), shared.clone(), phase_rx.clone());
        let source = srcs.get(i % srcs.len()).copied();
        tasks.push(tokio::spawn(async move { agent(api, token, source, shared, phase).await }));
    }
    // Let the agents' sockets come up and their status reach dispatch before visitors ask.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(args.chats as f64 / args.rate as f64));
    for n in 0..args.chats {
        let (api, site, shared, phase) = (api.clone(), site.clone(), shared.clone(), phase_rx.clone());
        let source = srcs.get(n % srcs.len()).copied();
        tasks.push(tokio::spawn(async move { visitor_side(api, site, n, source, interval, shared, phase).await }));
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (shared.stats.started.load(Ordering::Relaxed) as usize) < args.chats {
        if tokio::time::Instant::now() > deadline {
            let _ = phase_tx.send(Phase::Done);
            bail!("only {} of {} chats started within 60 s", shared.stats.started.load(Ordering::Relaxed), args.chats);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut run = Run::start(&args.common)?;
    let _ = phase_tx.send(Phase::Measure);
    tokio::time::sleep(Duration::from_secs(args.common.duration)).await;
    let delivered_in_window = shared.ledger.lock().counted();
    run.stop()?;
    let _ = phase_tx.send(Phase::Drain);
    // Messages still in flight get time to arrive before anything counts as lost. `Done` is
    // chosen under the ledger's lock, and every send is recorded under it after checking the
    // phase, so no message can be recorded after the last check and then miss its reader.
    let grace = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        {
            let ledger = shared.ledger.lock();
            if ledger.tally().lost == 0 || tokio::time::Instant::now() >= grace {
                let _ = phase_tx.send(Phase::Done);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(10), t).await {
            Ok(Ok(Err(e))) => {
                shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "a bench client failed");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "a bench client panicked"),
            _ => {}
        }
    }
    let ledger = shared.ledger.lock();
    Ok(Report::new("chat", &run, delivered_in_window, ledger.tally(), ledger.latency())
        .with("chats", args.chats as f64)
        .with("agents", n_agents as f64)
        .with("errors", shared.stats.errors.load(Ordering::Relaxed) as f64)
        .with("rebuilds", shared.stats.rebuilds.load(Ordering::Relaxed) as f64))
}

/// One visitor: enters, opens its socket, asks for a chat, then sends while measuring.
async fn visitor_side(
    api: Api,
    site: String,
    n: usize,
    source: Option<std::net::IpAddr>,
    interval: Option<Duration>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> anyhow::Result<()> {
    let token = visitor(&api, &site, n).await?;
    let (mut tx, mut rx) = api.socket(&token, source).await?;
    tx.send(frame(1, "chat.request", json!({}), None)).await?;
    let mut chat: Option<String> = None;
    let mut started = false;
    let mut offsets = (0i64, 0i64);
    let mut seq = 0u64;
    // Visitors at a fixed rate start at spread phases (see `phase`), so the total rate is
    // smooth, not one burst of every visitor per interval. The ticker starts over when the
    // measurement does: set during the set-up, every visitor's first tick would be overdue
    // then and fire at once (an interval fires a missed tick immediately), a burst of one
    // message per chat that the latency percentiles would count.
    let every = interval.unwrap_or(Duration::from_secs(3600));
    let start = phase_of(n, every);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + start, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let closed_loop = interval.is_none();
    loop {
        let measuring = *phase.borrow() == Phase::Measure;
        tokio::select! {
            msg = rx.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                match v["push"].as_str() {
                    Some("chat.started") => {
                        if !started {
                            started = true;
                            shared.stats.started.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some("chat.message") => {
                        let d = &v["data"];
                        offsets = (d["visitorDataOffset"].as_i64().unwrap_or(offsets.0), d["agentDataOffset"].as_i64().unwrap_or(offsets.1));
                        if d["messageType"] == 2 {
                            if let Some(content) = d["content"].as_str() {
                                shared.ledger.lock().delivered(content, now_micros());
                            }
                            if closed_loop && measuring {
                                send(&mut tx, &shared, &phase, chat.as_deref(), n, &mut seq, offsets).await?;
                            }
                        }
                    }
                    Some(_) => {}
                    None => {
                        let r = &v["result"];
                        match r["code"].as_i64() {
                            Some(-1) => {
                                shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                                if v["id"] == 1 {
                                    return Err(anyhow!("chat.request failed: {}", r["error"]));
                                }
                            }
                            Some(1) => { shared.stats.rebuilds.fetch_add(1, Ordering::Relaxed); }
                            _ => {}
                        }
                        if v["id"] == 1 {
                            chat = r["data"]["chatId"].as_str().map(str::to_string);
                        }
                        if let (Some(vo), Some(ao)) = (r["visitorDataOffset"].as_i64(), r["agentDataOffset"].as_i64()) {
                            offsets = (offsets.0.max(vo), offsets.1.max(ao));
                        }
                    }
                }
            }
            _ = ticker.tick(), if !closed_loop && measuring && started => {
                send(&mut tx, &shared, &phase, chat.as_deref(), n, &mut seq, offsets).await?;
            }
            changed = phase.changed() => {
                if changed.is_err() { break; }
                let now = *phase.borrow();
                match now {
                    Phase::Measure if closed_loop && started => {
                        send(&mut tx, &shared, &phase, chat.as_deref(), n, &mut seq, offsets).await?;
                    }
                    Phase::Measure => ticker.reset_at(tokio::time::Instant::now() + start),
                    Phase::Done => break,
                    _ => {}
                }
            }
        }
    }
    if let Some(chat) = &chat {
        let _ = tx.send(frame(3, "chat.visitor_leave", json!({"chatId": chat}), Some(offsets))).await;
    }
    let _ = tx.close().await;
    Ok(())
}

/// Where in each interval visitor `n` sends: the golden-ratio sequence covers the interval
/// evenly whatever the number of visitors.
fn phase_of(n: usize, every: Duration) -> Duration {
    every.mul_f64((n as f64 * 0.618_033_988_749_895).fract())
}

async fn send(
    tx: &mut WsTx,
    shared: &Shared,
    phase: &watch::Receiver<Phase>,
    chat: Option<&str>,
    n: usize,
    seq: &mut u64,
    offsets: (i64, i64),
) -> anyhow::Result<()> {
    let Some(chat) = chat else { return Ok(()) };
    {
        // Visitors send only while measuring, decided under the ledger's lock (see `run`).
        let mut ledger = shared.ledger.lock();
        if *phase.borrow() != Phase::Measure {
            return Ok(());
        }
        *seq += 1;
        ledger.sent(&format!("v{n}.{seq}"));
    }
    let key = format!("v{n}.{seq}");
    let content = body(&key, shared.body_bytes);
    let data = json!({"chatId": chat, "content": content, "clientMessageId": key});
    tx.send(frame(100 + *seq, "chat.visitor_send_message", data, Some(offsets))).await?;
    Ok(())
}

/// One agent socket: goes online, accepts what it is offered, replies to every message.
async fn agent(
    api: Api,
    token: String,
    source: Option<std::net::IpAddr>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> anyhow::Result<()> {
    let (mut tx, mut rx) = api.socket(&token, source).await?;
    tx.send(frame(1, "agent.set_status", json!({"status": "online"}), None)).await?;
    let mut offsets: HashMap<String, (i64, i64)> = HashMap::new();
    let mut next_id = 10u64;
    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                match v["push"].as_str() {
                    Some("chat.offered") => {
                        if let Some(chat) = v["data"]["chatId"].as_str() {
                            next_id += 1;
                            tx.send(frame(next_id, "chat.agent_accept", json!({"chatId": chat}), None)).await?;
                        }
                    }
                    Some("chat.message") => {
                        let d = &v["data"];
                        let Some(chat) = d["chatId"].as_str() else { continue };
                        let o = (d["visitorDataOffset"].as_i64().unwrap_or(0), d["agentDataOffset"].as_i64().unwrap_or(0));
                        offsets.insert(chat.to_string(), o);
                        if d["messageType"] != 1 {
                            continue;
                        }
                        let Some(content) = d["content"].as_str() else { continue };
                        shared.ledger.lock().delivered(content, now_micros());
                        let Some((key, _)) = super::ledger::parse(content) else { continue };
                        let reply = format!("{key}r");
                        {
                            // Not once the run is over (see `run`): nobody would read it.
                            let mut ledger = shared.ledger.lock();
                            if *phase.borrow() == Phase::Done {
                                continue;
                            }
                            ledger.sent(&reply);
                        }
                        let content = body(&reply, shared.body_bytes);
                        next_id += 1;
                        let data = json!({"chatId": chat, "content": content, "clientMessageId": reply});
                        tx.send(frame(next_id, "chat.agent_send_message", data, Some(o))).await?;
                    }
                    Some(_) => {}
                    None => match v["result"]["code"].as_i64() {
                        Some(-1) => { shared.stats.errors.fetch_add(1, Ordering::Relaxed); }
                        Some(1) => { shared.stats.rebuilds.fetch_add(1, Ordering::Relaxed); }
                        _ => {}
                    },
                }
            }
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Done { break; }
            }
        }
    }
    let _ = tx.send(frame(2, "agent.set_status", json!({"status": "away"}), None)).await;
    let _ = tx.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitors_send_at_phases_spread_evenly_over_the_interval() {
        let every = Duration::from_millis(1000);
        let mut bins = [0usize; 10];
        for n in 0..2000 {
            let at = phase_of(n, every);
            assert!(at < every);
            bins[(at.as_millis() / 100) as usize] += 1;
        }
        // 2,000 visitors, 10 slices of 100 ms: each slice gets its 200, give or take a few.
        for (i, count) in bins.iter().enumerate() {
            assert!((190..=210).contains(count), "slice {i} has {count} of 2,000 sends: {bins:?}");
        }
    }
}
