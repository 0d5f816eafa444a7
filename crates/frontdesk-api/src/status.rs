//! Error kind → HTTP status (SPEC §5.2). The only place that knows this mapping.

use axum::http::StatusCode;
use frontdesk_core::error::ErrorKind;

pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden | ErrorKind::Banned | ErrorKind::DomainNotAllowed => StatusCode::FORBIDDEN,
        ErrorKind::NotFound | ErrorKind::UnknownEvent => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_status_of_the_spec() {
        let expected = [
            ("bad_request", 400),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("banned", 403),
            ("domain_not_allowed", 403),
            ("not_found", 404),
            ("unknown_event", 404),
            ("conflict", 409),
            ("payload_too_large", 413),
            ("rate_limited", 429),
            ("unavailable", 503),
            ("internal", 500),
        ];
        assert_eq!(expected.len(), ErrorKind::ALL.len());
        for kind in ErrorKind::ALL {
            let (_, status) = expected.iter().find(|(name, _)| *name == kind.as_str()).expect("listed");
            assert_eq!(http_status(kind).as_u16(), *status, "{kind}");
        }
    }
}
