//! The report queries (issue 5), written once for both dialects as a list of SQL pieces and
//! `i64` parameters that each adapter folds into its own `QueryBuilder`. The statements
//! use only what SQLite and PostgreSQL share (window functions, `CAST`, `CASE`); the one
//! difference, two-argument `MIN`/`MAX` versus `LEAST`/`GREATEST`, is a parameter.
//!
//! Every report reads the chats of one site created in `[from, to)`, which the covering
//! index `chats_site_created_report_idx` (migration 0005) serves without touching the table.

use frontdesk_core::error::BackendResult;
use frontdesk_core::id::Id;
use frontdesk_core::reports::{ChatBucket, GroupBy, Interval, RatingStats, ReportQuery, Span, SpanStats};

use crate::convert;
use crate::error::Dialect;

/// A statement as text and bound integers, in order.
pub(crate) enum Piece {
    Sql(String),
    Int(i64),
}

#[derive(Default)]
pub(crate) struct Statement(pub Vec<Piece>);

impl Statement {
    fn sql(&mut self, s: &str) -> &mut Self {
        self.0.push(Piece::Sql(s.to_owned()));
        self
    }

    fn int(&mut self, v: i64) -> &mut Self {
        self.0.push(Piece::Int(v));
        self
    }

    /// `FROM chats WHERE` the site and the range.
    fn scope(&mut self, dialect: Dialect, q: &ReportQuery) -> BackendResult<&mut Self> {
        let site = convert::id_to_db(dialect, q.site_id)?;
        self.sql(" FROM chats WHERE site_id = ").int(site);
        self.sql(" AND created_at >= ").int(q.from).sql(" AND created_at < ").int(q.to);
        Ok(self)
    }
}

/// The grouping column, or a typed NULL.
fn group_column(by: Option<GroupBy>) -> &'static str {
    match by {
        None => "CAST(NULL AS BIGINT)",
        Some(GroupBy::Agent) => "agent_id",
        Some(GroupBy::Department) => "department_id",
    }
}

/// Rows: bucket start, group, total, missed.
pub(crate) fn chats(dialect: Dialect, q: &ReportQuery, interval: Interval) -> BackendResult<Statement> {
    let mut s = Statement::default();
    s.sql("SELECT created_at - (created_at % ").int(interval.millis()).sql(") AS bucket, ");
    s.sql(group_column(q.by));
    s.sql(" AS g, COUNT(*), CAST(SUM(CASE WHEN status = 'ended' AND started_at IS NULL THEN 1 ELSE 0 END) AS BIGINT)");
    s.scope(dialect, q)?.sql(" AND status IS NOT NULL GROUP BY 1, 2");
    Ok(s)
}

pub(crate) type ChatRow = (i64, Option<i64>, i64, i64);

pub(crate) fn chats_from_rows(dialect: Dialect, rows: Vec<ChatRow>) -> BackendResult<Vec<ChatBucket>> {
    let mut out = rows
        .into_iter()
        .map(|(start, g, total, missed)| Ok(ChatBucket { start, group: group(dialect, g)?, total, missed }))
        .collect::<BackendResult<Vec<_>>>()?;
    out.sort_by_key(|b| (b.start, b.group));
    Ok(out)
}

/// Rows: group, count, sum, p90 (nearest rank: the first value whose rank `rn` has
/// `10·rn ≥ 9·n`, in integers so both dialects agree exactly).
pub(crate) fn spans(dialect: Dialect, q: &ReportQuery, span: Span) -> BackendResult<Statement> {
    let (value, present) = match span {
        Span::Wait => ("started_at - created_at", "started_at IS NOT NULL"),
        Span::FirstResponse => {
            ("first_response_at - started_at", "started_at IS NOT NULL AND first_response_at IS NOT NULL")
        }
        Span::Duration => ("ended_at - started_at", "started_at IS NOT NULL AND ended_at IS NOT NULL"),
    };
    let mut s = Statement::default();
    s.sql("WITH v AS (SELECT ").sql(group_column(q.by)).sql(" AS g, ").sql(value).sql(" AS v");
    s.scope(dialect, q)?.sql(" AND ").sql(present);
    s.sql(
        "), r AS (SELECT g, v, ROW_NUMBER() OVER (PARTITION BY g ORDER BY v) AS rn, \
         COUNT(*) OVER (PARTITION BY g) AS n FROM v) \
         SELECT g, COUNT(*), CAST(SUM(v) AS BIGINT), MIN(CASE WHEN rn * 10 >= n * 9 THEN v END) FROM r GROUP BY g",
    );
    Ok(s)
}

