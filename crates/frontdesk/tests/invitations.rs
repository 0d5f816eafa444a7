//! Invitations through the real server (SPEC §5.4 "invitation", §5.6 `invitation.pop`): an
//! agent invites a visitor, the visitor's socket gets `invitation.pop`, `invitation.check`
//! finds it, and the visitor shows, accepts or refuses it (each step logged); invitations
//! lapse after their TTL; another site's agent cannot invite (or learn of) a visitor; a
//! visitor already in a chat cannot be invited; bad input is refused naming the field.

mod chat_support;
mod support;

use chat_support::*;
use frontdesk::bootstrap::{create_site, NewSite};
use frontdesk_core::id::Id;
use frontdesk_core::state::Ttl;
use frontdesk_core::store::Role;
use frontdesk_modules::invitation::{log_key, pending_key, TTL};
use frontdesk_modules::model::visitor_key;
use serde_json::{json, Value};

/// A visitor entering the site through `visitor.enter_site`, as the widget does.
async fn enter(env: &Env) -> Person {
    let body = json!({"siteId": env.site, "url": "https://shop.example/jacket", "name": "Vera"}).to_string();
    let (status, answer) = env.node().call("visitor.enter_site", None, &body).await;
    assert_eq!(status, 200, "{answer}");
    let data = &answer["data"];
    Person {
        id: data["visitorId"].as_str().expect("visitorId").parse().expect("id"),
        token: data["visitorToken"].as_str().expect("token").to_string(),
    }
}

async fn visitor_state(env: &Env, visitor: Id) -> String {
    env.state.hget(&visitor_key(env.site, visitor), "state").await.expect("hget").unwrap_or_default()
}

async fn logged_steps(env: &Env, site: Id) -> Vec<String> {
    let lines = env.state.lrange(&log_key(site), 0, -1).await.expect("lrange");
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("json step")["step"].as_str().expect("step").to_string())
        .collect()
}

#[tokio::test]
async fn an_invitation_pops_on_the_visitors_socket_and_is_accepted_embedded() {
    send_pop_check_accept(Env::embedded().await).await
}

#[tokio::test]
async fn an_invitation_pops_on_the_visitors_socket_and_is_accepted_cluster() {
    send_pop_check_accept(Env::cluster(1).await).await
}

async fn send_pop_check_accept(env: Env) {
    let node = env.node();
    let agent = env.agent("Sam", Role::Agent).await;
    let visitor = enter(&env).await;
    let mut ws = socket(node, &visitor).await;
    let none = ok(node, "invitation.check", &visitor, json!({}), None).await;
    assert_eq!(none["data"], json!({"status": "none"}));

    let sent =
        ok(node, "invitation.send", &agent, json!({"visitorId": visitor.id, "message": "  Need a size?  "}), None)
            .await["data"]
            .clone();
    let invitation_id = sent["invitationId"].as_str().expect("invitationId").to_string();
    let pop = next_push(&mut ws, "invitation.pop").await;
    assert_eq!(pop["invitationId"], invitation_id.as_str());
    assert_eq!(pop["agentName"], "Sam");
    assert_eq!(pop["message"], "Need a size?");
    assert_eq!(visitor_state(&env, visitor.id).await, "invited");

    let check = ok(node, "invitation.check", &visitor, json!({}), None).await["data"].clone();
    assert_eq!(check["status"], "pop", "{check}");
    assert_eq!(check["invitation"]["invitationId"], invitation_id.as_str());
    assert_eq!(check["invitation"]["agentName"], "Sam");
    assert_eq!(check["invitation"]["message"], "Need a size?");

    ok(node, "invitation.show", &visitor, json!({"invitationId": invitation_id}), None).await;
    let wrong = call(node, "invitation.accept", &visitor, json!({"invitationId": "12345"}), None).await;
    assert_eq!(kind(&wrong), (404, "not_found".to_string()), "{}", wrong.1);
    let accepted = ok(node, "invitation.accept", &visitor, json!({"invitationId": invitation_id}), None).await;
    assert_eq!(accepted["data"]["state"], "prechat");
    assert_eq!(visitor_state(&env, visitor.id).await, "prechat");
    let after = ok(node, "invitation.check", &visitor, json!({}), None).await;
    assert_eq!(after["data"]["status"], "none", "an accepted invitation is no longer pending");
    let again = call(node, "invitation.accept", &visitor, json!({"invitationId": invitation_id}), None).await;
    assert_eq!(kind(&again), (404, "not_found".to_string()), "answered once only");
    assert_eq!(logged_steps(&env, env.site).await, ["sent", "shown", "accepted"]);

    // The visitor then asks for a chat as usual; now it cannot be invited again.
    request(node, &visitor, json!({"message": "Yes please"})).await;
    let busy = call(node, "invitation.send", &agent, json!({"visitorId": visitor.id}), None).await;
    assert_eq!(kind(&busy), (409, "conflict".to_string()), "{}", busy.1);
    env.stop().await;
}

#[tokio::test]
async fn a_refused_invitation_sends_the_visitor_back_to_browsing() {
    let env = Env::embedded().await;
    let node = env.node();
    let visitor = enter(&env).await;
    let first = ok(node, "invitation.send", &env.admin, json!({"visitorId": visitor.id}), None).await;
    let second = ok(node, "invitation.send", &env.admin, json!({"visitorId": visitor.id, "message": "Hi"}), None).await;
    let stale =
        call(node, "invitation.refuse", &visitor, json!({"invitationId": first["data"]["invitationId"]}), None).await;
    assert_eq!(kind(&stale), (404, "not_found".to_string()), "a newer invitation replaced the first");
    let id = second["data"]["invitationId"].clone();
    let refused = ok(node, "invitation.refuse", &visitor, json!({"invitationId": id}), None).await;
    assert_eq!(refused["data"]["state"], "browsing");
    assert_eq!(visitor_state(&env, visitor.id).await, "browsing");
    assert_eq!(ok(node, "invitation.check", &visitor, json!({}), None).await["data"]["status"], "none");
    assert!(!env.state.exists(&pending_key(env.site, visitor.id)).await.expect("exists"), "pending cleared");
    assert_eq!(logged_steps(&env, env.site).await, ["sent", "sent", "refused"]);
    env.stop().await;
}

