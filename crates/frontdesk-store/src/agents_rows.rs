//! Rows of the agents-and-sessions tables (departments, members, refresh tokens) and their
//! conversion to domain records, shared by both dialects' `agents` modules.

use std::collections::BTreeMap;

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::store::{Department, RefreshToken};

use crate::convert;
use crate::error::Dialect;

/// A `departments` row: id, site_id, name, strategy, created_at.
pub(crate) type DepartmentRow = (i64, i64, String, String, i64);

/// The `refresh_tokens` columns of a [`RefreshRow`], in its order.
macro_rules! refresh_columns {
    () => {
        "token_hash, session_id, site_id, agent_id, expires_at, used, revoked, created_at"
    };
}
pub(crate) use refresh_columns;
pub(crate) type RefreshRow = (String, String, i64, i64, i64, bool, bool, i64);

/// Departments with their members (`(department_id, agent_id)` pairs), in row order.
pub(crate) fn departments_from_rows(
    dialect: Dialect,
    rows: Vec<DepartmentRow>,
    members: Vec<(i64, i64)>,
) -> BackendResult<Vec<Department>> {
    let mut by_department: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (department, agent) in members {
        by_department.entry(department).or_default().push(agent);
    }
    rows.into_iter()
        .map(|(id, site_id, name, strategy, created_at)| {
            let mut members = by_department.remove(&id).unwrap_or_default();
            members.sort_unstable();
            Ok(Department {
                id: convert::id_from_db(dialect, id)?,
                site_id: convert::id_from_db(dialect, site_id)?,
                name,
                strategy,
                members: members.into_iter().map(|a| convert::id_from_db(dialect, a)).collect::<BackendResult<_>>()?,
                created_at,
            })
        })
        .collect()
}

pub(crate) fn refresh_from_row(dialect: Dialect, row: RefreshRow) -> BackendResult<RefreshToken> {
    let (token_hash, session_id, site_id, agent_id, expires_at, used, revoked, created_at) = row;
    Ok(RefreshToken {
        token_hash,
        session_id,
        site_id: convert::id_from_db(dialect, site_id)?,
        agent_id: convert::id_from_db(dialect, agent_id)?,
        expires_at,
        used,
        revoked,
        created_at,
    })
}

/// The message of a department insert or rename that broke a uniqueness rule.
pub(crate) fn department_conflict(name: &str, id: i64, rule: &str) -> String {
    if rule.contains("name") {
        format!("this site already has a department named {name:?}")
    } else {
        format!("a department with id {id} already exists")
    }
}

/// Refuses a change that would leave a site without an admin.
pub(crate) fn last_admin(admins: i64) -> BackendResult<()> {
    if admins <= 1 {
        return Err(BackendError::Conflict(
            "this agent is the site's last admin; make another agent admin first".to_string(),
        ));
    }
    Ok(())
}

/// A preferences column that is not a JSON object reads as an error, not as empty.
pub(crate) fn preferences_from_db(
    dialect: Dialect,
    text: &str,
) -> BackendResult<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(text).map_err(|e| {
        BackendError::other(dialect.name(), format!("stored agents.preferences is not a JSON object: {e}"))
    })
}
