//! Agent sessions: `agent/login`, `agent/refresh_token`, `agent/logout` (SPEC §5.3).
//!
//! A login makes a session (128 random bits, hex) carried by the short-lived access token
//! and by an opaque refresh token (32 random bytes, base64url) that the durable store keeps
//! only as its SHA-256. A refresh rotates the refresh token; presenting a rotated one again
//! means it leaked, so the whole session is revoked. Revoking a session marks it in the
//! state store (`model::session_key`, read by `auth/resolve_caller` on every call) before
//! the store, so its access tokens stop working at once, and pushes `session.closed` to the
//! agent so the session's open sockets close (code 4001), on whichever node they are.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use frontdesk_core::error::ErrorKind;
use frontdesk_core::id::{AgentId, SiteId};
use frontdesk_core::password;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::push::Recipient;
use frontdesk_core::state::Ttl;
use frontdesk_core::store::{Agent, RefreshToken};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::{agent_caller, now_ms, AgentModule};
use crate::model::{agent_key, session_key};
use crate::RegisterError;

/// Failed logins allowed per account, and per client address, within [`FAILURE_WINDOW`].
const MAX_ACCOUNT_FAILURES: i64 = 5;
const MAX_IP_FAILURES: i64 = 20;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The one answer to a wrong email and to a wrong password, so neither tells which it was.
const WRONG_CREDENTIALS: &str = "wrong email or password";
/// The push that closes a revoked session's sockets.
const SESSION_CLOSED: &str = crate::model::SESSION_CLOSED_PUSH;

pub(super) fn register(registry: &mut Registry, m: &Arc<AgentModule>) -> Result<(), RegisterError> {
    registry.register("agent/login", Arc::new(Login(m.clone())))?;
    registry.register("agent/refresh_token", Arc::new(Refresh(m.clone())))?;
    registry.register("agent/logout", Arc::new(Logout(m.clone())))?;
    Ok(())
}

/// A PHC hash of a random password, verified against when the email is unknown so that an
/// unknown email costs the same argon2id work as a wrong password.
static DUMMY_HASH: OnceCell<String> = OnceCell::const_new();

pub(super) async fn dummy_hash() -> &'static str {
    DUMMY_HASH
        .get_or_init(|| async {
            let random = hex(&rand::random::<[u8; 16]>());
            password::hash(random).await.unwrap_or_else(|e| {
                // Only a broken blocking pool gets here; unknown emails then answer faster.
                tracing::error!(error = %e, "cannot make the dummy password hash");
                String::new()
            })
        })
        .await
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn account_key(email: &str) -> String {
    // Hashed: keys carry no email addresses, and odd characters cannot break the hash tag.
    format!("fd:{{login:a:{}}}", sha256_hex(&email.trim().to_lowercase()))
}

fn ip_key(ip: &str) -> String {
    format!("fd:{{login:ip:{ip}}}")
}

#[derive(Deserialize)]
struct LoginData {
    email: String,
    password: String,
}

struct Login(Arc<AgentModule>);

