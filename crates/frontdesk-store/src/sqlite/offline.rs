//! Offline messages on SQLite (migration 0006): the write-behind insert (keyed by id, so a
//! replay inserts nothing), a site's page newest first with keyset paging, the handled
//! mark, a visitor's erase and the retention sweep. The `Store` impl in `sqlite.rs`
//! delegates here.

use frontdesk_core::error::BackendResult;
use frontdesk_core::history::{OfflineMessage, OfflineMessageRecord, OfflinePage, OfflineQuery};
use frontdesk_core::id::{AgentId, Id, SiteId, VisitorId};
use frontdesk_core::reports::RetentionMode;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{db_err, SqliteStore, D};
use crate::convert;
use crate::offline_rows::{offline_columns, offline_from_row, page, OfflineRow};
use crate::privacy_rows::REMOVED;

/// Applies one offline message of a write-behind batch. `DO NOTHING` on its id: a replay
/// never undoes a handled mark.
pub(super) async fn insert(tx: &mut SqliteConnection, m: &OfflineMessageRecord) -> BackendResult<()> {
    sqlx::query(
        "INSERT INTO offline_messages (id, site_id, visitor_id, name, email, message, page_url, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(convert::id_to_db(D, m.id)?)
    .bind(convert::id_to_db(D, m.site_id)?)
    .bind(convert::id_to_db(D, m.visitor_id)?)
    .bind(m.name.clone())
    .bind(m.email.clone())
    .bind(m.message.clone())
    .bind(m.page_url.clone())
    .bind(m.created_at)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn offline_list(&self, q: &OfflineQuery) -> BackendResult<OfflinePage> {
        let limit = q.limit.max(1);
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(concat!("SELECT ", offline_columns!(), " FROM offline_messages WHERE site_id = "));
        qb.push_bind(convert::id_to_db(D, q.site_id)?);
        if let Some(handled) = q.handled {
            qb.push(" AND handled = ").push_bind(handled);
        }
        if let Some(before) = q.before {
            qb.push(" AND id < ").push_bind(convert::id_to_db(D, before)?);
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let rows: Vec<OfflineRow> = qb.build_query_as().fetch_all(self.reader()).await.map_err(db_err)?;
        page(D, rows, limit)
    }

    pub(crate) async fn offline_get(&self, site: SiteId, id: Id) -> BackendResult<Option<OfflineMessage>> {
        let row: Option<OfflineRow> = sqlx::query_as(concat!(
            "SELECT ",
            offline_columns!(),
            " FROM offline_messages WHERE site_id = ? AND id = ?"
        ))
        .bind(convert::id_to_db(D, site)?)
        .bind(convert::id_to_db(D, id)?)
        .fetch_optional(self.reader())
        .await
        .map_err(db_err)?;
        row.map(|r| offline_from_row(D, r)).transpose()
    }

    pub(crate) async fn offline_set_handled(
        &self,
        site: SiteId,
        id: Id,
        by: Option<(AgentId, i64)>,
    ) -> BackendResult<Option<OfflineMessage>> {
        let (site, id) = (convert::id_to_db(D, site)?, convert::id_to_db(D, id)?);
        let mut tx = self.begin_write().await?;
        match by {
            Some((agent, at)) => sqlx::query(
                "UPDATE offline_messages SET handled = 1, handled_at = ?3, handled_by = ?4 \
                 WHERE site_id = ?1 AND id = ?2 AND handled = 0",
            )
            .bind(site)
            .bind(id)
            .bind(at)
            .bind(convert::id_to_db(D, agent)?),
            None => sqlx::query(
                "UPDATE offline_messages SET handled = 0, handled_at = NULL, handled_by = NULL \
                 WHERE site_id = ?1 AND id = ?2",
            )
            .bind(site)
            .bind(id),
        }
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let row: Option<OfflineRow> = sqlx::query_as(concat!(
            "SELECT ",
            offline_columns!(),
            " FROM offline_messages WHERE site_id = ? AND id = ?"
        ))
        .bind(site)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.map(|r| offline_from_row(D, r)).transpose()
    }

    pub(crate) async fn offline_erase_visitor(&self, site: SiteId, visitor: VisitorId) -> BackendResult<u64> {
        let done = sqlx::query("DELETE FROM offline_messages WHERE site_id = ? AND visitor_id = ?")
            .bind(convert::id_to_db(D, site)?)
            .bind(convert::id_to_db(D, visitor)?)
            .execute(self.writer())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn offline_purge(&self, site: SiteId, before: i64, mode: RetentionMode) -> BackendResult<u64> {
        let site = convert::id_to_db(D, site)?;
        let done = match mode {
            RetentionMode::Delete => sqlx::query("DELETE FROM offline_messages WHERE site_id = ? AND created_at < ?")
                .bind(site)
                .bind(before)
                .execute(self.writer())
                .await
                .map_err(db_err)?,
            RetentionMode::Anonymise => sqlx::query(
                "UPDATE offline_messages SET name = '', email = '', page_url = NULL, message = ?, anonymised_at = ? \
                 WHERE site_id = ? AND created_at < ? AND anonymised_at IS NULL",
            )
            .bind(REMOVED)
            .bind(convert::now_ms())
            .bind(site)
            .bind(before)
            .execute(self.writer())
            .await
            .map_err(db_err)?,
        };
        Ok(done.rows_affected())
    }
}
