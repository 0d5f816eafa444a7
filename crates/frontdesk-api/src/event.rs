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

/// Property tests (issue #8): any body and any offset headers decode to a request or to a
/// `bad_request` that says why, never a panic. Cases: `PROPTEST_CASES` (default 256).
#[cfg(test)]
mod props {
    use super::*;
    use frontdesk_core::error::ErrorKind;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_an_object_or_a_bad_request(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            match decode_data(&bytes) {
                Ok(v) => prop_assert!(v.is_object()),
                Err(f) => prop_assert!(f.kind == ErrorKind::BadRequest && !f.message.is_empty(), "{:?}", f),
            }
        }

        #[test]
        fn any_json_body_is_taken_exactly_when_it_is_an_object(v in json_value()) {
            let text = serde_json::to_vec(&v).expect("serialise");
            // As the parser reads it: serde_json's default float parsing may differ from the
            // written f64 in the last digit (its `float_roundtrip` feature is off).
            let read: Value = serde_json::from_slice(&text).expect("parse");
            match decode_data(&text) {
                Ok(back) => prop_assert_eq!(back, read),
                Err(f) => {
                    prop_assert!(!v.is_object());
                    prop_assert_eq!(f.message, "the body must be a JSON object");
                }
            }
        }

        #[test]
        fn any_offset_headers_are_numbers_or_named_refusals(visitor in ".{0,24}", agent in "[ -~]{0,24}") {
            let mut h = HeaderMap::new();
            for (name, value) in [("x-visitor-data-offset", &visitor), ("x-agent-data-offset", &agent)] {
                if let Ok(v) = value.parse() {
                    h.insert(name, v);
                }
            }
            let number = |name: &str| {
                h.get(name).map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()).filter(|n| *n >= 0))
            };
            let (v, a) = (number("x-visitor-data-offset"), number("x-agent-data-offset"));
            match offsets(&h) {
                Ok(None) => prop_assert!(v.is_none() && a.is_none()),
                Ok(Some(o)) => {
                    prop_assert_eq!(o.visitor_data_offset, v.flatten().unwrap_or(0));
                    prop_assert_eq!(o.agent_data_offset, a.flatten().unwrap_or(0));
                }
                Err(f) => {
                    prop_assert_eq!(f.kind, ErrorKind::BadRequest);
                    let bad_visitor = v == Some(None);
                    let named = if bad_visitor { "x-visitor-data-offset" } else { "x-agent-data-offset" };
                    prop_assert!(f.message.contains(named), "{}", f.message);
                }
            }
        }
    }
}
