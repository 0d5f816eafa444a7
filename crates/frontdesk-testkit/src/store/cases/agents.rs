//! Contract cases for agents, departments, preferences and refresh tokens (issue 4):
//! updates and deletes scoped to the caller's site, the last admin kept, department
//! members of the same site only, refresh tokens used once and revoked by session.

use std::sync::Arc;

use frontdesk_core::error::BackendError;
use frontdesk_core::id::Id;
use frontdesk_core::store::{Agent, Role, Store};
use serde_json::json;
use tokio::task::JoinSet;

use super::{agent, assert_conflict, ids, two_sites, CREATED_AT};

fn department(id: Id, site_id: Id, name: &str, members: Vec<Id>) -> frontdesk_core::store::Department {
    frontdesk_core::store::Department {
        id,
        site_id,
        name: name.to_owned(),
        strategy: "least_busy".to_owned(),
        members,
        created_at: CREATED_AT,
    }
}

pub async fn departments_round_trip_with_members_of_their_site_only(store: Arc<dyn Store>) {
    use frontdesk_core::store::DepartmentUpdate;
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let (a1, a2) = (
        agent(ids.next().expect("id"), a.id, "a1@example.com"),
        agent(ids.next().expect("id"), a.id, "a2@example.com"),
    );
    let b1 = agent(ids.next().expect("id"), b.id, "b1@example.com");
    for x in [&a1, &a2, &b1] {
        store.insert_agent(x).await.expect("insert agent");
    }
    let d = department(ids.next().expect("id"), a.id, "Sales", vec![a2.id, a1.id, b1.id]);
    store.insert_department(&d).await.expect("insert department");
    let mut members = vec![a1.id, a2.id];
    members.sort_unstable();
    let want = frontdesk_core::store::Department { members: members.clone(), ..d.clone() };
    assert_eq!(store.department(a.id, d.id).await.expect("read"), Some(want.clone()), "B's agent is not a member");
    assert_eq!(store.departments(a.id).await.expect("list A"), vec![want.clone()]);
    assert_eq!(store.department(b.id, d.id).await.expect("read via B"), None, "scoped to its site");
    assert_eq!(store.departments(b.id).await.expect("list B"), vec![]);

    let update = DepartmentUpdate { name: Some("Support".into()), members: Some(vec![a2.id]), ..Default::default() };
    assert_eq!(store.update_department(b.id, d.id, &update).await.expect("update via B"), None);
    let updated = store.update_department(a.id, d.id, &update).await.expect("update").expect("exists");
    assert_eq!(
        (updated.name.as_str(), updated.strategy.as_str(), updated.members),
        ("Support", "least_busy", vec![a2.id])
    );

    assert!(!store.delete_department(b.id, d.id).await.expect("delete via B"), "another site cannot delete it");
    assert!(store.delete_department(a.id, d.id).await.expect("delete"));
    assert_eq!(store.department(a.id, d.id).await.expect("read"), None);
    assert!(!store.delete_department(a.id, d.id).await.expect("delete again"));
}

pub async fn department_names_are_unique_per_site(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    store.insert_department(&department(ids.next().expect("id"), a.id, "Sales", vec![])).await.expect("first");
    let again = department(ids.next().expect("id"), a.id, "Sales", vec![]);
    assert_conflict(store.insert_department(&again).await, "Sales");
    store
        .insert_department(&department(ids.next().expect("id"), b.id, "Sales", vec![]))
        .await
        .expect("same name, other site");
    let other = department(ids.next().expect("id"), a.id, "Billing", vec![]);
    store.insert_department(&other).await.expect("other name");
    let rename = frontdesk_core::store::DepartmentUpdate { name: Some("Sales".into()), ..Default::default() };
    let r = store.update_department(a.id, other.id, &rename).await.map(|_| ());
    assert_conflict(r, "Sales");
}

pub async fn agent_updates_apply_and_the_last_admin_stays(store: Arc<dyn Store>) {
    use frontdesk_core::store::AgentUpdate;
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let admin = Agent { role: Role::Admin, ..agent(ids.next().expect("id"), a.id, "admin@example.com") };
    let ann = agent(ids.next().expect("id"), a.id, "ann@example.com");
    store.insert_agent(&admin).await.expect("insert admin");
    store.insert_agent(&ann).await.expect("insert ann");
    let d_a = department(ids.next().expect("id"), a.id, "A team", vec![]);
    let d_b = department(ids.next().expect("id"), b.id, "B team", vec![]);
    store.insert_department(&d_a).await.expect("dept A");
    store.insert_department(&d_b).await.expect("dept B");

    let update = AgentUpdate {
        name: Some("Ann Smith".into()),
        role: Some(Role::Supervisor),
        max_chats: Some(9),
        priority: Some(2),
        password_hash: Some("$argon2id$new".into()),
        departments: Some(vec![d_a.id, d_b.id]),
    };
    assert_eq!(store.update_agent(b.id, ann.id, &update).await.expect("update via B"), None);
    let read = store.update_agent(a.id, ann.id, &update).await.expect("update").expect("exists");
    assert_eq!(
        read,
        Agent {
            name: "Ann Smith".into(),
            role: Role::Supervisor,
            max_chats: 9,
            priority: 2,
            password_hash: "$argon2id$new".into(),
            ..ann.clone()
        }
    );
    let teams = store.department(a.id, d_a.id).await.expect("read").expect("dept");
    assert_eq!(teams.members, vec![ann.id]);
    let other = store.department(b.id, d_b.id).await.expect("read").expect("dept");
    assert_eq!(other.members, vec![], "another site's department is never joined");
    // An empty update changes nothing.
    assert_eq!(store.update_agent(a.id, ann.id, &AgentUpdate::default()).await.expect("noop"), Some(read));

    let demote = AgentUpdate { role: Some(Role::Agent), ..Default::default() };
    match store.update_agent(a.id, admin.id, &demote).await {
        Err(BackendError::Conflict(msg)) => assert!(msg.contains("last admin"), "{msg}"),
        other => panic!("demoting the last admin must be a conflict, got {other:?}"),
    }
    assert_conflict(store.delete_agent(a.id, admin.id).await.map(|_| ()), "last admin");
    assert!(!store.delete_agent(b.id, ann.id).await.expect("delete via B"), "another site cannot delete");
    assert!(store.delete_agent(a.id, ann.id).await.expect("delete"));
    assert_eq!(store.agent(a.id, ann.id).await.expect("read"), None);
    assert_eq!(store.department(a.id, d_a.id).await.expect("read").expect("dept").members, vec![]);
    // With a second admin, the first may go.
    let promote = AgentUpdate { role: Some(Role::Admin), ..Default::default() };
    let bob = agent(ids.next().expect("id"), a.id, "bob@example.com");
    store.insert_agent(&bob).await.expect("insert bob");
    store.update_agent(a.id, bob.id, &promote).await.expect("promote").expect("bob");
    assert!(store.delete_agent(a.id, admin.id).await.expect("delete first admin"));
}

