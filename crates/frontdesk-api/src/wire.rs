//! The wire form of an answer: SPEC §5.2's `ReturnResult`, with its HTTP status chosen by
//! [`crate::status`].

use axum::http::StatusCode;
use frontdesk_core::pipeline::{Failure, Response};
use serde::Serialize;

use crate::status::http_status;

/// `{code: -1, error: {kind, message}}`.
#[derive(Serialize)]
struct ErrorResult<'a> {
    code: i32,
    error: &'a Failure,
}

/// The status and JSON body of an answer.
pub fn encode(result: &Result<Response, Failure>) -> (StatusCode, Vec<u8>) {
    match result {
        Ok(response) => (StatusCode::OK, to_json(response)),
        Err(failure) => (http_status(failure.kind), to_json(&ErrorResult { code: -1, error: failure })),
    }
}

/// The JSON of a value the server built itself, which always serialises.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise an answer");
        br#"{"code":-1,"error":{"kind":"internal","message":"internal error"}}"#.to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::error::ErrorKind;
    use serde_json::{json, Value};

    #[test]
    fn answers_have_the_return_result_shape() {
        let mut ok = Response::default();
        ok.data.insert("chatId".into(), json!("42"));
        ok.visitor_data_offset = Some(3);
        let (status, body) = encode(&Ok(ok));
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v, json!({"code": 0, "visitorDataOffset": 3, "data": {"chatId": "42"}}));

        let (status, body) = encode(&Err(Failure::new(ErrorKind::RateLimited, "slow down")));
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v, json!({"code": -1, "error": {"kind": "rate_limited", "message": "slow down"}}));
    }
}
