//! The chaos scenarios' shared library: [`checker`] (the history and its invariants),
//! [`cluster`] (Redis, PostgreSQL and node processes), [`client`] (a reconnecting,
//! rebuilding chat client), [`world`] (an installation with two sites and conversations), and
//! here the load every scenario runs while it injects its fault, and the end every scenario
//! shares: stop, read back, check, print.

#![allow(dead_code)]

pub mod checker;
pub mod client;
pub mod cluster;
pub mod world;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use checker::Report;
use client::Client;
use tokio::task::JoinHandle;
use world::World;

/// Whether the heavier versions run (`FRONTDESK_CHAOS_LONG=1`).
pub fn long() -> bool {
    std::env::var("FRONTDESK_CHAOS_LONG").is_ok_and(|v| v == "1")
}

/// Clients conversing: each sends a message in each of its chats, reads pushes for `pace`,
/// and again, until stopped; an unacknowledged message is resent (same clientMessageId) for
/// up to `give_up`.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<Client>>,
}

impl Load {
    pub fn start(clients: Vec<Client>, pace: Duration, give_up: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let tasks = clients
            .into_iter()
            .map(|mut c| {
                let (stop, acked) = (stop.clone(), acked.clone());
                tokio::spawn(async move {
                    let chats: Vec<String> = c.chats.keys().cloned().collect();
                    let mut n = 0u64;
                    // Spread the first sends over one pace.
                    tokio::time::sleep(pace.mul_f64(rand::random::<f64>())).await;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        for chat in &chats {
                            let cmid = format!("{}-{chat}-{n}", c.reader);
                            if c.send(chat, &cmid, give_up).await {
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        c.pump(pace).await;
                    }
                    c
                })
            })
            .collect();
        Load { stop, acked, tasks }
    }

    /// Messages acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` further messages were acknowledged (up to `within`); how long it took.
    pub async fn progress(&self, more: u64, within: Duration) -> Option<Duration> {
        let start = tokio::time::Instant::now();
        let goal = self.acked() + more;
        while start.elapsed() < within {
            if self.acked() >= goal {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Stops every client after its current send; returns them.
    pub async fn stop(self) -> Vec<Client> {
        self.stop.store(true, Ordering::Relaxed);
        let mut clients = Vec::new();
        for t in self.tasks {
            clients
                .push(tokio::time::timeout(Duration::from_secs(90), t).await.expect("a client stops").expect("client"));
        }
        clients
    }
}

/// The end of every scenario: every client reads each of its chats in full, the transcripts
/// are read once the write-behind drained, and the history is checked. Prints the report
/// under `name` (see it with `--no-capture`).
pub async fn finish(name: &str, world: &World, mut clients: Vec<Client>) -> Report {
    let reads = clients.iter_mut().map(|c| c.final_reads(Duration::from_secs(30)));
    futures::future::join_all(reads).await;
    let mut chats = Vec::new();
    for c in &clients {
        if c.kind == client::Kind::Visitor {
            let site = world.sites.iter().position(|s| s.id.to_string() == c.site).expect("site of the client");
            for (chat, copy) in &c.chats {
                chats.push((site, chat.clone(), copy.messages.len()));
            }
        }
    }
    let drained = world.durable(&chats, Duration::from_secs(30)).await;
    for c in &mut clients {
        c.close().await;
    }
    let report = world.history.check();
    let reconnects: u32 = clients.iter().map(|c| c.reconnects).sum();
    println!(
        "chaos {name}: {report} clients={} chats={} reconnects={reconnects} transcripts_read_in={} ms",
        clients.len(),
        chats.len(),
        drained.as_millis()
    );
    for v in report.violations.iter().take(20) {
        println!("  {}: {}", v.invariant, v.detail);
    }
    let first_chat = report.violations.iter().find_map(|v| {
        let rest = v.detail.split("chat ").nth(1)?;
        Some(rest.split(|c: char| !c.is_ascii_digit()).next()?.to_string())
    });
    if let Some(chat) = first_chat.filter(|c| !c.is_empty()) {
        println!("the history of chat {chat}:\n{}", world.history.dump_chat(&chat));
    }
    report
}
