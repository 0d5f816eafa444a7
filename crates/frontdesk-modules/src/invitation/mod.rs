//! The invitation module (SPEC §4 "invitation log", §5.4 "invitation", §5.6 `invitation.pop`):
//! an agent invites a browsing visitor to chat, the widget shows the invitation, and the
//! visitor accepts or refuses it.
//!
//! - `invitation.send` `{visitorId, message?}` (agent) → `{invitationId, expiresAt}`: keeps one
//!   pending invitation per visitor ([`pending_key`], a hash that expires after [`TTL`]),
//!   sets the visitor's `state` to `invited` and pushes `invitation.pop` to the visitor.
//! - `invitation.check` (visitor) → `{status: "none" | "pop", invitation?}`: the pending manual
//!   invitation, if it has not expired. Automatic invitation rules (SPEC's "auto rules",
//!   "delay pop") are not implemented yet: `check` only ever answers from manual ones.
//! - `invitation.show` / `.accept` / `.refuse` (visitor) `{invitationId}`: each step is logged
//!   ([`log_key`], capped at [`KEEP_LOG`] per site, for reports). `accept` clears the pending
//!   invitation and moves the visitor to `prechat` (the widget then calls `chat.request`);
//!   `refuse` clears it and moves the visitor back to `browsing`.
//!
//! The visitor record ([`crate::model::VisitorRecord`]) is owned by the visitor module; this
//! module writes only its `state` field, with single-field `hset`s (SPEC §7).
//!
//! # Layout
//! - [`pending`] — the pending invitation as stored, its expiry rule and the step log.
//! - [`handlers`] — the five handlers.

mod handlers;
pub mod pending;

use std::sync::Arc;
use std::time::Duration;

use frontdesk_core::id::{SiteId, VisitorId};
use frontdesk_core::keys;
use frontdesk_core::pipeline::Registry;

use crate::{Deps, RegisterError};

/// How long an invitation stays pending after it was sent.
pub const TTL: Duration = Duration::from_secs(5 * 60);

/// Invitation steps kept per site in the runtime state; older ones are trimmed.
pub const KEEP_LOG: i64 = 10_000;

/// A message of at most this many characters may come with an invitation.
pub const MAX_MESSAGE: usize = 500;

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let state = deps.backends.state.clone();
    registry.register(
        "invitation/send",
        Arc::new(handlers::Send {
            state: state.clone(),
            store: deps.backends.store.clone(),
            ids: deps.ids.clone(),
            push: deps.push.clone(),
            ttl: TTL,
        }),
    )?;
    registry.register("invitation/check", Arc::new(handlers::Check { state: state.clone(), ttl: TTL }))?;
    for (name, step) in [
        ("invitation/show", handlers::Visible::Show),
        ("invitation/accept", handlers::Visible::Accept),
        ("invitation/refuse", handlers::Visible::Refuse),
    ] {
        registry.register(name, Arc::new(handlers::VisitorStep { state: state.clone(), ttl: TTL, step }))?;
    }
    Ok(())
}

/// A visitor's pending invitation: a hash of [`pending::Pending`]'s fields, expiring after
/// [`TTL`]. Owner: this module.
pub fn pending_key(site: SiteId, visitor: VisitorId) -> String {
    keys::site(site, &format!("invitation:{visitor}"))
}

/// The site's invitation log: a list of JSON steps, oldest first. Owner: this module.
pub fn log_key(site: SiteId) -> String {
    keys::site(site, "invitation_log")
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::id::Id;
    use frontdesk_core::state::hash_tag;

    #[test]
    fn invitation_keys_share_the_site_hash_tag() {
        let site = Id(7);
        assert_eq!(hash_tag(&pending_key(site, Id(9))), hash_tag(&crate::model::visitor_key(site, Id(9))));
        assert_eq!(hash_tag(&log_key(site)), hash_tag(&crate::model::visitor_key(site, Id(9))));
        assert_ne!(pending_key(site, Id(9)), pending_key(site, Id(10)));
    }
}