#[async_trait]
impl Handler for Login {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let data: LoginData = ctx.decode()?;
        let m = &self.0;
        let account = account_key(&data.email);
        let ip = ctx.request.client.ip.map(|ip| ip_key(&ip.to_string()));
        // Refused before any password work, whether or not the account exists: the counter
        // is keyed by the email as typed, so it tells nothing about the account.
        let mut limited = vec![(account.as_str(), MAX_ACCOUNT_FAILURES)];
        if let Some(ip) = &ip {
            limited.push((ip.as_str(), MAX_IP_FAILURES));
        }
        for (key, max) in &limited {
            let failures = m.state.get(key).await?.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
            if failures >= *max {
                let wait = match m.state.ttl(key).await? {
                    Ttl::Expires(d) => d.as_secs().div_ceil(60).max(1),
                    _ => FAILURE_WINDOW.as_secs() / 60,
                };
                return Err(Failure::new(
                    ErrorKind::RateLimited,
                    format!(
                        "too many failed logins for this account or from this address; try again in {wait} minute(s)"
                    ),
                ));
            }
        }
        let agent = m.store.agent_by_email(data.email.trim()).await?;
        let hash = match &agent {
            Some(a) => a.password_hash.clone(),
            None => dummy_hash().await.to_string(),
        };
        let matches = password::verify(data.password, hash).await;
        let Some(agent) = agent.filter(|_| matches) else {
            for (key, _) in &limited {
                if m.state.incrby(key, 1).await? == 1 {
                    m.state.expire(key, FAILURE_WINDOW).await?;
                }
            }
            return Err(Failure::unauthorized(WRONG_CREDENTIALS));
        };
        m.state.del(&[&account]).await?;
        let session_id = hex(&rand::random::<[u8; 16]>());
        let answer = m.open(&agent, &session_id).await?;
        ctx.merge_result(answer);
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshData {
    refresh_token: String,
}

struct Refresh(Arc<AgentModule>);

#[async_trait]
impl Handler for Refresh {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let data: RefreshData = ctx.decode()?;
        let m = &self.0;
        let hash = sha256_hex(data.refresh_token.trim());
        let Some(token) = m.store.refresh_token(&hash).await? else {
            return Err(Failure::unauthorized("the refresh token is not valid; log in again"));
        };
        if token.revoked {
            return Err(Failure::unauthorized("this session has been logged out; log in again"));
        }
        if token.expires_at <= now_ms() {
            return Err(Failure::unauthorized("the refresh token has expired; log in again"));
        }
        // `used` first, then the atomic claim: of two refreshes racing with one token only
        // one rotates it, and the other counts as reuse.
        if token.used || !m.store.use_refresh_token(&hash).await? {
            tracing::warn!(session = %token.session_id, agent = %token.agent_id, "refresh token reused; session revoked");
            m.revoke(token.site_id, token.agent_id, &token.session_id).await?;
            return Err(Failure::unauthorized(
                "this refresh token was already used, so it may have leaked: its session is now revoked; log in again",
            ));
        }
        let Some(agent) = m.store.agent(token.site_id, token.agent_id).await? else {
            return Err(Failure::unauthorized("the agent of this session no longer exists"));
        };
        let answer = m.open(&agent, &token.session_id).await?;
        ctx.merge_result(answer);
        Ok(Step::Next)
    }
}

struct Logout(Arc<AgentModule>);

#[async_trait]
impl Handler for Logout {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let (site, agent, session_id) = agent_caller(&ctx.caller, &ctx.event)?;
        self.0.revoke(site, agent, &session_id).await?;
        ctx.set_result("loggedOut", json!(true));
        Ok(Step::Next)
    }
}

impl AgentModule {
    /// Issues an access token and a new refresh token in `session_id`; answers the login
    /// result (`accessToken`, `refreshToken`, `expiresIn`, `agent`).
    async fn open(&self, agent: &Agent, session_id: &str) -> Result<serde_json::Map<String, Value>, Failure> {
        let refresh = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let ttl_ms = i64::try_from(self.settings.refresh_token_ttl.as_millis()).unwrap_or(i64::MAX);
        self.store
            .insert_refresh_token(&RefreshToken {
                token_hash: sha256_hex(&refresh),
                session_id: session_id.to_string(),
                site_id: agent.site_id,
                agent_id: agent.id,
                expires_at: now.saturating_add(ttl_ms),
                used: false,
                revoked: false,
                created_at: now,
            })
            .await?;
        let ttl = self.settings.access_token_ttl;
        let access = self.tokens.issue_agent(agent.site_id, agent.id, agent.role, session_id, ttl)?;
        let status = self.state.hget(&agent_key(agent.site_id, agent.id), "status").await?;
        let mut out = serde_json::Map::new();
        out.insert("accessToken".into(), json!(access));
        out.insert("refreshToken".into(), json!(refresh));
        out.insert("expiresIn".into(), json!(ttl.as_secs()));
        out.insert(
            "agent".into(),
            json!({
                "id": agent.id,
                "siteId": agent.site_id,
                "name": agent.name,
                "email": agent.email,
                "role": agent.role,
                "status": status.as_deref().unwrap_or("offline"),
            }),
        );
        Ok(out)
    }

    /// Revokes a session: its access tokens (state store, read on every call) first, then
    /// its refresh tokens; then its open sockets are told to close ([`SESSION_CLOSED`]).
    pub(super) async fn revoke(&self, site: SiteId, agent: AgentId, session_id: &str) -> Result<(), Failure> {
        let key = session_key(session_id);
        self.state.hset(&key, &[("revoked", "1")]).await?;
        // Kept a little longer than any access token of the session can live.
        self.state.expire(&key, self.settings.access_token_ttl + Duration::from_secs(60)).await?;
        self.store.revoke_session(site, session_id).await?;
        // Through the push hub, to whichever node holds the agent's sockets; each socket of
        // this session closes (4001), the agent's other sessions ignore it. Pushes are at
        // most once: a socket that misses it is still refused on its next call.
        let data = json!({"sessionId": session_id, "reason": "logged out"});
        if let Err(e) = self.push.push(&[Recipient::Agent(agent)], SESSION_CLOSED, &data).await {
            tracing::warn!(error = %e, "could not tell the session's sockets to close");
        }
        Ok(())
    }
}
