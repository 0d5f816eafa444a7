//! The `frontdesk` binary's library: configuration, the composition root that picks the
//! backends, first-start bootstrap, and [`run`], which serves until told to stop.
//!
//! # Layout
//! - [`config`] — the typed, layered, validated configuration.
//! - [`wiring`] — config → live backends and the node's identity.
//! - [`bootstrap`] — the first site and admin.
//! - [`bench`] — `frontdesk bench`, the load generator.
//! - [`cli`] — the command line (`serve`, `migrate`, `site add`, `agent add`, `pipelines`).
//! - [`reload`] — pipeline-file reload on SIGHUP and on change.
//! - [`telemetry`] — logs.
//!
//! Architecture Invariant: this is the only crate that names every backend.

pub mod bench;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod reload;
pub mod telemetry;
pub mod wiring;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;

/// Runs a node on `listener` until `shutdown` resolves; then stops accepting, lets requests
/// in flight finish (up to `shutdown_timeout_ms`), and releases the node id.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_observed(config, listener, shutdown, |_| {}).await
}

/// [`run`], handing the node's backends to `observe` once they are up — how in-process
/// tests reach the embedded state store, as a cluster test reaches Redis.
pub async fn run_observed(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    observe: impl FnOnce(&frontdesk_core::backends::Backends) + Send,
) -> anyhow::Result<()> {
    let node = wiring::start(&config).await?;
    observe(&node.backends);
    if let Some(first) = bootstrap::ensure_first_site(
        node.backends.store.as_ref(),
        &node.ids,
        &config.site_name,
        &config.admin_email,
        config.admin_password.as_ref().map(|p| p.0.as_str()),
    )
    .await?
    {
        tracing::info!(site_id = %first.site.id, admin = %first.admin.email, "created the first site and its admin");
        if let Some(password) = &first.generated_password {
            // Printed once, on the console of whoever started the server; never logged.
            eprintln!(
                "\n  Frontdesk created site {:?} (id {}) and admin {}.\n  Admin password (shown only this once): {password}\n",
                first.site.name, first.site.id, first.admin.email
            );
        }
    }

    // The recorder goes first: the engine makes its metric handles when it compiles.
    let metrics = frontdesk_api::metrics::install();
    let hub = frontdesk_api::push::PushHub::new(
        node.ids.node_id(),
        node.backends.state.clone(),
        node.backends.pubsub.clone(),
        // In-memory state is this process's own: no other node can hold a socket.
        matches!(config.state, config::StateBackend::Memory),
    );
    let hub_tasks = hub.start().await?;
    let engine = wiring::engine(&config, &node, hub.clone()).await?;
    engine
        .call_internal("server.start", serde_json::json!({}))
        .await
        .map_err(|f| anyhow::anyhow!("server.start failed: {f}"))?;
    let reloader = reload::spawn(engine.clone());
    let generation_watch = node.generation.watch(std::time::Duration::from_secs(1));
    // Queues whose backlog /readyz reports (a database outage shows as a growing history queue).
    let queues = vec![engine.async_queue().to_string(), frontdesk_core::history::HISTORY_QUEUE.to_string()];
    let app = frontdesk_api::AppState::new(
        node.backends.clone(),
        engine.clone(),
        hub.clone(),
        node.ids.node_id(),
        metrics,
        queues,
        usize::try_from(config.ws_max_connections_per_ip).unwrap_or(usize::MAX),
    );
    let router = frontdesk_api::router(app.clone());
    let addr = listener.local_addr()?;
    tracing::info!(%addr, node_id = node.ids.node_id(), state = node.backends.state.kind(),
        bus = node.backends.bus.kind(), database = node.backends.store.kind(), "frontdesk is listening");

    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let sockets = app.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        sockets.begin_shutdown();
        let _ = stopping_tx.send(());
    };
    let grace = Duration::from_millis(config.shutdown_timeout_ms);
    let server = frontdesk_api::serve(listener, router, signal);
    tokio::pin!(server);
    let deadline = async {
        let _ = stopping_rx.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = &mut server => {
            result?;
            // Upgraded sockets outlive the HTTP server's own graceful shutdown: let each
            // send its 1001 and end (the grace period again at most; they take milliseconds).
            if !app.sockets_closed(grace).await {
                tracing::warn!(?grace, "sockets still open after the shutdown timeout; dropping them");
            }
        }
        _ = deadline => {
            tracing::warn!(?grace, "requests still in flight after the shutdown timeout; closing them");
        }
    }

    reloader.abort();
    generation_watch.abort();
    for task in hub_tasks {
        task.abort();
    }
    // server.end drains the async-stage workers: jobs in hand finish, the rest stay queued.
    if let Err(f) = engine.call_internal("server.end", serde_json::json!({})).await {
        tracing::warn!(error = %f, "server.end failed");
    }
    node.backends.bus.close().await;
    if let Some(lease) = node.lease {
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "could not release the node id; it lapses by itself");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
