//! Agents through the real server (issue 4, SPEC §4, §5.3): `agent.login` and its limits,
//! refresh-token rotation and reuse detection, logout, status and presence pushes,
//! preferences; in `agents/rest.rs` the admin resources over REST (agents, departments,
//! sites) with roles, bad input and tenant isolation; in `agents/presence.rs` presence,
//! sockets and the sweeper; in `agents/cluster.rs` the same events on Redis + PostgreSQL.

mod support;

#[path = "agents/cluster.rs"]
mod cluster;
#[path = "agents/presence.rs"]
mod presence;
#[path = "agents/rest.rs"]
mod rest;

use frontdesk::config::RawSettings;
use serde_json::{json, Value};
use support::TestServer;

pub const ADMIN: &str = "admin@test.example";
pub const ADMIN_PASSWORD: &str = "test-password";
pub const OPERATOR: &str = "operator-token-0123456789";

pub async fn login(server: &TestServer, email: &str, password: &str) -> (u16, Value) {
    server.call("agent.login", None, &json!({"email": email, "password": password}).to_string()).await
}

/// Logs in and answers (access token, refresh token, agent id).
pub async fn login_ok(server: &TestServer, email: &str, password: &str) -> (String, String, String) {
    let (status, body) = login(server, email, password).await;
    assert_eq!(status, 200, "login {email}: {body}");
    let text = |k: &str| body["data"][k].as_str().unwrap_or_else(|| panic!("{k} in {body}")).to_string();
    (text("accessToken"), text("refreshToken"), body["data"]["agent"]["id"].as_str().expect("agent id").to_string())
}

pub async fn call(server: &TestServer, event: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    server.call(event, token, &body.to_string()).await
}

/// Creates an agent through `agents.create` as `admin`; answers its id.
pub async fn create_agent(server: &TestServer, admin: &str, email: &str, role: &str) -> String {
    let body = json!({"email": email, "password": "agent-password", "name": format!("Agent {email}"), "role": role});
    let (status, answer) = call(server, "agents.create", Some(admin), body).await;
    assert_eq!(status, 200, "agents.create: {answer}");
    answer["data"]["id"].as_str().expect("id").to_string()
}

