//! A pending invitation as stored ([`super::pending_key`]), the rule that ends it
//! ([`is_expired`]), the view the widget gets, and the step log ([`super::log_key`]).

use std::time::Duration;

use frontdesk_core::id::{AgentId, Id, SiteId, VisitorId};
use frontdesk_core::object;
use frontdesk_core::pipeline::Failure;
use frontdesk_core::state::StateStore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{log_key, pending_key, KEEP_LOG};

/// One visitor's pending invitation (a hash; missing fields take defaults, SPEC §7).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pending {
    pub invitation_id: Id,
    pub agent_id: AgentId,
    pub agent_name: String,
    pub message: String,
    /// Unix milliseconds.
    pub sent_at: i64,
    /// Unix milliseconds the widget first showed it; 0 until then.
    pub shown_at: i64,
}

impl Pending {
    pub fn expires_at(&self, ttl: Duration) -> i64 {
        self.sent_at.saturating_add(ttl.as_millis() as i64)
    }

    /// What the visitor's widget sees (`invitation.pop`, `invitation.check`).
    pub fn view(&self, ttl: Duration) -> Value {
        json!({
            "invitationId": self.invitation_id,
            "agentName": self.agent_name,
            "message": self.message,
            "sentAt": self.sent_at,
            "expiresAt": self.expires_at(ttl),
        })
    }
}

/// Whether an invitation sent at `sent_at` has lapsed at `now` (both Unix milliseconds).
/// The hash's own expiry removes it later anyway; this rule is what callers see.
pub fn is_expired(sent_at: i64, now: i64, ttl: Duration) -> bool {
    now >= sent_at.saturating_add(ttl.as_millis() as i64)
}

/// The visitor's invitation if one is pending and has not expired at `now`.
pub async fn load_live(
    state: &dyn StateStore,
    site: SiteId,
    visitor: VisitorId,
    now: i64,
    ttl: Duration,
) -> Result<Option<Pending>, Failure> {
    let pending = object::load::<Pending>(state, &pending_key(site, visitor)).await?;
    Ok(pending.filter(|p| p.invitation_id != Id(0) && !is_expired(p.sent_at, now, ttl)))
}

/// One step of an invitation, as logged.
pub struct LogEntry<'a> {
    pub site: SiteId,
    pub visitor: VisitorId,
    pub invitation: Id,
    pub agent: AgentId,
    pub step: &'a str,
    pub at: i64,
}

/// Appends a step to the site's log, keeping the newest [`KEEP_LOG`].
pub async fn log_step(state: &dyn StateStore, entry: &LogEntry<'_>) -> Result<(), Failure> {
    let line = json!({
        "invitationId": entry.invitation,
        "visitorId": entry.visitor,
        "agentId": entry.agent,
        "step": entry.step,
        "at": entry.at,
    })
    .to_string();
    let key = log_key(entry.site);
    let len = state.rpush(&key, &[line.as_str()]).await?;
    if len as i64 > KEEP_LOG {
        state.ltrim(&key, -KEEP_LOG, -1).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invitation_lapses_exactly_at_its_ttl() {
        let ttl = Duration::from_secs(300);
        assert!(!is_expired(1_000, 1_000, ttl));
        assert!(!is_expired(1_000, 300_999, ttl));
        assert!(is_expired(1_000, 301_000, ttl));
        assert!(is_expired(i64::MAX - 5, i64::MAX, Duration::from_millis(1)));
    }

    #[test]
    fn the_view_names_what_the_widget_shows() {
        let p = Pending {
            invitation_id: Id(42),
            agent_id: Id(7),
            agent_name: "Sam".into(),
            message: "Need help?".into(),
            sent_at: 10,
            shown_at: 0,
        };
        let v = p.view(Duration::from_millis(5));
        assert_eq!(v["invitationId"], "42");
        assert_eq!(v["agentName"], "Sam");
        assert_eq!(v["message"], "Need help?");
        assert_eq!(v["expiresAt"], 15);
        assert!(v.get("agentId").is_none(), "the visitor does not learn agent ids");
    }
}
