//! Operations endpoints: `/healthz` (the process answers), `/readyz` (every backend
//! answers, with the bus backlog), `/metrics` (Prometheus text).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use frontdesk_core::error::BackendResult;
use serde_json::{json, Value};

use crate::AppState;

/// How long `/readyz` waits for one backend before calling it down.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "nodeId": app.inner.node_id,
        "uptimeSeconds": app.inner.started.elapsed().as_secs(),
    }))
}

async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let b = &app.inner.backends;
    let (state, pubsub_ok, bus, store) = tokio::join!(
        check(b.state.kind(), b.state.ping()),
        // Pub/sub shares the state store's server in every deployment mode, and publishing
        // to a channel nobody hears is the cheapest probe it has.
        check(b.pubsub.kind(), b.pubsub.publish("fd:ping", Bytes::from_static(b"ping"))),
        check(b.bus.kind(), b.bus.ping()),
        check(b.store.kind(), b.store.ping()),
    );
    let mut backlog = serde_json::Map::new();
    for queue in &app.inner.queues {
        if let Ok(Ok(n)) = tokio::time::timeout(PING_TIMEOUT, b.bus.backlog(queue)).await {
            backlog.insert(queue.clone(), json!(n));
            metrics::gauge!("frontdesk_bus_backlog", "queue" => queue.clone()).set(n as f64);
        }
    }
    let ready = [&state, &pubsub_ok, &bus, &store].iter().all(|c| c["ok"] == json!(true));
    for (name, c) in [("state", &state), ("pubsub", &pubsub_ok), ("bus", &bus), ("database", &store)] {
        metrics::gauge!("frontdesk_backend_up", "backend" => name).set(if c["ok"] == json!(true) { 1.0 } else { 0.0 });
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut bus = bus;
    bus["backlog"] = Value::Object(backlog);
    (
        status,
        Json(json!({
            "ready": ready,
            "nodeId": app.inner.node_id,
            "backends": { "state": state, "pubsub": pubsub_ok, "bus": bus, "database": store },
        })),
    )
}

async fn check(kind: &'static str, ping: impl std::future::Future<Output = BackendResult<()>>) -> Value {
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(())) => json!({ "kind": kind, "ok": true }),
        Ok(Err(e)) => json!({ "kind": kind, "ok": false, "error": e.to_string() }),
        Err(_) => json!({ "kind": kind, "ok": false, "error": format!("no answer within {PING_TIMEOUT:?}") }),
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.inner.metrics.render())
}
