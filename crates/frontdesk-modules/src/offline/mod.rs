//! The offline-message module (SPEC §5.4 "offline_message", §8 "offline messages"): what the
//! widget shows when no agent can take a chat.
//!
//! - `offline_message.availability` `{siteId}` (no token) → `{agentsOnline}`: whether any
//!   agent of the site is `online` and has shown life within the presence timeout, read
//!   from the site's presence hashes ([`crate::model::agents_key`], [`crate::model::agent_key`]).
//! - `offline_message.submit` `{siteId?, name, email, message}` (visitor token) → `{id}`:
//!   validated (`offline/validate`: e-mail shape, message 1..=5000 characters), then kept
//!   (`offline/submit`) in the runtime state under the site's hash tag ([`messages_key`]),
//!   newest last, capped at [`KEEP_MESSAGES`]. The durable table (and the e-mail to the
//!   site) come with issue 5; until then this list is the record.
//!
//! # Layout
//! - [`validate`] — the request and its checks (pure functions, unit-tested).
//! - [`handlers`] — the three handlers.

mod handlers;
pub mod validate;

use std::sync::Arc;

use frontdesk_core::id::SiteId;
use frontdesk_core::keys;
use frontdesk_core::pipeline::Registry;

use crate::{Deps, RegisterError};

/// Offline messages kept per site in the runtime state; older ones are trimmed.
pub const KEEP_MESSAGES: i64 = 10_000;

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    registry.register(
        "offline/availability",
        Arc::new(handlers::Availability {
            state: deps.backends.state.clone(),
            store: deps.backends.store.clone(),
            presence_timeout: deps.settings.presence_timeout,
        }),
    )?;
    registry.register("offline/validate", Arc::new(handlers::Validate))?;
    registry.register(
        "offline/submit",
        Arc::new(handlers::Submit { state: deps.backends.state.clone(), ids: deps.ids.clone() }),
    )?;
    Ok(())
}

/// A site's offline messages: a list of JSON records, oldest first. Owner: this module.
pub fn messages_key(site: SiteId) -> String {
    keys::site(site, "offline_messages")
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::id::Id;
    use frontdesk_core::state::hash_tag;

    #[test]
    fn offline_messages_share_the_site_hash_tag() {
        let site = Id(42);
        assert_eq!(hash_tag(&messages_key(site)), hash_tag(&crate::model::agents_key(site)));
        assert_ne!(messages_key(site), messages_key(Id(43)));
    }
}
