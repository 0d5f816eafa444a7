//! A node SIGKILLed under load in a two-node cluster: its clients lose their sockets and
//! whatever was in flight, reconnect (jittered backoff) to the other node, resend what was
//! not acknowledged with the same clientMessageId, and catch up by offsets; the history
//! checker finds nothing lost, nothing doubled.

use std::time::Duration;

use crate::chaos_support::checker::RECOVER_FROM;
use crate::chaos_support::world::{clients, World};
use crate::chaos_support::{finish, long, Load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing_and_its_clients_carry_on_at_the_other_node() {
    let mut world = World::start(2).await;
    let (agents, per_agent, run_for) = if long() { (30, 2, 60) } else { (8, 2, 3) };
    let mut teams = world.teams(0, agents, per_agent).await;
    teams.extend(world.teams(1, agents / 2, per_agent).await);
    let clients = clients(teams);
    let load = Load::start(clients, Duration::from_millis(100), Duration::from_secs(30));
    load.progress(200, Duration::from_secs(30)).await.expect("traffic flows before the fault");

    world.history.mark(RECOVER_FROM);
    world.nodes[0].sigkill();
    let resumed = load.progress(200, Duration::from_secs(30)).await.expect("traffic goes on at the other node");
    tokio::time::sleep(Duration::from_secs(run_for)).await;
    let clients = load.stop().await;
    assert!(clients.iter().all(|c| !c.is_connected() || c.node() == 1), "every client now talks to node 1");

    let report = finish("node-kill", &world, clients).await;
    println!("chaos node-kill: 200 more acknowledgements {} ms after the kill", resumed.as_millis());
    report.assert_clean();
    assert!(report.acknowledged >= 400, "{report}");
    let recovery = report.recovery.expect("recovery measured");
    assert!(recovery < Duration::from_secs(10), "the slowest client resumed after {recovery:?}");
}
