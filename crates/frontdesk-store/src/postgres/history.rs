//! Chat history on PostgreSQL (migrations 0004, 0007, 0008): applying write-behind batches
//! in one transaction (messages in `UNNEST` statements per batch; migration 0007's triggers
//! append what they inserted to the chats' search parts), listing a site's chats with
//! filters, full-text search (`websearch_to_tsquery('simple', …)` against the chats' text
//! parts and the visitor's name and email, ranked by `ts_rank`, best part per chat) and
//! keyset paging, and reading a transcript. The `Store` impl in `postgres.rs` delegates here.
//!
//! Messages are versioned (issue #8, the rules in `frontdesk_core::history`): after the
//! batch's chats, rebuild records (each chat's newest rebuild in the batch, see
//! [`MessageWrites`]) take out the copies they merged away, insert or renumber, and raise
//! `chats.merged_rev`, each statement skipping records older than their chat's last
//! rebuild; then ordinary records are inserted, never updated (`ON CONFLICT DO NOTHING`
//! covers the id and the (chat, clientMessageId) index). A chat that lost a copy lost its
//! search text too (0007's trigger), so its parts are written again whole from its
//! remaining messages. Concurrent batches of two nodes: a rebuild that meets an ordinary
//! copy another transaction has not committed yet fails on the (chat, clientMessageId)
//! index; the worker then applies its jobs one by one, and the retry sees the copy.

use std::collections::HashMap;

use frontdesk_core::error::BackendResult;
use frontdesk_core::history::{ChatCursor, ChatPage, ChatQuery, ChatRecord, HistoryWrite, MessageRecord, Transcript};
use frontdesk_core::id::{ChatId, SiteId};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::{db_err, PostgresStore, D};
use crate::convert;
use crate::history_rows::{
    self, first_responses, members_by_chat, message_columns, summary_from_row, MessageRow, SummaryRow,
};
use crate::message_writes::MessageWrites;

macro_rules! summary_columns {
    () => {
        "c.id, c.site_id, c.visitor_id, c.visitor_name, c.visitor_email, c.department_id, c.status, c.agent_id, \
         c.created_at, c.started_at, c.ended_at, c.first_response_at, c.rating, c.comment, c.wrap_up_notes, \
         c.tags::text"
    };
}

const UPSERT_CHAT: &str = "INSERT INTO chats (id, site_id, visitor_id, created_at, department_id, status, agent_id, \
     started_at, ended_at, rating, comment, wrap_up_notes, tags, visitor_name, visitor_email, history_version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16) \
     ON CONFLICT (id) DO UPDATE SET department_id = EXCLUDED.department_id, status = EXCLUDED.status, \
     agent_id = EXCLUDED.agent_id, started_at = COALESCE(EXCLUDED.started_at, chats.started_at), \
     ended_at = COALESCE(EXCLUDED.ended_at, chats.ended_at), rating = COALESCE(EXCLUDED.rating, chats.rating), \
     comment = COALESCE(EXCLUDED.comment, chats.comment), \
     wrap_up_notes = COALESCE(EXCLUDED.wrap_up_notes, chats.wrap_up_notes), \
     tags = CASE WHEN EXCLUDED.tags = '[]'::jsonb THEN chats.tags ELSE EXCLUDED.tags END, \
     visitor_name = CASE WHEN EXCLUDED.visitor_name = '' THEN chats.visitor_name ELSE EXCLUDED.visitor_name END, \
     visitor_email = CASE WHEN EXCLUDED.visitor_email = '' THEN chats.visitor_email ELSE EXCLUDED.visitor_email END, \
     history_version = EXCLUDED.history_version \
     WHERE chats.history_version <= EXCLUDED.history_version AND chats.site_id = EXCLUDED.site_id";

