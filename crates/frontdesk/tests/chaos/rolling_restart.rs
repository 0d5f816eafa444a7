//! A rolling restart of a two-node cluster under load: SIGTERM one node (its sockets are
//! closed with 1001, requests in flight finish), wait until it is back, then the other. The
//! clients reconnect with jittered backoff to whichever node answers and resume by offsets;
//! the history checker finds nothing lost, nothing doubled.

use std::time::Duration;

use crate::chaos_support::checker::RECOVER_FROM;
use crate::chaos_support::world::{clients, World};
use crate::chaos_support::{finish, long, Load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_closes_sockets_with_1001_and_loses_nothing() {
    let mut world = World::start(2).await;
    let (agents, per_agent) = if long() { (30, 2) } else { (8, 2) };
    let mut teams = world.teams(0, agents, per_agent).await;
    teams.extend(world.teams(1, agents / 2, per_agent).await);
    let clients = clients(teams);
    let load = Load::start(clients, Duration::from_millis(100), Duration::from_secs(30));
    load.progress(200, Duration::from_secs(30)).await.expect("traffic flows before the restart");

    let mut figures = Vec::new();
    for i in 0..2 {
        if i == 0 {
            world.history.mark(RECOVER_FROM);
        }
        let node = &mut world.nodes[i];
        let stopped = tokio::task::block_in_place(|| node.sigterm(Duration::from_secs(20)));
        let carried_on = load.progress(100, Duration::from_secs(30)).await.expect("traffic goes on at the other node");
        tokio::task::block_in_place(|| node.start_again());
        load.progress(100, Duration::from_secs(30)).await.expect("traffic goes on after the node is back");
        figures.push(format!(
            "node {i}: stopped in {} ms, 100 acknowledgements {} ms later",
            stopped.as_millis(),
            carried_on.as_millis()
        ));
    }
    let clients = load.stop().await;
    let closes: Vec<Option<u16>> = clients.iter().flat_map(|c| c.closes.iter().copied()).collect();
    let going_away = closes.iter().filter(|c| **c == Some(1001)).count();
    let report = finish("rolling-restart", &world, clients).await;
    println!(
        "chaos rolling-restart: {}; sockets closed: {} with 1001, {} otherwise",
        figures.join("; "),
        going_away,
        closes.len() - going_away
    );
    report.assert_clean();
    assert!(going_away >= 10, "the nodes closed their sockets with 1001: {closes:?}");
    assert_eq!(going_away, closes.len(), "every socket the server ended got 1001: {closes:?}");
}
