//! Sockets under attack: a logged-out session's sockets close (4001) within a second on
//! whichever node they are, and so do a deleted agent's and one whose password changed; a visitor socket from a page outside its site's domains is
//! refused before the upgrade (403); open sockets per address are capped (429); a frame
//! over 64 KiB closes the socket (1009).

use std::time::{Duration, Instant};

use frontdesk_core::id::IdGenerator;
use frontdesk_core::store::Site;
use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::chat_support::Env;
use crate::support::TestServer;
use crate::{ask, call, call_with, enter, handshake, kind, login_ok, settings, until_closed, Socket};
use crate::{ADMIN, ADMIN_PASSWORD};

/// An open socket for `token` on `node`, attached for pushes (its first answer proves it).
async fn agent_socket(node: &TestServer, token: &str) -> Socket {
    let mut ws = handshake(node.addr, Some(token), None, None).await.unwrap_or_else(|e| panic!("socket: {e:?}"));
    assert_eq!(ask(&mut ws, "ready", "auth.whoami", json!({})).await["code"], 0);
    ws
}

/// Logs the admin in twice on `login_node`, opens a socket per session on `socket_node`,
/// logs the first session out on `login_node`: only its socket closes, with 4001, within a
/// second; the other session's socket carries on; the old token opens no new socket.
async fn logout_closes_only_that_sessions_sockets(login_node: &TestServer, socket_node: &TestServer) {
    let (access, _, _) = login_ok(login_node, ADMIN, ADMIN_PASSWORD).await;
    let (other, _, _) = login_ok(login_node, ADMIN, ADMIN_PASSWORD).await;
    let (_, me) = call(login_node, "auth.whoami", Some(&access), json!({})).await;
    let session = me["data"]["caller"]["sessionId"].as_str().expect("sessionId").to_string();
    let mut doomed = agent_socket(socket_node, &access).await;
    let mut doomed_too = agent_socket(socket_node, &access).await;
    let mut kept = agent_socket(socket_node, &other).await;

    let (status, body) = call(login_node, "agent.logout", Some(&access), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let logged_out = Instant::now();
    for ws in [&mut doomed, &mut doomed_too] {
        let (pushes, code) = until_closed(ws, Duration::from_secs(5)).await;
        assert_eq!(code, Some(4001), "closed as logged out; pushes seen: {pushes:?}");
        assert!(
            pushes.iter().any(|p| p["push"] == "session.closed" && p["data"]["sessionId"] == session.as_str()),
            "the socket is told why: {pushes:?}"
        );
    }
    let took = logged_out.elapsed();
    assert!(took < Duration::from_secs(1), "both sockets closed {took:?} after the logout answered");

    assert_eq!(ask(&mut kept, "still", "auth.whoami", json!({})).await["code"], 0, "the other session's socket lives");
    let refused = handshake(socket_node.addr, Some(&access), None, None).await.expect_err("refused");
    assert_eq!(kind(&refused), (401, "unauthorized".to_string()), "{}", refused.1);
}

/// An admin deletes an agent, or changes its password: each of the agent's sessions is
/// revoked and its sockets close with 4001 within a second.
#[tokio::test]
async fn deleting_an_agent_or_changing_its_password_closes_its_sockets() {
    let server = TestServer::start(settings(|_| {})).await;
    let (admin, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    for change in ["password", "delete"] {
        let email = format!("{change}@test.example");
        let new = json!({"email": email, "password": "first-password-1", "name": "Ann", "role": "agent"});
        let (status, created) = call(&server, "agents.create", Some(&admin), new).await;
        assert_eq!(status, 200, "{created}");
        let id = created["data"]["id"].as_str().expect("agent id").to_string();
        let (token, _, _) = login_ok(&server, &email, "first-password-1").await;
        let mut ws = agent_socket(&server, &token).await;

        let (status, body) = match change {
            "password" => {
                call(&server, "agents.update", Some(&admin), json!({"id": id, "password": "second-password-2"})).await
            }
            _ => call(&server, "agents.delete", Some(&admin), json!({"id": id})).await,
        };
        assert_eq!(status, 200, "{change}: {body}");
        let changed = Instant::now();
        let (pushes, code) = until_closed(&mut ws, Duration::from_secs(5)).await;
        assert_eq!(code, Some(4001), "{change}: closed as logged out; pushes seen: {pushes:?}");
        assert!(changed.elapsed() < Duration::from_secs(1), "{change}: closed {:?} after", changed.elapsed());
        let refused = handshake(server.addr, Some(&token), None, None).await.expect_err("refused");
        assert_eq!(kind(&refused), (401, "unauthorized".to_string()), "{change}: {}", refused.1);
    }
    server.stop().await;
}

#[tokio::test]
async fn logout_closes_the_sessions_sockets_embedded() {
    let server = TestServer::start(settings(|_| {})).await;
    logout_closes_only_that_sessions_sockets(&server, &server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_node_closes_the_sessions_sockets_on_another() {
    let env = Env::cluster(2).await;
    logout_closes_only_that_sessions_sockets(&env.nodes[0], &env.nodes[1]).await;
    env.stop().await;
}

#[tokio::test]
async fn visitor_sockets_from_pages_outside_the_sites_domains_are_refused_before_the_upgrade() {
    let server = TestServer::start(settings(|_| {})).await;
    let store = frontdesk_store::connect(&server.sqlite_url()).await.expect("store");
    let ids = IdGenerator::new(1001).expect("ids");
    let shop = Site {
        id: ids.next().expect("id"),
        name: "Shop".into(),
        allowed_domains: vec!["shop.example".into()],
        settings: json!({}),
        created_at: 0,
    };
    store.insert_site(&shop).await.expect("insert site");
    let shop_id = shop.id.to_string();
    let page = json!({"siteId": shop_id, "url": "https://www.shop.example/cart"});
    let (status, entered) =
        call_with(&server, "visitor.enter_site", None, &[("origin", "https://www.shop.example")], page.clone()).await;
    assert_eq!(status, 200, "{entered}");
    let token = entered["data"]["visitorToken"].as_str().expect("visitorToken").to_string();

    for origin in
        ["https://evil.example", "https://evilshop.example", "https://shop.example.evil.example", "ftp://shop.example"]
    {
        let refused = handshake(server.addr, Some(&token), None, Some(origin)).await.expect_err(origin);
        assert_eq!(kind(&refused), (403, "domain_not_allowed".to_string()), "{origin}: {}", refused.1);
    }
    // The site's own pages, and clients that send no Origin (or `null`), as enter_site allows.
    for origin in [Some("https://www.shop.example"), Some("http://shop.example:8080"), None, Some("null")] {
        let mut ws =
            handshake(server.addr, Some(&token), None, origin).await.unwrap_or_else(|e| panic!("{origin:?}: {e:?}"));
        assert_eq!(ask(&mut ws, "hb", "visitor.page_heartbeat", json!({})).await["code"], 0, "{origin:?}");
    }

    // A site without allowed domains takes any page; agents' sockets are not checked.
    let (admin, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let (_, me) = call(&server, "auth.whoami", Some(&admin), json!({})).await;
    let open_site = me["data"]["caller"]["siteId"].as_str().expect("siteId").to_string();
    let (_, anywhere) = enter(&server, &open_site).await;
    assert!(handshake(server.addr, Some(&anywhere), None, Some("https://evil.example")).await.is_ok());
    assert!(handshake(server.addr, Some(&admin), None, Some("https://evil.example")).await.is_ok());

    // A socket without a token opens, but entering the shop over it checks the Origin too.
    let mut anonymous = handshake(server.addr, None, None, Some("https://evil.example")).await.expect("anonymous");
    let answer = ask(&mut anonymous, "enter", "visitor.enter_site", page).await;
    assert_eq!(answer["error"]["kind"], "domain_not_allowed", "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn open_sockets_per_address_are_capped() {
    let server = TestServer::start(settings(|raw| raw.ws_max_connections_per_ip = Some(3))).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(handshake(server.addr, None, None, None).await.expect("under the cap"));
    }
    let refused = handshake(server.addr, None, None, None).await.expect_err("the 4th is refused");
    assert_eq!(kind(&refused), (429, "rate_limited".to_string()), "{}", refused.1);
    assert!(refused.1["error"]["message"].as_str().is_some_and(|m| m.contains('3')), "{}", refused.1);
    // Refused sockets hold nothing: HTTP from the same address is unaffected.
    assert_eq!(server.get("/healthz").await.0, 200);

    // Closing one frees its place once the server has seen it go.
    let mut first = open.remove(0);
    first.close(None).await.expect("close");
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        match handshake(server.addr, None, None, None).await {
            Ok(ws) => {
                reopened = Some(ws);
                break;
            }
            Err(refused) => assert_eq!(refused.0, 429, "{}", refused.1),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a place is free again within 5 s of a close");
    server.stop().await;
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_the_socket_with_1009() {
    let server = TestServer::start(settings(|_| {})).await;
    let mut ws = handshake(server.addr, None, None, None).await.expect("socket");
    // Just under the limit: answered (as malformed), and the socket stays.
    let big =
        format!("{{\"id\": \"big\", \"event\": \"auth.whoami\", \"data\": {{\"pad\": \"{}\"}}", "x".repeat(60 * 1024));
    ws.send(Message::text(big)).await.expect("send");
    let answer = ask(&mut ws, "after", "visitor.enter_site", json!({})).await;
    assert_eq!(answer["error"]["kind"], "bad_request", "the socket still answers: {answer}");

    ws.send(Message::text("x".repeat(70 * 1024))).await.expect("send");
    let (_, code) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1009));
    server.stop().await;
}
