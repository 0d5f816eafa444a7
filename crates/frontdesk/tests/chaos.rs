//! The chaos half of the reliability suite (issue #8): real `frontdesk serve` processes on
//! loopback with a Redis and a PostgreSQL database of the test's own, visitors and agents
//! conversing over WebSockets while a fault is injected, and the history checker
//! ([`chaos_support::checker`]) judging afterwards that nothing acknowledged was lost,
//! nothing doubled, order and offsets held and nothing crossed sites.
//!
//! - [`checker_tests`]: the checker catches hand-made histories that break each invariant;
//! - [`node_kill`]: a node SIGKILLed under load in a two-node cluster;
//! - [`redis_restart`]: Redis restarted empty under load (generation change, rebuilds);
//! - [`redis_pause`]: Redis SIGSTOPped for 10 s (fast `unavailable`, bounded memory, recovery);
//! - [`rolling_restart`]: both nodes SIGTERMed in turn (close 1001, reconnect, no loss);
//! - [`reconnect_storm`]: ~2,000 sockets reconnecting after a node loss;
//! - [`postgres_outage`]: PostgreSQL crashed under load and restarted (chat goes on, the
//!   write-behind backlog drains, the transcripts hold exactly what was acknowledged).
//!
//! Each prints its figures (`cargo nextest run -p frontdesk --test chaos --no-capture`);
//! `FRONTDESK_CHAOS_LONG=1` runs the heavier versions.

mod chaos_support;
mod support;

#[path = "chaos/checker.rs"]
mod checker_tests;
#[path = "chaos/node_kill.rs"]
mod node_kill;
#[path = "chaos/postgres_outage.rs"]
mod postgres_outage;
#[path = "chaos/reconnect_storm.rs"]
mod reconnect_storm;
#[path = "chaos/redis_pause.rs"]
mod redis_pause;
#[path = "chaos/redis_restart.rs"]
mod redis_restart;
#[path = "chaos/rolling_restart.rs"]
mod rolling_restart;
