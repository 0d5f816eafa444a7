//! Visitors through the real server (SPEC §4, §5.3, §5.4, §5.6): `visitor.enter_site`
//! (new, returning, allowed domains, bans), browsing events and the `visitor.updated`
//! push, custom-variable limits, the live visitor list, who may call what; and, in
//! `visitors/agent_chat.rs`, agent-to-agent chat and tenant isolation between two sites.

mod support;

#[path = "visitors/agent_chat.rs"]
mod agent_chat;
#[path = "visitors/common.rs"]
mod common;

use std::time::Duration;

use common::*;
use frontdesk::config::RawSettings;
use frontdesk_core::store::{Role, Site};
use frontdesk_testkit::env::{postgres_url, redis_url, unique_name};
use serde_json::{json, Value};
use support::{cluster_settings, create_postgres_database, TestServer};

#[tokio::test]
async fn enter_site_makes_a_new_visitor_and_recognises_it_by_its_token() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site = site_of(&db, ADMIN).await;
    let agent = server.token_for(&db, ADMIN).await;

    let (status, first) = call(
        &server,
        "visitor.enter_site",
        None,
        json!({"siteId": site, "url": "https://shop.example/", "name": "Ada", "customVariables": {"plan": "free"}}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"]["returning"], false);
    assert_eq!(first["data"]["visitCount"], 1);
    let id = first["data"]["visitorId"].as_str().expect("id as a string").to_string();
    let token = first["data"]["visitorToken"].as_str().expect("token").to_string();
    let (_, who) = call(&server, "auth.whoami", Some(&token), json!({})).await;
    assert_eq!(who["data"]["caller"], json!({"kind": "visitor", "siteId": site, "visitorId": id}));

    let (status, again) = call(
        &server,
        "visitor.enter_site",
        None,
        json!({"siteId": site, "url": "https://shop.example/again", "visitorToken": token}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["visitorId"], id.as_str(), "same visitor");
    assert_eq!(again["data"]["returning"], true);
    assert_eq!(again["data"]["visitCount"], 2);

    let visitors = listed(&server, &agent).await;
    assert_eq!(visitors.len(), 1);
    let v = &visitors[0];
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["name"], "Ada", "kept from the first visit");
    assert_eq!(v["currentUrl"], "https://shop.example/again");
    assert_eq!(v["segments"], json!(["returning"]));
    assert_eq!(v["customVariables"], json!({"plan": "free"}));
    assert_eq!(v["state"], "browsing");
    assert_eq!(v["pageViews"], 2);

    // A malformed or foreign token is no error: the visitor is simply new.
    let (status, fresh) = call(
        &server,
        "visitor.enter_site",
        None,
        json!({"siteId": site, "url": "https://shop.example/", "visitorToken": "junk"}),
    )
    .await;
    assert_eq!(status, 200, "{fresh}");
    assert_ne!(fresh["data"]["visitorId"], id.as_str());
    assert_eq!(fresh["data"]["returning"], false);
    server.stop().await;
}

#[tokio::test]
async fn enter_site_refuses_unknown_sites_and_bad_requests() {
    let server = TestServer::start(RawSettings::default()).await;
    let site = site_of(&server.sqlite_url(), ADMIN).await;

    let unknown =
        call(&server, "visitor.enter_site", None, json!({"siteId": "12345", "url": "https://a.example/"})).await;
    assert_eq!(kind(&unknown), (404, "not_found"));
    assert!(unknown.1["error"]["message"].as_str().expect("msg").contains("siteId"), "{}", unknown.1);

    let no_url = call(&server, "visitor.enter_site", None, json!({"siteId": site})).await;
    assert_eq!(kind(&no_url), (400, "bad_request"));
    assert!(no_url.1["error"]["message"].as_str().expect("msg").contains("url"), "{}", no_url.1);

    let long_title = call(
        &server,
        "visitor.enter_site",
        None,
        json!({"siteId": site, "url": "https://a.example/", "title": "t".repeat(2000)}),
    )
    .await;
    assert_eq!(kind(&long_title), (400, "bad_request"));
    assert!(long_title.1["error"]["message"].as_str().expect("msg").starts_with("data.title"));
    server.stop().await;
}

#[tokio::test]
async fn a_visitor_token_of_another_site_is_not_recognised() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site_a = site_of(&db, ADMIN).await;
    let (site_b, _, _) = second_site(&server, &db, "b-admin@test.example").await;
    let (id_a, token_a) = enter(&server, site_a).await;

    let (status, body) = call(
        &server,
        "visitor.enter_site",
        None,
        json!({"siteId": site_b, "url": "https://b.example/", "visitorToken": token_a}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["data"]["visitorId"], id_a.as_str());
    assert_eq!(body["data"]["returning"], false);
    assert_eq!(body["data"]["visitCount"], 1);
    server.stop().await;
}

#[tokio::test]
async fn only_pages_on_allowed_domains_may_enter() {
    let server = TestServer::start(RawSettings::default()).await;
    let store = frontdesk_store::connect(&server.sqlite_url()).await.expect("store");
    let shop = Site {
        id: new_id(),
        name: "Shop".into(),
        allowed_domains: vec!["shop.example".into()],
        settings: json!({}),
        created_at: 0,
    };
    store.insert_site(&shop).await.expect("insert site");
    let body = json!({"siteId": shop.id, "url": "https://www.shop.example/cart"});

    let evil = call_from(&server, "visitor.enter_site", Some("https://evil.example"), &body).await;
    assert_eq!(kind(&evil), (403, "domain_not_allowed"));
    assert!(evil.1["error"]["message"].as_str().expect("msg").contains("evil.example"), "{}", evil.1);
    let lookalike = call_from(&server, "visitor.enter_site", Some("https://evilshop.example"), &body).await;
    assert_eq!(kind(&lookalike), (403, "domain_not_allowed"));

    let ok = call_from(&server, "visitor.enter_site", Some("https://www.shop.example"), &body).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    // Without an Origin header the page's url decides.
    assert_eq!(call_from(&server, "visitor.enter_site", None, &body).await.0, 200);
    let off_site = json!({"siteId": shop.id, "url": "https://evil.example/"});
    assert_eq!(kind(&call_from(&server, "visitor.enter_site", None, &off_site).await), (403, "domain_not_allowed"));
    server.stop().await;
}

#[tokio::test]
async fn a_banned_visitor_is_refused_until_the_ban_is_lifted() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site = site_of(&db, ADMIN).await;
    let admin = server.token_for(&db, ADMIN).await;
    let (_, plain) = add_agent(&server, &db, site, "plain@test.example", Role::Agent).await;
    let (id, token) = enter(&server, site).await;

    let by_agent = call(&server, "visitor.ban", Some(&plain), json!({"visitorId": id, "banned": true})).await;
    assert_eq!(kind(&by_agent), (403, "forbidden"), "plain agents may not ban");
    let by_visitor = call(&server, "visitor.ban", Some(&token), json!({"visitorId": id, "banned": true})).await;
    assert_eq!(kind(&by_visitor), (403, "forbidden"));
    let unknown = call(&server, "visitor.ban", Some(&admin), json!({"visitorId": "42", "banned": true})).await;
    assert_eq!(kind(&unknown), (404, "not_found"));
    let bad = call(&server, "visitor.ban", Some(&admin), json!({"visitorId": id})).await;
    assert_eq!(kind(&bad), (400, "bad_request"));

    let (status, body) = call(&server, "visitor.ban", Some(&admin), json!({"visitorId": id, "banned": true})).await;
    assert_eq!(status, 200, "{body}");
    let enter_again = json!({"siteId": site, "url": "https://shop.example/", "visitorToken": token});
    assert_eq!(kind(&call(&server, "visitor.enter_site", None, enter_again.clone()).await), (403, "banned"));
    let visit = call(&server, "visitor.page_visit", Some(&token), json!({"url": "https://shop.example/x"})).await;
    assert_eq!(kind(&visit), (403, "banned"));
    assert_eq!(kind(&call(&server, "visitor.page_heartbeat", Some(&token), json!({})).await), (403, "banned"));

    let (status, _) = call(&server, "visitor.ban", Some(&admin), json!({"visitorId": id, "banned": false})).await;
    assert_eq!(status, 200);
    let (status, body) = call(&server, "visitor.enter_site", None, enter_again).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["visitorId"], id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn browsing_updates_the_record_and_pushes_visitor_updated_to_agents() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site = site_of(&db, ADMIN).await;
    let admin = server.token_for(&db, ADMIN).await;
    let mut ws = agent_socket(&server, &admin).await;

    let (id, token) = enter(&server, site).await;
    let pushed = next_push(&mut ws, "visitor.updated").await;
    assert_eq!(pushed["id"], id.as_str());
    assert_eq!(pushed["currentTitle"], "Home");
    assert_eq!(pushed["segments"], json!(["new"]));
    assert_eq!(pushed["state"], "browsing");
    assert_eq!(pushed["referrer"], "https://search.example/?q=shoes");

    let (status, body) = call(
        &server,
        "visitor.page_visit",
        Some(&token),
        json!({"url": "https://shop.example/shoes", "title": "Shoes"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["pageViews"], 2);
    let pushed = next_push(&mut ws, "visitor.updated").await;
    assert_eq!(
        (pushed["currentUrl"].as_str(), pushed["currentTitle"].as_str()),
        (Some("https://shop.example/shoes"), Some("Shoes"))
    );
    assert_eq!(pushed["pageViews"], 2);
    let seen = pushed["lastSeen"].as_i64().expect("lastSeen");

    // A heartbeat refreshes lastSeen but pushes nothing: the next push is the variables'.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, body) = call(&server, "visitor.page_heartbeat", Some(&token), json!({})).await;
    assert_eq!((status, &body["data"]), (200, &json!({"status": "online"})));
    let (status, body) = call(
        &server,
        "visitor.set_custom_variables",
        Some(&token),
        json!({"customVariables": {"segment": "vip", "cartValue": 99.5, "loggedIn": true}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["customVariables"], json!({"segment": "vip", "cartValue": 99.5, "loggedIn": true}));
    let pushed = next_push(&mut ws, "visitor.updated").await;
    assert_eq!(pushed["customVariables"]["cartValue"], 99.5, "the push after the heartbeat is the variables' one");
    assert_eq!(pushed["segments"], json!(["new", "vip"]));
    assert!(pushed["lastSeen"].as_i64().expect("lastSeen") > seen, "the heartbeat refreshed lastSeen");

    let (status, _) =
        call(&server, "visitor.set_custom_variables", Some(&token), json!({"customVariables": {"segment": null}}))
            .await;
    assert_eq!(status, 200);
    let pushed = next_push(&mut ws, "visitor.updated").await;
    assert_eq!(pushed["segments"], json!(["new"]));
    assert_eq!(pushed["customVariables"], json!({"cartValue": 99.5, "loggedIn": true}));

    let visitors = listed(&server, &admin).await;
    assert_eq!(visitors[0]["currentUrl"], "https://shop.example/shoes");
    assert_eq!(visitors[0]["pageViews"], 2);
    server.stop().await;
}

#[tokio::test]
async fn bad_custom_variables_are_refused_naming_the_key_and_change_nothing() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site = site_of(&db, ADMIN).await;
    let admin = server.token_for(&db, ADMIN).await;
    let (_, token) = enter(&server, site).await;
    let (status, _) =
        call(&server, "visitor.set_custom_variables", Some(&token), json!({"customVariables": {"plan": "pro"}})).await;
    assert_eq!(status, 200);

    let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("v{i}"), json!(i))).collect();
    let cases = [
        (json!({"customVariables": {"address": {"city": "Oslo"}}}), "data.customVariables.address:"),
        (json!({"customVariables": {"note": "x".repeat(1025)}}), "data.customVariables.note:"),
        (json!({"customVariables": {"k".repeat(65): 1}}), "data.customVariables.kkk"),
        (json!({"customVariables": many}), "data.customVariables: at most 50"),
        (json!({"customVariables": [1, 2]}), "data.customVariables:"),
        (json!({}), "data:"),
    ];
    for (body, start) in cases {
        let answer = call(&server, "visitor.set_custom_variables", Some(&token), body).await;
        assert_eq!(kind(&answer), (400, "bad_request"));
        let message = answer.1["error"]["message"].as_str().expect("message");
        assert!(message.starts_with(start), "{message} should start with {start}");
    }
    let visitors = listed(&server, &admin).await;
    assert_eq!(visitors[0]["customVariables"], json!({"plan": "pro"}));
    server.stop().await;
}

#[tokio::test]
async fn visitor_events_check_who_calls_them() {
    let server = TestServer::start(RawSettings::default()).await;
    let db = server.sqlite_url();
    let site = site_of(&db, ADMIN).await;
    let admin = server.token_for(&db, ADMIN).await;
    let (_, token) = enter(&server, site).await;

    assert_eq!(
        kind(&call(&server, "visitor.page_visit", None, json!({"url": "https://a.example/"})).await),
        (401, "unauthorized")
    );
    let by_agent = call(&server, "visitor.page_visit", Some(&admin), json!({"url": "https://a.example/"})).await;
    assert_eq!(kind(&by_agent), (403, "forbidden"));
    assert_eq!(kind(&call(&server, "visitor.list", Some(&token), json!({})).await), (403, "forbidden"));
    assert_eq!(kind(&call(&server, "visitor.list", None, json!({})).await), (401, "unauthorized"));
    let no_url = call(&server, "visitor.page_visit", Some(&token), json!({"title": "x"})).await;
    assert_eq!(kind(&no_url), (400, "bad_request"));
    server.stop().await;
}

#[tokio::test]
async fn the_visitor_happy_path_runs_on_redis_and_postgres() {
    let db = create_postgres_database(&postgres_url()).await;
    let server = TestServer::start(cluster_settings(&redis_url(), &db, &unique_name("fd"))).await;
    let site = site_of(&db, ADMIN).await;
    let admin = server.token_for(&db, ADMIN).await;
    let mut ws = agent_socket(&server, &admin).await;

    let (id, token) = enter(&server, site).await;
    assert_eq!(next_push(&mut ws, "visitor.updated").await["id"], id.as_str());
    let (status, again) = call(
        &server,
        "visitor.enter_site",
        None,
        json!({"siteId": site, "url": "https://shop.example/", "visitorToken": token}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["data"]["visitorId"].as_str(), again["data"]["visitCount"].as_i64()),
        (Some(id.as_str()), Some(2))
    );
    let (status, _) = call(&server, "visitor.page_visit", Some(&token), json!({"url": "https://shop.example/b"})).await;
    assert_eq!(status, 200);
    let (status, _) =
        call(&server, "visitor.set_custom_variables", Some(&token), json!({"customVariables": {"segment": "vip"}}))
            .await;
    assert_eq!(status, 200);
    let visitors = listed(&server, &admin).await;
    assert_eq!(visitors.len(), 1);
    assert_eq!(visitors[0]["segments"], json!(["returning", "vip"]));
    assert_eq!(visitors[0]["pageViews"], 3);

    let (bob_id, bob) = add_agent(&server, &db, site, "bob@test.example", Role::Agent).await;
    let (status, _) =
        call(&server, "agent_chat.send_message", Some(&admin), json!({"toAgentId": bob_id, "content": "hi"})).await;
    assert_eq!(status, 200);
    let (_, page) =
        call(&server, "agent_chat.get_messages", Some(&bob), json!({"withAgentId": admin_of(&db).await})).await;
    assert_eq!(page["data"]["messages"][0]["content"], "hi");
    server.stop().await;
}