pub(crate) type SpanRow = (Option<i64>, i64, i64, Option<i64>);

pub(crate) fn spans_from_rows(dialect: Dialect, rows: Vec<SpanRow>) -> BackendResult<Vec<SpanStats>> {
    let mut out = rows
        .into_iter()
        .map(|(g, count, sum_ms, p90_ms)| Ok(SpanStats { group: group(dialect, g)?, count, sum_ms, p90_ms }))
        .collect::<BackendResult<Vec<_>>>()?;
    out.sort_by_key(|s| s.group);
    Ok(out)
}

/// Rows: group, chats rated 1, 2, 3, 4, 5, sum of ratings.
pub(crate) fn ratings(dialect: Dialect, q: &ReportQuery) -> BackendResult<Statement> {
    let mut s = Statement::default();
    s.sql("SELECT ").sql(group_column(q.by)).sql(" AS g");
    for r in 1..=5 {
        s.sql(&format!(", CAST(SUM(CASE WHEN rating = {r} THEN 1 ELSE 0 END) AS BIGINT)"));
    }
    s.sql(", CAST(SUM(rating) AS BIGINT)");
    s.scope(dialect, q)?.sql(" AND rating BETWEEN 1 AND 5 GROUP BY 1");
    Ok(s)
}

pub(crate) type RatingRow = (Option<i64>, i64, i64, i64, i64, i64, i64);

pub(crate) fn ratings_from_rows(dialect: Dialect, rows: Vec<RatingRow>) -> BackendResult<Vec<RatingStats>> {
    let mut out = rows
        .into_iter()
        .map(|(g, r1, r2, r3, r4, r5, sum)| {
            Ok(RatingStats { group: group(dialect, g)?, counts: [r1, r2, r3, r4, r5], sum })
        })
        .collect::<BackendResult<Vec<_>>>()?;
    out.sort_by_key(|s| s.group);
    Ok(out)
}

/// Rows: agent, online ms, away ms. Each status change lasts until the agent's next one
/// (`LEAD`), or until `end` = min(to, now); the span is clipped to `[from, end)`. Only
/// changes before `end` are read, so the status in force at `from` comes from the last
/// change before it.
pub(crate) fn agent_time(dialect: Dialect, site: Id, from: i64, to: i64, now: i64) -> BackendResult<Statement> {
    let (least, greatest) = match dialect {
        Dialect::Sqlite => ("MIN", "MAX"),
        Dialect::Postgres => ("LEAST", "GREATEST"),
    };
    let end = to.min(now);
    let mut s = Statement::default();
    s.sql(
        "WITH h AS (SELECT agent_id, status, at, \
         LEAD(at) OVER (PARTITION BY agent_id ORDER BY at, status) AS next_at \
         FROM agent_status_history WHERE site_id = ",
    )
    .int(convert::id_to_db(dialect, site)?)
    .sql(" AND at < ")
    .int(end)
    .sql("), c AS (SELECT agent_id, status, ")
    .sql(least)
    .sql("(COALESCE(next_at, ")
    .int(end)
    .sql("), ")
    .int(end)
    .sql(") - ")
    .sql(greatest)
    .sql("(at, ")
    .int(from)
    .sql(") AS ms FROM h WHERE COALESCE(next_at, ")
    .int(end)
    .sql(") > ")
    .int(from)
    .sql(
        ") SELECT agent_id, CAST(SUM(CASE WHEN status = 'online' THEN ms ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN status = 'away' THEN ms ELSE 0 END) AS BIGINT) FROM c \
         WHERE ms > 0 GROUP BY agent_id ORDER BY agent_id",
    );
    Ok(s)
}

fn group(dialect: Dialect, g: Option<i64>) -> BackendResult<Option<Id>> {
    g.map(|g| convert::id_from_db(dialect, g)).transpose()
}
