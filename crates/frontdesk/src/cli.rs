//! The command line. Settings flags are global, so `frontdesk --database … migrate` and
//! `frontdesk serve --database …` both work; they sit above the environment and the config
//! file (see [`crate::config`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use frontdesk_core::store::Role;

use crate::config::RawSettings;

#[derive(Debug, Parser)]
#[command(
    name = "frontdesk",
    version,
    about = "Frontdesk: a live-chat and customer-service server in one binary.",
    long_about = "Frontdesk: a live-chat and customer-service server in one binary.\n\n\
        With nothing configured, `frontdesk serve` runs on embedded defaults: it listens on \
        127.0.0.1:8080 and keeps everything under ./frontdesk-data (SQLite, the queue spool). \
        Point FRONTDESK_STATE and FRONTDESK_BUS at Redis and FRONTDESK_DATABASE at PostgreSQL \
        to run many nodes as one.\n\n\
        Settings come from (lowest to highest precedence) the built-in defaults, a config file \
        (--config or FRONTDESK_CONFIG), FRONTDESK_* environment variables, and these flags."
)]
pub struct Cli {
    /// A TOML config file (keys as in config/default.toml).
    #[arg(long, global = true, env = "FRONTDESK_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub settings: SettingsArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP and WebSocket API, widget and console, queue consumers.
    Serve,
    /// Apply the durable store's pending migrations and exit.
    Migrate,
    /// Manage sites (tenants).
    #[command(subcommand)]
    Site(SiteCommand),
    /// Manage agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Print the built-in pipeline file (every event and its stages).
    Pipelines,
    /// Drive a running Frontdesk with load and report latency, throughput, loss and cost.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Create a site and its first admin; prints {"siteId", "adminAgentId"} as JSON.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        /// At least 8 characters; generated and printed when omitted.
        #[arg(long, env = "FRONTDESK_NEW_ADMIN_PASSWORD")]
        admin_password: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent in a site; prints {"agentId"} as JSON.
    Add {
        /// The site's id.
        #[arg(long)]
        site: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// admin, supervisor or agent.
        #[arg(long, default_value = "agent", value_parser = parse_role)]
        role: Role,
        /// At least 8 characters; generated and printed when omitted.
        #[arg(long, env = "FRONTDESK_NEW_AGENT_PASSWORD")]
        password: Option<String>,
        /// Concurrent chats the agent takes.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=100))]
        max_chats: i32,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Settings as flags; each overrides its FRONTDESK_* variable and config-file key.
#[derive(Debug, Clone, Default, Args)]
pub struct SettingsArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory for SQLite and the queue spool [default: ./frontdesk-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Runtime state: "memory" or a redis:// URL [default: memory].
    #[arg(long, global = true, value_name = "memory|URL")]
    pub state: Option<String>,
    /// Durable store: a sqlite:// or postgres:// URL [default: SQLite in the data directory].
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// Message queue: "local" or a redis:// URL [default: local].
    #[arg(long, global = true, value_name = "local|URL")]
    pub bus: Option<String>,
    /// Snowflake node id 0..=1023 [default: 0, or leased in Redis].
    #[arg(long, global = true, value_name = "N")]
    pub node_id: Option<u32>,
    /// A pipeline file replacing the built-in one.
    #[arg(long, global = true, value_name = "PATH")]
    pub pipelines: Option<PathBuf>,
    /// Log format: text or json [default: text].
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

impl SettingsArgs {
    pub fn to_raw(&self) -> RawSettings {
        RawSettings {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            state: self.state.clone(),
            database: self.database.clone(),
            bus: self.bus.clone(),
            node_id: self.node_id,
            pipelines: self.pipelines.clone(),
            log_format: self.log_format.clone(),
            ..RawSettings::default()
        }
    }
}
