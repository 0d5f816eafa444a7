//! The embedded durable store: one SQLite file in the data directory (SPEC §2).
//!
//! Concurrency: SQLite allows one writer at a time, so writes go through a pool of exactly
//! one connection (they queue in the pool instead of failing with `SQLITE_BUSY`), and reads
//! go through a separate pool that WAL lets run alongside that writer. Read connections are
//! `query_only`, so a write sent to the wrong pool fails loudly in tests.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::id::{AgentId, SiteId};
use frontdesk_core::store::{Agent, SecretRef, Site, Store};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

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

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const D: Dialect = Dialect::Sqlite;

/// How long a statement waits for SQLite's file lock (held by another process, or by a
/// checkpoint) before giving up with `SQLITE_BUSY`, which reads as `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a pooled connection; writers queue here behind each other.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers run in parallel under WAL; more than a few buys nothing on small machines.
const READ_CONNECTIONS: u32 = 4;

/// The SQLite adapter of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by a `sqlite://path` URL. The
    /// file's directory must exist: the binary creates its data directory, and a missing
    /// one here is almost always a typo in the URL.
    pub async fn connect(url: &str) -> BackendResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| BackendError::other(D.name(), format!("invalid SQLite URL: {e}")))?;
        ensure_parent_dir(options.get_filename()).await?;

        let writer_options = options
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // The writer connection is kept open for the life of the pool: it owns the WAL and
        // shared-memory files, and reopening it per write would cost a file open each time.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(writer_options)
            .await
            .map_err(|e| open_error(options.get_filename(), e))?;

        // Opened after the writer, which has created the file and switched it to WAL (a
        // setting stored in the file, so readers need not repeat it).
        let reader_options = options.clone().busy_timeout(BUSY_TIMEOUT).foreign_keys(true).pragma("query_only", "ON");
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(reader_options)
            .await
            .map_err(|e| open_error(options.get_filename(), e))?;

        Ok(Self { writer, reader })
    }

    /// The single-connection pool every write goes through.
    /// A write transaction on the single writer, `BEGIN IMMEDIATE` (the write lock up
    /// front). When SQLite rolled a failed transaction back by itself (a full disk), sqlx's
    /// connection keeps believing it is inside one and refuses every later `BEGIN`; such a
    /// connection is closed here so the pool opens a fresh one, instead of every durable
    /// write of the node failing until it restarts.
    pub(crate) async fn begin_write(&self) -> BackendResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        match self.writer.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => Ok(tx),
            Err(e) if e.to_string().contains("transaction depth") => {
                tracing::warn!(error = %e, "closing a SQLite writer connection that lost track of its transaction");
                if let Ok(conn) = self.writer.acquire().await {
                    drop(conn.detach());
                }
                self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
            }
            Err(e) => Err(db_err(e)),
        }
    }

    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The pool for reads; its connections refuse writes.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

async fn ensure_parent_dir(file: &Path) -> BackendResult<()> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    match tokio::fs::metadata(dir).await {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(BackendError::unavailable(
            D.name(),
            format!("cannot open {}: {} is not a directory", file.display(), dir.display()),
        )),
        Err(e) => Err(BackendError::unavailable(
            D.name(),
            format!(
                "cannot open {}: directory {} does not exist or cannot be read ({e}); create it first",
                file.display(),
                dir.display()
            ),
        )),
    }
}

fn open_error(file: &Path, err: sqlx::Error) -> BackendError {
    match error::from_sqlx(D, err) {
        BackendError::Unavailable { backend, detail } => {
            BackendError::Unavailable { backend, detail: format!("cannot open {}: {detail}", file.display()) }
        }
        other => other,
    }
}

fn db_err(err: sqlx::Error) -> BackendError {
    error::from_sqlx(D, err)
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        D.name()
    }

    async fn ping(&self) -> BackendResult<()> {
        // A read would pass while writes fail (a full disk, a read-only file): rewrite the
        // header's user_version with its own value, through the same writer the stores use.
        let mut tx = self.begin_write().await?;
        let (version,): (i64,) = sqlx::query_as("PRAGMA user_version").fetch_one(&mut *tx).await.map_err(db_err)?;
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {version}")))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn migrate(&self) -> BackendResult<Vec<i64>> {
        migrate::run(&MIGRATOR, &self.writer).await.map_err(|e| error::from_migrate(D, e))
    }

    async fn applied_migrations(&self) -> BackendResult<Vec<i64>> {
        // On the writer: creating the bookkeeping table when missing is a write.
        migrate::applied(&self.writer).await.map_err(|e| error::from_migrate(D, e))
    }

    async fn insert_site(&self, site: &Site) -> BackendResult<()> {
        sqlx::query(
            "INSERT INTO sites (id, name, allowed_domains, settings, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(convert::id_to_db(D, site.id)?)
        .bind(&site.name)
        .bind(convert::json_to_db(D, &site.allowed_domains)?)
        .bind(convert::json_to_db(D, &site.settings)?)
        .bind(site.created_at)
        .execute(&self.writer)
        .await
        .map_err(|e| error::from_insert(D, e, |_| convert::site_conflict(site)))?;
        Ok(())
    }

    async fn site(&self, id: SiteId) -> BackendResult<Option<Site>> {
        let row: Option<SiteRow> =
            sqlx::query_as("SELECT id, name, allowed_domains, settings, created_at FROM sites WHERE id = ?")
                .bind(convert::id_to_db(D, id)?)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        row.map(|r| convert::site_from_row(D, r)).transpose()
    }

    async fn site_count(&self) -> BackendResult<u64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM sites").fetch_one(&self.reader).await.map_err(db_err)?;
        u64::try_from(n).map_err(|_| BackendError::other(D.name(), format!("negative site count {n}")))
    }

    async fn insert_agent(&self, agent: &Agent) -> BackendResult<()> {
        sqlx::query(
            "INSERT INTO agents (id, site_id, email, name, password_hash, role, max_chats, priority, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.writer)
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
            sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE site_id = ? AND id = ?"))
                .bind(convert::id_to_db(D, site_id)?)
                .bind(convert::id_to_db(D, id)?)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        row.map(|r| convert::agent_from_row(D, r)).transpose()
    }

    async fn agent_by_email(&self, email: &str) -> BackendResult<Option<Agent>> {
        // The column is declared COLLATE NOCASE, so `=` compares case-insensitively and
        // uses the unique index.
        let row: Option<AgentRow> =
            sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE email = ?"))
                .bind(email)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        row.map(|r| convert::agent_from_row(D, r)).transpose()
    }

    async fn agents(&self, site_id: SiteId) -> BackendResult<Vec<Agent>> {
        let rows: Vec<AgentRow> =
            sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE site_id = ? ORDER BY id"))
                .bind(convert::id_to_db(D, site_id)?)
                .fetch_all(&self.reader)
                .await
                .map_err(db_err)?;
        rows.into_iter().map(|r| convert::agent_from_row(D, r)).collect()
    }

    async fn secret_or_insert(&self, secret: SecretRef<'_>, candidate: &[u8]) -> BackendResult<Vec<u8>> {
        let site = convert::secret_site(D, secret.site_id)?;
        // BEGIN IMMEDIATE takes the write lock up front, so the insert and the read that
        // follows see one state even if another process shares the file.
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO secrets (site_id, name, value, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (site_id, name) DO NOTHING",
        )
        .bind(site)
        .bind(secret.name)
        .bind(candidate)
        .bind(convert::now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let (value,): (Vec<u8>,) = sqlx::query_as("SELECT value FROM secrets WHERE site_id = ? AND name = ?")
            .bind(site)
            .bind(secret.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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
