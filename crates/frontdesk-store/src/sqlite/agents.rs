//! Agents, departments, preferences and refresh tokens on SQLite (issue 4): the `Store`
//! methods of the `// agents, departments, sessions` block delegate here. Multi-statement
//! changes run in `BEGIN IMMEDIATE` transactions on the single writer, so the last-admin
//! check and the change it guards see one state.

use frontdesk_core::error::BackendResult;
use frontdesk_core::id::{AgentId, DepartmentId, SiteId};
use frontdesk_core::store::{Agent, AgentUpdate, Department, DepartmentUpdate, RefreshToken, Role};
use serde_json::{Map, Value};

use super::{db_err, SqliteStore, D};
use crate::agents_rows::{self, refresh_columns, DepartmentRow, RefreshRow};
use crate::convert::{self, agent_columns, AgentRow};
use crate::error;

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

impl SqliteStore {
    async fn begin(&self) -> BackendResult<Tx> {
        self.begin_write().await
    }

    pub(crate) async fn agents_update(
        &self,
        site_id: SiteId,
        id: AgentId,
        update: &AgentUpdate,
    ) -> BackendResult<Option<Agent>> {
        let (site, agent) = (convert::id_to_db(D, site_id)?, convert::id_to_db(D, id)?);
        let mut tx = self.begin().await?;
        let Some(current) = role_of(&mut tx, site, agent).await? else { return Ok(None) };
        if current == Role::Admin && update.role.is_some_and(|r| r != Role::Admin) {
            agents_rows::last_admin(admin_count(&mut tx, site).await?)?;
        }
        sqlx::query(
            "UPDATE agents SET name = COALESCE(?, name), role = COALESCE(?, role), \
             max_chats = COALESCE(?, max_chats), priority = COALESCE(?, priority), \
             password_hash = COALESCE(?, password_hash) WHERE site_id = ? AND id = ?",
        )
        .bind(update.name.as_deref())
        .bind(update.role.map(Role::as_str))
        .bind(update.max_chats)
        .bind(update.priority)
        .bind(update.password_hash.as_deref())
        .bind(site)
        .bind(agent)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(departments) = &update.departments {
            sqlx::query("DELETE FROM department_members WHERE agent_id = ?")
                .bind(agent)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            for department in departments {
                // Only departments of the agent's own site: the SELECT finds nothing otherwise.
                sqlx::query(
                    "INSERT INTO department_members (department_id, agent_id) \
                     SELECT id, ? FROM departments WHERE site_id = ? AND id = ? \
                     ON CONFLICT DO NOTHING",
                )
                .bind(agent)
                .bind(site)
                .bind(convert::id_to_db(D, *department)?)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
        }
        let row: AgentRow =
            sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE site_id = ? AND id = ?"))
                .bind(site)
                .bind(agent)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        convert::agent_from_row(D, row).map(Some)
    }

    pub(crate) async fn agents_delete(&self, site_id: SiteId, id: AgentId) -> BackendResult<bool> {
        let (site, agent) = (convert::id_to_db(D, site_id)?, convert::id_to_db(D, id)?);
        let mut tx = self.begin().await?;
        let Some(role) = role_of(&mut tx, site, agent).await? else { return Ok(false) };
        if role == Role::Admin {
            agents_rows::last_admin(admin_count(&mut tx, site).await?)?;
        }
        sqlx::query("DELETE FROM agents WHERE site_id = ? AND id = ?")
            .bind(site)
            .bind(agent)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    pub(crate) async fn agents_preferences(
        &self,
        site_id: SiteId,
        id: AgentId,
    ) -> BackendResult<Option<Map<String, Value>>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT preferences FROM agents WHERE site_id = ? AND id = ?")
            .bind(convert::id_to_db(D, site_id)?)
            .bind(convert::id_to_db(D, id)?)
            .fetch_optional(self.reader())
            .await
            .map_err(db_err)?;
        row.map(|(text,)| agents_rows::preferences_from_db(D, &text)).transpose()
    }

    pub(crate) async fn agents_set_preference(
        &self,
        site_id: SiteId,
        id: AgentId,
        key: &str,
        value: &Value,
    ) -> BackendResult<Option<Map<String, Value>>> {
        let (site, agent) = (convert::id_to_db(D, site_id)?, convert::id_to_db(D, id)?);
        // Read, change and write under the write lock: no other writer runs in between.
        let mut tx = self.begin().await?;
        let row: Option<(String,)> = sqlx::query_as("SELECT preferences FROM agents WHERE site_id = ? AND id = ?")
            .bind(site)
            .bind(agent)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some((text,)) = row else { return Ok(None) };
        let mut preferences = agents_rows::preferences_from_db(D, &text)?;
        preferences.insert(key.to_string(), value.clone());
        sqlx::query("UPDATE agents SET preferences = ? WHERE site_id = ? AND id = ?")
            .bind(convert::json_to_db(D, &preferences)?)
            .bind(site)
            .bind(agent)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(preferences))
    }