const ADD_MEMBERS: &str = "INSERT INTO chat_members (chat_id, agent_id, added_at) \
     SELECT $1, a.agent_id, $3 + a.n FROM UNNEST($2::bigint[]) WITH ORDINALITY AS a (agent_id, n) \
     WHERE EXISTS (SELECT 1 FROM chats WHERE id = $1 AND site_id = $4) \
     ON CONFLICT (chat_id, agent_id) DO NOTHING";

/// A batch's messages as rows `u`, columns in [`message_columns`] order, then `rev`.
macro_rules! unnest_messages {
    () => {
        "UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
         $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[]) \
         AS u (id, chat_id, site_id, seq, data_offset, message_type, sender_id, sender_name, content, \
         client_message_id, send_time, send_time_ms, rev) \
         WHERE u.rev >= COALESCE((SELECT c.merged_rev FROM chats c WHERE c.id = u.chat_id), 0)"
    };
}

/// Ordinary records: inserted only, and only when no row holds their id or their (chat,
/// clientMessageId) and their chat's last rebuild is not newer than them. Migration 0007's
/// trigger appends what this inserts to the chats' search parts.
const INSERT_MESSAGES: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ", rev) SELECT u.* FROM ",
    unnest_messages!(),
    " ON CONFLICT DO NOTHING"
);

/// Rebuild records not older than their chat's last rebuild: new ones inserted, stored
/// ones renumbered (their text never changes, so search is untouched).
const UPSERT_REBUILT: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ", rev) SELECT u.* FROM ",
    unnest_messages!(),
    " ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, data_offset = EXCLUDED.data_offset, rev = EXCLUDED.rev \
     WHERE messages.chat_id = EXCLUDED.chat_id \
     AND (messages.seq, messages.data_offset, messages.rev) IS DISTINCT FROM \
     (EXCLUDED.seq, EXCLUDED.data_offset, EXCLUDED.rev)"
);

/// The copies a rebuild merged away: its messages' clientMessageIds under other ids. Its
/// chats lose their search text (migration 0007's trigger); they are returned.
const DROP_MERGED_AWAY: &str = "WITH r AS (SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[]) \
     AS r (id, chat_id, client_message_id, rev) WHERE r.client_message_id IS NOT NULL \
     AND r.rev >= COALESCE((SELECT c.merged_rev FROM chats c WHERE c.id = r.chat_id), 0)) \
     DELETE FROM messages m USING r \
     WHERE m.chat_id = r.chat_id AND m.client_message_id = r.client_message_id AND m.id <> r.id \
     RETURNING m.chat_id, m.site_id";

const RAISE_MERGED_REV: &str = "UPDATE chats c SET merged_rev = r.rev \
     FROM (SELECT chat_id, site_id, MAX(rev) AS rev FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) \
     AS r (chat_id, site_id, rev) GROUP BY chat_id, site_id) r \
     WHERE c.id = r.chat_id AND c.site_id = r.site_id AND c.merged_rev < r.rev";

const DROP_CHAT_TEXT: &str =
    "DELETE FROM chat_text t USING UNNEST($1::bigint[], $2::bigint[]) AS k (chat_id, site_id) \
     WHERE t.chat_id = k.chat_id AND t.site_id = k.site_id";

/// Chats' search parts written again from their stored messages, cut as migration 0007
/// cuts them.
const WRITE_CHAT_TEXT: &str = "INSERT INTO chat_text (chat_id, site_id, part, chars, tsv) \
     SELECT chat_id, site_id, part, SUM(length(content) + 1), \
     to_tsvector('simple', string_agg(content, ' ' ORDER BY seq, id)) \
     FROM (SELECT m.chat_id, m.site_id, m.seq, m.id, m.content, \
     (SUM(length(m.content) + 1) OVER (PARTITION BY m.chat_id, m.site_id ORDER BY m.seq, m.id \
     ROWS UNBOUNDED PRECEDING) - length(m.content) - 1) / 8192 AS part \
     FROM messages m JOIN UNNEST($1::bigint[], $2::bigint[]) AS k (chat_id, site_id) \
     ON m.chat_id = k.chat_id AND m.site_id = k.site_id) x \
     GROUP BY chat_id, site_id, part";

