//! The composition root: turns a [`Config`] into live backends, chosen by URL scheme, the
//! outbound adapters (SMTP), and the node's identity (node id, state generation). The only
//! code that names every backend.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use frontdesk_connect::smtp::SmtpMailer;
use frontdesk_core::backends::Backends;
use frontdesk_core::bus::{Bus, RetryPolicy};
use frontdesk_core::generation::Generation;
use frontdesk_core::id::{IdGenerator, MAX_NODE_ID};
use frontdesk_core::lease::NodeLease;
use frontdesk_core::mail::Mailer;
use frontdesk_core::pubsub::PubSub;
use frontdesk_core::push::Push;
use frontdesk_core::state::StateStore;
use frontdesk_core::store::Store;
use frontdesk_state::local_bus::LocalBus;
use frontdesk_state::memory::{MemoryPubSub, MemoryState};
use frontdesk_state::redis_bus::RedisBus;
use frontdesk_state::redis_state::{RedisPubSub, RedisState};

use frontdesk_core::pipeline::{Engine, EngineConfig, PipelineSource, Registry};
use frontdesk_modules::tokens::Tokens;

use crate::config::{BusBackend, Config, StateBackend};

/// How long a node-id lease lives without renewal.
const NODE_LEASE: Duration = Duration::from_secs(30);

/// A running node's backends and identity.
pub struct Node {
    pub backends: Backends,
    pub ids: IdGenerator,
    /// Held in cluster mode; released at shutdown.
    pub lease: Option<NodeLease>,
    /// The runtime state's generation (SPEC §6), watched while the node runs.
    pub generation: Arc<Generation>,
}

/// Connects the durable store (creating the data directory) and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let store = frontdesk_store::connect(&config.database.0).await.context("cannot open the database")?;
    let applied = store.migrate().await.context("cannot migrate the database")?;
    if !applied.is_empty() {
        tracing::info!(?applied, backend = store.kind(), "applied database migrations");
    }
    Ok(store)
}

pub async fn open_state(config: &Config) -> anyhow::Result<(Arc<dyn StateStore>, Arc<dyn PubSub>)> {
    Ok(match &config.state {
        StateBackend::Memory => {
            let state = Arc::new(MemoryState::new());
            (state, Arc::new(MemoryPubSub::new()))
        }
        StateBackend::Redis(url) => {
            let state = RedisState::connect(&url.0, &config.redis_prefix)
                .await
                .context("cannot reach the Redis state store")?;
            let pubsub =
                RedisPubSub::connect(&url.0, &config.redis_prefix).await.context("cannot reach Redis pub/sub")?;
            (Arc::new(state), Arc::new(pubsub))
        }
    })
}

pub async fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    let policy = RetryPolicy::default();
    Ok(match &config.bus {
        BusBackend::Local => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
            Arc::new(LocalBus::open(&config.data_dir, policy).await.context("cannot open the bus spool")?)
        }
        BusBackend::Redis(url) => Arc::new(
            RedisBus::connect(&url.0, &config.redis_prefix, policy).await.context("cannot reach the Redis bus")?,
        ),
    })
}

/// The node id and its lease: configured or 0 with memory state; leased in Redis otherwise.
pub async fn node_identity(
    config: &Config,
    state: &Arc<dyn StateStore>,
) -> anyhow::Result<(IdGenerator, Option<NodeLease>)> {
    match config.state {
        StateBackend::Memory => {
            let ids = IdGenerator::new(u32::from(config.node_id.unwrap_or(0)))?;
            Ok((ids, None))
        }
        StateBackend::Redis(_) => {
            // The generator starts invalid until the lease says otherwise.
            let probe = IdGenerator::new(0)?;
            let valid = probe.validity();
            let owner = format!("{}-{}", std::process::id(), rand::random::<u64>());
            let lease = match config.node_id {
                Some(id) => NodeLease::acquire_id(state.clone(), id, owner, NODE_LEASE, valid.clone()).await?,
                None => NodeLease::acquire(state.clone(), owner, NODE_LEASE, valid.clone()).await?,
            };
            let ids = IdGenerator::with_validity(u32::from(lease.node_id()), valid)?;
            Ok((ids, Some(lease)))
        }
    }
}

/// Everything `serve` needs, in dependency order: database first (it holds the bootstrap
/// site), then state, node id, bus.
pub async fn start(config: &Config) -> anyhow::Result<Node> {
    let store = open_store(config).await?;
    let (state, pubsub) = open_state(config).await?;
    let generation = Generation::establish(state.clone()).await.context("cannot read the state generation")?;
    let (ids, lease) = node_identity(config, &state).await?;
    let bus = open_bus(config).await?;
    Ok(Node { backends: Backends { state, pubsub, bus, store }, ids, lease, generation })
}

/// An id generator for one-shot admin commands (`site add`, `agent add`) run beside live
/// servers: the highest node id, which `serve` never picks on its own in memory mode.
pub fn admin_ids() -> anyhow::Result<IdGenerator> {
    Ok(IdGenerator::new(u32::from(MAX_NODE_ID))?)
}

/// The SMTP mailer, when `smtp_url` is set.
pub fn mailer(config: &Config) -> anyhow::Result<Option<Arc<dyn Mailer>>> {
    let Some(smtp) = &config.smtp else { return Ok(None) };
    let mailer = SmtpMailer::new(&smtp.url.0, &smtp.from).context("invalid SMTP settings")?;
    Ok(Some(Arc::new(mailer)))
}

/// The pipeline engine with every module registered and the configured pipeline file;
/// modules push through `hub`.
pub async fn engine(config: &Config, node: &Node, hub: Arc<dyn Push>) -> anyhow::Result<Arc<Engine>> {
    let tokens =
        Arc::new(Tokens::load(node.backends.store.as_ref()).await.context("cannot load the token signing key")?);
    let deps = frontdesk_modules::Deps {
        backends: node.backends.clone(),
        ids: node.ids.clone(),
        tokens,
        operator_token: config.operator_token.as_ref().map(|t| t.0.clone()),
        push: hub,
        generation: node.generation.clone(),
        settings: frontdesk_modules::Settings {
            visitor_messages: frontdesk_modules::chat::MessageRate {
                burst: config.visitor_message_burst,
                per_second: config.visitor_message_rate,
            },
            ..frontdesk_modules::Settings::default()
        },
        mailer: mailer(config)?,
    };
    let mut registry = Registry::new();
    frontdesk_modules::register_all(&mut registry, &deps)?;
    let source = match &config.pipelines {
        Some(path) => PipelineSource::File(path.clone()),
        None => PipelineSource::Builtin(frontdesk_modules::BUILTIN_PIPELINES),
    };
    let remote = Arc::new(frontdesk_connect::http_stage::HttpStages::new().context("cannot build the HTTP client")?);
    let engine = Engine::new(registry, source.clone(), node.backends.bus.clone(), remote, EngineConfig::default())
        .map_err(|e| match &source {
            PipelineSource::File(path) => anyhow::anyhow!("refusing pipeline file {}: {e}", path.display()),
            PipelineSource::Builtin(_) => anyhow::anyhow!("the built-in pipeline file is invalid: {e}"),
        })?;
    Ok(engine)
}
