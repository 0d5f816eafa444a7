//! Redis paused (SIGSTOP) for 10 s under load, then resumed (SIGCONT): requests during the
//! pause fail fast with `unavailable` (each within 3 s) instead of hanging, the nodes' memory
//! stays bounded (RSS from /proc), and traffic recovers within seconds of SIGCONT; the
//! history checker finds nothing lost, nothing doubled.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::chaos_support::checker::RECOVER_FROM;
use crate::chaos_support::client::Kind;
use crate::chaos_support::world::{clients, World};
use crate::chaos_support::{finish, long, Load};

const PAUSE: Duration = Duration::from_secs(10);
/// The longest a request may take to fail while Redis does not answer.
const FAIL_WITHIN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_requests_fail_fast_memory_stays_bounded_and_traffic_recovers() {
    let world = World::start(2).await;
    let (agents, per_agent) = if long() { (30, 2) } else { (6, 2) };
    let mut teams = world.teams(0, agents, per_agent).await;
    teams.extend(world.teams(1, agents / 2, per_agent).await);
    let clients = clients(teams);
    let probe = clients.iter().find(|c| c.kind == Kind::Visitor).expect("a visitor");
    let (probe_token, probe_chat) = (probe.token().to_string(), probe.chats.keys().next().expect("chat").clone());
    let load = Load::start(clients, Duration::from_millis(100), Duration::from_secs(40));
    load.progress(200, Duration::from_secs(30)).await.expect("traffic flows before the fault");
    let rss_before: Vec<u64> = world.nodes.iter().map(|n| n.rss_kb().expect("rss")).collect();

    world.redis.pause();
    let paused_at = Instant::now();
    // A probe over plain HTTP, and the nodes' memory, while Redis does not answer.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http");
    let mut probes: Vec<(Duration, u16, String)> = Vec::new();
    let mut rss_peak = rss_before.clone();
    while paused_at.elapsed() < PAUSE {
        let start = Instant::now();
        let resp = http
            .post(world.nodes[0].url("/api/v1/chat.visitor_heartbeat"))
            .bearer_auth(&probe_token)
            .json(&json!({"chatId": probe_chat}))
            .send()
            .await
            .expect("the node answers while Redis is paused");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        probes.push((start.elapsed(), status, body["error"]["kind"].as_str().unwrap_or("").to_string()));
        for (i, n) in world.nodes.iter().enumerate() {
            rss_peak[i] = rss_peak[i].max(n.rss_kb().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world.history.mark(RECOVER_FROM);
    world.redis.resume();
    let resumed_at = Instant::now();
    let recovered = load.progress(100, Duration::from_secs(30)).await.expect("traffic recovers after SIGCONT");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clients = load.stop().await;
    let report = finish("redis-pause", &world, clients).await;

    let unavailable = probes.iter().filter(|p| p.1 == 503 && p.2 == "unavailable").count();
    let slowest = probes.iter().map(|p| p.0).max().unwrap_or_default();
    println!(
        "chaos redis-pause: {} probes during the {PAUSE:?} pause, {unavailable} answered 503 unavailable, slowest {} ms; \
         rss before {rss_before:?} kB, peak {rss_peak:?} kB; 100 acknowledgements {} ms after SIGCONT (resumed {} ms)",
        probes.len(),
        slowest.as_millis(),
        recovered.as_millis(),
        resumed_at.elapsed().as_millis()
    );
    report.assert_clean();
    for (took, status, kind) in &probes {
        assert!(*took < FAIL_WITHIN, "a request took {took:?} while Redis was paused");
        assert!(*status == 200 || (*status == 503 && kind == "unavailable"), "answered {status} {kind}");
    }
    assert!(unavailable * 2 >= probes.len(), "most requests during the pause answer unavailable: {probes:?}");
    let slowest_failure = report.slowest_failure.expect("sends failed during the pause");
    assert!(slowest_failure < FAIL_WITHIN, "a send took {slowest_failure:?} to fail");
    for (before, peak) in rss_before.iter().zip(&rss_peak) {
        assert!(*peak < before * 2 + 100_000, "RSS grew from {before} kB to {peak} kB during the pause");
    }
    let recovery = report.recovery.expect("recovery measured");
    assert!(recovery < Duration::from_secs(10), "the slowest client resumed {recovery:?} after SIGCONT");
}