#[tokio::test]
async fn an_invitation_lapses_after_its_ttl() {
    let env = Env::embedded().await;
    let node = env.node();
    let visitor = enter(&env).await;
    let sent = ok(node, "invitation.send", &env.admin, json!({"visitorId": visitor.id}), None).await;
    let id = sent["data"]["invitationId"].clone();
    let key = pending_key(env.site, visitor.id);
    match env.state.ttl(&key).await.expect("ttl") {
        Ttl::Expires(left) => assert!(left <= TTL && left > TTL / 2, "{left:?}"),
        other => panic!("the pending invitation must expire on its own: {other:?}"),
    }
    // Time passes: the invitation was sent one TTL and a second ago.
    let long_ago = now_ms() - TTL.as_millis() as i64 - 1_000;
    env.state.hset(&key, &[("sentAt", &long_ago.to_string())]).await.expect("hset");
    let shown = call(node, "invitation.show", &visitor, json!({"invitationId": id}), None).await;
    assert_eq!(kind(&shown), (404, "not_found".to_string()), "{}", shown.1);
    assert_eq!(ok(node, "invitation.check", &visitor, json!({}), None).await["data"], json!({"status": "none"}));
    assert_eq!(visitor_state(&env, visitor.id).await, "browsing", "a lapsed invitation leaves the visitor browsing");
    assert!(!env.state.exists(&key).await.expect("exists"));
    env.stop().await;
}

#[tokio::test]
async fn another_sites_agent_cannot_invite_and_nothing_is_written() {
    let env = Env::embedded().await;
    let node = env.node();
    let visitor = enter(&env).await;
    let store = frontdesk_store::connect(&env.db).await.expect("store");
    let other = env.ids.next().expect("id");
    let email = format!("{}@other.example", frontdesk_testkit::env::unique_name("admin"));
    let new = NewSite { name: "Other", admin_email: &email, admin_name: "Olga", admin_password: "olga-password" };
    create_site(store.as_ref(), &env.ids, other, &new).await.expect("site");
    let olga = Person { id: other, token: node.token_for(&env.db, &email).await };

    let answer = call(node, "invitation.send", &olga, json!({"visitorId": visitor.id}), None).await;
    assert_eq!(kind(&answer), (404, "not_found".to_string()), "{}", answer.1);
    assert!(!env.state.exists(&pending_key(env.site, visitor.id)).await.expect("exists"));
    assert!(!env.state.exists(&pending_key(other, visitor.id)).await.expect("exists"));
    assert!(logged_steps(&env, other).await.is_empty() && logged_steps(&env, env.site).await.is_empty());
    assert_eq!(visitor_state(&env, visitor.id).await, "browsing");
    assert_eq!(ok(node, "invitation.check", &visitor, json!({}), None).await["data"]["status"], "none");

    // A visitor of the other site cannot answer this site's invitation either.
    let sent = ok(node, "invitation.send", &env.admin, json!({"visitorId": visitor.id}), None).await;
    let stranger = env.visitor_of(other).await;
    let answer =
        call(node, "invitation.accept", &stranger, json!({"invitationId": sent["data"]["invitationId"]}), None).await;
    assert_eq!(kind(&answer), (404, "not_found".to_string()));
    assert_eq!(visitor_state(&env, visitor.id).await, "invited");
    env.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_callers_are_checked() {
    let env = Env::embedded().await;
    let node = env.node();
    let visitor = enter(&env).await;
    let admin = &env.admin;
    for (body, field) in [
        (json!({}), "visitorId"),
        (json!({"visitorId": "not-an-id"}), "visitorId"),
        (json!({"visitorId": visitor.id, "message": 5}), "message"),
        (json!({"visitorId": visitor.id, "message": "x".repeat(501)}), "message"),
        (json!({"visitorId": visitor.id, "colour": "red"}), "colour"),
    ] {
        let answer = call(node, "invitation.send", admin, body.clone(), None).await;
        assert_eq!(kind(&answer), (400, "bad_request".to_string()), "{body}: {}", answer.1);
        let message = answer.1["error"]["message"].as_str().expect("message");
        assert!(message.contains(field), "{body}: {message} names {field}");
    }
    let unknown = call(node, "invitation.send", admin, json!({"visitorId": "42"}), None).await;
    assert_eq!(kind(&unknown), (404, "not_found".to_string()));
    for event in ["invitation.show", "invitation.accept", "invitation.refuse"] {
        let answer = call(node, event, &visitor, json!({"invitationId": []}), None).await;
        assert_eq!(kind(&answer), (400, "bad_request".to_string()), "{event}: {}", answer.1);
        assert!(answer.1["error"]["message"].as_str().expect("message").contains("invitationId"));
    }
    let by_visitor = call(node, "invitation.send", &visitor, json!({"visitorId": visitor.id}), None).await;
    assert_eq!(kind(&by_visitor).0, 403, "{}", by_visitor.1);
    let by_agent = call(node, "invitation.check", admin, json!({}), None).await;
    assert_eq!(kind(&by_agent).0, 403, "{}", by_agent.1);
    assert!(logged_steps(&env, env.site).await.is_empty(), "nothing refused was logged");
    env.stop().await;
}