fn error_of(body: &Value) -> (&str, &str) {
    (body["error"]["kind"].as_str().unwrap_or(""), body["error"]["message"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn login_answers_tokens_and_refuses_unknown_email_and_wrong_password_alike() {
    let server = TestServer::start(RawSettings::default()).await;
    let (status, body) = login(&server, "Admin@Test.Example", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["expiresIn"], 900);
    assert_eq!(data["agent"]["email"], ADMIN);
    assert_eq!(data["agent"]["role"], "admin");
    assert_eq!(data["agent"]["status"], "offline");
    assert!(data["agent"]["id"].is_string() && data["agent"]["siteId"].is_string(), "{data}");
    assert!(data["refreshToken"].as_str().is_some_and(|t| t.len() >= 43), "{data}");
    let access = data["accessToken"].as_str().expect("access token");
    let (status, me) = call(&server, "auth.whoami", Some(access), json!({})).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["caller"]["agentId"], data["agent"]["id"]);
    assert_eq!(me["data"]["caller"]["sessionId"].as_str().map(str::len), Some(32), "128-bit hex session id");

    let (s1, wrong_password) = login(&server, ADMIN, "not-the-password").await;
    let (s2, unknown_email) = login(&server, "nobody@test.example", "not-the-password").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong_password, unknown_email, "the answers must not tell which was wrong");
    assert_eq!(error_of(&wrong_password), ("unauthorized", "wrong email or password"));

    let (status, body) = call(&server, "agent.login", None, json!({"email": ADMIN})).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("password"), "names the missing field: {body}");
    let (status, body) = call(&server, "agent.login", None, json!({"email": ADMIN, "password": 5})).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.starts_with("data.password"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_whether_or_not_it_exists() {
    let server = TestServer::start(RawSettings::default()).await;
    for email in [ADMIN, "ghost@test.example"] {
        for i in 0..5 {
            let (status, body) = login(&server, email, "wrong-password").await;
            assert_eq!(status, 401, "attempt {i} for {email}: {body}");
        }
        let (status, body) = login(&server, email, ADMIN_PASSWORD).await;
        assert_eq!(status, 429, "the 6th attempt is refused, even with the right password: {body}");
        assert_eq!(error_of(&body).0, "rate_limited");
        assert!(error_of(&body).1.contains("try again in"), "{body}");
    }
    // The same answer for both: the limit does not reveal which account exists.
    let (_, a) = login(&server, ADMIN, "x").await;
    let (_, b) = login(&server, "ghost@test.example", "x").await;
    assert_eq!(a, b);
    server.stop().await;
}

#[tokio::test]
async fn failed_logins_are_limited_per_address_and_a_success_clears_the_account_counter() {
    let server = TestServer::start(RawSettings::default()).await;
    // Four failures then a success: the account counter starts again.
    for _ in 0..4 {
        assert_eq!(login(&server, ADMIN, "wrong-password").await.0, 401);
    }
    login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    for _ in 0..4 {
        assert_eq!(login(&server, ADMIN, "wrong-password").await.0, 401);
    }
    login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    // 8 failures from this address so far; 12 more on other accounts make 20.
    for i in 0..12 {
        let (status, body) = login(&server, &format!("guess{i}@test.example"), "wrong-password").await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = login(&server, ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(status, 429, "the address used up its 20 failures: {body}");
    server.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_session() {
    let server = TestServer::start(RawSettings::default()).await;
    let (_, first_refresh, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let (other_access, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;

    let (status, body) = call(&server, "agent.refresh_token", None, json!({"refreshToken": first_refresh})).await;
    assert_eq!(status, 200, "{body}");
    let second_refresh = body["data"]["refreshToken"].as_str().expect("new refresh").to_string();
    let second_access = body["data"]["accessToken"].as_str().expect("new access").to_string();
    assert_ne!(second_refresh, first_refresh, "refresh tokens rotate");
    assert_eq!(body["data"]["agent"]["email"], ADMIN);
    assert_eq!(call(&server, "auth.whoami", Some(&second_access), json!({})).await.0, 200);

    // The old token again: it leaked. The session goes, with every token of it.
    let (status, body) = call(&server, "agent.refresh_token", None, json!({"refreshToken": first_refresh})).await;
    assert_eq!((status, error_of(&body).0), (401, "unauthorized"), "{body}");
    assert!(error_of(&body).1.contains("already used"), "{body}");
    let (status, _) = call(&server, "agent.refresh_token", None, json!({"refreshToken": second_refresh})).await;
    assert_eq!(status, 401, "the newest refresh token of the session is revoked too");
    let (status, body) = call(&server, "auth.whoami", Some(&second_access), json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).1.contains("logged out"), "{body}");
    // Another login is another session, untouched.
    assert_eq!(call(&server, "auth.whoami", Some(&other_access), json!({})).await.0, 200);

    let (status, _) = call(&server, "agent.refresh_token", None, json!({"refreshToken": "made-up"})).await;
    assert_eq!(status, 401);
    let (status, body) = call(&server, "agent.refresh_token", None, json!({})).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.contains("refreshToken"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn logout_refuses_the_sessions_access_and_refresh_tokens() {
    let server = TestServer::start(RawSettings::default()).await;
    let (access, refresh, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let (other, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let (status, body) = call(&server, "agent.logout", Some(&access), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&server, "auth.whoami", Some(&access), json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_of(&body).1, "this session has been logged out; log in again");
    let (status, _) = call(&server, "agent.refresh_token", None, json!({"refreshToken": refresh})).await;
    assert_eq!(status, 401);
    assert_eq!(call(&server, "auth.whoami", Some(&other), json!({})).await.0, 200, "other sessions stay");
    let (status, _) = call(&server, "agent.logout", None, json!({})).await;
    assert_eq!(status, 401, "logout needs a token");
    server.stop().await;
}