    pub(crate) async fn departments_list(&self, site_id: SiteId) -> BackendResult<Vec<Department>> {
        let site = convert::id_to_db(D, site_id)?;
        let rows: Vec<DepartmentRow> = sqlx::query_as(
            "SELECT id, site_id, name, strategy, created_at FROM departments WHERE site_id = ? ORDER BY id",
        )
        .bind(site)
        .fetch_all(self.reader())
        .await
        .map_err(db_err)?;
        let members: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT m.department_id, m.agent_id FROM department_members m \
             JOIN departments d ON d.id = m.department_id WHERE d.site_id = ?",
        )
        .bind(site)
        .fetch_all(self.reader())
        .await
        .map_err(db_err)?;
        agents_rows::departments_from_rows(D, rows, members)
    }

    pub(crate) async fn departments_get(&self, site_id: SiteId, id: DepartmentId) -> BackendResult<Option<Department>> {
        let (site, department) = (convert::id_to_db(D, site_id)?, convert::id_to_db(D, id)?);
        let rows: Vec<DepartmentRow> = sqlx::query_as(
            "SELECT id, site_id, name, strategy, created_at FROM departments WHERE site_id = ? AND id = ?",
        )
        .bind(site)
        .bind(department)
        .fetch_all(self.reader())
        .await
        .map_err(db_err)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let members: Vec<(i64, i64)> =
            sqlx::query_as("SELECT department_id, agent_id FROM department_members WHERE department_id = ?")
                .bind(department)
                .fetch_all(self.reader())
                .await
                .map_err(db_err)?;
        Ok(agents_rows::departments_from_rows(D, rows, members)?.pop())
    }

    pub(crate) async fn departments_insert(&self, department: &Department) -> BackendResult<()> {
        let (id, site) = (convert::id_to_db(D, department.id)?, convert::id_to_db(D, department.site_id)?);
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO departments (id, site_id, name, strategy, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(id)
            .bind(site)
            .bind(&department.name)
            .bind(&department.strategy)
            .bind(department.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                error::from_insert(D, e, |rule| agents_rows::department_conflict(&department.name, id, rule))
            })?;
        set_members(&mut tx, site, id, &department.members).await?;
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn departments_update(
        &self,
        site_id: SiteId,
        id: DepartmentId,
        update: &DepartmentUpdate,
    ) -> BackendResult<Option<Department>> {
        let (site, department) = (convert::id_to_db(D, site_id)?, convert::id_to_db(D, id)?);
        let mut tx = self.begin().await?;
        let name = update.name.as_deref().unwrap_or_default();
        let changed = sqlx::query(
            "UPDATE departments SET name = COALESCE(?, name), strategy = COALESCE(?, strategy) \
             WHERE site_id = ? AND id = ?",
        )
        .bind(update.name.as_deref())
        .bind(update.strategy.as_deref())
        .bind(site)
        .bind(department)
        .execute(&mut *tx)
        .await
        .map_err(|e| error::from_insert(D, e, |rule| agents_rows::department_conflict(name, department, rule)))?;
        if changed.rows_affected() == 0 {
            return Ok(None);
        }
        if let Some(members) = &update.members {
            sqlx::query("DELETE FROM department_members WHERE department_id = ?")
                .bind(department)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            set_members(&mut tx, site, department, members).await?;
        }
        tx.commit().await.map_err(db_err)?;
        self.departments_get(site_id, id).await
    }

    pub(crate) async fn departments_delete(&self, site_id: SiteId, id: DepartmentId) -> BackendResult<bool> {
        let done = sqlx::query("DELETE FROM departments WHERE site_id = ? AND id = ?")
            .bind(convert::id_to_db(D, site_id)?)
            .bind(convert::id_to_db(D, id)?)
            .execute(self.writer())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn refresh_insert(&self, token: &RefreshToken) -> BackendResult<()> {
        let agent = convert::id_to_db(D, token.agent_id)?;
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE agent_id = ? AND expires_at < ?")
            .bind(agent)
            .bind(convert::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(concat!("INSERT INTO refresh_tokens (", refresh_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&token.token_hash)
            .bind(&token.session_id)
            .bind(convert::id_to_db(D, token.site_id)?)
            .bind(agent)
            .bind(token.expires_at)
            .bind(token.used)
            .bind(token.revoked)
            .bind(token.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| error::from_insert(D, e, |_| "this refresh token is stored already".to_string()))?;
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn refresh_get(&self, token_hash: &str) -> BackendResult<Option<RefreshToken>> {
        let row: Option<RefreshRow> =
            sqlx::query_as(concat!("SELECT ", refresh_columns!(), " FROM refresh_tokens WHERE token_hash = ?"))
                .bind(token_hash)
                .fetch_optional(self.reader())
                .await
                .map_err(db_err)?;
        row.map(|r| agents_rows::refresh_from_row(D, r)).transpose()
    }

    pub(crate) async fn refresh_use(&self, token_hash: &str) -> BackendResult<bool> {
        let done = sqlx::query("UPDATE refresh_tokens SET used = 1 WHERE token_hash = ? AND used = 0 AND revoked = 0")
            .bind(token_hash)
            .execute(self.writer())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn refresh_revoke_session(&self, site_id: SiteId, session_id: &str) -> BackendResult<u64> {
        let done =
            sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE site_id = ? AND session_id = ? AND revoked = 0")
                .bind(convert::id_to_db(D, site_id)?)
                .bind(session_id)
                .execute(self.writer())
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn refresh_revoke_agent(&self, site_id: SiteId, agent_id: AgentId) -> BackendResult<Vec<String>> {
        let (site, agent) = (convert::id_to_db(D, site_id)?, convert::id_to_db(D, agent_id)?);
        let mut tx = self.begin().await?;
        let sessions: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT session_id FROM refresh_tokens WHERE site_id = ? AND agent_id = ? AND revoked = 0 \
             ORDER BY session_id",
        )
        .bind(site)
        .bind(agent)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE site_id = ? AND agent_id = ? AND revoked = 0")
            .bind(site)
            .bind(agent)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(sessions.into_iter().map(|(s,)| s).collect())
    }
}

async fn role_of(tx: &mut Tx, site: i64, agent: i64) -> BackendResult<Option<Role>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT role FROM agents WHERE site_id = ? AND id = ?")
        .bind(site)
        .bind(agent)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    row.map(|(role,)| role.parse::<Role>().map_err(|e| frontdesk_core::error::BackendError::other(D.name(), e)))
        .transpose()
}

async fn admin_count(tx: &mut Tx, site: i64) -> BackendResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agents WHERE site_id = ? AND role = 'admin'")
        .bind(site)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(n)
}

/// Adds `members` that are agents of `site` to a department.
async fn set_members(tx: &mut Tx, site: i64, department: i64, members: &[AgentId]) -> BackendResult<()> {
    for member in members {
        sqlx::query(
            "INSERT INTO department_members (department_id, agent_id) \
             SELECT ?, id FROM agents WHERE site_id = ? AND id = ? ON CONFLICT DO NOTHING",
        )
        .bind(department)
        .bind(site)
        .bind(convert::id_to_db(D, *member)?)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}
