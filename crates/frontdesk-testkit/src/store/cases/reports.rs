//! Contract cases for reports, retention and privacy (issue 5): a hand-computed fixture
//! whose every figure is checked exactly (chat volume, wait / first-response / duration
//! averages and nearest-rank p90, ratings, agent online/away time), retention deleting or
//! anonymising exactly the chats past their time, a visitor's erase, site settings and
//! the audit log's paging — each within one site.

use std::sync::Arc;

use frontdesk_core::history::{ChatQuery, ChatRecord, HistoryWrite};
use frontdesk_core::id::{Id, IdGenerator};
use frontdesk_core::reports::{
    AgentStatusChange, AgentTime, AuditEntry, ChatBucket, Erased, GroupBy, Interval, Purged, RatingStats, ReportQuery,
    RetentionMode, Span, SpanStats,
};
use frontdesk_core::store::Store;
use serde_json::json;

use super::{chat_record, ids, message_record, two_sites, CREATED_AT};

const T0: i64 = CREATED_AT;
const S: i64 = 1000;
const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

fn next(ids: &IdGenerator) -> Id {
    ids.next().expect("id")
}

/// A chat of `site` created at `created` (ms); `wait`, `response`, `duration` in seconds.
#[allow(clippy::too_many_arguments)]
fn chat(
    ids: &IdGenerator,
    site: Id,
    created: i64,
    wait: Option<i64>,
    response: Option<i64>,
    duration: Option<i64>,
    owner: Option<(Id, Id)>,
    rating: Option<i64>,
) -> Vec<HistoryWrite> {
    let id = next(ids);
    let mut c: ChatRecord = chat_record(id, site, next(ids), 0, 1);
    c.created_at = created;
    c.started_at = wait.map(|w| created + w * S);
    c.ended_at = duration.map(|d| c.started_at.unwrap_or(created) + d * S);
    c.status = if c.ended_at.is_some() {
        "ended"
    } else if c.started_at.is_some() {
        "active"
    } else {
        "queued"
    }
    .into();
    c.agent_id = owner.map(|o| o.0);
    c.department_id = owner.map(|o| o.1);
    c.rating = rating;
    let mut out = vec![HistoryWrite::Chat(c.clone())];
    if let (Some(start), Some(r)) = (c.started_at, response) {
        let mut m = message_record(next(ids), id, site, 1, 2, "hello");
        m.send_time_ms = start + r * S;
        out.push(HistoryWrite::Message(m));
    }
    out
}

fn spans(count: i64, sum_s: i64, p90_s: i64, group: Option<Id>) -> SpanStats {
    SpanStats { group, count, sum_ms: sum_s * S, p90_ms: Some(p90_s * S) }
}