pub async fn agent_preferences_merge_per_agent(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let ann = agent(ids.next().expect("id"), a.id, "ann@example.com");
    let bob = agent(ids.next().expect("id"), a.id, "bob@example.com");
    store.insert_agent(&ann).await.expect("insert");
    store.insert_agent(&bob).await.expect("insert");
    assert_eq!(store.agent_preferences(a.id, ann.id).await.expect("read"), Some(serde_json::Map::new()));
    store.set_agent_preference(a.id, ann.id, "sound", &json!(true)).await.expect("set").expect("ann");
    let all = store
        .set_agent_preference(a.id, ann.id, "layout \"wide\" 🎛", &json!({"columns": [1, 2]}))
        .await
        .expect("set")
        .expect("ann");
    let want = json!({"sound": true, "layout \"wide\" 🎛": {"columns": [1, 2]}});
    assert_eq!(serde_json::Value::Object(all), want);
    assert_eq!(store.agent_preferences(a.id, ann.id).await.expect("read").map(serde_json::Value::Object), Some(want));
    assert_eq!(store.agent_preferences(a.id, bob.id).await.expect("read bob"), Some(serde_json::Map::new()));
    assert_eq!(store.agent_preferences(b.id, ann.id).await.expect("via B"), None);
    assert_eq!(store.set_agent_preference(b.id, ann.id, "x", &json!(1)).await.expect("via B"), None);
}

pub async fn refresh_tokens_rotate_once_and_revoke_by_session(store: Arc<dyn Store>) {
    use frontdesk_core::store::RefreshToken;
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let ann = agent(ids.next().expect("id"), a.id, "ann@example.com");
    store.insert_agent(&ann).await.expect("insert");
    let token = |hash: &str, session: &str| RefreshToken {
        token_hash: hash.to_owned(),
        session_id: session.to_owned(),
        site_id: a.id,
        agent_id: ann.id,
        expires_at: i64::MAX / 2,
        used: false,
        revoked: false,
        created_at: CREATED_AT,
    };
    let first = token("h1", "s1");
    store.insert_refresh_token(&first).await.expect("insert");
    store.insert_refresh_token(&token("h2", "s1")).await.expect("insert");
    store.insert_refresh_token(&token("h3", "s2")).await.expect("insert");
    assert_eq!(store.refresh_token("h1").await.expect("read"), Some(first.clone()));
    assert_eq!(store.refresh_token("nope").await.expect("read"), None);

    // Many racers, one winner.
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move { store.use_refresh_token("h1").await.expect("use") });
    }
    let mut winners = 0;
    while let Some(r) = tasks.join_next().await {
        winners += usize::from(r.expect("task"));
    }
    assert_eq!(winners, 1, "exactly one caller rotates a token");
    assert_eq!(store.refresh_token("h1").await.expect("read").map(|t| t.used), Some(true));

    assert_eq!(store.revoke_session(b.id, "s1").await.expect("revoke via B"), 0, "another site revokes nothing");
    assert_eq!(store.revoke_session(a.id, "s1").await.expect("revoke"), 2);
    assert!(store.refresh_token("h2").await.expect("read").is_some_and(|t| t.revoked));
    assert!(!store.use_refresh_token("h2").await.expect("use revoked"), "a revoked token cannot be used");
    assert!(store.refresh_token("h3").await.expect("read").is_some_and(|t| !t.revoked), "other sessions stay");

    assert_eq!(store.revoke_agent_sessions(a.id, ann.id).await.expect("revoke all"), vec!["s2".to_string()]);
    assert!(store.refresh_token("h3").await.expect("read").is_some_and(|t| t.revoked));
    // An expired token of the agent is dropped when the next one is stored.
    store.insert_refresh_token(&RefreshToken { expires_at: 1, ..token("old", "s3") }).await.expect("insert old");
    store.insert_refresh_token(&token("h4", "s4")).await.expect("insert new");
    assert_eq!(store.refresh_token("old").await.expect("read"), None);
    // Deleting the agent deletes its tokens.
    let admin = Agent { role: Role::Admin, ..agent(ids.next().expect("id"), a.id, "admin@example.com") };
    store.insert_agent(&admin).await.expect("insert admin");
    assert!(store.delete_agent(a.id, ann.id).await.expect("delete"));
    assert_eq!(store.refresh_token("h4").await.expect("read"), None);
}
