//! `frontdesk`: parse the command line, load the configuration, run the command.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use frontdesk::bootstrap::{self, NewSite};
use frontdesk::cli::{AgentCommand, Cli, Command, SiteCommand};
use frontdesk::config::{Config, StateBackend};
use frontdesk::{telemetry, wiring};
use frontdesk_core::id::{Id, IdGenerator};
use rand::distr::{Alphanumeric, SampleString};

/// mimalloc instead of glibc's allocator: a message's path allocates many small JSON values
/// and buffers, and glibc spent a quarter of the server's CPU in malloc/free under
/// `frontdesk bench chat` (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), &cli.settings.to_raw()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frontdesk: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("frontdesk: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("frontdesk: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let stop = shutdown_signal();
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            frontdesk::run(config, listener, stop).await
        }
        Command::Bench(bench) => {
            let report = frontdesk::bench::run(bench).await?;
            // A run that lost or doubled a message fails, so scripts notice.
            let broken = ["lost", "duplicated", "offered_twice", "agents_over_capacity"]
                .iter()
                .filter_map(|k| report.get(k).filter(|v| *v > 0.0).map(|v| format!("{k} = {v}")))
                .collect::<Vec<_>>();
            if !broken.is_empty() {
                anyhow::bail!("the run broke a guarantee: {}", broken.join(", "));
            }
            Ok(())
        }
        Command::Pipelines => {
            println!("{}", frontdesk_modules::BUILTIN_PIPELINES.trim_end());
            Ok(())
        }
        Command::Migrate => {
            let store = wiring::open_store(&config).await?;
            let versions = store.applied_migrations().await?;
            println!("{}", serde_json::json!({ "database": store.kind(), "appliedMigrations": versions }));
            Ok(())
        }
        Command::Site(SiteCommand::Add { name, admin_email, admin_password }) => {
            let store = wiring::open_store(&config).await?;
            let (ids, lease) = admin_ids(&config).await?;
            let (password, generated) = password_or_generated(admin_password);
            let new =
                NewSite { name: &name, admin_email: &admin_email, admin_name: "Admin", admin_password: &password };
            let result = bootstrap::create_site(store.as_ref(), &ids, ids.next()?, &new).await;
            release(lease).await;
            let (site, admin) = result?;
            if generated {
                eprintln!("Admin password (shown only this once): {password}");
            }
            println!("{}", serde_json::json!({ "siteId": site.id, "adminAgentId": admin.id }));
            Ok(())
        }
        Command::Agent(AgentCommand::Add { site, email, name, role, password, max_chats }) => {
            let site_id: Id = site.parse().map_err(|_| anyhow::anyhow!("--site {site:?} is not a site id"))?;
            let store = wiring::open_store(&config).await?;
            if store.site(site_id).await?.is_none() {
                anyhow::bail!("no site with id {site_id}");
            }
            let (ids, lease) = admin_ids(&config).await?;
            let (password, generated) = password_or_generated(password);
            let result = async {
                let mut agent = bootstrap::new_agent(&ids, site_id, &email, &name, &password, role).await?;
                agent.max_chats = max_chats;
                store.insert_agent(&agent).await?;
                anyhow::Ok(agent)
            }
            .await;
            release(lease).await;
            let agent = result?;
            if generated {
                eprintln!("Agent password (shown only this once): {password}");
            }
            println!("{}", serde_json::json!({ "agentId": agent.id }));
            Ok(())
        }
    }
}

/// Ids for a one-shot admin command: a leased node id in cluster mode, so the command can
/// run beside live nodes.
async fn admin_ids(config: &Config) -> anyhow::Result<(IdGenerator, Option<frontdesk_core::lease::NodeLease>)> {
    match config.state {
        StateBackend::Memory => Ok((wiring::admin_ids()?, None)),
        StateBackend::Redis(_) => {
            let (state, _) = wiring::open_state(config).await?;
            let mut leased = config.clone();
            leased.node_id = None;
            wiring::node_identity(&leased, &state).await
        }
    }
}

async fn release(lease: Option<frontdesk_core::lease::NodeLease>) {
    if let Some(lease) = lease {
        let _ = lease.release().await;
    }
}

fn password_or_generated(given: Option<String>) -> (String, bool) {
    match given {
        Some(p) => (p, false),
        None => (Alphanumeric.sample_string(&mut rand::rng(), 20), true),
    }
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when
/// the future is first polled, so a signal during start-up (migrations, bootstrap) is a clean
/// stop instead of the default action, which kills the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