pub async fn reports_figures_match_a_hand_computed_fixture(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let (ann, bob, d1, d2) = (next(&ids), next(&ids), next(&ids), next(&ids));
    let mut batch = Vec::new();
    // Day 1: three accepted, ended, rated chats.
    batch.extend(chat(&ids, a.id, T0, Some(10), Some(5), Some(100), Some((ann, d1)), Some(5)));
    batch.extend(chat(&ids, a.id, T0 + H, Some(20), Some(15), Some(200), Some((ann, d1)), Some(4)));
    batch.extend(chat(&ids, a.id, T0 + 2 * H, Some(30), Some(25), Some(300), Some((bob, d2)), Some(2)));
    // Day 2: one active, one missed (ended, never accepted), one queued, eight short waits.
    batch.extend(chat(&ids, a.id, T0 + DAY, Some(40), None, None, Some((bob, d2)), None));
    batch.extend(chat(&ids, a.id, T0 + DAY + H, None, None, Some(60), None, None));
    batch.extend(chat(&ids, a.id, T0 + DAY + 2 * H, None, None, None, None, None));
    for i in 0..8 {
        batch.extend(chat(&ids, a.id, T0 + DAY + 3 * H + i * 60_000, Some(i + 1), None, None, Some((ann, d1)), None));
    }
    // Outside the range, and another site: never counted.
    batch.extend(chat(&ids, a.id, T0 - DAY, Some(999), Some(999), Some(999), Some((ann, d1)), Some(1)));
    batch.extend(chat(&ids, b.id, T0, Some(999), Some(999), Some(999), Some((ann, d1)), Some(1)));
    store.apply_history(&batch).await.expect("apply");
    store.apply_history(&batch).await.expect("a replay changes nothing");

    let q = ReportQuery { site_id: a.id, from: T0, to: T0 + 2 * DAY, by: None };
    let by_agent = ReportQuery { by: Some(GroupBy::Agent), ..q };
    let by_department = ReportQuery { by: Some(GroupBy::Department), ..q };
    let bucket = |start, total, missed| ChatBucket { start, group: None, total, missed };

    let days = store.report_chats(&q, Interval::Day).await.expect("chats by day");
    assert_eq!(days, vec![bucket(T0, 3, 0), bucket(T0 + DAY, 11, 1)]);
    let hours = store.report_chats(&q, Interval::Hour).await.expect("chats by hour");
    let expected: Vec<_> = [(0, 1, 0), (1, 1, 0), (2, 1, 0), (24, 1, 0), (25, 1, 1), (26, 1, 0), (27, 8, 0)]
        .into_iter()
        .map(|(h, t, m)| bucket(T0 + h * H, t, m))
        .collect();
    assert_eq!(hours, expected);

    // Waits 10, 20, 30, 40 and 1..=8 s: 12 values, nearest-rank p90 is the 11th (30 s).
    assert_eq!(store.report_spans(&q, Span::Wait).await.expect("wait"), vec![spans(12, 136, 30, None)]);
    let mut expected = vec![spans(10, 66, 10, Some(ann)), spans(2, 70, 40, Some(bob))];
    expected.sort_by_key(|s| s.group);
    assert_eq!(store.report_spans(&by_agent, Span::Wait).await.expect("wait by agent"), expected);
    assert_eq!(store.report_spans(&q, Span::Wait).await.expect("wait")[0].average_ms(), Some(136_000.0 / 12.0));
    assert_eq!(
        store.report_spans(&q, Span::FirstResponse).await.expect("first response"),
        vec![spans(3, 45, 25, None)]
    );
    assert_eq!(store.report_spans(&q, Span::Duration).await.expect("durations"), vec![spans(3, 600, 300, None)]);
    let mut expected = vec![spans(2, 300, 200, Some(d1)), spans(1, 300, 300, Some(d2))];
    expected.sort_by_key(|s| s.group);
    assert_eq!(store.report_spans(&by_department, Span::Duration).await.expect("by department"), expected);

    let ratings = store.report_ratings(&q).await.expect("ratings");
    assert_eq!(ratings, vec![RatingStats { group: None, counts: [0, 1, 0, 1, 1], sum: 11 }]);
    assert_eq!(ratings[0].average(), Some(11.0 / 3.0));
    let mut expected = vec![
        RatingStats { group: Some(ann), counts: [0, 0, 0, 1, 1], sum: 9 },
        RatingStats { group: Some(bob), counts: [0, 1, 0, 0, 0], sum: 2 },
    ];
    expected.sort_by_key(|s| s.group);
    assert_eq!(store.report_ratings(&by_agent).await.expect("ratings by agent"), expected);

    let empty = ReportQuery { from: T0 + 10 * DAY, to: T0 + 11 * DAY, ..q };
    assert!(store.report_chats(&empty, Interval::Day).await.expect("empty").is_empty());
    assert!(store.report_spans(&empty, Span::Wait).await.expect("empty").is_empty());
}

