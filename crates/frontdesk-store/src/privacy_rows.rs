//! Rows and values both dialects share for retention and privacy (issue 5): the audit-log
//! row, the settings merge of `sites.update_settings`, and the text anonymised messages get.

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::reports::AuditEntry;
use serde_json::{Map, Value};

use crate::convert;
use crate::error::Dialect;

/// The content of an anonymised message.
pub(crate) const REMOVED: &str = "[removed]";

/// id, site_id, actor_agent_id, action, target, details (JSON text), at.
pub(crate) type AuditRow = (i64, i64, Option<i64>, String, String, String, i64);

pub(crate) fn audit_from_row(dialect: Dialect, row: AuditRow) -> BackendResult<AuditEntry> {
    let (id, site, actor, action, target, details, at) = row;
    Ok(AuditEntry {
        id: convert::id_from_db(dialect, id)?,
        site_id: convert::id_from_db(dialect, site)?,
        actor_agent_id: actor.map(|a| convert::id_from_db(dialect, a)).transpose()?,
        action,
        target,
        details: serde_json::from_str(&details)
            .map_err(|e| BackendError::other(dialect.name(), format!("stored audit_log.details is not JSON: {e}")))?,
        at,
    })
}

/// `settings` with `patch` applied: each key set to its value, a `null` removing the key.
/// Settings that are not an object (never written so far) start from an empty one.
pub(crate) fn merge_settings(settings: &Value, patch: &Map<String, Value>) -> Value {
    let mut merged = settings.as_object().cloned().unwrap_or_default();
    for (key, value) in patch {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_null_removes_a_setting_and_others_stay() {
        let patch = json!({"retentionDays": null, "retentionMode": "delete"});
        let merged = merge_settings(&json!({"retentionDays": 30, "maxQueue": 5}), patch.as_object().expect("object"));
        assert_eq!(merged, json!({"maxQueue": 5, "retentionMode": "delete"}));
    }
}
