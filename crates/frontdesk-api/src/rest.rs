//! REST admin routes (SPEC §5.3), mapped onto events: each route names the event it runs,
//! and its handler builds the `Request` exactly as `POST /api/v1/{event}` does (body,
//! bearer, client info), with the path's `{id}` merged into `data` as `"id"` and, for `GET`,
//! the query string's parameters merged into `data` as strings (the body's own fields and
//! the path's id win). The answer is the event's `ReturnResult` with its status (`201
//! Created` for a successful create); a successful `*.export` whose data carries
//! `contentType` and `body` is sent as that document instead (e.g. a CSV download).
//!
//! The table is the whole mapping: a new resource is a new row, and its rules live in the
//! event's pipeline, not here.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use frontdesk_core::pipeline::{Failure, Request, Transport};
use serde_json::Value;

use crate::event::{bearer, client_info, decode_data, json_response, MAX_BODY};
use crate::{wire, AppState};

/// One REST route: method, path (`{id}` is the resource id), event.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub event: &'static str,
}

/// Every REST route and the event it runs.
pub fn table() -> Vec<Route> {
    let r = |method: Method, path: &'static str, event: &'static str| Route { method, path, event };
    vec![
        r(Method::GET, "/api/v1/agents", "agents.list"),
        r(Method::POST, "/api/v1/agents", "agents.create"),
        r(Method::GET, "/api/v1/agents/{id}", "agents.get"),
        r(Method::PATCH, "/api/v1/agents/{id}", "agents.update"),
        r(Method::DELETE, "/api/v1/agents/{id}", "agents.delete"),
        r(Method::GET, "/api/v1/departments", "departments.list"),
        r(Method::POST, "/api/v1/departments", "departments.create"),
        r(Method::GET, "/api/v1/departments/{id}", "departments.get"),
        r(Method::PATCH, "/api/v1/departments/{id}", "departments.update"),
        r(Method::DELETE, "/api/v1/departments/{id}", "departments.delete"),
        r(Method::POST, "/api/v1/sites", "sites.create"),
        r(Method::GET, "/api/v1/chats", "chats.list"),
        r(Method::GET, "/api/v1/chats/{id}", "chats.get"),
        r(Method::GET, "/api/v1/chats/{id}/export", "chats.export"),
        r(Method::GET, "/api/v1/reports/chats", "reports.chats"),
        r(Method::GET, "/api/v1/reports/wait-times", "reports.wait_times"),
        r(Method::GET, "/api/v1/reports/first-response", "reports.first_response"),
        r(Method::GET, "/api/v1/reports/durations", "reports.durations"),
        r(Method::GET, "/api/v1/reports/ratings", "reports.ratings"),
        r(Method::GET, "/api/v1/reports/agent-time", "reports.agent_time"),
        r(Method::PATCH, "/api/v1/sites/{id}/settings", "sites.update_settings"),
        r(Method::POST, "/api/v1/retention/run", "retention.run"),
        r(Method::POST, "/api/v1/visitors/{id}/erase", "visitors.erase"),
        r(Method::GET, "/api/v1/audit-log", "audit_log.list"),
        r(Method::GET, "/api/v1/offline-messages", "offline_messages.list"),
        r(Method::GET, "/api/v1/offline-messages/{id}", "offline_messages.get"),
        r(Method::PATCH, "/api/v1/offline-messages/{id}", "offline_messages.update"),
    ]
}

/// The routes of [`table`], for `crate::router` to merge.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for route in table() {
        let Ok(filter) = MethodFilter::try_from(route.method.clone()) else {
            tracing::error!(method = %route.method, path = route.path, "REST route with an unroutable method skipped");
            continue;
        };
        let event = route.event;
        let handler = if route.path.contains("{id}") {
            on(
                filter,
                move |State(app): State<AppState>,
                      Path(id): Path<String>,
                      Query(query): Query<Vec<(String, String)>>,
                      ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      headers: HeaderMap,
                      body: Body| async move {
                    call(app, event, Some(id), query, peer, headers, body).await
                },
            )
        } else {
            on(
                filter,
                move |State(app): State<AppState>,
                      Query(query): Query<Vec<(String, String)>>,
                      ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      headers: HeaderMap,
                      body: Body| async move { call(app, event, None, query, peer, headers, body).await },
            )
        };
        router = router.route(route.path, handler);
    }
    router
}

async fn call(
    app: AppState,
    event: &'static str,
    id: Option<String>,
    query: Vec<(String, String)>,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let get = is_get(event);
    let result = match request(event, id, if get { query } else { Vec::new() }, peer, &headers, body).await {
        Ok(request) => app.inner.engine.call(request).await,
        Err(failure) => Err(failure),
    };
    if let Ok(response) = &result {
        if let Some(document) = export_document(event, &response.data) {
            return document;
        }
    }
    let (mut status, body) = wire::encode(&result);
    if status == StatusCode::OK && is_create(event) {
        status = StatusCode::CREATED;
    }
    json_response((status, body))
}

fn is_create(event: &str) -> bool {
    event.ends_with(".create")
}

/// Whether the event's route is a `GET` (its query string is merged into `data`).
fn is_get(event: &str) -> bool {
    table().iter().any(|r| r.event == event && r.method == Method::GET)
}

/// A successful export's document (`contentType`, `body`, optional `filename`) as the
/// response itself.
fn export_document(event: &str, data: &serde_json::Map<String, Value>) -> Option<Response> {
    if !event.ends_with(".export") {
        return None;
    }
    let content_type = HeaderValue::from_str(data.get("contentType")?.as_str()?).ok()?;
    let body = data.get("body")?.as_str()?.to_owned();
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    let filename = data
        .get("filename")
        .and_then(Value::as_str)
        .filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    if let Some(disposition) =
        filename.and_then(|f| HeaderValue::from_str(&format!("attachment; filename=\"{f}\"")).ok())
    {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, disposition);
    }
    Some(response)
}

async fn request(
    event: &str,
    id: Option<String>,
    query: Vec<(String, String)>,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<Request, Failure> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Failure::new(
            frontdesk_core::error::ErrorKind::PayloadTooLarge,
            format!("the request body is larger than {MAX_BODY} bytes"),
        )
    })?;
    let mut data = decode_data(&bytes)?;
    if let Value::Object(map) = &mut data {
        for (key, value) in query {
            map.entry(key).or_insert(Value::String(value));
        }
    }
    if let (Some(id), Value::Object(map)) = (id, &mut data) {
        // The path names the resource; an `id` in the body cannot point elsewhere.
        map.insert("id".into(), Value::String(id));
    }
    Ok(Request {
        event: event.to_string(),
        data,
        bearer: bearer(headers),
        offsets: None,
        client: client_info(Transport::Http, peer, headers, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_unique_and_names_an_event() {
        let table = table();
        let mut seen = std::collections::HashSet::new();
        for r in &table {
            assert!(seen.insert((r.method.clone(), r.path)), "{} {} twice", r.method, r.path);
            assert!(r.path.starts_with("/api/v1/"), "{}", r.path);
            assert!(r.event.contains('.'), "{}", r.event);
        }
        assert!(is_create("agents.create") && !is_create("agents.update"));
        assert!(is_get("chats.list") && !is_get("agents.create"));
    }
}
