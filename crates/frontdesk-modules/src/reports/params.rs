//! The parameters of `reports.*`: `from` / `to` (RFC 3339 or Unix milliseconds; default the
//! last 7 days up to now), `by` (`agent` | `department`) and, for `reports.chats`,
//! `interval` (`day` | `hour`). From a REST query string every value arrives as a string.
//! Unknown parameters and bad values are a `bad_request` naming the parameter.

use frontdesk_core::id::SiteId;
use frontdesk_core::pipeline::Failure;
use frontdesk_core::reports::{GroupBy, Interval, ReportQuery};
use frontdesk_core::time::parse_rfc3339;
use serde_json::{Map, Value};

pub(super) const DAY_MS: i64 = 86_400_000;
/// The default range: the last 7 days.
const DEFAULT_DAYS: i64 = 7;
/// The longest range a report covers (a little over a year).
const MAX_DAYS: i64 = 400;
/// Hourly buckets over at most this many days.
const MAX_HOURLY_DAYS: i64 = 31;

fn text(data: &Map<String, Value>, key: &str) -> Result<Option<String>, Failure> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Failure::bad_request(format!("{key} must be a string or a number"))),
    }
}

fn time(data: &Map<String, Value>, key: &str) -> Result<Option<i64>, Failure> {
    let Some(s) = text(data, key)? else { return Ok(None) };
    s.parse::<i64>().ok().or_else(|| parse_rfc3339(&s)).map(Some).ok_or_else(|| {
        Failure::bad_request(format!(
            "{key} must be an RFC 3339 time (2026-01-02T03:04:05Z) or Unix milliseconds, got {s:?}"
        ))
    })
}

/// The query of a report of `site` at time `now`; `known` lists the parameters this report
/// takes besides `from`, `to` and `by`.
pub(super) fn report_query(site: SiteId, data: &Value, now: i64, known: &[&str]) -> Result<ReportQuery, Failure> {
    let empty = Map::new();
    let data = data.as_object().unwrap_or(&empty);
    let allowed = |k: &str| ["from", "to", "by"].contains(&k) || known.contains(&k);
    if let Some(unknown) = data.keys().find(|k| !allowed(k)) {
        let mut names = vec!["from", "to", "by"];
        names.extend_from_slice(known);
        return Err(Failure::bad_request(format!("{unknown} is not a parameter of this report; use {names:?}")));
    }
    let to = time(data, "to")?.unwrap_or(now);
    let from = time(data, "from")?.unwrap_or(to - DEFAULT_DAYS * DAY_MS);
    if from >= to {
        return Err(Failure::bad_request("from must be before to"));
    }
    if to - from > MAX_DAYS * DAY_MS {
        return Err(Failure::bad_request(format!("from and to may be at most {MAX_DAYS} days apart")));
    }
    let by = match text(data, "by")?.as_deref() {
        None => None,
        Some("agent") => Some(GroupBy::Agent),
        Some("department") => Some(GroupBy::Department),
        Some(other) => return Err(Failure::bad_request(format!("by must be agent or department, got {other:?}"))),
    };
    Ok(ReportQuery { site_id: site, from, to, by })
}

/// `interval` of `reports.chats` (default `day`); hourly buckets over a long range are refused.
pub(super) fn interval(data: &Value, q: &ReportQuery) -> Result<Interval, Failure> {
    let empty = Map::new();
    let interval = match text(data.as_object().unwrap_or(&empty), "interval")?.as_deref() {
        None | Some("day") => Interval::Day,
        Some("hour") => Interval::Hour,
        Some(other) => return Err(Failure::bad_request(format!("interval must be day or hour, got {other:?}"))),
    };
    if interval == Interval::Hour && q.to - q.from > MAX_HOURLY_DAYS * DAY_MS {
        return Err(Failure::bad_request(format!(
            "interval=hour covers at most {MAX_HOURLY_DAYS} days: narrow from/to or use interval=day"
        )));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::id::Id;
    use serde_json::json;

    const NOW: i64 = 1_767_225_600_000;

    #[test]
    fn the_range_defaults_to_the_last_seven_days() {
        let q = report_query(Id(1), &json!({}), NOW, &[]).expect("parses");
        assert_eq!((q.from, q.to, q.by), (NOW - 7 * DAY_MS, NOW, None));
        let q = report_query(Id(1), &json!({"from": "2025-12-01T00:00:00Z", "by": "agent"}), NOW, &[]).expect("ok");
        assert_eq!((q.from, q.by), (1_764_547_200_000, Some(GroupBy::Agent)));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (data, name) in [
            (json!({"from": "last week"}), "from"),
            (json!({"to": true}), "to"),
            (json!({"by": "team"}), "by"),
            (json!({"from": NOW, "to": NOW - 1}), "from"),
            (json!({"interval": "day"}), "interval"),
        ] {
            let e = report_query(Id(1), &data, NOW, &[]).expect_err("refused");
            assert!(e.message.starts_with(name), "{data}: {}", e.message);
        }
        let q = report_query(Id(1), &json!({}), NOW, &["interval"]).expect("ok");
        let e = interval(&json!({"interval": "week"}), &q).expect_err("refused");
        assert!(e.message.starts_with("interval"), "{}", e.message);
    }
}
