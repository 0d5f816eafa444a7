//! Redis restarted empty (no persistence) under load: the nodes find the generation key gone
//! and move to a new generation, every chat reads as unknown (`code: 1, -1/-1`), the clients
//! upload their copies (`chat.rebuild`), and the rebuilt chat is the union of what anyone saw
//! — nothing acknowledged lost, nothing doubled, in every participant's read and in the
//! durable transcript.

use std::time::Duration;

use frontdesk_core::keys;

use crate::chaos_support::checker::RECOVER_FROM;
use crate::chaos_support::world::{clients, World};
use crate::chaos_support::{finish, long, Load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_under_load_clients_rebuild_and_nothing_acknowledged_is_lost() {
    let mut world = World::start(2).await;
    let (agents, per_agent, run_for) = if long() { (30, 2, 60) } else { (8, 2, 3) };
    let mut teams = world.teams(0, agents, per_agent).await;
    teams.extend(world.teams(1, agents / 2, per_agent).await);
    let clients = clients(teams);
    let chats = clients.iter().filter(|c| c.kind == crate::chaos_support::client::Kind::Visitor).count();
    let load = Load::start(clients, Duration::from_millis(100), Duration::from_secs(30));
    load.progress(200, Duration::from_secs(30)).await.expect("traffic flows before the fault");
    let before = generation_other_than(&world, "").await;

    world.history.mark(RECOVER_FROM);
    world.redis.restart_empty();
    let resumed = load.progress(200, Duration::from_secs(30)).await.expect("traffic recovers on the empty Redis");
    tokio::time::sleep(Duration::from_secs(run_for)).await;
    let clients = load.stop().await;
    let after = generation_other_than(&world, &before).await;

    let report = finish("redis-restart", &world, clients).await;
    println!(
        "chaos redis-restart: generation {before} -> {after}; 200 more acknowledgements {} ms after the restart",
        resumed.as_millis()
    );
    report.assert_clean();
    assert!(report.rebuilds >= chats, "every chat was rebuilt by a client: {report}");
    let recovery = report.recovery.expect("recovery measured");
    assert!(recovery < Duration::from_secs(15), "the slowest client resumed after {recovery:?}");
}

/// The generation id once it differs from `old` (the test's own connection to Redis may need
/// a moment to reconnect after the restart).
async fn generation_other_than(world: &World, old: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(g)) = world.state().get(&keys::generation()).await {
            if g != old {
                return g;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the generation stayed {old:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
