//! Chat history on SQLite (migration 0004): applying write-behind batches in one
//! `BEGIN IMMEDIATE` transaction, listing a site's chats with filters, FTS5 search (`bm25`)
//! and keyset paging, and reading a transcript. The `Store` impl in `sqlite.rs` delegates
//! here.

use frontdesk_core::error::BackendResult;
use frontdesk_core::history::{
    ChatCursor, ChatPage, ChatQuery, ChatRecord, HistoryWrite, MessageRecord, Transcript, VisitorHistory,
};
use frontdesk_core::id::{ChatId, SiteId};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::{db_err, SqliteStore, D};
use crate::convert;
use crate::history_rows::{
    self, first_responses, fts5_query, members_by_chat, message_columns, summary_from_row, MessageRow, SummaryRow,
};

macro_rules! summary_columns {
    () => {
        "c.id, c.site_id, c.visitor_id, c.visitor_name, c.visitor_email, c.department_id, c.status, c.agent_id, \
         c.created_at, c.started_at, c.ended_at, c.first_response_at, c.rating, c.comment, c.wrap_up_notes, c.tags"
    };
}

const UPSERT_CHAT: &str = "INSERT INTO chats (id, site_id, visitor_id, created_at, department_id, status, agent_id, \
     started_at, ended_at, rating, comment, wrap_up_notes, tags, visitor_name, visitor_email, history_version) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (id) DO UPDATE SET department_id = excluded.department_id, status = excluded.status, \
     agent_id = excluded.agent_id, started_at = COALESCE(excluded.started_at, chats.started_at), \
     ended_at = COALESCE(excluded.ended_at, chats.ended_at), rating = COALESCE(excluded.rating, chats.rating), \
     comment = COALESCE(excluded.comment, chats.comment), \
     wrap_up_notes = COALESCE(excluded.wrap_up_notes, chats.wrap_up_notes), \
     tags = CASE WHEN excluded.tags = '[]' THEN chats.tags ELSE excluded.tags END, \
     visitor_name = CASE WHEN excluded.visitor_name = '' THEN chats.visitor_name ELSE excluded.visitor_name END, \
     visitor_email = CASE WHEN excluded.visitor_email = '' THEN chats.visitor_email ELSE excluded.visitor_email END, \
     history_version = excluded.history_version \
     WHERE chats.history_version <= excluded.history_version AND chats.site_id = excluded.site_id";

const ADD_MEMBER: &str = "INSERT INTO chat_members (chat_id, agent_id, added_at) \
     SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM chats WHERE id = ? AND site_id = ?) \
     ON CONFLICT (chat_id, agent_id) DO NOTHING";

const UPSERT_MESSAGE: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, data_offset = excluded.data_offset \
     WHERE messages.chat_id = excluded.chat_id \
     AND (messages.seq <> excluded.seq OR messages.data_offset <> excluded.data_offset)"
);

const UPSERT_VISITOR: &str = "INSERT INTO visitors (id, site_id, name, email, custom_variables, first_seen, \
     last_seen, visit_count, page_views, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, \
     custom_variables = excluded.custom_variables, first_seen = MIN(visitors.first_seen, excluded.first_seen), \
     last_seen = excluded.last_seen, visit_count = excluded.visit_count, page_views = excluded.page_views, \
     version = excluded.version \
     WHERE visitors.version <= excluded.version AND visitors.site_id = excluded.site_id";

const FIRST_RESPONSE: &str = "UPDATE chats SET first_response_at = ? \
     WHERE id = ? AND (first_response_at IS NULL OR first_response_at > ?)";

