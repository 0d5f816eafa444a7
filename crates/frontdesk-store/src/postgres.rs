//! The cluster durable store: PostgreSQL 15+ shared by every node (SPEC §2).
//!
//! The pool is small and fails fast: when the database is down a request waits at most
//! [`ACQUIRE_TIMEOUT`] and gets `Unavailable`, so callers that can carry on without the
//! store (core chat, SPEC seed 000) are not held up behind a hanging connect.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::id::{AgentId, SiteId};
use frontdesk_core::store::{Agent, SecretRef, Site, Store};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::convert::{self, agent_columns, AgentRow, SiteRow};
use crate::error::{self, Dialect};
use crate::migrate;

// agents, departments, sessions
mod agents;
// end agents, departments, sessions

// chats
mod chats;
// end chats

// history
mod history;
// end history

// reports, retention, privacy
mod privacy;
mod reports;
// end reports, retention, privacy

// offline messages
mod offline;
// end offline messages

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Advisory-lock key serialising `migrate` across nodes ("frontdes" in ASCII).
const MIGRATION_LOCK: i64 = 0x6672_6f6e_7464_6573;

const D: Dialect = Dialect::Postgres;

/// Per node. PostgreSQL's default limit is 100 connections, shared by every node.
const MAX_CONNECTIONS: u32 = 10;
/// How long a caller waits for a connection (including opening one) before `Unavailable`.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The PostgreSQL adapter of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to a `postgres://` or `postgresql://` URL, and fails with `Unavailable`
    /// within [`ACQUIRE_TIMEOUT`] when the server cannot be reached.
    pub async fn connect(url: &str) -> BackendResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| BackendError::other(D.name(), format!("invalid PostgreSQL URL: {e}")))?;
        // Named without user or password, which may be secret.
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)")
        );
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| match error::from_sqlx(D, e) {
                BackendError::Unavailable { backend, detail } => BackendError::Unavailable {
                    backend,
                    detail: format!("cannot reach PostgreSQL at {target} within {ACQUIRE_TIMEOUT:?}: {detail}"),
                },
                other => other,
            })?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn db_err(err: sqlx::Error) -> BackendError {
    error::from_sqlx(D, err)
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        D.name()
    }

    async fn ping(&self) -> BackendResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn migrate(&self) -> BackendResult<Vec<i64>> {
        // Nodes starting together on a fresh database race on `CREATE TABLE IF NOT EXISTS`
        // of sqlx's bookkeeping table (PostgreSQL can report "already exists" to the
        // loser), which runs before sqlx takes its own lock. A session advisory lock
        // held on one connection around the whole step serialises them.
        let mut lock = self.pool.acquire().await.map_err(db_err)?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *lock).await.map_err(db_err)?;
        let result = migrate::run(&MIGRATOR, &self.pool).await.map_err(|e| error::from_migrate(D, e));
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *lock).await;
        if unlocked.is_err() {
            // The lock dies with the session; make sure this one is not reused.
            lock.detach();
        }
        result
    }

    async fn applied_migrations(&self) -> BackendResult<Vec<i64>> {
        migrate::applied(&self.pool).await.map_err(|e| error::from_migrate(D, e))
    }

    async fn insert_site(&self, site: &Site) -> BackendResult<()> {
        sqlx::query(
            "INSERT INTO sites (id, name, allowed_domains, settings, created_at) \
             VALUES ($1, $2, $3::jsonb, $4::jsonb, $5)",
        )
        .bind(convert::id_to_db(D, site.id)?)
        .bind(&site.name)
        .bind(convert::json_to_db(D, &site.allowed_domains)?)
        .bind(convert::json_to_db(D, &site.settings)?)
        .bind(site.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| error::from_insert(D, e, |_| convert::site_conflict(site)))?;
        Ok(())
    }

    async fn site(&self, id: SiteId) -> BackendResult<Option<Site>> {
        let row: Option<SiteRow> = sqlx::query_as(
            "SELECT id, name, allowed_domains::text, settings::text, created_at FROM sites WHERE id = $1",
        )
        .bind(convert::id_to_db(D, id)?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| convert::site_from_row(D, r)).transpose()
    }

    async fn site_count(&self) -> BackendResult<u64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sites").fetch_one(&self.pool).await.map_err(db_err)?;
        u64::try_from(n).map_err(|_| BackendError::other(D.name(), format!("negative site count {n}")))
    }

    async fn insert_agent(&self, agent: &Agent) -> BackendResult<()> {
        sqlx::query(
            "INSERT INTO agents (id, site_id, email, name, password_hash, role, max_chats, priority, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(convert::id_to_db(D, agent.id)?)
        .bind(convert::id_to_db(D, agent.site_id)?)
        .bind(&agent.email)
        .bind(&agent.name)
        .bind(&agent.password_hash)
        .bind(agent.role.as_str())
        .bind(agent.max_chats)
        .bind(agent.priority)
        .bind(agent.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if error::is_foreign_key_violation(&e) {
                BackendError::other(D.name(), convert::agent_site_missing(agent))
            } else {
                error::from_insert(D, e, |rule| convert::agent_conflict(agent, rule))
            }
        })?;
        Ok(())
    }

    async fn agent(&self, site_id: SiteId, id: AgentId) -> BackendResult<Option<Agent>> {
        let row: Option<AgentRow> =
            sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE site_id = $1 AND id = $2"))
                .bind(convert::id_to_db(D, site_id)?)
                .bind(convert::id_to_db(D, id)?)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        row.map(|r| convert::agent_from_row(D, r)).transpose()
    }

    async fn agent_by_email(&self, email: &str) -> BackendResult<Option<Agent>> {
        // Same expression as the unique index, so the lookup uses it.
        let row: Option<AgentRow> =
            sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE lower(email) = lower($1)"))
                .bind(email)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        row.map(|r| convert::agent_from_row(D, r)).transpose()
    }

    async fn agents(&self, site_id: SiteId) -> BackendResult<Vec<Agent>> {
        let rows: Vec<AgentRow> =
            sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE site_id = $1 ORDER BY id"))
                .bind(convert::id_to_db(D, site_id)?)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.into_iter().map(|r| convert::agent_from_row(D, r)).collect()
    }

    async fn secret_or_insert(&self, secret: SecretRef<'_>, candidate: &[u8]) -> BackendResult<Vec<u8>> {
        let site = convert::secret_site(D, secret.site_id)?;
        // Two autocommit statements, not one: ON CONFLICT DO NOTHING waits for a concurrent
        // inserter to commit, and only a statement started after that (the SELECT) sees its
        // row; a single statement's snapshot would predate it and find nothing.
        sqlx::query(
            "INSERT INTO secrets (site_id, name, value, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (site_id, name) DO NOTHING",
        )
        .bind(site)
        .bind(secret.name)
        .bind(candidate)
        .bind(convert::now_ms())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        let (value,): (Vec<u8>,) = sqlx::query_as("SELECT value FROM secrets WHERE site_id = $1 AND name = $2")
            .bind(site)
            .bind(secret.name)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(value)
    }

    // agents, departments, sessions
    async fn update_agent(
        &self,
        site_id: SiteId,
        id: AgentId,
        update: &frontdesk_core::store::AgentUpdate,
    ) -> BackendResult<Option<Agent>> {
        self.agents_update(site_id, id, update).await
    }

    async fn delete_agent(&self, site_id: SiteId, id: AgentId) -> BackendResult<bool> {
        self.agents_delete(site_id, id).await
    }

    async fn agent_preferences(
        &self,
        site_id: SiteId,
        id: AgentId,
    ) -> BackendResult<Option<serde_json::Map<String, serde_json::Value>>> {
        self.agents_preferences(site_id, id).await
    }

    async fn set_agent_preference(
        &self,
        site_id: SiteId,
        id: AgentId,
        key: &str,
        value: &serde_json::Value,
    ) -> BackendResult<Option<serde_json::Map<String, serde_json::Value>>> {
        self.agents_set_preference(site_id, id, key, value).await
    }

    async fn departments(&self, site_id: SiteId) -> BackendResult<Vec<frontdesk_core::store::Department>> {
        self.departments_list(site_id).await
    }

    async fn department(
        &self,
        site_id: SiteId,
        id: frontdesk_core::id::DepartmentId,
    ) -> BackendResult<Option<frontdesk_core::store::Department>> {
        self.departments_get(site_id, id).await
    }

    async fn insert_department(&self, department: &frontdesk_core::store::Department) -> BackendResult<()> {
        self.departments_insert(department).await
    }

    async fn update_department(
        &self,
        site_id: SiteId,
        id: frontdesk_core::id::DepartmentId,
        update: &frontdesk_core::store::DepartmentUpdate,
    ) -> BackendResult<Option<frontdesk_core::store::Department>> {
        self.departments_update(site_id, id, update).await
    }

    async fn delete_department(&self, site_id: SiteId, id: frontdesk_core::id::DepartmentId) -> BackendResult<bool> {
        self.departments_delete(site_id, id).await
    }

    async fn insert_refresh_token(&self, token: &frontdesk_core::store::RefreshToken) -> BackendResult<()> {
        self.refresh_insert(token).await
    }

    async fn refresh_token(&self, token_hash: &str) -> BackendResult<Option<frontdesk_core::store::RefreshToken>> {
        self.refresh_get(token_hash).await
    }

    async fn use_refresh_token(&self, token_hash: &str) -> BackendResult<bool> {
        self.refresh_use(token_hash).await
    }

    async fn revoke_session(&self, site_id: SiteId, session_id: &str) -> BackendResult<u64> {
        self.refresh_revoke_session(site_id, session_id).await
    }

    async fn revoke_agent_sessions(&self, site_id: SiteId, agent_id: AgentId) -> BackendResult<Vec<String>> {
        self.refresh_revoke_agent(site_id, agent_id).await
    }
    // end agents, departments, sessions

    // chats
    async fn insert_chat(
        &self,
        chat_id: frontdesk_core::id::ChatId,
        site_id: SiteId,
        visitor_id: frontdesk_core::id::VisitorId,
        created_at: i64,
    ) -> BackendResult<()> {
        self.chats_insert(chat_id, site_id, visitor_id, created_at).await
    }

    async fn add_chat_member(&self, chat_id: frontdesk_core::id::ChatId, agent_id: AgentId) -> BackendResult<()> {
        self.chats_add_member(chat_id, agent_id).await
    }

    async fn chat_membership(
        &self,
        chat_id: frontdesk_core::id::ChatId,
    ) -> BackendResult<Option<frontdesk_core::store::ChatMembership>> {
        self.chats_membership(chat_id).await
    }
    // end chats

    // history
    async fn apply_history(&self, batch: &[frontdesk_core::history::HistoryWrite]) -> BackendResult<()> {
        self.history_apply(batch).await
    }

    async fn list_chats(
        &self,
        query: &frontdesk_core::history::ChatQuery,
    ) -> BackendResult<frontdesk_core::history::ChatPage> {
        self.history_list(query).await
    }

    async fn chat_transcript(
        &self,
        site_id: SiteId,
        chat_id: frontdesk_core::id::ChatId,
    ) -> BackendResult<Option<frontdesk_core::history::Transcript>> {
        self.history_transcript(site_id, chat_id).await
    }
    // end history

    // reports, retention, privacy
    async fn report_chats(
        &self,
        query: &frontdesk_core::reports::ReportQuery,
        interval: frontdesk_core::reports::Interval,
    ) -> BackendResult<Vec<frontdesk_core::reports::ChatBucket>> {
        self.reports_chats(query, interval).await
    }

    async fn report_spans(
        &self,
        query: &frontdesk_core::reports::ReportQuery,
        span: frontdesk_core::reports::Span,
    ) -> BackendResult<Vec<frontdesk_core::reports::SpanStats>> {
        self.reports_spans(query, span).await
    }

    async fn report_ratings(
        &self,
        query: &frontdesk_core::reports::ReportQuery,
    ) -> BackendResult<Vec<frontdesk_core::reports::RatingStats>> {
        self.reports_ratings(query).await
    }

    async fn report_agent_time(
        &self,
        site_id: SiteId,
        from: i64,
        to: i64,
        now: i64,
    ) -> BackendResult<Vec<frontdesk_core::reports::AgentTime>> {
        self.reports_agent_time(site_id, from, to, now).await
    }

    async fn sites(&self) -> BackendResult<Vec<Site>> {
        self.privacy_sites().await
    }

    async fn update_site_settings(
        &self,
        site_id: SiteId,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> BackendResult<Option<Site>> {
        self.privacy_update_settings(site_id, patch).await
    }

    async fn purge_history(
        &self,
        site_id: SiteId,
        before: i64,
        mode: frontdesk_core::reports::RetentionMode,
    ) -> BackendResult<frontdesk_core::reports::Purged> {
        self.privacy_purge(site_id, before, mode).await
    }

    async fn erase_visitor(
        &self,
        site_id: SiteId,
        visitor_id: frontdesk_core::id::VisitorId,
    ) -> BackendResult<frontdesk_core::reports::Erased> {
        self.privacy_erase(site_id, visitor_id).await
    }

    async fn insert_audit(&self, entry: &frontdesk_core::reports::AuditEntry) -> BackendResult<()> {
        self.privacy_insert_audit(entry).await
    }

    async fn audit_log(
        &self,
        site_id: SiteId,
        after: Option<frontdesk_core::id::Id>,
        limit: u32,
    ) -> BackendResult<Vec<frontdesk_core::reports::AuditEntry>> {
        self.privacy_audit_log(site_id, after, limit).await
    }
    // end reports, retention, privacy

    // offline messages
    async fn list_offline_messages(
        &self,
        query: &frontdesk_core::history::OfflineQuery,
    ) -> BackendResult<frontdesk_core::history::OfflinePage> {
        self.offline_list(query).await
    }

    async fn offline_message(
        &self,
        site_id: SiteId,
        id: frontdesk_core::id::Id,
    ) -> BackendResult<Option<frontdesk_core::history::OfflineMessage>> {
        self.offline_get(site_id, id).await
    }

    async fn set_offline_message_handled(
        &self,
        site_id: SiteId,
        id: frontdesk_core::id::Id,
        by: Option<(AgentId, i64)>,
    ) -> BackendResult<Option<frontdesk_core::history::OfflineMessage>> {
        self.offline_set_handled(site_id, id, by).await
    }

    async fn erase_visitor_offline_messages(
        &self,
        site_id: SiteId,
        visitor_id: frontdesk_core::id::VisitorId,
    ) -> BackendResult<u64> {
        self.offline_erase_visitor(site_id, visitor_id).await
    }

    async fn purge_offline_messages(
        &self,
        site_id: SiteId,
        before: i64,
        mode: frontdesk_core::reports::RetentionMode,
    ) -> BackendResult<u64> {
        self.offline_purge(site_id, before, mode).await
    }
    // end offline messages
}
