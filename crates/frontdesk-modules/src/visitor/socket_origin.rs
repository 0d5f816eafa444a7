//! `visitor/check_socket_origin`: a visitor's WebSocket is refused (`domain_not_allowed`,
//! HTTP 403 before the upgrade) when its handshake carries an `Origin` outside the site's
//! allowed domains — the rule `visitor/check_domain` applies to `visitor.enter_site`, so a
//! token obtained on an allowed page cannot be used from a page that is not.
//!
//! As in `check_domain`, a site without allowed domains accepts any origin, and a missing
//! (or `null`) `Origin` — non-browser clients — is allowed. Agents' sockets are not checked
//! here: the console is served by this server (same origin) and its token is no cookie.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::error::ErrorKind;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Step};
use frontdesk_core::store::Store;

use super::domain;

pub(super) struct CheckSocketOrigin {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl Handler for CheckSocketOrigin {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let Caller::Visitor { site_id, .. } = ctx.caller else {
            return Ok(Step::Next);
        };
        let Some(origin) =
            ctx.request.client.origin.as_deref().map(str::trim).filter(|o| !o.is_empty() && *o != "null")
        else {
            return Ok(Step::Next);
        };
        let site =
            self.store.site(site_id).await?.ok_or_else(|| {
                Failure::unauthorized(format!("site {site_id} of this visitor token no longer exists"))
            })?;
        if site.allowed_domains.is_empty() {
            return Ok(Step::Next);
        }
        match domain::host_of(origin) {
            Some(host) if domain::allowed(&host, &site.allowed_domains) => Ok(Step::Next),
            Some(host) => Err(Failure::new(
                ErrorKind::DomainNotAllowed,
                format!(
                    "pages on {host} may not open sockets for site {site_id}; it is not one of the site's allowed domains"
                ),
            )),
            None => Err(Failure::new(
                ErrorKind::DomainNotAllowed,
                format!("site {site_id} accepts only its allowed domains, and the Origin header names no http(s) host"),
            )),
        }
    }
}
