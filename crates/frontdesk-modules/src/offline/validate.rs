//! The `offline_message.submit` request and its checks, and the availability rule, as pure
//! functions so they are tested without a store.

use frontdesk_core::id::SiteId;
use frontdesk_core::pipeline::Failure;
use serde::Deserialize;

use crate::model::{AgentPresence, AgentStatus};

pub const MAX_MESSAGE_CHARS: usize = 5000;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_URL_CHARS: usize = 2048;

/// `offline_message.submit`'s data.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submission {
    pub site_id: Option<SiteId>,
    pub name: String,
    pub email: String,
    pub message: String,
    /// The page the form was sent from (the widget's `location.href`); optional.
    #[serde(default)]
    pub url: Option<String>,
}

/// The submission with its text trimmed, or `bad_request` naming the first wrong field.
pub fn check(mut s: Submission) -> Result<Submission, Failure> {
    s.name = s.name.trim().to_string();
    s.email = s.email.trim().to_string();
    s.message = s.message.trim().to_string();
    let name_chars = s.name.chars().count();
    if name_chars == 0 || name_chars > MAX_NAME_CHARS {
        return Err(Failure::bad_request(format!(
            "data.name: 1 to {MAX_NAME_CHARS} characters after trimming spaces (got {name_chars})"
        )));
    }
    // The name becomes an e-mail's display name: no line breaks or other control characters.
    if s.name.chars().any(char::is_control) {
        return Err(Failure::bad_request("data.name: no line breaks or control characters"));
    }
    if s.email.chars().count() > MAX_EMAIL_CHARS || !email_shaped(&s.email) {
        return Err(Failure::bad_request(
            "data.email: an e-mail address like name@example.com is needed to answer the message",
        ));
    }
    let chars = s.message.chars().count();
    if chars == 0 || chars > MAX_MESSAGE_CHARS {
        return Err(Failure::bad_request(format!(
            "data.message: 1 to {MAX_MESSAGE_CHARS} characters after trimming spaces (got {chars})"
        )));
    }
    s.url = s.url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    if let Some(url) = &s.url {
        let parsed = url::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
        if url.chars().count() > MAX_URL_CHARS || parsed.is_none() {
            return Err(Failure::bad_request(format!(
                "data.url: the page's http(s) address, at most {MAX_URL_CHARS} characters; or leave it out"
            )));
        }
    }
    Ok(s)
}

/// `local@domain.tld` with no spaces, one `@`, a dot inside the domain, and none of the
/// characters that would need quoting in an e-mail header (it becomes a `Reply-To`).
pub fn email_shaped(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c))
        && domain.split('.').count() >= 2
        && domain.split('.').all(|part| !part.is_empty())
}

/// Whether an agent counts as online: status `online` and seen within `timeout_ms`.
pub fn is_online(p: &AgentPresence, now_ms: i64, timeout_ms: i64) -> bool {
    p.status == AgentStatus::Online && now_ms.saturating_sub(p.last_seen) <= timeout_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::error::ErrorKind;

    fn sub(name: &str, email: &str, message: &str) -> Submission {
        Submission { site_id: None, name: name.into(), email: email.into(), message: message.into(), url: None }
    }

    fn field_of(r: Result<Submission, Failure>) -> String {
        let f = r.expect_err("must be refused");
        assert_eq!(f.kind, ErrorKind::BadRequest);
        f.message.split(':').next().unwrap_or_default().to_string()
    }

    #[test]
    fn a_good_submission_is_trimmed() {
        let s = check(sub(" Ann ", " ann@shop.example ", "  Where is my order?\n")).expect("valid");
        assert_eq!(
            (s.name.as_str(), s.email.as_str(), s.message.as_str()),
            ("Ann", "ann@shop.example", "Where is my order?")
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(field_of(check(sub("  ", "a@b.co", "hi"))), "data.name");
        for email in [
            "",
            "ann",
            "ann@",
            "@b.co",
            "ann@b",
            "ann@b..co",
            "a n@b.co",
            "a@b@c.co",
            "ann@.co",
            "<a@b.co>",
            "a,b@c.co",
        ] {
            assert_eq!(field_of(check(sub("Ann", email, "hi"))), "data.email", "{email:?}");
        }
        assert_eq!(field_of(check(sub("Ann", "a@b.co", " \n "))), "data.message");
        assert_eq!(field_of(check(sub("Ann", "a@b.co", &"x".repeat(MAX_MESSAGE_CHARS + 1)))), "data.message");
        assert!(check(sub("Ann", "a@b.co", &"é".repeat(MAX_MESSAGE_CHARS))).is_ok());
        assert_eq!(field_of(check(sub("Ann\r\nBcc: x@y.co", "a@b.co", "hi"))), "data.name");
    }

    #[test]
    fn the_page_url_is_optional_and_checked() {
        let with = |url: &str| check(Submission { url: Some(url.into()), ..sub("Ann", "a@b.co", "hi") });
        assert_eq!(
            with(" https://shop.example/p?q=1 ").expect("valid").url.as_deref(),
            Some("https://shop.example/p?q=1")
        );
        assert_eq!(with("  ").expect("blank is absent").url, None);
        assert_eq!(field_of(with("javascript:alert(1)")), "data.url");
        assert_eq!(field_of(with(&format!("https://shop.example/{}", "a".repeat(MAX_URL_CHARS)))), "data.url");
    }

    #[test]
    fn online_needs_status_and_recent_life() {
        let p = AgentPresence { status: AgentStatus::Online, last_seen: 1_000, ..Default::default() };
        assert!(is_online(&p, 61_000, 60_000));
        assert!(!is_online(&p, 61_001, 60_000));
        assert!(!is_online(&AgentPresence { status: AgentStatus::Away, ..p.clone() }, 1_000, 60_000));
        assert!(!is_online(&AgentPresence { status: AgentStatus::Offline, ..p }, 1_000, 60_000));
    }
}
