//! Chat history on SQLite (migrations 0004, 0007, 0008): applying write-behind batches in
//! one `BEGIN IMMEDIATE` transaction (messages inserted for the first time are appended to
//! their chats' search parts), listing a site's chats with filters, FTS5 search (`bm25` over
//! the chats' text parts and the visitor's name and email, best part per chat) and keyset
//! paging, and reading a transcript. The `Store` impl in `sqlite.rs` delegates here.
//!
//! Messages are versioned (issue #8, the rules in `frontdesk_core::history`): after the
//! batch's chats, each chat's rebuild records (of its newest rebuild in the batch, see
//! [`MessageWrites`]) are applied unless the chat took a newer rebuild — merged-away copies
//! deleted, messages renumbered or inserted, `chats.merged_rev` raised — then ordinary
//! records are inserted, never updated. A chat that lost a copy lost its search text too
//! (0007's trigger), so its parts are written again whole from its remaining messages.

use std::collections::{HashMap, HashSet};

use frontdesk_core::error::BackendResult;
use frontdesk_core::history::{
    ChatCursor, ChatPage, ChatQuery, ChatRecord, HistoryWrite, MessageRecord, Transcript, VisitorHistory,
};
use frontdesk_core::id::{ChatId, SiteId};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::{db_err, SqliteStore, D};
use crate::convert;
use crate::history_rows::{
    self, first_responses, fts5_query, members_by_chat, message_columns, place_in_parts, summary_from_row, MessageRow,
    PartText, SummaryRow,
};
use crate::message_writes::MessageWrites;

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

/// Ordinary records, from a JSON array of rows in [`message_columns!`] order plus `rev`:
/// each inserted only, and only when no row holds its id or its (chat, clientMessageId) and
/// the chat's last rebuild is not newer than it. Rows go in array order (a later copy of an
/// id or clientMessageId in the same batch yields to the first); returns the ids stored.
const INSERT_MESSAGES: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ", rev) SELECT m.value ->> 0, m.value ->> 1, m.value ->> 2, m.value ->> 3, m.value ->> 4, m.value ->> 5, \
     m.value ->> 6, m.value ->> 7, m.value ->> 8, m.value ->> 9, m.value ->> 10, m.value ->> 11, m.value ->> 12 \
     FROM json_each(?) m \
     WHERE (m.value ->> 12) >= COALESCE((SELECT merged_rev FROM chats WHERE id = m.value ->> 1), 0) \
     ORDER BY m.key ON CONFLICT DO NOTHING RETURNING id"
);

/// A rebuild record of a message not stored yet.
const INSERT_REBUILT: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ", rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
);

const MERGED_REV: &str = "SELECT merged_rev FROM chats WHERE id = ? AND site_id = ?";

/// The copies a rebuild merged away: its message's clientMessageId under another id.
const DROP_MERGED_AWAY: &str = "DELETE FROM messages WHERE chat_id = ? AND client_message_id = ? AND id <> ?";

/// A rebuild renumbers a stored message (its text never changes, so search is untouched).
const RENUMBER_MESSAGE: &str = "UPDATE messages SET seq = ?, data_offset = ?, rev = ? WHERE id = ? AND chat_id = ?";

const RAISE_MERGED_REV: &str = "UPDATE chats SET merged_rev = ? WHERE id = ? AND site_id = ? AND merged_rev < ?";

/// A chat's messages in seq order, for rebuilding its search parts.
const CHAT_CONTENTS: &str = "SELECT content FROM messages WHERE chat_id = ? AND site_id = ? ORDER BY seq, id";

const DROP_CHAT_TEXT: &str = "DELETE FROM chat_text WHERE chat_id = ? AND site_id = ?";

/// Each chat's open search part (its highest), for a JSON array of `[chat_id, site_id]`.
const OPEN_PARTS: &str = "SELECT c.value ->> 0, c.value ->> 1, t.id, t.part, t.chars FROM json_each(?) c \
     JOIN chat_text t ON t.chat_id = c.value ->> 0 AND t.site_id = c.value ->> 1 \
     AND t.part = (SELECT MAX(part) FROM chat_text WHERE chat_id = c.value ->> 0 AND site_id = c.value ->> 1)";

