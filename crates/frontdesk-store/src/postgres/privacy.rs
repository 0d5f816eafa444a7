//! Retention and privacy on PostgreSQL (issue 5): site settings, the retention sweep (delete
//! or anonymise), a visitor's erase and the audit log. Each change runs in one
//! transaction; the generated `tsvector` columns of migration 0004 follow the rows, so
//! deleted or anonymised text is no longer found. The `Store` impl in `postgres.rs`
//! delegates here.

use frontdesk_core::error::BackendResult;
use frontdesk_core::id::{Id, SiteId, VisitorId};
use frontdesk_core::reports::{AuditEntry, Erased, Purged, RetentionMode};
use frontdesk_core::store::Site;
use serde_json::{Map, Value};

use super::{db_err, PostgresStore, D};
use crate::convert::{self, SiteRow};
use crate::privacy_rows::{audit_from_row, merge_settings, AuditRow, REMOVED};

impl PostgresStore {
    pub(crate) async fn privacy_sites(&self) -> BackendResult<Vec<Site>> {
        let rows: Vec<SiteRow> =
            sqlx::query_as("SELECT id, name, allowed_domains::text, settings::text, created_at FROM sites ORDER BY id")
                .fetch_all(self.pool())
                .await
                .map_err(db_err)?;
        rows.into_iter().map(|r| convert::site_from_row(D, r)).collect()
    }

    pub(crate) async fn privacy_update_settings(
        &self,
        site: SiteId,
        patch: &Map<String, Value>,
    ) -> BackendResult<Option<Site>> {
        let id = convert::id_to_db(D, site)?;
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let row: Option<SiteRow> = sqlx::query_as(
            "SELECT id, name, allowed_domains::text, settings::text, created_at FROM sites WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let mut site = convert::site_from_row(D, row)?;
        site.settings = merge_settings(&site.settings, patch);
        sqlx::query("UPDATE sites SET settings = $1::jsonb WHERE id = $2")
            .bind(convert::json_to_db(D, &site.settings)?)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(site))
    }

    pub(crate) async fn privacy_purge(&self, site: SiteId, before: i64, mode: RetentionMode) -> BackendResult<Purged> {
        let site = convert::id_to_db(D, site)?;
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let purged = match mode {
            RetentionMode::Delete => {
                let messages = sqlx::query(concat!(
                    "DELETE FROM messages WHERE site_id = $1 AND chat_id IN (",
                    "SELECT id FROM chats WHERE site_id = $1 AND COALESCE(ended_at, created_at) < $2",
                    ")"
                ))
                .bind(site)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                sqlx::query(concat!(
                    "DELETE FROM chat_members WHERE chat_id IN (",
                    "SELECT id FROM chats WHERE site_id = $1 AND COALESCE(ended_at, created_at) < $2",
                    ")"
                ))
                .bind(site)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let chats = sqlx::query("DELETE FROM chats WHERE site_id = $1 AND COALESCE(ended_at, created_at) < $2")
                    .bind(site)
                    .bind(before)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                Purged { chats, messages }
            }
            RetentionMode::Anonymise => {
                let messages = sqlx::query(concat!(
                    "UPDATE messages SET content = $3, sender_name = CASE WHEN message_type = 1 THEN '' ",
                    "ELSE sender_name END WHERE site_id = $1 AND content <> $3 AND chat_id IN (",
                    "SELECT id FROM chats WHERE site_id = $1 AND COALESCE(ended_at, created_at) < $2",
                    ")"
                ))
                .bind(site)
                .bind(before)
                .bind(REMOVED)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                let chats = sqlx::query(
                    "UPDATE chats SET visitor_name = '', visitor_email = '', comment = NULL, anonymised_at = $3 \
                     WHERE site_id = $1 AND COALESCE(ended_at, created_at) < $2 AND anonymised_at IS NULL",
                )
                .bind(site)
                .bind(before)
                .bind(convert::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                Purged { chats, messages }
            }
        };
        tx.commit().await.map_err(db_err)?;
        Ok(purged)
    }

    pub(crate) async fn privacy_erase(&self, site: SiteId, visitor: VisitorId) -> BackendResult<Erased> {
        let (site, visitor) = (convert::id_to_db(D, site)?, convert::id_to_db(D, visitor)?);
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let messages = sqlx::query(
            "DELETE FROM messages WHERE site_id = $1 AND chat_id IN \
             (SELECT id FROM chats WHERE site_id = $1 AND visitor_id = $2)",
        )
        .bind(site)
        .bind(visitor)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        sqlx::query(
            "DELETE FROM chat_members WHERE chat_id IN (SELECT id FROM chats WHERE site_id = $1 AND visitor_id = $2)",
        )
        .bind(site)
        .bind(visitor)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let chats = sqlx::query("DELETE FROM chats WHERE site_id = $1 AND visitor_id = $2")
            .bind(site)
            .bind(visitor)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let visitors = sqlx::query("DELETE FROM visitors WHERE site_id = $1 AND id = $2")
            .bind(site)
            .bind(visitor)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(Erased { visitors, chats, messages })
    }

    pub(crate) async fn privacy_insert_audit(&self, e: &AuditEntry) -> BackendResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, site_id, actor_agent_id, action, target, details, at) \
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
        )
        .bind(convert::id_to_db(D, e.id)?)
        .bind(convert::id_to_db(D, e.site_id)?)
        .bind(e.actor_agent_id.map(|a| convert::id_to_db(D, a)).transpose()?)
        .bind(e.action.clone())
        .bind(e.target.clone())
        .bind(convert::json_to_db(D, &e.details)?)
        .bind(e.at)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn privacy_audit_log(
        &self,
        site: SiteId,
        after: Option<Id>,
        limit: u32,
    ) -> BackendResult<Vec<AuditEntry>> {
        let after = match after {
            Some(a) => convert::id_to_db(D, a)?,
            None => i64::MAX,
        };
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, site_id, actor_agent_id, action, target, details::text, at FROM audit_log \
             WHERE site_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(convert::id_to_db(D, site)?)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.into_iter().map(|r| audit_from_row(D, r)).collect()
    }
}
