//! `privacy/update_settings` (`sites.update_settings`, `PATCH /api/v1/sites/{id}/settings`):
//! an admin sets the site's retention, and `offlineMessageEmails` (the addresses offline
//! messages are e-mailed to; unset: the site's admins). Absent fields stay as they are;
//! `null` removes the setting (`retentionDays: null` keeps transcripts forever). The path's site id must be
//! the caller's own: another site reads as not found.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::id::Id;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use serde_json::{json, Map, Value};

use super::{admin, only, Privacy};
use crate::offline::validate::email_shaped;
use crate::offline::EMAILS_SETTING;
use crate::RegisterError;

/// `offlineMessageEmails`: one address or up to [`MAX_OFFLINE_EMAILS`], stored as an array;
/// `null` or `[]` removes the setting (the site's admins are e-mailed).
fn offline_emails(v: &Value) -> Result<Value, Failure> {
    let refuse = || {
        Failure::bad_request(format!(
            "{EMAILS_SETTING} must be an e-mail address or an array of 1 to {MAX_OFFLINE_EMAILS}, \
             or null for the site's admins"
        ))
    };
    let listed: Vec<&Value> = match v {
        Value::Null => return Ok(Value::Null),
        Value::Array(items) if items.is_empty() => return Ok(Value::Null),
        Value::Array(items) if items.len() <= MAX_OFFLINE_EMAILS => items.iter().collect(),
        Value::String(_) => vec![v],
        _ => return Err(refuse()),
    };
    let mut out = Vec::with_capacity(listed.len());
    for item in listed {
        let address = item.as_str().map(str::trim).filter(|a| a.len() <= 254 && email_shaped(a)).ok_or_else(refuse)?;
        out.push(Value::String(address.to_string()));
    }
    Ok(Value::Array(out))
}

/// The longest retention: ten years.
pub(super) const MAX_RETENTION_DAYS: i64 = 3650;
/// Addresses offline messages may be e-mailed to at once.
const MAX_OFFLINE_EMAILS: usize = 10;

pub(super) fn register(registry: &mut Registry, p: &Arc<Privacy>) -> Result<(), RegisterError> {
    registry.register("privacy/update_settings", Arc::new(UpdateSettings(p.clone())))?;
    Ok(())
}

struct UpdateSettings(Arc<Privacy>);

#[async_trait]
impl Handler for UpdateSettings {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, _) = admin(ctx)?;
        only(ctx, &["id", "siteId", "retentionDays", "retentionMode", EMAILS_SETTING])?;
        let data = ctx.request.data.as_object().cloned().unwrap_or_default();
        for key in ["id", "siteId"] {
            let named = match data.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.parse::<Id>().ok(),
                Some(_) => None,
            };
            if named != Some(site) {
                return Err(Failure::not_found(format!("{key}: no such site of yours; you can change only your own")));
            }
        }
        let mut patch = Map::new();
        match data.get("retentionDays") {
            None => {}
            Some(Value::Null) => {
                patch.insert("retentionDays".into(), Value::Null);
            }
            Some(v) => {
                let days = v.as_i64().filter(|d| (1..=MAX_RETENTION_DAYS).contains(d)).ok_or_else(|| {
                    Failure::bad_request(format!("retentionDays must be 1 to {MAX_RETENTION_DAYS} or null, got {v}"))
                })?;
                patch.insert("retentionDays".into(), json!(days));
            }
        }
        match data.get("retentionMode") {
            None => {}
            Some(Value::Null) => {
                patch.insert("retentionMode".into(), Value::Null);
            }
            Some(Value::String(m)) if m == "delete" || m == "anonymise" => {
                patch.insert("retentionMode".into(), json!(m));
            }
            Some(v) => return Err(Failure::bad_request(format!("retentionMode must be delete or anonymise, got {v}"))),
        }
        if let Some(v) = data.get(EMAILS_SETTING) {
            patch.insert(EMAILS_SETTING.into(), offline_emails(v)?);
        }
        if patch.is_empty() {
            return Err(Failure::bad_request(format!("retentionDays, retentionMode or {EMAILS_SETTING} is required")));
        }
        let updated = self.0.store.update_site_settings(site, &patch).await?;
        let updated = updated.ok_or_else(|| Failure::not_found("your site no longer exists"))?;
        ctx.set_result("id", json!(site));
        ctx.set_result("settings", updated.settings);
        Ok(Step::Next)
    }
}
