//! `frontdesk bench`: a load generator in the binary (as `redis-benchmark` ships with Redis)
//! that drives a running Frontdesk over its public API only, bounded in time, and prints a
//! table or `--json`.
//!
//! - [`chat`]: concurrent chats, latency percentiles, delivered messages/s, lost and
//!   duplicated messages (both must be 0), server CPU per delivered message.
//! - [`idle`]: sockets that only heartbeat; server memory per connection.
//! - [`visits`]: page-visit events over HTTP keep-alive.
//! - [`storm`]: many chat requests at once; dispatch under load.

pub mod chat;
mod client;
pub mod idle;
pub mod ledger;
mod probe;
pub mod report;
pub mod storm;
pub mod visits;

use clap::{Args, Subcommand};

#[derive(Debug, Clone, Subcommand)]
pub enum BenchCommand {
    /// Concurrent chats: visitors send, agents reply; latency, throughput, loss, duplicates.
    Chat(chat::ChatArgs),
    /// Idle visitor sockets with heartbeats; server memory per connection (needs --server-pid).
    Idle(idle::IdleArgs),
    /// visitor.page_visit over HTTP keep-alive; events/s.
    Visits(visits::VisitsArgs),
    /// Many visitors request chats at once; dispatch latency and correctness.
    Storm(storm::StormArgs),
}

/// Settings every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The running Frontdesk to drive (only this address is contacted, and `chat`'s
    /// `--agent-url` when given).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin of the site to use (creates the bench's agents).
    #[arg(long, env = "FRONTDESK_ADMIN_EMAIL", default_value = "admin@example.com")]
    pub admin_email: String,
    #[arg(long, env = "FRONTDESK_ADMIN_PASSWORD")]
    pub admin_password: String,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The server's process id, to report its CPU time and memory; several nodes'
    /// (comma-separated, or the flag repeated) are summed.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Spread client sockets over 127.0.0.1 … 127.0.0.N.
    #[arg(long, default_value_t = 1)]
    pub sources: u8,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl BenchCommand {
    fn common(&self) -> &Common {
        match self {
            BenchCommand::Chat(a) => &a.common,
            BenchCommand::Idle(a) => &a.common,
            BenchCommand::Visits(a) => &a.common,
            BenchCommand::Storm(a) => &a.common,
        }
    }
}

/// Runs a scenario and prints its report.
pub async fn run(command: BenchCommand) -> anyhow::Result<report::Report> {
    let json = command.common().json;
    let report = match command {
        BenchCommand::Chat(a) => chat::run(a).await?,
        BenchCommand::Idle(a) => idle::run(a).await?,
        BenchCommand::Visits(a) => visits::run(a).await?,
        BenchCommand::Storm(a) => storm::run(a).await?,
    };
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(report)
}
