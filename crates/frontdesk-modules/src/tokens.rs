//! Bearer tokens: short-lived agent access tokens and long-lived visitor tokens, both JWTs
//! signed with HS256 under a key kept in the durable store (so they survive restarts and
//! every node of a cluster accepts them). The algorithm, issuer and audience are pinned
//! when verifying, so `alg: none` and algorithm-confusion tokens are refused.
//!
//! Verified tokens are remembered (see [`Verified`]): a socket sends its token with every
//! frame, and decoding and checking it each time was ~3 % of the server's time under
//! `frontdesk bench chat`. A remembered token is still refused once it expires.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
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

/// How long past `exp` a token is still accepted (clock skew between nodes).
const LEEWAY_SECS: u64 = 5;

/// Tokens remembered at most; past this the memory is cleared and refills as tokens are
/// used again (about 100 bytes a token).
const VERIFIED_CAP: usize = 100_000;

/// Tokens that verified, by a keyed hash of the whole token (the key is random per
/// process, so nobody can make two tokens collide on purpose), each with its signature's
/// tail as a second check, its caller and its expiry.
struct Verified {
    hasher: RandomState,
    map: Mutex<HashMap<u64, Remembered>>,
}

/// A verified token's signature tail, caller and expiry (Unix seconds).
type Remembered = (Box<str>, Caller, u64);

impl Verified {
    fn tail(token: &str) -> &str {
        let start = token.len().saturating_sub(16);
        token.get(start..).unwrap_or(token)
    }

    fn get(&self, token: &str, now: u64) -> Option<Caller> {
        let key = self.hasher.hash_one(token);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (tail, caller, exp) = map.get(&key)?;
        if &**tail != Self::tail(token) {
            return None;
        }
        if exp.saturating_add(LEEWAY_SECS) < now {
            map.remove(&key);
            return None;
        }
        Some(caller.clone())
    }

    fn put(&self, token: &str, caller: &Caller, exp: u64) {
        let key = self.hasher.hash_one(token);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= VERIFIED_CAP {
            map.clear();
        }
        map.insert(key, (Self::tail(token).into(), caller.clone(), exp));
    }
}

/// Issues and verifies tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    verified: Verified,
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
        Tokens {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            verified: Verified { hasher: RandomState::new(), map: Mutex::new(HashMap::new()) },
        }
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
        if let Some(caller) = self.verified.get(token, now_secs()) {
            return Ok(caller);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AGENT_AUDIENCE, VISITOR_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
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
        let caller = match (c.aud.as_str(), c.role, c.sid) {
            (AGENT_AUDIENCE, Some(role), Some(session_id)) => {
                Caller::Agent { site_id: c.site, agent_id: c.sub, role, session_id }
            }
            (VISITOR_AUDIENCE, None, None) => Caller::Visitor { site_id: c.site, visitor_id: c.sub },
            _ => return Err(Failure::unauthorized("the token's claims do not fit its audience")),
        };
        self.verified.put(token, &caller, c.exp);
        Ok(caller)
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
    fn a_remembered_token_is_refused_once_it_expires() {
        let t = tokens();
        let v = t.issue_visitor(Id(1), Id(3), Duration::from_secs(60)).expect("issue");
        let caller = t.verify(&v).expect("verify");
        let now = now_secs();
        let exp = now + 60;
        assert_eq!(t.verified.get(&v, now), Some(caller.clone()), "remembered after the first check");
        assert_eq!(t.verified.get(&v, exp + LEEWAY_SECS), Some(caller), "still valid within the leeway");
        assert_eq!(t.verified.get(&v, exp + LEEWAY_SECS + 1), None, "expired: not taken from memory");
        assert_eq!(t.verified.get(&v, now), None, "and forgotten");
        // Another token is never answered from memory, even one differing only in its
        // signature's last characters.
        let mut forged = v.clone();
        forged.pop();
        forged.push(if v.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(t.verified.get(&forged, now), None);
        assert_eq!(t.verify(&forged).map_err(|f| f.kind), Err(ErrorKind::Unauthorized));
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
