//! Password guessing (the cases `tests/agents.rs` does not already cover): an unknown
//! account and a known one answer alike in body, status and timing class (both pay for
//! one argon2id verification); the per-address limit holds across many accounts, known and
//! unknown, and its answer is the same whichever account is named.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::TestServer;
use crate::{call, kind, settings, ADMIN, ADMIN_PASSWORD};

async fn timed_login(server: &TestServer, email: &str) -> (Duration, (u16, serde_json::Value)) {
    let started = Instant::now();
    let answer = call(server, "agent.login", None, json!({"email": email, "password": "wrong-password"})).await;
    (started.elapsed(), answer)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn unknown_and_known_accounts_answer_alike_in_body_status_and_time() {
    let server = TestServer::start(settings(|_| {})).await;
    // Warm up: the dummy hash an unknown email is checked against is made on first use.
    timed_login(&server, "warm-up@test.example").await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..4 {
        // Each attempt on its own account, so the per-account limit (5) never answers first.
        let (t_known, a_known) = timed_login(&server, if i % 2 == 0 { ADMIN } else { "Admin@Test.Example" }).await;
        let (t_unknown, a_unknown) = timed_login(&server, &format!("nobody{i}@test.example")).await;
        assert_eq!(kind(&a_known), (401, "unauthorized".to_string()));
        assert_eq!(a_known, a_unknown, "the same answer, byte for byte");
        known.push(t_known);
        unknown.push(t_unknown);
    }
    let (known, unknown) = (median(known), median(unknown));
    // A loose band: skipping the hash for unknown emails would be ~100× faster, not 3×.
    assert!(
        unknown * 3 >= known && known * 3 >= unknown,
        "median login time: known account {known:?}, unknown account {unknown:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_address_limit_spans_many_accounts_and_does_not_tell_which_exist() {
    let server = TestServer::start(settings(|_| {})).await;
    // 20 failures from one address, each on a different account, known ones among them.
    let body = json!({"email": "known@test.example", "password": "agent-password", "name": "Known", "role": "agent"});
    let (admin, _, _) = crate::login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(call(&server, "agents.create", Some(&admin), body).await.0, 200);
    for i in 0..20 {
        let email = if i == 7 { "known@test.example".to_string() } else { format!("spray{i}@test.example") };
        let answer = call(&server, "agent.login", None, json!({"email": email, "password": "guess"})).await;
        assert_eq!(kind(&answer), (401, "unauthorized".to_string()), "attempt {i}: {}", answer.1);
    }
    // Now every account is refused from this address, the right password included, and
    // the refusal reads the same for an account that exists and one that does not.
    let right = call(&server, "agent.login", None, json!({"email": ADMIN, "password": ADMIN_PASSWORD})).await;
    let ghost = call(&server, "agent.login", None, json!({"email": "ghost@test.example", "password": "x"})).await;
    assert_eq!(kind(&right), (429, "rate_limited".to_string()), "{}", right.1);
    assert_eq!(right, ghost);
    // Tokens issued before are untouched: the limit is on guessing, not on the agents.
    assert_eq!(call(&server, "auth.whoami", Some(&admin), json!({})).await.0, 200);
    server.stop().await;
}
