//! `frontdesk bench storm`: N visitors enter and request chats at once while M agents are
//! online; reports how fast dispatch answers under that load and checks that no chat is
//! offered twice and no agent gets more than its capacity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::client::{frame, login, visitor, Api};
use super::ledger::{now_micros, Ledger, Tally};
use super::report::{Report, Run};
use super::Common;

#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,
    /// Visitors that request a chat at once.
    #[arg(long, default_value_t = 500)]
    pub visitors: usize,
    /// Agents online.
    #[arg(long, default_value_t = 50)]
    pub agents: usize,
    /// Chats per agent.
    #[arg(long, default_value_t = 5)]
    pub capacity: usize,
}

pub async fn run(args: StormArgs) -> anyhow::Result<Report> {
    let api = Api::new(&args.common.url).await?;
    let (admin, site) = login(&api, &args.common.admin_email, &args.common.admin_password).await?;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let offers: Arc<Mutex<HashMap<String, Vec<usize>>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut agent_tasks = Vec::new();
    for i in 0..args.agents {
        let email = format!("storm-{run_id}-{i}@bench.invalid");
        api.call(
            "agents.create",
            Some(&admin),
            json!({"email": email, "password": "bench-password", "name": format!("Storm agent {i}"),
                   "role": "agent", "maxChats": args.capacity}),
        )
        .await?;
        let (token, _) = login(&api, &email, "bench-password").await?;
        let (mut tx, mut rx) = api.socket(&token, None).await?;
        tx.send(frame(1, "agent.set_status", json!({"status": "online"}), None)).await?;
        let offers = offers.clone();
        agent_tasks.push(tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = rx.next().await {
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                if v["push"] == "chat.offered" {
                    if let Some(chat) = v["data"]["chatId"].as_str() {
                        offers.lock().entry(chat.to_string()).or_default().push(i);
                    }
                }
            }
            let _ = tx.close().await;
        }));
    }
    let mut tokens = Vec::with_capacity(args.visitors);
    for n in 0..args.visitors {
        tokens.push(visitor(&api, &site, n).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let latency = Arc::new(Mutex::new(Ledger::new()));
    let mut run = Run::start(&args.common)?;
    let calls = tokens.iter().enumerate().map(|(n, token)| {
        let (api, latency) = (api.clone(), latency.clone());
        async move {
            let sent = now_micros();
            let answer = api.call("chat.request", Some(token), json!({"message": "storm"})).await;
            let key = format!("r{n}");
            let mut l = latency.lock();
            l.sent(&key);
            l.delivered(&format!("{key}|{sent}|"), now_micros());
            answer.map(|a| a["data"]["status"].as_str().unwrap_or("").to_string())
        }
    });
    let answers = futures::future::join_all(calls).await;
    run.stop()?;
    // Chats answered `queued` may still be offered behind (by a drain already running on
    // the server, or its sweeper): wait, up to --duration (at most 10 s), until every chat
    // that can have an agent got one.
    // Bounded well below the server's offer timeout (30 s by default): the storm's agents
    // never answer, and an expired offer going to a second agent is not a double offer.
    let slots = args.visitors.min(args.agents * args.capacity);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.common.duration.min(10));
    while offers.lock().len() < slots && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_offered_s = run.started_at().elapsed().as_secs_f64();
    // Offers travel by push: give any late (doubled) ones a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let errors = answers.iter().filter(|a| a.is_err()).count();
    let offered = answers.iter().filter(|a| matches!(a, Ok(s) if s == "offered")).count();
    let queued = answers.iter().filter(|a| matches!(a, Ok(s) if s == "queued")).count();
    let offers = offers.lock();
    let double = offers.values().filter(|agents| agents.len() > 1).count();
    let mut per_agent: HashMap<usize, usize> = HashMap::new();
    for agents in offers.values() {
        for a in agents {
            *per_agent.entry(*a).or_default() += 1;
        }
    }
    let over = per_agent.values().filter(|n| **n > args.capacity).count();
    for t in agent_tasks {
        t.abort();
    }
    let ledger = latency.lock();
    let done = (args.visitors - errors) as u64;
    let tally = Tally { sent: args.visitors as u64, delivered: done, ..Tally::default() };
    Ok(Report::new("storm", &run, done, tally, ledger.latency())
        .with("visitors", args.visitors as f64)
        .with("agents", args.agents as f64)
        .with("offered", offered as f64)
        .with("offers_received", offers.len() as f64)
        .with("all_offered_s", all_offered_s)
        .with("queued", queued as f64)
        .with("errors", errors as f64)
        .with("offered_twice", double as f64)
        .with("agents_over_capacity", over as f64))
}