/// Appends to open parts, from a JSON array of `[row id, text, chars]` (one per row).
const APPEND_TO_PARTS: &str = "UPDATE chat_text SET body = body || ' ' || (a.value ->> 1), \
     chars = chars + (a.value ->> 2) FROM json_each(?) a WHERE chat_text.id = a.value ->> 0";

/// New parts, from a JSON array of `[chat_id, site_id, part, chars, body]`.
const NEW_PARTS: &str = "INSERT INTO chat_text (chat_id, site_id, part, chars, body) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each(?)";

/// Visitor snapshots, from a JSON array of `[id, site_id, name, email, custom_variables,
/// first_seen, last_seen, visit_count, page_views, version]` in batch order: one statement
/// per batch (each statement is a hand-off to sqlx's SQLite thread), and of two snapshots of
/// one visitor the newer `version` wins whatever their order. `WHERE true` keeps SQLite from
/// reading `ON CONFLICT` as a join constraint.
const UPSERT_VISITORS: &str = "INSERT INTO visitors (id, site_id, name, email, custom_variables, first_seen, \
     last_seen, visit_count, page_views, version) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
     value ->> 7, value ->> 8, value ->> 9 FROM json_each(?) WHERE true ORDER BY key \
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
        let mut visitors = Vec::new();
        for write in batch {
            match write {
                HistoryWrite::Chat(c) => upsert_chat(&mut tx, c).await?,
                // After every chat of the batch: they carry the merged revs.
                HistoryWrite::Message(_) => {}
                HistoryWrite::Visitor(v) => visitors.push(visitor_row(v)?),
                HistoryWrite::AgentStatus(change) => super::reports::insert_status(&mut tx, change).await?,
                HistoryWrite::OfflineMessage(m) => super::offline::insert(&mut tx, m).await?,
            }
        }
        run_rows(&mut tx, UPSERT_VISITORS, visitors).await?;
        for (chat, at) in first_responses(batch) {
            sqlx::query(FIRST_RESPONSE)
                .bind(at)
                .bind(convert::id_to_db(D, chat)?)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let writes = MessageWrites::of(batch);
        let mut fresh: Vec<&MessageRecord> = Vec::new();
        let mut rewrite: HashSet<(ChatId, SiteId)> = HashSet::new();
        for chat in writes.rebuild.chunk_by(|a, b| (a.chat_id, a.site_id) == (b.chat_id, b.site_id)) {
            apply_rebuild(&mut tx, chat, &mut fresh, &mut rewrite).await?;
        }
        insert_messages(&mut tx, &writes.ordinary, &mut fresh).await?;
        // A chat that lost a message lost its search text too (migration 0007's trigger):
        // it is written again whole, so its fresh messages are not appended as well.
        fresh.retain(|m| !rewrite.contains(&(m.chat_id, m.site_id)));
        append_search_text(&mut tx, fresh).await?;
        for (chat, site) in rewrite {
            rewrite_search_text(&mut tx, chat, site).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn history_list(&self, q: &ChatQuery) -> BackendResult<ChatPage> {
        let site = convert::id_to_db(D, q.site_id)?;
        let text = q.text.as_deref().and_then(fts5_query);
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("");
        if let Some(text) = &text {
            // CROSS JOIN fixes the join order: the full-text index drives and rows are looked
            // up by id. Left to itself, SQLite walks every chat of the site and probes the
            // FTS index once per chat (10,000 probes at 1M messages: ~80 ms of a query).
            qb.push(
                "WITH hits (chat_id, score) AS (SELECT p.chat_id, bm25(chat_text_fts) FROM chat_text_fts \
                 CROSS JOIN chat_text p ON p.id = chat_text_fts.rowid WHERE chat_text_fts MATCH ",
            );
            qb.push_bind(text.clone()).push(" AND p.site_id = ").push_bind(site);
            qb.push(
                " UNION ALL SELECT c2.id, bm25(chats_fts) FROM chats_fts CROSS JOIN chats c2 \
                 ON c2.id = chats_fts.rowid WHERE chats_fts MATCH ",
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
                // The last chat's score now, not when its page was read: its text may have
                // grown, and inserts elsewhere shift every bm25 score (corpus statistics) but
                // rarely the order, so the page boundary is taken from where that chat
                // stands now.
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

    async fn members_of(&self, chats: impl Iterator<Item = i64>) -> BackendResult<HashMap<i64, Vec<i64>>> {
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

/// Binds a message's columns in [`message_columns`] order, then its `rev`.
fn bind_message<'q>(
    query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    m: &'q MessageRecord,
) -> BackendResult<sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>> {
    Ok(query
        .bind(convert::id_to_db(D, m.id)?)
        .bind(convert::id_to_db(D, m.chat_id)?)
        .bind(convert::id_to_db(D, m.site_id)?)
        .bind(m.seq)
        .bind(m.data_offset)
        .bind(m.message_type)
        .bind(convert::id_to_db(D, m.sender_id)?)
        .bind(m.sender_name.as_str())
        .bind(m.content.as_str())
        .bind(m.client_message_id.as_deref())
        .bind(m.send_time.as_str())
        .bind(m.send_time_ms)
        .bind(m.rev))
}

/// Applies ordinary records (insert only) in one statement — one hand-off to sqlx's SQLite
/// thread per batch, not one per message; those it stored for the first time go to `fresh`.
async fn insert_messages<'a>(
    tx: &mut SqliteConnection,
    records: &[&'a MessageRecord],
    fresh: &mut Vec<&'a MessageRecord>,
) -> BackendResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let (mut rows, mut ids) = (Vec::with_capacity(records.len()), Vec::with_capacity(records.len()));
    for m in records {
        let id = convert::id_to_db(D, m.id)?;
        ids.push(id);
        rows.push(serde_json::json!([
            id,
            convert::id_to_db(D, m.chat_id)?,
            convert::id_to_db(D, m.site_id)?,
            m.seq,
            m.data_offset,
            m.message_type,
            convert::id_to_db(D, m.sender_id)?,
            m.sender_name,
            m.content,
            m.client_message_id,
            m.send_time,
            m.send_time_ms,
            m.rev,
        ]));
    }
    let stored: Vec<i64> = sqlx::query_scalar(INSERT_MESSAGES)
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    let mut stored: HashSet<i64> = stored.into_iter().collect();
    // The first record of each stored id: a repeated job names it twice.
    fresh.extend(records.iter().zip(ids).filter(|(_, id)| stored.remove(id)).map(|(m, _)| *m));
    Ok(())
}

/// Applies one chat's rebuild records (all of one rebuild, so one `rev`), unless the chat
/// already took a newer rebuild. Messages it stored for the first time go to `fresh`; a
/// chat that lost a merged-away copy goes to `rewrite`.
async fn apply_rebuild<'a>(
    tx: &mut SqliteConnection,
    records: &[&'a MessageRecord],
    fresh: &mut Vec<&'a MessageRecord>,
    rewrite: &mut HashSet<(ChatId, SiteId)>,
) -> BackendResult<()> {
    let Some(first) = records.first() else { return Ok(()) };
    let (chat, site, rev) = (convert::id_to_db(D, first.chat_id)?, convert::id_to_db(D, first.site_id)?, first.rev);
    let merged: Option<i64> =
        sqlx::query_scalar(MERGED_REV).bind(chat).bind(site).fetch_optional(&mut *tx).await.map_err(db_err)?;
    if merged.is_some_and(|merged| rev < merged) {
        return Ok(());
    }
    for m in records {
        let id = convert::id_to_db(D, m.id)?;
        if let Some(cmid) = &m.client_message_id {
            let dropped = sqlx::query(DROP_MERGED_AWAY)
                .bind(chat)
                .bind(cmid.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            if dropped > 0 {
                rewrite.insert((m.chat_id, m.site_id));
            }
        }
        let renumbered = sqlx::query(RENUMBER_MESSAGE)
            .bind(m.seq)
            .bind(m.data_offset)
            .bind(m.rev)
            .bind(id)
            .bind(chat)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        if renumbered == 0 {
            let inserted =
                bind_message(sqlx::query(INSERT_REBUILT), m)?.execute(&mut *tx).await.map_err(db_err)?.rows_affected();
            if inserted > 0 {
                fresh.push(m);
            }
        }
    }
    sqlx::query(RAISE_MERGED_REV).bind(rev).bind(chat).bind(site).bind(rev).execute(&mut *tx).await.map_err(db_err)?;
    Ok(())
}

/// Writes a chat's search parts again from its stored messages, cut as
/// [`append_search_text`] cuts them.
async fn rewrite_search_text(tx: &mut SqliteConnection, chat: ChatId, site: SiteId) -> BackendResult<()> {
    let (chat, site) = (convert::id_to_db(D, chat)?, convert::id_to_db(D, site)?);
    sqlx::query(DROP_CHAT_TEXT).bind(chat).bind(site).execute(&mut *tx).await.map_err(db_err)?;
    let contents: Vec<String> =
        sqlx::query_scalar(CHAT_CONTENTS).bind(chat).bind(site).fetch_all(&mut *tx).await.map_err(db_err)?;
    let parts = place_in_parts(None, contents.iter().map(String::as_str));
    run_rows(tx, NEW_PARTS, parts.into_iter().map(|text| new_part(chat, site, text)).collect()).await
}

/// A row of [`NEW_PARTS`]: a chat's next search part.
fn new_part(chat: i64, site: i64, text: PartText) -> serde_json::Value {
    serde_json::json!([chat, site, text.part, text.chars, text.body])
}

/// Runs one of the statements that take a JSON array of rows, unless there are none.
async fn run_rows(tx: &mut SqliteConnection, sql: &'static str, rows: Vec<serde_json::Value>) -> BackendResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let query = sqlx::query(sql).bind(serde_json::Value::Array(rows).to_string());
    query.execute(&mut *tx).await.map_err(db_err).map(drop)
}

/// Appends the text of a batch's new messages to their chats' search parts (migration
/// 0007), per chat in seq order, filling the open part and opening new ones as it fills.
/// Runs inside the batch's write transaction: the single writer makes reading the open part
/// and writing it one step. Three statements per batch whatever the number of chats: FTS5
/// writes its pending index out at every statement's savepoint, so one statement per chat
/// made one index segment per chat (and merges of them), and one thread hand-off each.
async fn append_search_text(tx: &mut SqliteConnection, mut fresh: Vec<&MessageRecord>) -> BackendResult<()> {
    if fresh.is_empty() {
        return Ok(());
    }
    fresh.sort_by_key(|m| (m.chat_id, m.site_id, m.seq, m.id));
    let chats: Vec<&[&MessageRecord]> =
        fresh.chunk_by(|a, b| (a.chat_id, a.site_id) == (b.chat_id, b.site_id)).collect();
    let mut keys = Vec::with_capacity(chats.len());
    for chat in &chats {
        keys.push((convert::id_to_db(D, chat[0].chat_id)?, convert::id_to_db(D, chat[0].site_id)?));
    }
    let keys_json = serde_json::Value::Array(keys.iter().map(|(chat, site)| serde_json::json!([chat, site])).collect());
    let open: HashMap<(i64, i64), (i64, i64, i64)> = sqlx::query_as::<_, (i64, i64, i64, i64, i64)>(OPEN_PARTS)
        .bind(keys_json.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|(chat, site, row, part, chars)| ((chat, site), (row, part, chars)))
        .collect();
    let (mut appends, mut parts) = (Vec::new(), Vec::new());
    for (chat, key) in chats.iter().zip(&keys) {
        let open = open.get(key).copied();
        for text in place_in_parts(open.map(|(_, part, chars)| (part, chars)), chat.iter().map(|m| m.content.as_str()))
        {
            match open {
                Some((row, part, _)) if part == text.part => {
                    appends.push(serde_json::json!([row, text.body, text.chars]));
                }
                _ => parts.push(new_part(key.0, key.1, text)),
            }
        }
    }
    run_rows(tx, APPEND_TO_PARTS, appends).await?;
    run_rows(tx, NEW_PARTS, parts).await
}

/// A visitor snapshot as a row of [`UPSERT_VISITORS`].
fn visitor_row(v: &VisitorHistory) -> BackendResult<serde_json::Value> {
    Ok(serde_json::json!([
        convert::id_to_db(D, v.visitor_id)?,
        convert::id_to_db(D, v.site_id)?,
        v.name,
        v.email,
        convert::json_to_db(D, &v.custom_variables)?,
        v.first_seen,
        v.last_seen,
        v.visit_count,
        v.page_views,
        v.version,
    ]))
}