const UPSERT_VISITOR: &str = "INSERT INTO visitors (id, site_id, name, email, custom_variables, first_seen, \
     last_seen, visit_count, page_views, version) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10) \
     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, \
     custom_variables = EXCLUDED.custom_variables, first_seen = LEAST(visitors.first_seen, EXCLUDED.first_seen), \
     last_seen = EXCLUDED.last_seen, visit_count = EXCLUDED.visit_count, page_views = EXCLUDED.page_views, \
     version = EXCLUDED.version \
     WHERE visitors.version <= EXCLUDED.version AND visitors.site_id = EXCLUDED.site_id";

const FIRST_RESPONSE: &str = "UPDATE chats SET first_response_at = $1 \
     WHERE id = $2 AND (first_response_at IS NULL OR first_response_at > $1)";

/// The columns of a batch's messages, for one `UNNEST` insert.
#[derive(Default)]
struct MessageColumns {
    id: Vec<i64>,
    chat: Vec<i64>,
    site: Vec<i64>,
    seq: Vec<i64>,
    offset: Vec<i64>,
    kind: Vec<i64>,
    sender: Vec<i64>,
    sender_name: Vec<String>,
    content: Vec<String>,
    cmid: Vec<Option<String>>,
    send_time: Vec<String>,
    send_ms: Vec<i64>,
    rev: Vec<i64>,
}

impl MessageColumns {
    /// One row per message id (the last one of the batch): a statement may not touch a row
    /// twice.
    fn of(messages: &[&MessageRecord]) -> BackendResult<Self> {
        let mut last: HashMap<frontdesk_core::id::Id, usize> = HashMap::new();
        for (i, m) in messages.iter().enumerate() {
            last.insert(m.id, i);
        }
        let mut cols = MessageColumns::default();
        for (i, m) in messages.iter().enumerate() {
            if last.get(&m.id) != Some(&i) {
                continue;
            }
            cols.id.push(convert::id_to_db(D, m.id)?);
            cols.chat.push(convert::id_to_db(D, m.chat_id)?);
            cols.site.push(convert::id_to_db(D, m.site_id)?);
            cols.seq.push(m.seq);
            cols.offset.push(m.data_offset);
            cols.kind.push(m.message_type);
            cols.sender.push(convert::id_to_db(D, m.sender_id)?);
            cols.sender_name.push(m.sender_name.clone());
            cols.content.push(m.content.clone());
            cols.cmid.push(m.client_message_id.clone());
            cols.send_time.push(m.send_time.clone());
            cols.send_ms.push(m.send_time_ms);
            cols.rev.push(m.rev);
        }
        Ok(cols)
    }
}

