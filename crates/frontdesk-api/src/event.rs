//! `POST /api/v1/{event}` (SPEC §5.1) and the REST view of the pipelines
//! (`GET /api/v1/events`): decode the call, hand it to the engine, encode the answer.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use frontdesk_core::pipeline::{ClientInfo, Failure, Offsets, Request, Transport};
use serde_json::Value;

use crate::{wire, AppState};

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

pub async fn call(
    State(app): State<AppState>,
    Path(event): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match decode(&event, peer, &headers, body).await {
        Ok(request) => app.inner.engine.call(request).await,
        Err(failure) => Err(failure),
    };
    json_response(wire::encode(&result))
}

async fn decode(event: &str, peer: SocketAddr, headers: &HeaderMap, body: Body) -> Result<Request, Failure> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Failure::new(
            frontdesk_core::error::ErrorKind::PayloadTooLarge,
            format!("the request body is larger than {MAX_BODY} bytes"),
        )
    })?;
    Ok(Request {
        event: event.to_string(),
        data: decode_data(&bytes)?,
        bearer: bearer(headers),
        offsets: offsets(headers)?,
        client: client_info(Transport::Http, peer, headers, None),
    })
}

/// The body as a JSON object; empty means `{}`.
pub fn decode_data(bytes: &[u8]) -> Result<Value, Failure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Failure::bad_request("the body must be a JSON object")),
        Err(e) => Err(Failure::bad_request(format!("malformed JSON at line {} column {}: {e}", e.line(), e.column()))),
    }
}

/// `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// `X-Visitor-Data-Offset` / `X-Agent-Data-Offset` (SPEC §6); absent means 0.
fn offsets(headers: &HeaderMap) -> Result<Option<Offsets>, Failure> {
    let read = |name: &str| -> Result<Option<i64>, Failure> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| Failure::bad_request(format!("header {name}: expected a whole number ≥ 0"))),
        }
    };
    let visitor = read("x-visitor-data-offset")?;
    let agent = read("x-agent-data-offset")?;
    Ok((visitor.is_some() || agent.is_some())
        .then(|| Offsets { visitor_data_offset: visitor.unwrap_or(0), agent_data_offset: agent.unwrap_or(0) }))
}

pub fn client_info(
    transport: Transport,
    peer: SocketAddr,
    headers: &HeaderMap,
    connection_id: Option<String>,
) -> ClientInfo {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    ClientInfo {
        transport,
        ip: Some(peer.ip()),
        origin: text(header::ORIGIN),
        user_agent: text(header::USER_AGENT),
        connection_id,
    }
}

/// `GET /api/v1/events`: the active pipeline file (admins only), in its own format.
pub async fn pipelines(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let request = Request {
        event: "pipelines.get".into(),
        data: Value::Object(Default::default()),
        bearer: bearer(&headers),
        offsets: None,
        client: client_info(Transport::Http, peer, &headers, None),
    };
    match app.inner.engine.call(request).await {
        Ok(mut response) => match response.data.remove("pipelines") {
            Some(file) => json_response((StatusCode::OK, wire::to_json(&file))),
            None => {
                json_response(wire::encode(&Err(Failure::internal("the pipelines.get event answered no pipelines"))))
            }
        },
        Err(failure) => json_response(wire::encode(&Err(failure))),
    }
}

pub fn json_response((status, body): (StatusCode, Vec<u8>)) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], Bytes::from(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_to_objects_or_say_why_not() {
        assert_eq!(decode_data(b"").expect("empty"), serde_json::json!({}));
        assert_eq!(decode_data(b" {\"a\":1} ").expect("obj"), serde_json::json!({"a": 1}));
        let e = decode_data(b"[1]").expect_err("array");
        assert!(e.message.contains("JSON object"));
        let e = decode_data(b"{\"a\":").expect_err("malformed");
        assert!(e.message.starts_with("malformed JSON at line 1 column"), "{}", e.message);
    }

    #[test]
    fn offsets_come_from_headers_and_must_be_numbers() {
        let mut h = HeaderMap::new();
        assert_eq!(offsets(&h).expect("none"), None);
        h.insert("x-visitor-data-offset", "3".parse().expect("hv"));
        assert_eq!(offsets(&h).expect("some"), Some(Offsets { visitor_data_offset: 3, agent_data_offset: 0 }));
        h.insert("x-agent-data-offset", "-1".parse().expect("hv"));
        let e = offsets(&h).expect_err("negative");
        assert!(e.message.contains("x-agent-data-offset"), "{}", e.message);
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc".parse().expect("hv"));
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("hv"));
        assert_eq!(bearer(&h), None);
    }
}
