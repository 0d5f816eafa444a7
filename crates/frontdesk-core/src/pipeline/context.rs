//! What a stage sees and changes: the [`Request`] as the transport decoded it, the
//! resolved [`Caller`], the shared context `values`, and the [`Response`] being built (the
//! `ReturnResult` of SPEC §5.2).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{BackendError, ErrorKind};
use crate::id::Id;
use crate::store::Role;

/// Who is calling, resolved once per request by the `base` stage (`auth/resolve_caller`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum Caller {
    /// No credentials (only events that opt out of `base` accept this).
    #[default]
    Anonymous,
    Visitor {
        site_id: Id,
        visitor_id: Id,
    },
    Agent {
        site_id: Id,
        agent_id: Id,
        role: Role,
        session_id: String,
    },
    /// The installation's operator (`FRONTDESK_OPERATOR_TOKEN`).
    Operator,
    /// The server itself: `server.start`, `server.end`, async stages' replays.
    System,
}

impl Caller {
    /// The site the caller belongs to, if any.
    pub fn site_id(&self) -> Option<Id> {
        match self {
            Caller::Visitor { site_id, .. } | Caller::Agent { site_id, .. } => Some(*site_id),
            _ => None,
        }
    }
}

/// The client's highest offsets for the chat a call concerns (SPEC §6); absent means 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Offsets {
    pub visitor_data_offset: i64,
    pub agent_data_offset: i64,
}

/// How the call arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Http,
    WebSocket,
    /// Made by the server itself (lifecycle events, async stages).
    #[default]
    Internal,
}

/// What the transport knows about the client, for rules that need it (bans, domains,
/// rate limits, presence).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub transport: Transport,
    pub ip: Option<IpAddr>,
    pub origin: Option<String>,
    pub user_agent: Option<String>,
    /// The WebSocket connection, for calls made as frames.
    pub connection_id: Option<String>,
}

/// One call of an event, as decoded by the Map layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub event: String,
    /// The JSON object the caller sent (`{}` when the body was empty).
    pub data: Value,
    /// `Authorization: Bearer …` or the socket's token. Never serialised into jobs or logs.
    #[serde(skip)]
    pub bearer: Option<String>,
    pub offsets: Option<Offsets>,
    pub client: ClientInfo,
}

/// A request's failure: a kind from SPEC §5.2 and a message a developer can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
}

impl From<BackendError> for Failure {
    /// Backend details go to the log; callers get a message without internals.
    fn from(e: BackendError) -> Self {
        match e.kind() {
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "backend unavailable");
                Failure::unavailable("a backend this call needs is unavailable; try again shortly")
            }
            ErrorKind::Conflict => Failure::conflict(e.to_string()),
            kind => {
                tracing::error!(error = %e, "backend error");
                Failure::new(kind, "internal error")
            }
        }
    }
}

/// The answer being built (SPEC §5.2's `ReturnResult` without its error form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// 0 success, 1 data rebuild needed (SPEC §6).
    pub code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_data_offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_data_offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Value>>,
    /// The aggregated result of the stages that return one.
    pub data: Map<String, Value>,
}

/// Typed values stages hand to later stages of the same request (in process only; the
/// JSON `values` are what crosses to external and async stages).
#[derive(Default)]
pub struct Extensions(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Extensions {
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|b| b.downcast_ref())
    }

    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.0.get_mut(&TypeId::of::<T>()).and_then(|b| b.downcast_mut())
    }

    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.0.remove(&TypeId::of::<T>()).and_then(|b| b.downcast().ok()).map(|b| *b)
    }
}

/// The per-request context every stage shares.
pub struct Ctx {
    pub event: Arc<str>,
    pub request: Request,
    pub caller: Caller,
    /// The shared context: values stages put here for later stages (merged from external
    /// stages' `context`, carried into async stages).
    pub values: Map<String, Value>,
    pub response: Response,
    pub extensions: Extensions,
}

impl Ctx {
    pub fn new(event: Arc<str>, request: Request) -> Self {
        Self {
            event,
            request,
            caller: Caller::Anonymous,
            values: Map::new(),
            response: Response::default(),
            extensions: Extensions::default(),
        }
    }

    /// Decodes the request's `data` into `T`; a wrong or missing field is a `bad_request`
    /// naming it (e.g. `data.message: invalid type: integer, expected a string`).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        decode_value(&self.request.data)
    }

    /// Merges `result` into the response's `data` (the stages' results aggregate).
    pub fn merge_result(&mut self, result: Map<String, Value>) {
        self.response.data.extend(result);
    }

    pub fn set_result(&mut self, key: &str, value: Value) {
        self.response.data.insert(key.to_string(), value);
    }
}

/// Decodes a JSON value with errors that name the field.
pub fn decode_value<T: DeserializeOwned>(value: &Value) -> Result<T, Failure> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Failure::bad_request(format!("data: {inner}"))
        } else {
            Failure::bad_request(format!("data.{path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Send {
        chat_id: Id,
        message: String,
    }

    #[test]
    fn decode_names_the_wrong_field() {
        let e = decode_value::<Send>(&json!({"chat_id": "1", "message": 5})).expect_err("wrong type");
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.starts_with("data.message: invalid type: integer"), "{}", e.message);
        let e = decode_value::<Send>(&json!({"chat_id": "1"})).expect_err("missing");
        assert!(e.message.contains("missing field `message`"), "{}", e.message);
        let e = decode_value::<Send>(&json!({"chat_id": "x1", "message": "hi"})).expect_err("bad id");
        assert!(e.message.starts_with("data.chat_id:"), "{}", e.message);
    }

    #[test]
    fn callers_serialise_with_their_kind() {
        let c = Caller::Visitor { site_id: Id(1), visitor_id: Id(2) };
        let v = serde_json::to_value(&c).expect("ser");
        assert_eq!(v, json!({"kind": "visitor", "siteId": "1", "visitorId": "2"}));
        assert_eq!(serde_json::from_value::<Caller>(v).expect("de"), c);
    }

    #[test]
    fn extensions_hold_typed_values() {
        let mut x = Extensions::default();
        x.insert(5u32);
        x.insert("s".to_string());
        assert_eq!(x.get::<u32>(), Some(&5));
        *x.get_mut::<u32>().expect("u32") += 1;
        assert_eq!(x.remove::<u32>(), Some(6));
        assert_eq!(x.get::<u32>(), None);
        assert_eq!(x.get::<String>().map(String::as_str), Some("s"));
    }
}
