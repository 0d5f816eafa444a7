//! Bearer tokens: short-lived agent access tokens and long-lived visitor tokens, both JWTs
//! signed with HS256 under a key kept in the durable store (so they survive restarts and
//! every node of a cluster accepts them). The algorithm, issuer and audience are pinned
//! when verifying, so `alg: none` and algorithm-confusion tokens are refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use frontdesk_core::error::BackendResult;
use frontdesk_core::id::Id;
use frontdesk_core::pipeline::{Caller, Failure};
use frontdesk_core::store::{Role, SecretRef, Store};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

const ISSUER: &str = "frontdesk";
const AGENT_AUDIENCE: &str = "frontdesk-agent";
const VISITOR_AUDIENCE: &str = "frontdesk-visitor";
const SIGNING_KEY: &str = "jwt_hs256";
/// Longer than any token this server issues (~400 bytes); longer ones are refused unread.
const MAX_TOKEN_LEN: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Id,
    site: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    /// The login session, so a logout can revoke the tokens of that session only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    iat: u64,
    exp: u64,
}

/// Issues and verifies tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { .. }")
    }
}

impl Tokens {
    /// Loads the signing key from the durable store, making one on first use.
    pub async fn load(store: &dyn Store) -> BackendResult<Tokens> {
        let candidate: [u8; 32] = rand::random();
        let key = store.secret_or_insert(SecretRef { site_id: None, name: SIGNING_KEY }, &candidate).await?;
        Ok(Tokens::from_key(&key))
    }

    pub fn from_key(key: &[u8]) -> Tokens {
        Tokens { encoding: EncodingKey::from_secret(key), decoding: DecodingKey::from_secret(key) }
    }

    pub fn issue_agent(
        &self,
        site: Id,
        agent: Id,
        role: Role,
        session_id: &str,
        ttl: Duration,
    ) -> Result<String, Failure> {
        self.issue(AGENT_AUDIENCE, site, agent, Some(role), Some(session_id.to_string()), ttl)
    }

    pub fn issue_visitor(&self, site: Id, visitor: Id, ttl: Duration) -> Result<String, Failure> {
        self.issue(VISITOR_AUDIENCE, site, visitor, None, None, ttl)
    }

    fn issue(
        &self,
        aud: &str,
        site: Id,
        sub: Id,
        role: Option<Role>,
        sid: Option<String>,
        ttl: Duration,
    ) -> Result<String, Failure> {
        let now = now_secs();
        let claims =
            Claims { iss: ISSUER.into(), aud: aud.into(), sub, site, role, sid, iat: now, exp: now + ttl.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Failure::internal(format!("cannot sign a token: {e}")))
    }

    /// The caller a token stands for. Every way a token can be wrong is `unauthorized`.
    pub fn verify(&self, token: &str) -> Result<Caller, Failure> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Failure::unauthorized("the token is malformed (too long)"));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AGENT_AUDIENCE, VISITOR_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "the token has expired; log in again or refresh it",
                K::InvalidSignature => "the token's signature is not valid",
                K::InvalidAudience | K::InvalidIssuer => "the token was not issued for this API",
                K::InvalidAlgorithm => "the token's algorithm is not accepted",
                _ => "the token is malformed",
            };
            Failure::unauthorized(why)
        })?;
        let c = data.claims;
        match (c.aud.as_str(), c.role, c.sid) {
            (AGENT_AUDIENCE, Some(role), Some(session_id)) => {
                Ok(Caller::Agent { site_id: c.site, agent_id: c.sub, role, session_id })
            }
            (VISITOR_AUDIENCE, None, None) => Ok(Caller::Visitor { site_id: c.site, visitor_id: c.sub }),
            _ => Err(Failure::unauthorized("the token's claims do not fit its audience")),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::error::ErrorKind;

    fn tokens() -> Tokens {
        Tokens::from_key(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn agent_and_visitor_tokens_verify_to_their_callers() {
        let t = tokens();
        let a = t.issue_agent(Id(1), Id(2), Role::Supervisor, "s1", Duration::from_secs(60)).expect("issue");
        assert_eq!(
            t.verify(&a).expect("verify"),
            Caller::Agent { site_id: Id(1), agent_id: Id(2), role: Role::Supervisor, session_id: "s1".into() }
        );
        let v = t.issue_visitor(Id(1), Id(3), Duration::from_secs(60)).expect("issue");
        assert_eq!(t.verify(&v).expect("verify"), Caller::Visitor { site_id: Id(1), visitor_id: Id(3) });
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_unauthorized() {
        let t = tokens();
        let good = t.issue_visitor(Id(1), Id(3), Duration::from_secs(60)).expect("issue");
        let other = Tokens::from_key(b"another key, another installation");
        let forged = other.issue_visitor(Id(1), Id(3), Duration::from_secs(60)).expect("issue");
        // alg: none, with the same claims.
        let payload = good.split('.').nth(1).expect("payload");
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        // An expired one (beyond the leeway).
        let claims = Claims {
            iss: ISSUER.into(),
            aud: VISITOR_AUDIENCE.into(),
            sub: Id(3),
            site: Id(1),
            role: None,
            sid: None,
            iat: 1,
            exp: 2,
        };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &t.encoding).expect("encode");
        let long = format!("{good}{}", "A".repeat(MAX_TOKEN_LEN));
        for (name, token) in
            [("forged", forged), ("none", none), ("expired", expired), ("junk", "a.b.c".into()), ("long", long)]
        {
            let e = t.verify(&token).expect_err(name);
            assert_eq!(e.kind, ErrorKind::Unauthorized, "{name}");
        }
        assert!(t.verify(&good).is_ok());
    }
}
