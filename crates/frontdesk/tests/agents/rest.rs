//! The admin resources over REST (SPEC §5.3): agents and departments with roles enforced,
//! sites by the operator, bad input naming its field, and tenant isolation between sites.

use frontdesk::config::RawSettings;
use serde_json::{json, Value};

use crate::support::TestServer;
use crate::{error_of, login_ok, ADMIN, ADMIN_PASSWORD, OPERATOR};

/// A REST call; answers the status and the JSON body.
pub async fn rest(server: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = server.http().request(method.parse().expect("method"), server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}")))
}

fn ids_in(list: &Value) -> Vec<String> {
    list.as_array().map(|a| a.iter().filter_map(|x| x["id"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[tokio::test]
async fn admins_manage_agents_and_departments_and_agents_may_only_read() {
    let server = TestServer::start(RawSettings::default()).await;
    let (admin, _, admin_id) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let new =
        json!({"email": "ann@test.example", "password": "ann-password", "name": "Ann", "role": "agent", "maxChats": 3});
    let (status, created) = rest(&server, "POST", "/api/v1/agents", &admin, Some(new)).await;
    assert_eq!(status, 201, "{created}");
    let ann_id = created["data"]["id"].as_str().expect("id").to_string();
    assert_eq!(created["data"]["maxChats"], 3);
    assert!(created["data"].get("passwordHash").is_none() && !created.to_string().contains("argon2"), "{created}");

    let dept = json!({"name": "Sales", "strategy": "round_robin", "members": [ann_id]});
    let (status, d) = rest(&server, "POST", "/api/v1/departments", &admin, Some(dept)).await;
    assert_eq!(status, 201, "{d}");
    let dept_id = d["data"]["id"].as_str().expect("dept id").to_string();
    assert_eq!(d["data"]["members"], json!([ann_id]));

    let (status, list) = rest(&server, "GET", "/api/v1/agents", &admin, None).await;
    assert_eq!(status, 200, "{list}");
    let mut listed = ids_in(&list["data"]["agents"]);
    listed.sort();
    let mut want = vec![admin_id.clone(), ann_id.clone()];
    want.sort();
    assert_eq!(listed, want);
    let (status, got) = rest(&server, "GET", &format!("/api/v1/agents/{ann_id}"), &admin, None).await;
    assert_eq!((status, &got["data"]["departments"]), (200, &json!([dept_id])), "{got}");

    let (ann_before, _, _) = login_ok(&server, "ann@test.example", "ann-password").await;
    let patch = json!({"name": "Ann Smith", "maxChats": 4, "priority": 2, "role": "supervisor"});
    let (status, got) = rest(&server, "PATCH", &format!("/api/v1/agents/{ann_id}"), &admin, Some(patch)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (&got["data"]["name"], &got["data"]["maxChats"], &got["data"]["role"]),
        (&json!("Ann Smith"), &json!(4), &json!("supervisor"))
    );
    let patch = json!({"name": "Sales EU", "strategy": "least_busy", "members": []});
    let (status, got) = rest(&server, "PATCH", &format!("/api/v1/departments/{dept_id}"), &admin, Some(patch)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!((&got["data"]["name"], &got["data"]["members"]), (&json!("Sales EU"), &json!([])));

    // Her token says `agent`: a role change ends her sessions.
    let (status, body) = server.call("auth.whoami", Some(&ann_before), "{}").await;
    assert_eq!(status, 401, "a token with the old role is refused: {body}");
    // Ann (now a supervisor, not an admin) reads but does not change.
    let (ann, _, _) = login_ok(&server, "ann@test.example", "ann-password").await;
    assert_eq!(rest(&server, "GET", "/api/v1/agents", &ann, None).await.0, 200);
    assert_eq!(rest(&server, "GET", "/api/v1/departments", &ann, None).await.0, 200);
    let other = json!({"email": "x@test.example", "password": "x-password", "name": "X", "role": "agent"});
    let (status, body) = rest(&server, "POST", "/api/v1/agents", &ann, Some(other)).await;
    assert_eq!((status, error_of(&body).0), (403, "forbidden"), "{body}");
    assert_eq!(rest(&server, "DELETE", &format!("/api/v1/departments/{dept_id}"), &ann, None).await.0, 403);
    assert_eq!(rest(&server, "POST", "/api/v1/sites", &ann, Some(json!({}))).await.0, 403);

    // The last admin stays; others go, with their sessions.
    let (status, body) = rest(&server, "DELETE", &format!("/api/v1/agents/{admin_id}"), &admin, None).await;
    assert_eq!((status, error_of(&body).0), (409, "conflict"), "{body}");
    let (status, body) =
        rest(&server, "PATCH", &format!("/api/v1/agents/{admin_id}"), &admin, Some(json!({"role": "agent"}))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(rest(&server, "DELETE", &format!("/api/v1/agents/{ann_id}"), &admin, None).await.0, 200);
    assert_eq!(rest(&server, "GET", &format!("/api/v1/agents/{ann_id}"), &admin, None).await.0, 404);
    assert_eq!(server.call("auth.whoami", Some(&ann), "{}").await.0, 401, "a deleted agent's token stops working");
    assert_eq!(rest(&server, "DELETE", &format!("/api/v1/departments/{dept_id}"), &admin, None).await.0, 200);
    assert_eq!(rest(&server, "GET", &format!("/api/v1/departments/{dept_id}"), &admin, None).await.0, 404);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_bad_request_naming_the_field() {
    let server = TestServer::start(RawSettings::default()).await;
    let (admin, _, _) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let base = json!({"email": "bob@test.example", "password": "bob-password", "name": "Bob", "role": "agent"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let mut missing = base.clone();
    missing.as_object_mut().expect("object").remove("email");
    for (body, field) in [
        (missing, "email"),
        (with("maxChats", json!("three")), "data.maxChats"),
        (with("maxChats", json!(1000)), "data.maxChats"),
        (with("role", json!("owner")), "data.role"),
        (with("password", json!("short")), "data.password"),
        (with("email", json!("not-an-email")), "data.email"),
        (with("name", json!("  ")), "data.name"),
        (with("departments", json!(["123456"])), "data.departments"),
        (with("departments", json!("sales")), "data.departments"),
    ] {
        let (status, answer) = rest(&server, "POST", "/api/v1/agents", &admin, Some(body.clone())).await;
        assert_eq!((status, error_of(&answer).0), (400, "bad_request"), "{body} → {answer}");
        assert!(error_of(&answer).1.contains(field), "{body}: the message names {field}: {answer}");
    }
    for (body, field) in [
        (json!({"name": "Sales", "strategy": "random"}), "data.strategy"),
        (json!({"strategy": "least_busy"}), "name"),
        (json!({"name": "Sales", "strategy": "least_busy", "members": ["42"]}), "data.members"),
    ] {
        let (status, answer) = rest(&server, "POST", "/api/v1/departments", &admin, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(error_of(&answer).1.contains(field), "{body}: the message names {field}: {answer}");
    }
    let (status, answer) = rest(&server, "GET", "/api/v1/agents/not-a-number", &admin, None).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error_of(&answer).1.starts_with("data.id"), "{answer}");
    assert_eq!(rest(&server, "POST", "/api/v1/agents", &admin, Some(base.clone())).await.0, 201);
    let (status, answer) = rest(&server, "POST", "/api/v1/agents", &admin, Some(base)).await;
    assert_eq!((status, error_of(&answer).0), (409, "conflict"), "a taken email: {answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_second_site_never_sees_the_first_sites_agents_or_departments() {
    let raw = RawSettings { operator_token: Some(OPERATOR.into()), ..RawSettings::default() };
    let server = TestServer::start(raw).await;
    let (admin_a, _, admin_a_id) = login_ok(&server, ADMIN, ADMIN_PASSWORD).await;
    let (_, dept) = rest(
        &server,
        "POST",
        "/api/v1/departments",
        &admin_a,
        Some(json!({"name": "A team", "strategy": "least_busy"})),
    )
    .await;
    let dept_a = dept["data"]["id"].as_str().expect("dept").to_string();

    let site = json!({"name": "Site B", "adminEmail": "admin@b.example", "adminPassword": "b-password-1"});
    let (status, made) = rest(&server, "POST", "/api/v1/sites", &admin_a, Some(site.clone())).await;
    assert_eq!(status, 403, "only the operator creates sites: {made}");
    let (status, made) = rest(&server, "POST", "/api/v1/sites", OPERATOR, Some(site.clone())).await;
    assert_eq!(status, 201, "{made}");
    let admin_b_id = made["data"]["adminAgentId"].as_str().expect("admin id").to_string();
    assert!(made["data"]["siteId"].is_string());
    let (status, again) = rest(&server, "POST", "/api/v1/sites", OPERATOR, Some(site)).await;
    assert_eq!((status, error_of(&again).0), (409, "conflict"), "the admin email is taken: {again}");
    let (status, bad) = rest(
        &server,
        "POST",
        "/api/v1/sites",
        OPERATOR,
        Some(json!({"name": "C", "adminEmail": "c@c.example", "adminPassword": "short"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(error_of(&bad).1.starts_with("data.adminPassword"), "{bad}");

    let (admin_b, _, _) = login_ok(&server, "admin@b.example", "b-password-1").await;
    let (_, agents) = rest(&server, "GET", "/api/v1/agents", &admin_b, None).await;
    assert_eq!(ids_in(&agents["data"]["agents"]), vec![admin_b_id.clone()]);
    let (_, depts) = rest(&server, "GET", "/api/v1/departments", &admin_b, None).await;
    assert_eq!(depts["data"]["departments"], json!([]));
    for (method, path) in [
        ("GET", format!("/api/v1/agents/{admin_a_id}")),
        ("PATCH", format!("/api/v1/agents/{admin_a_id}")),
        ("DELETE", format!("/api/v1/agents/{admin_a_id}")),
        ("GET", format!("/api/v1/departments/{dept_a}")),
        ("PATCH", format!("/api/v1/departments/{dept_a}")),
        ("DELETE", format!("/api/v1/departments/{dept_a}")),
    ] {
        let (status, body) = rest(&server, method, &path, &admin_b, Some(json!({"name": "taken over"}))).await;
        assert_eq!(status, 404, "{method} {path} from site B: {body}");
        assert!(!body.to_string().contains(ADMIN) && !body.to_string().contains("A team"), "{body}");
    }
    // B cannot pull A's agents into its departments either.
    let body = json!({"name": "B team", "strategy": "least_busy", "members": [admin_a_id]});
    assert_eq!(rest(&server, "POST", "/api/v1/departments", &admin_b, Some(body)).await.0, 400);
    let body = json!({"email": "b2@b.example", "password": "b2-password", "name": "B2", "role": "agent", "departments": [dept_a]});
    assert_eq!(rest(&server, "POST", "/api/v1/agents", &admin_b, Some(body)).await.0, 400);
    // And A is unchanged.
    let (_, a) = rest(&server, "GET", &format!("/api/v1/departments/{dept_a}"), &admin_a, None).await;
    assert_eq!(a["data"]["name"], "A team");
    let (_, a) = rest(&server, "GET", &format!("/api/v1/agents/{admin_a_id}"), &admin_a, None).await;
    assert_eq!(a["data"]["email"], ADMIN);
    server.stop().await;
}
