//! The history API's parameters: filters of `chats.list` (from a REST query string every
//! value arrives as a string, from `POST /api/v1/chats.list` as JSON; both are accepted),
//! RFC 3339 / Unix-millisecond times, and the opaque paging cursor. Every refusal is a
//! `bad_request` naming the parameter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use frontdesk_core::history::{ChatCursor, ChatQuery};
use frontdesk_core::id::{Id, SiteId};
use frontdesk_core::pipeline::Failure;
use serde_json::{Map, Value};

pub(crate) use frontdesk_core::time::parse_rfc3339;

pub(super) const DEFAULT_LIMIT: u32 = 20;
pub(super) const MAX_LIMIT: u32 = 100;
const MAX_QUERY_CHARS: usize = 200;
const STATUSES: [&str; 5] = ["queued", "offered", "bot", "active", "ended"];
const KNOWN: [&str; 12] =
    ["from", "to", "agentId", "departmentId", "visitorId", "status", "rating", "tag", "q", "limit", "cursor", "format"];

/// A parameter's value as text: strings as they are, numbers written out; absent or empty
/// is `None`.
fn text(data: &Map<String, Value>, key: &str) -> Result<Option<String>, Failure> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Failure::bad_request(format!("{key} must be a string or a number"))),
    }
}

fn id(data: &Map<String, Value>, key: &str) -> Result<Option<Id>, Failure> {
    text(data, key)?
        .map(|s| {
            s.parse::<Id>()
                .map_err(|_| Failure::bad_request(format!("{key} must be an id (decimal digits), got {s:?}")))
        })
        .transpose()
}

fn time(data: &Map<String, Value>, key: &str) -> Result<Option<i64>, Failure> {
    let Some(s) = text(data, key)? else { return Ok(None) };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Some(ms));
    }
    parse_rfc3339(&s).map(Some).ok_or_else(|| {
        Failure::bad_request(format!(
            "{key} must be an RFC 3339 time (2026-01-02T03:04:05Z) or Unix milliseconds, got {s:?}"
        ))
    })
}

/// The chat id of `chats.get` / `chats.export` (`data.id` from the REST path, or
/// `data.chatId`).
pub(super) fn chat_id(data: &Value) -> Result<Id, Failure> {
    let map = data.as_object().cloned().unwrap_or_default();
    match id(&map, "id")? {
        Some(id) => Ok(id),
        None => id(&map, "chatId")?.ok_or_else(|| Failure::bad_request("chatId is required (or the id in the path)")),
    }
}

/// The filters of `chats.list` as a query of `site`; unknown parameters are refused so a
/// misspelt filter never silently lists everything.
pub(super) fn list_query(site: SiteId, data: &Value) -> Result<ChatQuery, Failure> {
    let empty = Map::new();
    let data = data.as_object().unwrap_or(&empty);
    if let Some(unknown) = data.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Failure::bad_request(format!("{unknown} is not a filter of chats.list; use one of {KNOWN:?}")));
    }
    let status = text(data, "status")?;
    if let Some(s) = &status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(Failure::bad_request(format!("status must be one of {STATUSES:?}, got {s:?}")));
        }
    }
    let rating = text(data, "rating")?
        .map(|s| s.parse::<i64>().ok().filter(|r| (1..=5).contains(r)).ok_or(s))
        .transpose()
        .map_err(|s| Failure::bad_request(format!("rating must be 1 to 5, got {s:?}")))?;
    let tag = text(data, "tag")?;
    if tag.as_ref().is_some_and(|t| t.chars().count() > 50) {
        return Err(Failure::bad_request("tag must be at most 50 characters"));
    }
    let q = text(data, "q")?;
    if q.as_ref().is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
        return Err(Failure::bad_request(format!("q must be at most {MAX_QUERY_CHARS} characters")));
    }
    let limit = match text(data, "limit")? {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| Failure::bad_request(format!("limit must be 1 to {MAX_LIMIT}, got {s:?}")))?,
    };
    let (from, to) = (time(data, "from")?, time(data, "to")?);
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(Failure::bad_request("from must be before to"));
        }
    }
    let after = text(data, "cursor")?.map(|c| decode_cursor(&c, q.is_some())).transpose()?;
    Ok(ChatQuery {
        site_id: site,
        member: None,
        from,
        to,
        agent_id: id(data, "agentId")?,
        department_id: id(data, "departmentId")?,
        visitor_id: id(data, "visitorId")?,
        status,
        rating,
        tag,
        text: q,
        limit,
        after,
    })
}

/// The cursor handed out with a page: which kind of listing it belongs to and where the
/// page ended, base64url-encoded.
pub(super) fn encode_cursor(c: &ChatCursor, search: bool) -> String {
    let kind = if search { 's' } else { 't' };
    let raw = format!("1.{kind}.{:x}.{}.{}", c.score.to_bits(), c.created_at, c.chat_id);
    URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str, search: bool) -> Result<ChatCursor, Failure> {
    let bad = || Failure::bad_request("cursor is not a cursor this server handed out; start again without it");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<&str> = raw.split('.').collect();
    let [version, kind, score, created_at, chat] = parts[..] else { return Err(bad()) };
    if version != "1" {
        return Err(bad());
    }
    if kind != if search { "s" } else { "t" } {
        return Err(Failure::bad_request(
            "cursor belongs to a listing with a different q; keep q as it was, or start again without the cursor",
        ));
    }
    Ok(ChatCursor {
        score: f64::from_bits(u64::from_str_radix(score, 16).map_err(|_| bad())?),
        created_at: created_at.parse().map_err(|_| bad())?,
        chat_id: chat.parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_times_parse_to_unix_milliseconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56.007Z"), Some(1_709_210_096_007));
        assert_eq!(parse_rfc3339("2024-01-01T02:00:00.123+02:00"), Some(1_704_067_200_123));
        assert_eq!(parse_rfc3339("2024-01-01"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00"), None);
    }

    #[test]
    fn bad_filters_name_the_parameter() {
        for (data, names) in [
            (json!({"from": "yesterday"}), "from"),
            (json!({"rating": "6"}), "rating"),
            (json!({"status": "open"}), "status"),
            (json!({"agentId": "ann"}), "agentId"),
            (json!({"limit": "500"}), "limit"),
            (json!({"cursor": "!!"}), "cursor"),
            (json!({"agent_id": "1"}), "agent_id"),
        ] {
            let e = list_query(Id(1), &data).expect_err("refused");
            assert!(e.message.starts_with(names), "{data}: {}", e.message);
        }
    }

    #[test]
    fn filters_from_a_query_string_parse() {
        let q = list_query(
            Id(1),
            &json!({"from": "2024-01-01T00:00:00Z", "to": "1704153600000", "rating": "5", "limit": "7", "q": " refund "}),
        )
        .expect("parses");
        assert_eq!((q.from, q.to, q.rating, q.limit), (Some(1_704_067_200_000), Some(1_704_153_600_000), Some(5), 7));
        assert_eq!(q.text.as_deref(), Some("refund"));
    }

    #[test]
    fn cursors_round_trip_and_keep_to_their_kind() {
        let c = ChatCursor { score: -1.25, created_at: 42, chat_id: Id(99) };
        let text = encode_cursor(&c, true);
        assert_eq!(decode_cursor(&text, true).expect("decodes"), c);
        assert!(decode_cursor(&text, false).is_err(), "a search cursor is refused for a plain listing");
    }
}
