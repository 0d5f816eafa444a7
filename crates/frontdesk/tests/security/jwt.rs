//! Token attacks, table-driven: every row is presented as `Authorization: Bearer` to an
//! HTTP event (`auth.whoami`, and `agent.set_status` which an agent may call), and to the
//! WebSocket handshake both as `?token=` and as the header. Each must be refused with the
//! same status and kind everywhere (SPEC §5.2: `unauthorized` 401 for a token that does not
//! authenticate, `forbidden` 403 for a caller who may not call the event), before any
//! socket is opened.

use base64::Engine as _;
use frontdesk_core::store::SecretRef;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::support::TestServer;
use crate::{call, call_with, enter, first_site, handshake, kind, login_ok, second_site, settings};
use crate::{ADMIN, ADMIN_PASSWORD, OPERATOR};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// How a crafted token is signed.
enum Sig<'a> {
    Hs256(&'a [u8]),
    Hs384(&'a [u8]),
    Hs512(&'a [u8]),
    /// No signature at all (`header.payload.`).
    Empty,
}

fn craft(header: &Value, claims: &Value, sig: Sig<'_>) -> String {
    let head = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mac = match sig {
        Sig::Hs256(key) => mac::<Hmac<sha2::Sha256>>(key, &head),
        Sig::Hs384(key) => mac::<Hmac<sha2::Sha384>>(key, &head),
        Sig::Hs512(key) => mac::<Hmac<sha2::Sha512>>(key, &head),
        Sig::Empty => Vec::new(),
    };
    format!("{head}.{}", b64(&mac))
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], text: &str) -> Vec<u8> {
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
    m.update(text.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The claims of a real token.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&unb64(payload)).expect("claims are JSON")
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            claims.as_object_mut().expect("object").remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// The installation's signing key, as the server keeps it in its store.
async fn signing_key(server: &TestServer) -> Vec<u8> {
    let store = frontdesk_store::connect(&server.sqlite_url()).await.expect("store");
    store.secret_or_insert(SecretRef { site_id: None, name: "jwt_hs256" }, &[0; 32]).await.expect("the key")
}

/// Presents `token` on every surface; each must answer `want`.
async fn refused_everywhere(server: &TestServer, name: &str, token: &str, want: (u16, &str)) {
    let want = (want.0, want.1.to_string());
    let whoami = call(server, "auth.whoami", Some(token), json!({})).await;
    assert_eq!(kind(&whoami), want, "{name}: auth.whoami over HTTP: {}", whoami.1);
    assert!(whoami.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: says why");
    let status = call(server, "agent.set_status", Some(token), json!({"status": "online"})).await;
    assert_eq!(kind(&status), want, "{name}: agent.set_status over HTTP: {}", status.1);
    // No token at all is an anonymous socket (it may call `visitor.enter_site`), not a refusal.
    if token.is_empty() {
        return;
    }
    match handshake(server.addr, Some(token), None, None).await {
        Ok(_) => panic!("{name}: a socket opened with the token in the URL"),
        Err(refused) => assert_eq!(kind(&refused), want, "{name}: socket, token in the URL: {}", refused.1),
    }
    match handshake(server.addr, None, Some(token), None).await {
        Ok(_) => panic!("{name}: a socket opened with the token in the header"),
        Err(refused) => assert_eq!(kind(&refused), want, "{name}: socket, token in the header: {}", refused.1),
    }
}

#[tokio::test]
async fn hostile_tokens_are_refused_on_http_and_on_the_socket_handshake() {
    let server = TestServer::start(settings(|_| {})).await;
    let key = signing_key(&server).await;
    let (access, refresh, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let site = first_site(&server, &access).await;
    let (_, visitor) = enter(&server, &site).await;
    let agent = claims_of(&access);
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let unauthorized = (401, "unauthorized");
    let (head, payload, signature) = {
        let mut parts = access.split('.');
        (parts.next().expect("header"), parts.next().expect("payload"), parts.next().expect("signature"))
    };
    let now = agent["iat"].as_u64().expect("iat");

    // A logged-out session, and a deleted agent's session.
    let (gone, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(call(&server, "agent.logout", Some(&gone), json!({})).await.0, 200);
    let body = json!({"email": "doomed@test.example", "password": "agent-password", "name": "Doomed", "role": "agent"});
    let (status, created) = call(&server, "agents.create", Some(&access), body).await;
    assert_eq!(status, 200, "{created}");
    let (doomed, _, doomed_id) = login_ok(&server, "doomed@test.example", "agent-password").await;
    assert_eq!(call(&server, "agents.delete", Some(&access), json!({"id": doomed_id})).await.0, 200);

    let tampered_site =
        format!("{head}.{}.{signature}", b64(with(agent.clone(), json!({"site": "42"})).to_string().as_bytes()));
    let escalated = b64(with(claims_of(&visitor), json!({"role": "admin", "aud": "frontdesk-agent", "sid": "x"}))
        .to_string()
        .as_bytes());
    let truncated = access[..access.len() - 6].to_string();
    let table: Vec<(&str, String)> = vec![
        // `alg: none` in its spellings, with and without the original signature.
        ("alg none", craft(&json!({"alg": "none", "typ": "JWT"}), &agent, Sig::Empty)),
        ("alg None", craft(&json!({"alg": "None"}), &agent, Sig::Empty)),
        ("alg NONE", craft(&json!({"alg": "NONE"}), &agent, Sig::Empty)),
        ("alg none keeping the signature", format!("{}.{payload}.{signature}", b64(br#"{"alg":"none"}"#))),
        // Algorithm confusion: other algorithms, even when the MAC is right for the key.
        ("HS512 with the real key", craft(&json!({"alg": "HS512"}), &agent, Sig::Hs512(&key))),
        ("HS384 with the real key", craft(&json!({"alg": "HS384"}), &agent, Sig::Hs384(&key))),
        ("RS256 header, HMAC signature", craft(&json!({"alg": "RS256"}), &agent, Sig::Hs256(&key))),
        ("ES256 header, HMAC signature", craft(&json!({"alg": "ES256"}), &agent, Sig::Hs256(&key))),
        ("PS256 header, no signature", craft(&json!({"alg": "PS256"}), &agent, Sig::Empty)),
        // Key-id and embedded-key games: the server has one key and uses only it.
        (
            "kid to /dev/null, empty key",
            craft(&json!({"alg": "HS256", "kid": "../../../../dev/null"}), &agent, Sig::Hs256(b"")),
        ),
        (
            "kid injection, attacker key",
            craft(&json!({"alg": "HS256", "kid": "' OR 1=1 --"}), &agent, Sig::Hs256(b"attacker")),
        ),
        (
            "embedded jwk, attacker key",
            craft(
                &json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64(b"attacker")}}),
                &agent,
                Sig::Hs256(b"attacker"),
            ),
        ),
        (
            "jku to an attacker's keys",
            craft(&json!({"alg": "HS256", "jku": "https://evil.example/jwks"}), &agent, Sig::Hs256(b"attacker")),
        ),
        // Forged and tampered.
        ("signed by another installation", craft(&hs256, &agent, Sig::Hs256(b"another installation's key"))),
        ("signature of another token", format!("{head}.{payload}.{}", b64(&mac::<Hmac<sha2::Sha256>>(&key, "other")))),
        ("site claim changed, signature kept", tampered_site),
        (
            "visitor token promoted to admin, signature kept",
            format!("{}.{escalated}.{}", visitor.split('.').next().expect("h"), visitor.split('.').nth(2).expect("s")),
        ),
        // Right key and algorithm, wrong claims (what a bug in issuing would produce).
        (
            "expired",
            craft(&hs256, &with(agent.clone(), json!({"iat": now - 7200, "exp": now - 3600})), Sig::Hs256(&key)),
        ),
        ("no expiry", craft(&hs256, &with(agent.clone(), json!({"exp": null})), Sig::Hs256(&key))),
        ("wrong audience", craft(&hs256, &with(agent.clone(), json!({"aud": "frontdesk-admin"})), Sig::Hs256(&key))),
        (
            "audience as a list",
            craft(&hs256, &with(agent.clone(), json!({"aud": ["frontdesk-agent"]})), Sig::Hs256(&key)),
        ),
        ("wrong issuer", craft(&hs256, &with(agent.clone(), json!({"iss": "someone-else"})), Sig::Hs256(&key))),
        (
            "agent audience without a session",
            craft(&hs256, &with(agent.clone(), json!({"sid": null})), Sig::Hs256(&key)),
        ),
        (
            "visitor audience with a role",
            craft(&hs256, &with(agent.clone(), json!({"aud": "frontdesk-visitor"})), Sig::Hs256(&key)),
        ),
        // Tokens of the wrong kind, or no longer valid.
        ("a refresh token as an access token", refresh.clone()),
        ("the operator token's prefix", OPERATOR[..10].to_string()),
        ("a logged-out session", gone),
        ("a deleted agent", doomed),
        // Garbage.
        ("truncated", truncated),
        ("two segments", format!("{head}.{payload}")),
        ("four segments", format!("{access}.{signature}")),
        ("not base64", "!!!.???.***".to_string()),
        ("dots only", "..".to_string()),
        ("a word", "hello".to_string()),
        ("empty", String::new()),
        ("8 KB of junk", "A".repeat(8 * 1024)),
    ];
    for (name, token) in &table {
        refused_everywhere(&server, name, token, unauthorized).await;
    }
    // The real token still works everywhere: the refusals above were about the tokens.
    assert_eq!(call(&server, "auth.whoami", Some(&access), json!({})).await.0, 200);
    assert!(handshake(server.addr, Some(&access), None, None).await.is_ok());
    assert!(handshake(server.addr, None, Some(&access), None).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn valid_tokens_reach_only_what_their_caller_may_call() {
    let server = TestServer::start(settings(|_| {})).await;
    let (admin, refresh, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let site_a = first_site(&server, &admin).await;
    let (visitor_a_id, visitor_a) = enter(&server, &site_a).await;
    let (site_b, admin_b) = second_site(&server, "admin@b.example").await;

    // A visitor token on agent events: authenticated, not allowed.
    for event in ["agent.set_status", "visitor.list", "agents.create", "agent.logout"] {
        let answer = call(&server, event, Some(&visitor_a), json!({"status": "online"})).await;
        assert_eq!(kind(&answer), (403, "forbidden".to_string()), "{event}: {}", answer.1);
    }
    // A plain agent on an admin event.
    let body = json!({"email": "plain@test.example", "password": "agent-password", "name": "Plain", "role": "agent"});
    assert_eq!(call(&server, "agents.create", Some(&admin), body).await.0, 200);
    let (plain, _, _) = login_ok(&server, "plain@test.example", "agent-password").await;
    let answer = call(&server, "agents.create", Some(&plain), json!({})).await;
    assert_eq!(kind(&answer), (403, "forbidden".to_string()), "{}", answer.1);
    // An access token where a refresh token belongs.
    let answer = call(&server, "agent.refresh_token", None, json!({"refreshToken": admin})).await;
    assert_eq!(kind(&answer), (401, "unauthorized".to_string()), "{}", answer.1);
    // The refresh token itself still works: the failures above consumed nothing.
    assert_eq!(call(&server, "agent.refresh_token", None, json!({"refreshToken": refresh})).await.0, 200);

    // Site A's visitor token on site B: a new visitor of B, never A's visitor.
    let body = json!({"siteId": site_b, "url": "https://b.example/", "visitorToken": visitor_a});
    let (status, entered) = call(&server, "visitor.enter_site", None, body).await;
    assert_eq!(status, 200, "{entered}");
    assert_ne!(entered["data"]["visitorId"], visitor_a_id.as_str());
    assert_eq!(entered["data"]["returning"], false);
    // Site A's admin token on site B's agents: B's list never shows, B's admin untouched.
    let (_, me_b) = call(&server, "auth.whoami", Some(&admin_b), json!({})).await;
    let b_admin_id = me_b["data"]["caller"]["agentId"].as_str().expect("agentId").to_string();
    let answer = call(&server, "agents.get", Some(&admin), json!({"id": b_admin_id})).await;
    assert_eq!(kind(&answer), (404, "not_found".to_string()), "{}", answer.1);
    let answer = call(&server, "agents.delete", Some(&admin), json!({"id": b_admin_id})).await;
    assert_eq!(kind(&answer), (404, "not_found".to_string()), "{}", answer.1);
    assert_eq!(call(&server, "auth.whoami", Some(&admin_b), json!({})).await.0, 200, "B's admin still exists");

    // A token is read from the header or, on the socket only, the URL: `?token=` on HTTP
    // authenticates nobody, and `Basic` is not a bearer scheme.
    let url = server.url(&format!("/api/v1/auth.whoami?token={admin}"));
    let resp = server.http().post(url).body("{}").send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    let basic =
        call_with(&server, "auth.whoami", None, &[("authorization", &format!("Basic {admin}"))], json!({})).await;
    assert_eq!(kind(&basic), (401, "unauthorized".to_string()));
    server.stop().await;
}
