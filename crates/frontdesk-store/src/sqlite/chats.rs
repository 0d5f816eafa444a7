//! Durable chat membership on SQLite (SPEC §6): the `chats` and `chat_members` tables of
//! migration 0003. The `Store` impl in `sqlite.rs` delegates here.

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::id::{AgentId, ChatId, SiteId, VisitorId};
use frontdesk_core::store::ChatMembership;

use super::{db_err, SqliteStore, D};
use crate::convert;
use crate::error;

impl SqliteStore {
    pub(crate) async fn chats_insert(
        &self,
        chat_id: ChatId,
        site_id: SiteId,
        visitor_id: VisitorId,
        created_at: i64,
    ) -> BackendResult<()> {
        sqlx::query(
            "INSERT INTO chats (id, site_id, visitor_id, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(convert::id_to_db(D, chat_id)?)
        .bind(convert::id_to_db(D, site_id)?)
        .bind(convert::id_to_db(D, visitor_id)?)
        .bind(created_at)
        .execute(self.writer())
        .await
        .map_err(|e| {
            if error::is_foreign_key_violation(&e) {
                BackendError::other(D.name(), format!("chat {chat_id} names site {site_id}, which does not exist"))
            } else {
                db_err(e)
            }
        })?;
        Ok(())
    }

    pub(crate) async fn chats_add_member(&self, chat_id: ChatId, agent_id: AgentId) -> BackendResult<()> {
        sqlx::query(
            "INSERT INTO chat_members (chat_id, agent_id, added_at) VALUES (?, ?, ?) \
             ON CONFLICT (chat_id, agent_id) DO NOTHING",
        )
        .bind(convert::id_to_db(D, chat_id)?)
        .bind(convert::id_to_db(D, agent_id)?)
        .bind(convert::now_ms())
        .execute(self.writer())
        .await
        .map_err(|e| {
            if error::is_foreign_key_violation(&e) {
                BackendError::other(D.name(), format!("cannot add a member to chat {chat_id}: no such chat"))
            } else {
                db_err(e)
            }
        })?;
        Ok(())
    }

    pub(crate) async fn chats_membership(&self, chat_id: ChatId) -> BackendResult<Option<ChatMembership>> {
        let id = convert::id_to_db(D, chat_id)?;
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT site_id, visitor_id FROM chats WHERE id = ?")
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .map_err(db_err)?;
        let Some((site_id, visitor_id)) = row else { return Ok(None) };
        let agents: Vec<(i64,)> =
            sqlx::query_as("SELECT agent_id FROM chat_members WHERE chat_id = ? ORDER BY added_at, agent_id")
                .bind(id)
                .fetch_all(self.reader())
                .await
                .map_err(db_err)?;
        Ok(Some(ChatMembership {
            site_id: convert::id_from_db(D, site_id)?,
            visitor_id: convert::id_from_db(D, visitor_id)?,
            agent_ids: agents.into_iter().map(|(a,)| convert::id_from_db(D, a)).collect::<BackendResult<_>>()?,
        }))
    }
}