impl PostgresStore {
    pub(crate) async fn history_apply(&self, batch: &[HistoryWrite]) -> BackendResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        // Chats first (messages and members refer to them, and they carry the merged revs),
        // then messages (rebuild records, then ordinary ones: see `MessageWrites`), then
        // visitors. Order inside each kind is the batch's, so last-writer-wins holds.
        for write in batch {
            match write {
                HistoryWrite::Chat(c) => upsert_chat(&mut tx, c).await?,
                HistoryWrite::Message(_) | HistoryWrite::Visitor(_) => {}
                HistoryWrite::AgentStatus(change) => super::reports::insert_status(&mut tx, change).await?,
                HistoryWrite::OfflineMessage(m) => super::offline::insert(&mut tx, m).await?,
            }
        }
        let writes = MessageWrites::of(batch);
        if !writes.rebuild.is_empty() {
            apply_rebuild(&mut tx, &writes.rebuild).await?;
        }
        if !writes.ordinary.is_empty() {
            insert_messages(&mut tx, INSERT_MESSAGES, &writes.ordinary).await?;
        }
        for write in batch {
            if let HistoryWrite::Visitor(v) = write {
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
            }
        }
        for (chat, at) in first_responses(batch) {
            sqlx::query(FIRST_RESPONSE)
                .bind(at)
                .bind(convert::id_to_db(D, chat)?)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn history_list(&self, q: &ChatQuery) -> BackendResult<ChatPage> {
        let site = convert::id_to_db(D, q.site_id)?;
        let text = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("");
        if let Some(text) = text {
            qb.push("WITH tq AS (SELECT websearch_to_tsquery('simple', ").push_bind(text.to_string());
            qb.push(
                ") AS query), hits AS (SELECT p.chat_id, ts_rank(p.tsv, tq.query) AS rank \
                 FROM chat_text p, tq WHERE p.tsv @@ tq.query AND p.site_id = ",
            );
            qb.push_bind(site);
            qb.push(
                " UNION ALL SELECT c2.id, ts_rank(c2.visitor_tsv, tq.query) FROM chats c2, tq \
                 WHERE c2.visitor_tsv @@ tq.query AND c2.site_id = ",
            );
            qb.push_bind(site);
            // Lower is better, as with SQLite's bm25, so cursors compare the same way.
            qb.push("), ranked AS (SELECT chat_id, (-MAX(rank))::float8 AS score FROM hits GROUP BY chat_id) ");
            // Chats are read best first, each by its primary key (LATERAL … LIMIT 1 is never
            // turned into a plain join), until the page is full: a page of 20 reads ~20
            // chats, not every match. As a join, the plan would hang on statistics: before
            // ANALYZE has seen a freshly loaded table the planner guesses a handful of matches
            // and picks a nested loop over all the site's chats (3–5 s for a common word).
            qb.push(concat!(
                "SELECT ",
                summary_columns!(),
                ", r.score FROM (SELECT chat_id, score FROM ranked ORDER BY score, chat_id DESC) r \
                 CROSS JOIN LATERAL (SELECT * FROM chats c0 WHERE c0.id = r.chat_id LIMIT 1) c"
            ));
        } else {
            qb.push(concat!("SELECT ", summary_columns!(), ", 0.0::float8 FROM chats c"));
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
            qb.push(" AND c.tags @> jsonb_build_array(").push_bind(tag.clone()).push("::text)");
        }
        if let Some(after) = q.after {
            let id = convert::id_to_db(D, after.chat_id)?;
            if text.is_some() {
                // The last chat's score now, not when its page was read: its text may have
                // grown since, so the page boundary is taken from where that chat stands
                // now.
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
            // `r`'s own order (c.id = r.chat_id), so rows stream from it with no sort.
            qb.push(" ORDER BY r.score ASC, r.chat_id DESC");
        } else {
            qb.push(" ORDER BY c.created_at DESC, c.id DESC");
        }
        let limit = q.limit.max(1);
        qb.push(" LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(self.pool()).await.map_err(db_err)?;
        let mut found: Vec<(SummaryRow, f64)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let summary: SummaryRow = sqlx::FromRow::from_row(row).map_err(db_err)?;
            let score: f64 = row.try_get(16).map_err(db_err)?;
            found.push((summary, score));
        }
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        let ids: Vec<i64> = found.iter().map(|(r, _)| r.0).collect();
        let mut members = self.members_of(&ids).await?;
        let next = match found.last() {
            Some((row, score)) if more => {
                Some(ChatCursor { score: *score, created_at: row.8, chat_id: convert::id_from_db(D, row.0)? })
            }
            _ => None,
        };
        let chats = found
            .into_iter()
            .map(|(row, _)| {
                let m = members.remove(&row.0).unwrap_or_default();
                summary_from_row(D, row, m)
            })
            .collect::<BackendResult<Vec<_>>>()?;
        Ok(ChatPage { chats, next })
    }

    async fn members_of(&self, chats: &[i64]) -> BackendResult<HashMap<i64, Vec<i64>>> {
        if chats.is_empty() {
            return Ok(HashMap::new());
        }
        let pairs: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT chat_id, agent_id FROM chat_members WHERE chat_id = ANY($1) ORDER BY added_at, agent_id",
        )
        .bind(chats.to_vec())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(members_by_chat(pairs))
    }

    pub(crate) async fn history_transcript(&self, site: SiteId, chat: ChatId) -> BackendResult<Option<Transcript>> {
        let (site, chat) = (convert::id_to_db(D, site)?, convert::id_to_db(D, chat)?);
        let row: Option<SummaryRow> =
            sqlx::query_as(concat!("SELECT ", summary_columns!(), " FROM chats c WHERE c.site_id = $1 AND c.id = $2"))
                .bind(site)
                .bind(chat)
                .fetch_optional(self.pool())
                .await
                .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let members = self.members_of(&[chat]).await?.remove(&chat).unwrap_or_default();
        let messages: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chat_id = $1 AND site_id = $2 ORDER BY seq, id"
        ))
        .bind(chat)
        .bind(site)
        .fetch_all(self.pool())
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

/// Runs `sql` (one of the message inserts) over `messages`.
async fn insert_messages(tx: &mut PgConnection, sql: &'static str, messages: &[&MessageRecord]) -> BackendResult<()> {
    let c = MessageColumns::of(messages)?;
    sqlx::query(sql)
        .bind(c.id)
        .bind(c.chat)
        .bind(c.site)
        .bind(c.seq)
        .bind(c.offset)
        .bind(c.kind)
        .bind(c.sender)
        .bind(c.sender_name)
        .bind(c.content)
        .bind(c.cmid)
        .bind(c.send_time)
        .bind(c.send_ms)
        .bind(c.rev)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Applies rebuild records (of the newest rebuild per chat): merged-away copies out,
/// messages in or renumbered, the chats' merged revs raised; chats that lost a copy get
/// their search text written again whole. Records older than their chat's last rebuild
/// change nothing (each statement checks).
async fn apply_rebuild(tx: &mut PgConnection, records: &[&MessageRecord]) -> BackendResult<()> {
    let (mut id, mut chat, mut site, mut cmid, mut rev) = (vec![], vec![], vec![], vec![], vec![]);
    for m in records {
        id.push(convert::id_to_db(D, m.id)?);
        chat.push(convert::id_to_db(D, m.chat_id)?);
        site.push(convert::id_to_db(D, m.site_id)?);
        cmid.push(m.client_message_id.clone());
        rev.push(m.rev);
    }
    let dropped: Vec<(i64, i64)> = sqlx::query_as(DROP_MERGED_AWAY)
        .bind(&id)
        .bind(&chat)
        .bind(&cmid)
        .bind(&rev)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    insert_messages(tx, UPSERT_REBUILT, records).await?;
    sqlx::query(RAISE_MERGED_REV).bind(&chat).bind(&site).bind(&rev).execute(&mut *tx).await.map_err(db_err)?;
    if dropped.is_empty() {
        return Ok(());
    }
    let rewrite: std::collections::BTreeSet<(i64, i64)> = dropped.into_iter().collect();
    let (chats, sites): (Vec<i64>, Vec<i64>) = rewrite.into_iter().unzip();
    sqlx::query(DROP_CHAT_TEXT).bind(&chats).bind(&sites).execute(&mut *tx).await.map_err(db_err)?;
    sqlx::query(WRITE_CHAT_TEXT).bind(&chats).bind(&sites).execute(&mut *tx).await.map_err(db_err)?;
    Ok(())
}

async fn upsert_chat(tx: &mut PgConnection, c: &ChatRecord) -> BackendResult<()> {
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
    if !c.participants.is_empty() {
        let agents = c.participants.iter().map(|a| convert::id_to_db(D, *a)).collect::<BackendResult<Vec<_>>>()?;
        sqlx::query(ADD_MEMBERS)
            .bind(chat)
            .bind(agents)
            .bind(convert::now_ms())
            .bind(site)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}
