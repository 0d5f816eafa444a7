//! Transport — SPEC §3's Map layer: HTTP and WebSocket with axum, the wire DTOs, the one
//! place where error kinds become HTTP statuses, and the operations endpoints.
//!
//! # Layout
//! - [`event`] — `POST /api/v1/{event}` and `GET /api/v1/events`.
//! - [`ws`] — `GET /api/v1/ws`, events as frames, and pushes.
//! - [`push`] — the push hub: sockets by route key, across nodes via pub/sub.
//! - [`wire`] — the `ReturnResult` encoding.
//! - [`ops`] — `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`] — the Prometheus recorder and the per-request metrics layer.
//! - [`status`] — error kind → HTTP status (SPEC §5.2), in one place.
//!
//! Architecture Invariant: no business rule lives here; this crate only maps HTTP to the
//! layers below and back.

pub mod assets;
pub mod event;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod push;
pub mod rest;
pub mod status;
pub mod wire;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use frontdesk_core::backends::Backends;
use frontdesk_core::pipeline::Engine;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What every handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<AppInner>,
}

pub struct AppInner {
    pub backends: Backends,
    pub engine: Arc<Engine>,
    pub hub: Arc<push::PushHub>,
    pub node_id: u16,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    /// Bus queues whose backlog `/readyz` and `/metrics` report.
    pub queues: Vec<String>,
    /// Flips to true when the node starts shutting down; sockets close with 1001.
    pub shutdown: watch::Sender<bool>,
    /// Open sockets per client address, capped (`ws_max_connections_per_ip`).
    pub sockets_per_ip: Arc<ws::SocketsPerIp>,
}

impl AppState {
    pub fn new(
        backends: Backends,
        engine: Arc<Engine>,
        hub: Arc<push::PushHub>,
        node_id: u16,
        metrics: PrometheusHandle,
        queues: Vec<String>,
        max_sockets_per_ip: usize,
    ) -> Self {
        let (shutdown, _) = watch::channel(false);
        let sockets_per_ip = ws::SocketsPerIp::new(max_sockets_per_ip);
        let inner = AppInner {
            backends,
            engine,
            hub,
            node_id,
            metrics,
            started: Instant::now(),
            queues,
            shutdown,
            sockets_per_ip,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Tells every socket the node is going away.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Waits (up to `within`) until every socket session has ended, its close frame sent:
    /// the HTTP server's graceful shutdown stops tracking a connection once it is upgraded.
    /// True when none is left.
    pub async fn sockets_closed(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.inner.sockets_per_ip.none_open() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ops::routes())
        .merge(assets::routes())
        .route("/api/v1/events", axum::routing::get(event::pipelines))
        .route("/api/v1/openapi.json", axum::routing::get(openapi::document))
        .route("/api/v1/ws", axum::routing::get(ws::upgrade))
        .route("/api/v1/{event}", axum::routing::post(event::call))
        .merge(rest::routes())
        .layer(axum::middleware::from_fn(metrics::track_requests))
        // The widget calls the event API from shops' pages, on any origin.
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([
                    axum::http::header::CONTENT_TYPE,
                    axum::http::header::AUTHORIZATION,
                    axum::http::HeaderName::from_static("x-visitor-data-offset"),
                    axum::http::HeaderName::from_static("x-agent-data-offset"),
                ]),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // TCP_NODELAY on every connection: a socket's frames are small and often come in twos
    // (an answer, then a push), and Nagle's algorithm held the second one back until the
    // client acknowledged the first — up to its delayed-ACK timer, 40 ms and more (issue
    // #7: `bench chat` at a steady rate had a p50 under 1 ms and a p90 of ~160 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
