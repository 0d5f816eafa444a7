//! Conversions between domain records and the column values both dialects store: snowflake
//! ids as signed 64-bit integers, JSON as text, roles as their names, times as Unix
//! milliseconds. Rows are read as tuples in the column order of the `*_COLUMNS` constants.

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::id::Id;
use frontdesk_core::store::{Agent, Role, Site};

use crate::error::Dialect;

/// A `sites` row: id, name, allowed_domains, settings, created_at. PostgreSQL selects its
/// JSONB columns as `::text`, so both dialects read the same tuple.
pub(crate) type SiteRow = (i64, String, String, String, i64);

/// The `agents` columns of an [`AgentRow`], in its order. A macro rather than a constant so
/// that `concat!` can build whole statements as `&'static str`, which sqlx takes as safe SQL.
macro_rules! agent_columns {
    () => {
        "id, site_id, email, name, password_hash, role, max_chats, priority, created_at"
    };
}
pub(crate) use agent_columns;
pub(crate) type AgentRow = (i64, i64, String, String, String, String, i32, i32, i64);

/// Installation-wide secrets are stored under site 0 (see the `secrets` table).
pub(crate) const INSTALLATION_SITE: i64 = 0;

/// Snowflakes are u64 but both databases store signed 64-bit integers; they fit until 2093,
/// and a checked conversion turns anything beyond into an error rather than a negative id.
pub(crate) fn id_to_db(dialect: Dialect, id: Id) -> BackendResult<i64> {
    i64::try_from(id.0)
        .map_err(|_| BackendError::other(dialect.name(), format!("id {id} does not fit in a signed 64-bit column")))
}

pub(crate) fn id_from_db(dialect: Dialect, value: i64) -> BackendResult<Id> {
    u64::try_from(value)
        .map(Id)
        .map_err(|_| BackendError::other(dialect.name(), format!("stored id {value} is negative")))
}

pub(crate) fn json_to_db(dialect: Dialect, value: &impl serde::Serialize) -> BackendResult<String> {
    serde_json::to_string(value).map_err(|e| BackendError::other(dialect.name(), format!("cannot encode JSON: {e}")))
}

fn json_from_db<T: serde::de::DeserializeOwned>(dialect: Dialect, column: &str, text: &str) -> BackendResult<T> {
    serde_json::from_str(text)
        .map_err(|e| BackendError::other(dialect.name(), format!("stored {column} is not the expected JSON: {e}")))
}

pub(crate) fn site_from_row(dialect: Dialect, row: SiteRow) -> BackendResult<Site> {
    let (id, name, allowed_domains, settings, created_at) = row;
    Ok(Site {
        id: id_from_db(dialect, id)?,
        name,
        allowed_domains: json_from_db(dialect, "sites.allowed_domains", &allowed_domains)?,
        settings: json_from_db(dialect, "sites.settings", &settings)?,
        created_at,
    })
}

pub(crate) fn agent_from_row(dialect: Dialect, row: AgentRow) -> BackendResult<Agent> {
    let (id, site_id, email, name, password_hash, role, max_chats, priority, created_at) = row;
    let role: Role =
        role.parse().map_err(|e: String| BackendError::other(dialect.name(), format!("stored agents.role: {e}")))?;
    Ok(Agent {
        id: id_from_db(dialect, id)?,
        site_id: id_from_db(dialect, site_id)?,
        email,
        name,
        password_hash,
        role,
        max_chats,
        priority,
        created_at,
    })
}

/// The key under which a secret of `site_id` is stored.
pub(crate) fn secret_site(dialect: Dialect, site_id: Option<Id>) -> BackendResult<i64> {
    site_id.map_or(Ok(INSTALLATION_SITE), |id| id_to_db(dialect, id))
}

/// The message of a failed agent insert, naming the rule it broke.
pub(crate) fn agent_conflict(agent: &Agent, rule: &str) -> String {
    if rule.contains("email") {
        format!("an agent with email {} already exists", agent.email)
    } else {
        format!("an agent with id {} already exists", agent.id)
    }
}

/// The message of an agent insert whose site does not exist.
pub(crate) fn agent_site_missing(agent: &Agent) -> String {
    format!("agent {} names site {}, which does not exist", agent.id, agent.site_id)
}

pub(crate) fn site_conflict(site: &Site) -> String {
    format!("a site with id {} already exists", site.id)
}

pub(crate) use frontdesk_core::time::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_beyond_i64_are_refused_not_wrapped() {
        assert_eq!(id_to_db(Dialect::Sqlite, Id(42)), Ok(42));
        assert!(id_to_db(Dialect::Sqlite, Id(u64::MAX)).is_err());
        assert!(id_from_db(Dialect::Postgres, -1).is_err());
        assert_eq!(id_from_db(Dialect::Postgres, i64::MAX), Ok(Id(i64::MAX as u64)));
    }

    #[test]
    fn an_unknown_stored_role_is_an_error_not_a_default() {
        let row: AgentRow = (1, 2, "a@b".into(), "A".into(), "h".into(), "owner".into(), 3, 0, 0);
        assert!(agent_from_row(Dialect::Sqlite, row).is_err());
    }
}