impl SqliteStore {
    pub(crate) async fn history_apply(&self, batch: &[HistoryWrite]) -> BackendResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for write in batch {
            match write {
                HistoryWrite::Chat(c) => upsert_chat(&mut tx, c).await?,
                HistoryWrite::Message(m) => upsert_message(&mut tx, m).await?,
                HistoryWrite::Visitor(v) => upsert_visitor(&mut tx, v).await?,
                HistoryWrite::AgentStatus(change) => super::reports::insert_status(&mut tx, change).await?,
            }
        }
        for (chat, at) in first_responses(batch) {
            sqlx::query(FIRST_RESPONSE)
                .bind(at)
                .bind(convert::id_to_db(D, chat)?)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn history_list(&self, q: &ChatQuery) -> BackendResult<ChatPage> {
        let site = convert::id_to_db(D, q.site_id)?;
        let text = q.text.as_deref().and_then(fts5_query);
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("");
        if let Some(text) = &text {
            qb.push(
                "WITH hits (chat_id, score) AS (SELECT m.chat_id, bm25(messages_fts) FROM messages_fts \
                 JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH ",
            );
            qb.push_bind(text.clone()).push(" AND m.site_id = ").push_bind(site);
            qb.push(
                " UNION ALL SELECT c2.id, bm25(chats_fts) FROM chats_fts JOIN chats c2 ON c2.id = chats_fts.rowid \
                 WHERE chats_fts MATCH ",
            );
            qb.push_bind(text.clone()).push(" AND c2.site_id = ").push_bind(site);
            qb.push("), ranked AS (SELECT chat_id, MIN(score) AS score FROM hits GROUP BY chat_id) ");
            qb.push(concat!("SELECT ", summary_columns!(), ", r.score FROM chats c JOIN ranked r ON r.chat_id = c.id"));
        } else {
            qb.push(concat!("SELECT ", summary_columns!(), ", 0.0 FROM chats c"));
        }
        qb.push(" WHERE c.site_id = ").push_bind(site);
        if let Some(member) = q.member {
            qb.push(" AND EXISTS (SELECT 1 FROM chat_members cm WHERE cm.chat_id = c.id AND cm.agent_id = ");
            qb.push_bind(convert::id_to_db(D, member)?).push(")");
        }
        if let Some(agent) = q.agent_id {
            qb.push(" AND EXISTS (SELECT 1 FROM chat_members ca WHERE ca.chat_id = c.id AND ca.agent_id = ");
            qb.push_bind(convert::id_to_db(D, agent)?).push(")");
        }
        if let Some(from) = q.from {
            qb.push(" AND c.created_at >= ").push_bind(from);
        }
        if let Some(to) = q.to {
            qb.push(" AND c.created_at < ").push_bind(to);
        }
        if let Some(d) = q.department_id {
            qb.push(" AND c.department_id = ").push_bind(convert::id_to_db(D, d)?);
        }
        if let Some(v) = q.visitor_id {
            qb.push(" AND c.visitor_id = ").push_bind(convert::id_to_db(D, v)?);
        }
        if let Some(s) = &q.status {
            qb.push(" AND c.status = ").push_bind(s.clone());
        }
        if let Some(r) = q.rating {
            qb.push(" AND c.rating = ").push_bind(r);
        }
        if let Some(tag) = &q.tag {
            qb.push(" AND EXISTS (SELECT 1 FROM json_each(c.tags) WHERE json_each.value = ").push_bind(tag.clone());
            qb.push(")");
        }
        if let Some(after) = q.after {
            let id = convert::id_to_db(D, after.chat_id)?;
            if text.is_some() {
                // The last chat's score now, not when its page was read: inserts elsewhere
                // shift every bm25 score (corpus statistics) but rarely the order, so the
                // page boundary is taken from where that chat stands now.
                let at = |qb: &mut QueryBuilder<_>| {
                    qb.push("COALESCE((SELECT score FROM ranked WHERE chat_id = ").push_bind(id);
                    qb.push("), ").push_bind(after.score).push(")");
                };
                qb.push(" AND (r.score > ");
                at(&mut qb);
                qb.push(" OR (r.score = ");
                at(&mut qb);
            } else {
                qb.push(" AND (c.created_at < ").push_bind(after.created_at);
                qb.push(" OR (c.created_at = ").push_bind(after.created_at);
            }
            qb.push(" AND c.id < ").push_bind(id).push("))");
        }
        if text.is_some() {
            qb.push(" ORDER BY r.score ASC, c.id DESC");
        } else {
            qb.push(" ORDER BY c.created_at DESC, c.id DESC");
        }
        let limit = q.limit.max(1);
        qb.push(" LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(self.reader()).await.map_err(db_err)?;
        let mut found: Vec<(SummaryRow, f64)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let summary: SummaryRow = sqlx::FromRow::from_row(row).map_err(db_err)?;
            let score: f64 = row.try_get(16).map_err(db_err)?;
            found.push((summary, score));
        }
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        let members = self.members_of(found.iter().map(|(r, _)| r.0)).await?;
        let next = match found.last() {
            Some((row, score)) if more => {
                Some(ChatCursor { score: *score, created_at: row.8, chat_id: convert::id_from_db(D, row.0)? })
            }
            _ => None,
        };
        let chats = found
            .into_iter()
            .map(|(row, _)| {
                let m = members.get(&row.0).cloned().unwrap_or_default();
                summary_from_row(D, row, m)
            })
            .collect::<BackendResult<Vec<_>>>()?;
        Ok(ChatPage { chats, next })
    }

    async fn members_of(
        &self,
        chats: impl Iterator<Item = i64>,
    ) -> BackendResult<std::collections::HashMap<i64, Vec<i64>>> {
        let chats: Vec<i64> = chats.collect();
        if chats.is_empty() {
            return Ok(Default::default());
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT chat_id, agent_id FROM chat_members WHERE chat_id IN (");
        let mut list = qb.separated(", ");
        for c in chats {
            list.push_bind(c);
        }
        qb.push(") ORDER BY added_at, agent_id");
        let pairs: Vec<(i64, i64)> = qb.build_query_as().fetch_all(self.reader()).await.map_err(db_err)?;
        Ok(members_by_chat(pairs))
    }

    pub(crate) async fn history_transcript(&self, site: SiteId, chat: ChatId) -> BackendResult<Option<Transcript>> {
        let (site, chat) = (convert::id_to_db(D, site)?, convert::id_to_db(D, chat)?);
        let row: Option<SummaryRow> =
            sqlx::query_as(concat!("SELECT ", summary_columns!(), " FROM chats c WHERE c.site_id = ? AND c.id = ?"))
                .bind(site)
                .bind(chat)
                .fetch_optional(self.reader())
                .await
                .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let members = self.members_of(std::iter::once(chat)).await?.remove(&chat).unwrap_or_default();
        let messages: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chat_id = ? AND site_id = ? ORDER BY seq, id"
        ))
        .bind(chat)
        .bind(site)
        .fetch_all(self.reader())
        .await
        .map_err(db_err)?;
        Ok(Some(Transcript {
            chat: summary_from_row(D, row, members)?,
            messages: messages
                .into_iter()
                .map(|m| history_rows::message_from_row(D, m))
                .collect::<BackendResult<_>>()?,
        }))
    }
}

async fn upsert_chat(tx: &mut SqliteConnection, c: &ChatRecord) -> BackendResult<()> {
    let (chat, site) = (convert::id_to_db(D, c.chat_id)?, convert::id_to_db(D, c.site_id)?);
    let opt = |v: Option<frontdesk_core::id::Id>| v.map(|v| convert::id_to_db(D, v)).transpose();
    sqlx::query(UPSERT_CHAT)
        .bind(chat)
        .bind(site)
        .bind(convert::id_to_db(D, c.visitor_id)?)
        .bind(c.created_at)
        .bind(opt(c.department_id)?)
        .bind(c.status.clone())
        .bind(opt(c.agent_id)?)
        .bind(c.started_at)
        .bind(c.ended_at)
        .bind(c.rating)
        .bind(c.comment.clone())
        .bind(c.wrap_up_notes.clone())
        .bind(convert::json_to_db(D, &c.tags)?)
        .bind(c.visitor_name.clone())
        .bind(c.visitor_email.clone())
        .bind(c.version)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let now = convert::now_ms();
    for agent in &c.participants {
        sqlx::query(ADD_MEMBER)
            .bind(chat)
            .bind(convert::id_to_db(D, *agent)?)
            .bind(now)
            .bind(chat)
            .bind(site)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

async fn upsert_message(tx: &mut SqliteConnection, m: &MessageRecord) -> BackendResult<()> {
    sqlx::query(UPSERT_MESSAGE)
        .bind(convert::id_to_db(D, m.id)?)
        .bind(convert::id_to_db(D, m.chat_id)?)
        .bind(convert::id_to_db(D, m.site_id)?)
        .bind(m.seq)
        .bind(m.data_offset)
        .bind(m.message_type)
        .bind(convert::id_to_db(D, m.sender_id)?)
        .bind(m.sender_name.clone())
        .bind(m.content.clone())
        .bind(m.client_message_id.clone())
        .bind(m.send_time.clone())
        .bind(m.send_time_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

async fn upsert_visitor(tx: &mut SqliteConnection, v: &VisitorHistory) -> BackendResult<()> {
    sqlx::query(UPSERT_VISITOR)
        .bind(convert::id_to_db(D, v.visitor_id)?)
        .bind(convert::id_to_db(D, v.site_id)?)
        .bind(v.name.clone())
        .bind(v.email.clone())
        .bind(convert::json_to_db(D, &v.custom_variables)?)
        .bind(v.first_seen)
        .bind(v.last_seen)
        .bind(v.visit_count)
        .bind(v.page_views)
        .bind(v.version)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(())
}
