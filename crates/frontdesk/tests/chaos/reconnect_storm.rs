//! A reconnect storm: ~2,000 sockets (visitors and their agents, spread over two nodes), one
//! node SIGKILLed, and its ~1,000 clients reconnect at once (jittered backoff) to the other
//! and resume every chat by offsets; measured: the time until the last one resumed. Each
//! visitor sends a message before and after; the history checker finds nothing lost.
//!
//! Open files: the test process holds one end of each socket (~2,000), each node the other
//! end of its share; far below the 20,000 limit.

use std::time::{Duration, Instant};

use crate::chaos_support::client::{Client, Kind};
use crate::chaos_support::world::{clients, World};
use crate::chaos_support::{finish, long};

/// Every client must have resumed within this long after the kill.
const RESUME_WITHIN: Duration = Duration::from_secs(30);

async fn each(clients: Vec<Client>, f: impl Fn(Client) -> tokio::task::JoinHandle<Client>) -> Vec<Client> {
    let tasks: Vec<_> = clients.into_iter().map(f).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("client task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sockets_reconnect_and_resume_after_a_node_loss() {
    let mut world = World::start(2).await;
    // 200 agents × 9 chats: 1,800 visitor sockets + 200 agent sockets.
    let (agents, per_agent) = if long() { (400, 9) } else { (200, 9) };
    let setup = Instant::now();
    let teams = world.teams(0, agents, per_agent).await;
    let clients = clients(teams);
    let sockets = clients.len();
    // Everyone connected (visitors already are, from their chat.request), one message each.
    let clients = each(clients, |mut c| {
        tokio::spawn(async move {
            for chat in c.chats.keys().cloned().collect::<Vec<_>>() {
                assert!(c.resume(&chat, Duration::from_secs(60)).await, "{} resumes {chat}", c.reader);
                if c.kind == Kind::Visitor {
                    assert!(c.send(&chat, &format!("{}-before", c.reader), Duration::from_secs(30)).await);
                }
            }
            c
        })
    })
    .await;
    let on_victim = clients.iter().filter(|c| c.is_connected() && c.node() == 0).count();
    println!(
        "chaos storm: {sockets} sockets set up in {} ms, {on_victim} on the node to kill",
        setup.elapsed().as_millis()
    );

    let killed = Instant::now();
    world.nodes[0].sigkill();
    let clients = each(clients, |mut c| {
        tokio::spawn(async move {
            if c.node() == 0 {
                // A real client learns of the loss from its socket.
                assert!(c.until_lost(Duration::from_secs(10)).await, "{} noticed the node loss", c.reader);
                for chat in c.chats.keys().cloned().collect::<Vec<_>>() {
                    assert!(c.resume(&chat, RESUME_WITHIN).await, "{} resumed {chat}", c.reader);
                }
                c.resumed_after = Some(killed.elapsed());
            }
            if c.kind == Kind::Visitor {
                for chat in c.chats.keys().cloned().collect::<Vec<_>>() {
                    assert!(c.send(&chat, &format!("{}-after", c.reader), Duration::from_secs(30)).await);
                }
            }
            c
        })
    })
    .await;
    let mut resumed: Vec<Duration> = clients.iter().filter_map(|c| c.resumed_after).collect();
    resumed.sort();
    let pct = |p: f64| resumed.get(((resumed.len() as f64 * p) as usize).min(resumed.len().saturating_sub(1))).copied();
    let report = finish("reconnect-storm", &world, clients).await;
    println!(
        "chaos storm: {} clients resumed after the kill: p50 {:?}, p99 {:?}, last {:?}",
        resumed.len(),
        pct(0.5),
        pct(0.99),
        resumed.last()
    );
    report.assert_clean();
    assert!(resumed.len() * 3 >= on_victim * 2, "about half the sockets were on the killed node");
    assert!(resumed.last().is_some_and(|d| *d < RESUME_WITHIN), "every client resumed within {RESUME_WITHIN:?}");
}