pub async fn reports_agent_time_sums_each_status_within_the_range(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let (ann, bob, other) = (next(&ids), next(&ids), next(&ids));
    let change = |site: Id, agent: Id, status: &str, at: i64| {
        HistoryWrite::AgentStatus(AgentStatusChange { site_id: site, agent_id: agent, status: status.into(), at })
    };
    let batch = vec![
        change(a.id, ann, "online", T0 - H),
        change(a.id, ann, "away", T0 + H),
        change(a.id, ann, "online", T0 + 3 * H / 2),
        change(a.id, ann, "offline", T0 + 3 * H),
        change(a.id, bob, "away", T0 + 10 * H),
        change(a.id, bob, "online", T0 + 2 * DAY + 5 * H),
        change(b.id, other, "online", T0),
    ];
    store.apply_history(&batch).await.expect("apply");
    store.apply_history(&batch).await.expect("a replay changes nothing");
    let mut times = store.report_agent_time(a.id, T0, T0 + 2 * DAY, T0 + 100 * DAY).await.expect("agent time");
    times.sort_by_key(|t| t.agent_id);
    let mut expected = vec![
        AgentTime { agent_id: ann, online_ms: 9000 * S, away_ms: 1800 * S },
        AgentTime { agent_id: bob, online_ms: 0, away_ms: 38 * H },
    ];
    expected.sort_by_key(|t| t.agent_id);
    assert_eq!(times, expected);
    // Time after `now` never counts.
    let times = store.report_agent_time(a.id, T0, T0 + 2 * DAY, T0 + 2 * H).await.expect("agent time now");
    assert_eq!(times, vec![AgentTime { agent_id: ann, online_ms: 5400 * S, away_ms: 1800 * S }]);
}

/// Chats of `site` for retention: (id, message text); ended `ended_days_ago` (or never).
fn aged(
    ids: &IdGenerator,
    site: Id,
    now: i64,
    created_days_ago: i64,
    ended_days_ago: Option<i64>,
    text: &str,
) -> (Id, Vec<HistoryWrite>) {
    let id = next(ids);
    let mut c = chat_record(id, site, next(ids), 0, 1);
    c.created_at = now - created_days_ago * DAY;
    c.ended_at = ended_days_ago.map(|d| now - d * DAY);
    c.status = if c.ended_at.is_some() { "ended".into() } else { "active".into() };
    c.visitor_name = "Vera Visitor".into();
    c.visitor_email = "vera@example.com".into();
    let m = message_record(next(ids), id, site, 1, 1, text);
    (id, vec![HistoryWrite::Chat(c), HistoryWrite::Message(m)])
}

async fn found(store: &dyn Store, site: Id, words: &str) -> Vec<Id> {
    let q = ChatQuery { site_id: site, limit: 100, text: Some(words.into()), ..ChatQuery::default() };
    store.list_chats(&q).await.expect("search").chats.into_iter().map(|c| c.chat_id).collect()
}

pub async fn retention_deletes_exactly_the_chats_past_their_time(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let now = T0 + 400 * DAY;
    let (old_ended, w1) = aged(&ids, a.id, now, 50, Some(40), "walrus one");
    let (old_open, w2) = aged(&ids, a.id, now, 45, None, "walrus two");
    let (ended_lately, w3) = aged(&ids, a.id, now, 45, Some(10), "walrus three");
    let (recent, w4) = aged(&ids, a.id, now, 5, None, "walrus four");
    let (other_site, w5) = aged(&ids, b.id, now, 50, Some(40), "walrus five");
    store.apply_history(&[w1, w2, w3, w4, w5].concat()).await.expect("apply");

    let purged = store.purge_history(a.id, now - 30 * DAY, RetentionMode::Delete).await.expect("purge");
    assert_eq!(purged, Purged { chats: 2, messages: 2 });
    for gone in [old_ended, old_open] {
        assert!(store.chat_transcript(a.id, gone).await.expect("read").is_none(), "{gone} is deleted");
    }
    let mut left = found(&*store, a.id, "walrus").await;
    left.sort();
    let mut kept = vec![ended_lately, recent];
    kept.sort();
    assert_eq!(left, kept, "search finds only what is kept");
    assert_eq!(found(&*store, b.id, "walrus").await, vec![other_site], "another site is untouched");
    let again = store.purge_history(a.id, now - 30 * DAY, RetentionMode::Delete).await.expect("purge again");
    assert_eq!(again, Purged::default());
}

