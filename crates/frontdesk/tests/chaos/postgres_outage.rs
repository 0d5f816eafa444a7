//! PostgreSQL crashed (`pg_ctl stop -m immediate`) under load in a two-node cluster and
//! started again: chats go on meanwhile (the runtime state is in Redis; history jobs wait on
//! the bus), the backlog drains once the database is back, and the history checker finds
//! every acknowledged message in the transcripts exactly once — nothing lost, nothing
//! doubled, the same order every reader saw.

use std::time::{Duration, Instant};

use frontdesk_testkit::env::PostgresProcess;

use crate::chaos_support::checker::RECOVER_FROM;
use crate::chaos_support::world::{clients, World};
use crate::chaos_support::{finish, long, Load};
use crate::support::create_postgres_database;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_under_load_chat_goes_on_and_the_transcripts_hold_every_acknowledged_message() {
    let mut pg = tokio::task::spawn_blocking(PostgresProcess::start).await.expect("postgres");
    let db = create_postgres_database(&pg.url()).await;
    let world = World::start_on(2, db).await;
    let (agents, per_agent, outage) = if long() { (30, 2, 30) } else { (8, 2, 8) };
    let mut teams = world.teams(0, agents, per_agent).await;
    teams.extend(world.teams(1, agents / 2, per_agent).await);
    let load = Load::start(clients(teams), Duration::from_millis(100), Duration::from_secs(60));
    load.progress(200, Duration::from_secs(30)).await.expect("traffic flows before the fault");

    let before = load.acked();
    world.history.mark(RECOVER_FROM);
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .expect("stop postgres");
    let down = Instant::now();
    let during = load.progress(200, Duration::from_secs(30)).await.expect("chat goes on while the database is down");
    tokio::time::sleep(Duration::from_secs(outage).saturating_sub(down.elapsed())).await;
    let acked_during = load.acked() - before;
    let _pg = tokio::task::spawn_blocking(move || {
        pg.start_again();
        pg
    })
    .await
    .expect("start postgres again");
    let back = Instant::now();
    load.progress(100, Duration::from_secs(30)).await.expect("traffic goes on after the database is back");
    let clients = load.stop().await;

    // `finish` waits until every chat's transcript holds what its visitor has, then checks.
    let report = finish("postgres-outage", &world, clients).await;
    println!(
        "chaos postgres-outage: database down {} s; {acked_during} messages acknowledged meanwhile (200 within {} ms); \
         transcripts complete {} ms after it came back",
        outage,
        during.as_millis(),
        back.elapsed().as_millis()
    );
    report.assert_clean();
    assert!(acked_during >= 200, "chat went on during the outage: {report}");
}
