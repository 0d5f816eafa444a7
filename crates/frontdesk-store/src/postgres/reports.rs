//! Reports on PostgreSQL (issue 5): the statements of [`crate::report_sql`] run on the read
//! pool, and agent status changes applied from the write-behind queue. The `Store` impl in
//! `postgres.rs` delegates here.

use frontdesk_core::error::BackendResult;
use frontdesk_core::id::SiteId;
use frontdesk_core::reports::{
    AgentStatusChange, AgentTime, ChatBucket, Interval, RatingStats, ReportQuery, Span, SpanStats,
};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{db_err, PostgresStore, D};
use crate::convert;
use crate::report_sql::{self, Piece, Statement};

/// Applies one status change; a replay hits the primary key and changes nothing.
pub(super) async fn insert_status(tx: &mut PgConnection, c: &AgentStatusChange) -> BackendResult<()> {
    sqlx::query(
        "INSERT INTO agent_status_history (site_id, agent_id, status, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (agent_id, at, status) DO NOTHING",
    )
    .bind(convert::id_to_db(D, c.site_id)?)
    .bind(convert::id_to_db(D, c.agent_id)?)
    .bind(c.status.clone())
    .bind(c.at)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

fn builder(statement: Statement) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new("");
    for piece in statement.0 {
        match piece {
            Piece::Sql(s) => qb.push(s),
            Piece::Int(v) => qb.push_bind(v),
        };
    }
    qb
}

impl PostgresStore {
    pub(crate) async fn reports_chats(&self, q: &ReportQuery, interval: Interval) -> BackendResult<Vec<ChatBucket>> {
        let mut qb = builder(report_sql::chats(D, q, interval)?);
        let rows = qb.build_query_as().fetch_all(self.pool()).await.map_err(db_err)?;
        report_sql::chats_from_rows(D, rows)
    }

    pub(crate) async fn reports_spans(&self, q: &ReportQuery, span: Span) -> BackendResult<Vec<SpanStats>> {
        let mut qb = builder(report_sql::spans(D, q, span)?);
        let rows = qb.build_query_as().fetch_all(self.pool()).await.map_err(db_err)?;
        report_sql::spans_from_rows(D, rows)
    }

    pub(crate) async fn reports_ratings(&self, q: &ReportQuery) -> BackendResult<Vec<RatingStats>> {
        let mut qb = builder(report_sql::ratings(D, q)?);
        let rows = qb.build_query_as().fetch_all(self.pool()).await.map_err(db_err)?;
        report_sql::ratings_from_rows(D, rows)
    }

    pub(crate) async fn reports_agent_time(
        &self,
        site: SiteId,
        from: i64,
        to: i64,
        now: i64,
    ) -> BackendResult<Vec<AgentTime>> {
        let mut qb = builder(report_sql::agent_time(D, site, from, to, now)?);
        let rows: Vec<(i64, i64, i64)> = qb.build_query_as().fetch_all(self.pool()).await.map_err(db_err)?;
        rows.into_iter()
            .map(|(agent, online_ms, away_ms)| {
                Ok(AgentTime { agent_id: convert::id_from_db(D, agent)?, online_ms, away_ms })
            })
            .collect()
    }
}
