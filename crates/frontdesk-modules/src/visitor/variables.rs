//! Custom variables (SPEC §4 "Visitor: custom variables"): what a site's page tells about
//! its visitor (plan, cart value, logged-in flag…). Limits keep one visitor's record small:
//! at most [`MAX_VARIABLES`] keys of at most [`MAX_KEY_CHARS`] characters, values strings
//! (at most [`MAX_VALUE_BYTES`] bytes), numbers or booleans. `null` removes a key.

use frontdesk_core::pipeline::Failure;
use serde_json::{Map, Value};

pub(crate) const MAX_VARIABLES: usize = 50;
pub(crate) const MAX_KEY_CHARS: usize = 64;
pub(crate) const MAX_VALUE_BYTES: usize = 1024;

/// Merges `update` into `current`, refusing the whole update (nothing changed) when a key
/// or value breaks a limit; the error names the field as `data.customVariables.<key>`.
pub(crate) fn merge(current: &mut Map<String, Value>, update: &Map<String, Value>) -> Result<(), Failure> {
    let mut merged = current.clone();
    for (key, value) in update {
        let shown = shown_key(key);
        if key.trim().is_empty() {
            return Err(Failure::bad_request("data.customVariables: a variable name may not be empty"));
        }
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(Failure::bad_request(format!(
                "data.customVariables.{shown}: variable names are at most {MAX_KEY_CHARS} characters"
            )));
        }
        match value {
            Value::Null => {
                merged.remove(key);
            }
            Value::String(s) if s.len() > MAX_VALUE_BYTES => {
                return Err(Failure::bad_request(format!(
                    "data.customVariables.{shown}: text values are at most {MAX_VALUE_BYTES} bytes (got {})",
                    s.len()
                )));
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                merged.insert(key.clone(), value.clone());
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(Failure::bad_request(format!(
                    "data.customVariables.{shown}: values must be a string, a number, a boolean or null (to remove it)"
                )));
            }
        }
    }
    if merged.len() > MAX_VARIABLES {
        return Err(Failure::bad_request(format!(
            "data.customVariables: at most {MAX_VARIABLES} variables per visitor (this update would make {})",
            merged.len()
        )));
    }
    *current = merged;
    Ok(())
}

/// A key as shown in an error message: cut short when it is itself too long.
fn shown_key(key: &str) -> String {
    if key.chars().count() > MAX_KEY_CHARS {
        format!("{}…", key.chars().take(MAX_KEY_CHARS).collect::<String>())
    } else {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::error::ErrorKind;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn values_merge_and_null_removes() {
        let mut cur = map(json!({"plan": "free", "cart": 3}));
        merge(&mut cur, &map(json!({"plan": "pro", "cart": null, "vip": true}))).expect("valid");
        assert_eq!(Value::Object(cur), json!({"plan": "pro", "vip": true}));
    }

    #[test]
    fn each_limit_is_refused_naming_the_key_and_nothing_changes() {
        let mut cur = map(json!({"plan": "free"}));
        let long_key = "k".repeat(65);
        let cases = [
            (json!({"nested": {"a": 1}}), "data.customVariables.nested:"),
            (json!({"list": [1]}), "data.customVariables.list:"),
            (json!({"big": "x".repeat(1025)}), "data.customVariables.big:"),
            (json!({ long_key.clone(): 1 }), "data.customVariables.kkkk"),
            (json!({"": 1}), "data.customVariables:"),
        ];
        for (update, start) in cases {
            let e = merge(&mut cur, &map(update)).expect_err("invalid");
            assert_eq!(e.kind, ErrorKind::BadRequest);
            assert!(e.message.starts_with(start), "{}", e.message);
        }
        let many: Map<String, Value> = (0..50).map(|i| (format!("v{i}"), json!(i))).collect();
        let e = merge(&mut cur, &many).expect_err("51 with plan");
        assert!(e.message.contains("at most 50"), "{}", e.message);
        assert_eq!(Value::Object(cur), json!({"plan": "free"}));
    }
}
