//! Error kinds. [`ErrorKind`] is the stable wire vocabulary of SPEC §5.2 (its HTTP status is
//! chosen in the API crate, in one place); [`BackendError`] is what a backend port returns.

use serde::{Deserialize, Serialize};

/// The error kinds a caller can see (SPEC §5.2), as stable snake_case strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    Banned,
    DomainNotAllowed,
    NotFound,
    UnknownEvent,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::BadRequest,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::Banned,
        ErrorKind::DomainNotAllowed,
        ErrorKind::NotFound,
        ErrorKind::UnknownEvent,
        ErrorKind::Conflict,
        ErrorKind::PayloadTooLarge,
        ErrorKind::RateLimited,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Banned => "banned",
            ErrorKind::DomainNotAllowed => "domain_not_allowed",
            ErrorKind::NotFound => "not_found",
            ErrorKind::UnknownEvent => "unknown_event",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a backend behind a port (state store, pub/sub, bus, durable store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot be reached or did not answer in time. Callers see `unavailable`.
    #[error("{backend} unavailable: {detail}")]
    Unavailable { backend: &'static str, detail: String },
    /// The operation met data of the wrong shape (e.g. a hash op on a list key).
    #[error("{backend}: wrong kind of value at {key}")]
    WrongType { backend: &'static str, key: String },
    /// A uniqueness rule was broken (e.g. an agent's email already exists).
    #[error("{0}")]
    Conflict(String),
    /// A script's keys hash to different slots (they must share one hash tag).
    #[error("keys of one atomic step must share a hash tag: {0}")]
    CrossSlot(String),
    /// Anything else; the detail is for logs, never for callers.
    #[error("{backend} error: {detail}")]
    Other { backend: &'static str, detail: String },
}

impl BackendError {
    pub fn unavailable(backend: &'static str, detail: impl std::fmt::Display) -> Self {
        BackendError::Unavailable { backend, detail: detail.to_string() }
    }

    pub fn other(backend: &'static str, detail: impl std::fmt::Display) -> Self {
        BackendError::Other { backend, detail: detail.to_string() }
    }

    /// The kind a caller sees when this error ends a request.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::Unavailable { .. } => ErrorKind::Unavailable,
            BackendError::Conflict(_) => ErrorKind::Conflict,
            BackendError::WrongType { .. } | BackendError::CrossSlot(_) | BackendError::Other { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

pub type BackendResult<T> = Result<T, BackendError>;