pub async fn retention_anonymises_text_and_keeps_the_counts(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let now = T0 + 400 * DAY;
    let (old, w1) = aged(&ids, a.id, now, 50, Some(40), "narwhal secret");
    let (recent, w2) = aged(&ids, a.id, now, 5, None, "narwhal fine");
    store.apply_history(&[w1, w2].concat()).await.expect("apply");
    let purged = store.purge_history(a.id, now - 30 * DAY, RetentionMode::Anonymise).await.expect("anonymise");
    assert_eq!(purged, Purged { chats: 1, messages: 1 });
    let t = store.chat_transcript(a.id, old).await.expect("read").expect("kept");
    assert_eq!((t.chat.visitor_name.as_str(), t.chat.visitor_email.as_str()), ("", ""));
    assert_eq!(t.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), vec!["[removed]"]);
    assert_eq!(found(&*store, a.id, "narwhal").await, vec![recent]);
    assert!(found(&*store, a.id, "Vera").await == vec![recent], "the visitor's name is no longer found");
    let again = store.purge_history(a.id, now - 30 * DAY, RetentionMode::Anonymise).await.expect("again");
    assert_eq!(again, Purged::default(), "anonymising twice counts once");
}

pub async fn erase_removes_a_visitor_of_its_site_only(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let now = T0 + 400 * DAY;
    let (first, mut w1) = aged(&ids, a.id, now, 3, None, "platypus one");
    let (second, mut w2) = aged(&ids, a.id, now, 2, None, "platypus two");
    let (others, w3) = aged(&ids, a.id, now, 1, None, "platypus three");
    let visitor = next(&ids);
    for w in w1.iter_mut().chain(w2.iter_mut()) {
        if let HistoryWrite::Chat(c) = w {
            c.visitor_id = visitor;
        }
    }
    let record = frontdesk_core::history::VisitorHistory {
        visitor_id: visitor,
        site_id: a.id,
        name: "Vera".into(),
        email: "vera@example.com".into(),
        custom_variables: serde_json::Map::new(),
        first_seen: now,
        last_seen: now,
        visit_count: 1,
        page_views: 1,
        version: 1,
    };
    store.apply_history(&[w1, w2, w3, vec![HistoryWrite::Visitor(record)]].concat()).await.expect("apply");
    assert_eq!(store.erase_visitor(b.id, visitor).await.expect("other site"), Erased::default());
    let erased = store.erase_visitor(a.id, visitor).await.expect("erase");
    assert_eq!(erased, Erased { visitors: 1, chats: 2, messages: 2 });
    for gone in [first, second] {
        assert!(store.chat_transcript(a.id, gone).await.expect("read").is_none());
    }
    assert_eq!(found(&*store, a.id, "platypus").await, vec![others]);
}

pub async fn site_settings_merge_and_the_audit_log_pages(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let patch = json!({"retentionDays": 30, "retentionMode": "anonymise"});
    let site = store.update_site_settings(a.id, patch.as_object().expect("object")).await.expect("update");
    let settings = site.expect("site A").settings;
    assert_eq!((settings["retentionDays"].clone(), settings["retentionMode"].clone()), (json!(30), json!("anonymise")));
    let patch = json!({"retentionDays": null});
    let site = store.update_site_settings(a.id, patch.as_object().expect("object")).await.expect("update");
    assert!(site.expect("site A").settings.get("retentionDays").is_none(), "null removes the setting");
    let stored = store.site(a.id).await.expect("read").expect("site A");
    assert_eq!(stored.settings["retentionMode"], json!("anonymise"));
    assert!(store.update_site_settings(next(&ids), &serde_json::Map::new()).await.expect("missing").is_none());

    let mut written = Vec::new();
    for (i, site) in [a.id, a.id, b.id, a.id].into_iter().enumerate() {
        let entry = AuditEntry {
            id: next(&ids),
            site_id: site,
            actor_agent_id: if i == 0 { None } else { Some(Id(7)) },
            action: format!("action.{i}"),
            target: i.to_string(),
            details: json!({"n": i}),
            at: T0 + i as i64,
        };
        store.insert_audit(&entry).await.expect("insert audit");
        written.push(entry);
    }
    let first = store.audit_log(a.id, None, 2).await.expect("page 1");
    assert_eq!(first, vec![written[3].clone(), written[1].clone()], "newest first, this site only");
    let second = store.audit_log(a.id, Some(first[1].id), 2).await.expect("page 2");
    assert_eq!(second, vec![written[0].clone()]);
}
