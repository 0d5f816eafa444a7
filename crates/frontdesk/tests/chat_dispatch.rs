//! Dispatch through the real server in cluster mode (SPEC §4, §5.4): refusals and expired
//! offers go to the next agent or back to the queue, a queued chat waits until an agent
//! comes online, returning visitors go to their last agent first, departments, and
//! owners leaving.

mod chat_support;
mod support;

use std::time::Duration;

use chat_support::*;
use frontdesk_core::id::Id;
use frontdesk_core::store::Role;
use serde_json::json;

async fn meta_field(env: &Env, chat: &str, field: &str) -> Option<String> {
    env.state.hget(&format!("fd:{{c:{chat}}}:meta"), field).await.expect("hget")
}

#[tokio::test]
async fn a_refused_offer_goes_to_the_next_agent_then_back_to_the_queue_embedded() {
    a_refused_offer_goes_to_the_next_agent_then_back_to_the_queue(Env::embedded().await).await
}

#[tokio::test]
async fn a_refused_offer_goes_to_the_next_agent_then_back_to_the_queue_on_redis() {
    a_refused_offer_goes_to_the_next_agent_then_back_to_the_queue(Env::cluster(1).await).await
}

async fn a_refused_offer_goes_to_the_next_agent_then_back_to_the_queue(env: Env) {
    let node = env.node();
    let (ann, bob) = (env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await);
    env.online(ann.id, 1).await;
    env.online(bob.id, 1).await;
    let (mut ann_ws, mut bob_ws) = (socket(node, &ann).await, socket(node, &bob).await);
    let visitor = env.visitor().await;
    let chat = chat_id(&request(node, &visitor, json!({"message": "hi"})).await);
    let first = meta_field(&env, &chat, "offeredTo").await.expect("offered");
    let (first, second, second_ws) =
        if first == ann.id.to_string() { (&ann, &bob, &mut bob_ws) } else { (&bob, &ann, &mut ann_ws) };

    let refused = ok(node, "chat.agent_refuse", first, json!({"chatId": chat}), None).await;
    assert_eq!(refused["data"]["refused"], true);
    assert_eq!(next_push(second_ws, "chat.offered").await["chatId"], chat.as_str());
    assert_eq!((env.active_chats(first.id).await, env.active_chats(second.id).await), (0, 1));
    // The refusing agent is not offered it again, nor may it accept it now.
    let late = call(node, "chat.agent_accept", first, json!({"chatId": chat}), None).await;
    assert_eq!(kind(&late), (409, "conflict".to_string()));

    ok(node, "chat.agent_refuse", second, json!({"chatId": chat}), None).await;
    assert_eq!(meta_field(&env, &chat, "status").await.as_deref(), Some("queued"));
    assert_eq!(meta_field(&env, &chat, "queuePosition").await.as_deref(), Some("1"));
    assert_eq!((env.active_chats(ann.id).await, env.active_chats(bob.id).await), (0, 0));
    env.stop().await;
}

#[tokio::test]
async fn an_unanswered_offer_expires_and_goes_to_the_next_agent_embedded() {
    an_unanswered_offer_expires_and_goes_to_the_next_agent(Env::embedded().await).await
}

#[tokio::test]
async fn an_unanswered_offer_expires_and_goes_to_the_next_agent_on_redis() {
    an_unanswered_offer_expires_and_goes_to_the_next_agent(Env::cluster(1).await).await
}

async fn an_unanswered_offer_expires_and_goes_to_the_next_agent(env: Env) {
    let node = env.node();
    let (ann, bob) = (env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await);
    env.online(ann.id, 1).await;
    let visitor = env.visitor().await;
    let chat = chat_id(&request(node, &visitor, json!({"message": "hi"})).await);
    assert_eq!(meta_field(&env, &chat, "offeredTo").await, Some(ann.id.to_string()));
    env.online(bob.id, 1).await;
    let mut bob_ws = socket(node, &bob).await;
    // Move the deadline into the past rather than wait the 30 s offer timeout.
    env.state.zadd(&format!("fd:{{s:{}}}:offers", env.site), &[(1.0, &chat)]).await.expect("zadd");
    let offered = next_push(&mut bob_ws, "chat.offered").await;
    assert_eq!(offered["chatId"], chat.as_str());
    assert_eq!((env.active_chats(ann.id).await, env.active_chats(bob.id).await), (0, 1));
    let refused_by = meta_field(&env, &chat, "refusedBy").await.expect("refusedBy");
    assert!(refused_by.contains(&ann.id.to_string()), "{refused_by}");
    env.stop().await;
}

#[tokio::test]
async fn a_queued_chat_waits_until_an_agent_comes_online_embedded() {
    a_queued_chat_waits_until_an_agent_comes_online(Env::embedded().await).await
}

#[tokio::test]
async fn a_queued_chat_waits_until_an_agent_comes_online_on_redis() {
    a_queued_chat_waits_until_an_agent_comes_online(Env::cluster(1).await).await
}

async fn a_queued_chat_waits_until_an_agent_comes_online(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    let visitor = env.visitor().await;
    let data = request(node, &visitor, json!({"message": "anyone?"})).await;
    assert_eq!((data["status"].as_str(), data["queuePosition"].as_i64()), (Some("queued"), Some(1)));
    // The visitor may keep writing while queued; whoever accepts sees everything.
    let chat = chat_id(&data);
    ok(node, "chat.visitor_send_message", &visitor, json!({"chatId": chat, "content": "hello?"}), None).await;
    let mut ann_ws = socket(node, &ann).await;
    env.online(ann.id, 1).await;
    assert_eq!(next_push(&mut ann_ws, "chat.offered").await["chatId"], chat.as_str());
    let accepted = ok(node, "chat.agent_accept", &ann, json!({"chatId": chat}), None).await;
    let contents: Vec<&str> =
        accepted["messages"].as_array().expect("m").iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(contents, vec!["anyone?", "hello?", "Ann joined the chat"]);
    env.stop().await;
}

#[tokio::test]
async fn agents_away_stale_or_in_another_department_are_not_offered_chats_embedded() {
    agents_away_stale_or_in_another_department_are_not_offered_chats(Env::embedded().await).await
}

#[tokio::test]
async fn agents_away_stale_or_in_another_department_are_not_offered_chats_on_redis() {
    agents_away_stale_or_in_another_department_are_not_offered_chats(Env::cluster(1).await).await
}

async fn agents_away_stale_or_in_another_department_are_not_offered_chats(env: Env) {
    let node = env.node();
    let (away, stale, sales) = (
        env.agent("Away", Role::Agent).await,
        env.agent("Stale", Role::Agent).await,
        env.agent("Sales", Role::Agent).await,
    );
    env.presence(away.id, 3, frontdesk_modules::model::AgentStatus::Away, &[]).await;
    env.online(stale.id, 3).await;
    env.state
        .hset(
            &frontdesk_modules::model::agent_key(env.site, stale.id),
            &[("lastSeen", &(now_ms() - 120_000).to_string())],
        )
        .await
        .expect("stale");
    let support_dept = Id(5);
    env.presence(sales.id, 3, frontdesk_modules::model::AgentStatus::Online, &[Id(6)]).await;
    let visitor = env.visitor().await;
    let data = request(node, &visitor, json!({"departmentId": support_dept})).await;
    assert_eq!(data["status"], "queued");
    // An agent of that department takes it.
    let sup = env.agent("Support", Role::Agent).await;
    env.presence(sup.id, 1, frontdesk_modules::model::AgentStatus::Online, &[support_dept]).await;
    let mut sup_ws = socket(node, &sup).await;
    assert_eq!(next_push(&mut sup_ws, "chat.offered").await["chatId"], data["chatId"]);
    env.stop().await;
}

#[tokio::test]
async fn a_returning_visitor_goes_to_its_last_agent_first_embedded() {
    a_returning_visitor_goes_to_its_last_agent_first(Env::embedded().await).await
}

#[tokio::test]
async fn a_returning_visitor_goes_to_its_last_agent_first_on_redis() {
    a_returning_visitor_goes_to_its_last_agent_first(Env::cluster(1).await).await
}

async fn a_returning_visitor_goes_to_its_last_agent_first(env: Env) {
    let node = env.node();
    let (ann, bob) = (env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await);
    env.online(ann.id, 3).await;
    env.online(bob.id, 3).await;
    let visitor = env.visitor().await;
    let chat = chat_id(&request(node, &visitor, json!({})).await);
    let first = meta_field(&env, &chat, "offeredTo").await.expect("offered");
    let agent = if first == ann.id.to_string() { &ann } else { &bob };
    ok(node, "chat.agent_accept", agent, json!({"chatId": chat}), None).await;
    ok(node, "chat.visitor_leave", &visitor, json!({"chatId": chat}), None).await;
    // Make the other agent the less busy one: stickiness still wins.
    env.state
        .hset(&frontdesk_modules::model::agent_key(env.site, agent.id), &[("activeChats", "2")])
        .await
        .expect("busy");
    let again = chat_id(&request(node, &visitor, json!({})).await);
    assert_ne!(again, chat, "an ended chat is not reopened");
    assert_eq!(meta_field(&env, &again, "offeredTo").await, Some(agent.id.to_string()));
    env.stop().await;
}

#[tokio::test]
async fn an_owner_leaving_hands_the_chat_to_a_joined_agent_or_ends_it_embedded() {
    an_owner_leaving_hands_the_chat_to_a_joined_agent_or_ends_it(Env::embedded().await).await
}

#[tokio::test]
async fn an_owner_leaving_hands_the_chat_to_a_joined_agent_or_ends_it_on_redis() {
    an_owner_leaving_hands_the_chat_to_a_joined_agent_or_ends_it(Env::cluster(1).await).await
}

async fn an_owner_leaving_hands_the_chat_to_a_joined_agent_or_ends_it(env: Env) {
    let node = env.node();
    let (ann, bob) = (env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await);
    env.online(ann.id, 1).await;
    env.online(bob.id, 2).await;
    env.state.hset(&frontdesk_modules::model::agent_key(env.site, bob.id), &[("status", "away")]).await.expect("away");
    let visitor = env.visitor().await;
    let chat = chat_id(&request(node, &visitor, json!({})).await);
    ok(node, "chat.agent_accept", &ann, json!({"chatId": chat}), None).await;
    ok(node, "chat.agent_join", &bob, json!({"chatId": chat}), None).await;
    let mut visitor_ws = socket(node, &visitor).await;

    ok(node, "chat.agent_leave", &ann, json!({"chatId": chat}), None).await;
    assert_eq!(meta_field(&env, &chat, "agentId").await, Some(bob.id.to_string()));
    assert_eq!(meta_field(&env, &chat, "status").await.as_deref(), Some("active"));
    assert_eq!((env.active_chats(ann.id).await, env.active_chats(bob.id).await), (0, 1));
    let left = next_push(&mut visitor_ws, "chat.message").await;
    assert_eq!(left["content"], "Ann left the chat");

    ok(node, "chat.agent_leave", &bob, json!({"chatId": chat}), None).await;
    assert_eq!(meta_field(&env, &chat, "status").await.as_deref(), Some("ended"));
    assert_eq!(next_push(&mut visitor_ws, "chat.ended").await["chatId"], chat.as_str());
    assert_eq!(env.active_chats(bob.id).await, 0);
    env.stop().await;
}

#[tokio::test]
async fn a_transfer_to_a_department_waits_for_an_agent_of_it_embedded() {
    a_transfer_to_a_department_waits_for_an_agent_of_it(Env::embedded().await).await
}

#[tokio::test]
async fn a_transfer_to_a_department_waits_for_an_agent_of_it_on_redis() {
    a_transfer_to_a_department_waits_for_an_agent_of_it(Env::cluster(1).await).await
}

async fn a_transfer_to_a_department_waits_for_an_agent_of_it(env: Env) {
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 1).await;
    let visitor = env.visitor().await;
    let chat = chat_id(&request(node, &visitor, json!({})).await);
    ok(node, "chat.agent_accept", &ann, json!({"chatId": chat}), None).await;
    let billing = Id(42);
    let t = ok(node, "chat.agent_transfer", &ann, json!({"chatId": chat, "departmentId": billing}), None).await;
    assert_eq!(t["data"]["status"], "transferring");
    // Ann keeps the chat meanwhile.
    ok(node, "chat.agent_send_message", &ann, json!({"chatId": chat, "content": "one moment"}), None).await;
    let bea = env.agent("Bea", Role::Agent).await;
    let mut bea_ws = socket(node, &bea).await;
    env.presence(bea.id, 1, frontdesk_modules::model::AgentStatus::Online, &[billing]).await;
    assert_eq!(next_push(&mut bea_ws, "chat.offered").await["chatId"], chat.as_str());
    ok(node, "chat.agent_accept", &bea, json!({"chatId": chat}), None).await;
    assert_eq!(meta_field(&env, &chat, "agentId").await, Some(bea.id.to_string()));
    assert_eq!((env.active_chats(ann.id).await, env.active_chats(bea.id).await), (0, 1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    env.stop().await;
}

#[tokio::test]
async fn round_robin_takes_turns_where_least_busy_picks_the_idlest_embedded() {
    round_robin_takes_turns_where_least_busy_picks_the_idlest(Env::embedded().await).await
}

#[tokio::test]
async fn round_robin_takes_turns_where_least_busy_picks_the_idlest_on_redis() {
    round_robin_takes_turns_where_least_busy_picks_the_idlest(Env::cluster(1).await).await
}

/// Three agents of a department, the first already busy with two chats: round robin still
/// gives it its turn; least busy passes it over while the others are idler.
async fn round_robin_takes_turns_where_least_busy_picks_the_idlest(env: Env) {
    let node = env.node();
    let agents =
        [env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await, env.agent("Cy", Role::Agent).await];
    let ids: Vec<String> = agents.iter().map(|a| a.id.to_string()).collect();
    let mut offered_to = Vec::new();
    for strategy in ["round_robin", "least_busy"] {
        let dept = ok(
            node,
            "departments.create",
            &env.admin,
            json!({"name": format!("Dept {strategy}"), "strategy": strategy, "members": ids}),
            None,
        )
        .await;
        let dept_id: Id =
            dept["data"]["id"].as_str().or(dept["data"]["department"]["id"].as_str()).expect("id").parse().expect("id");
        for a in &agents {
            env.presence(a.id, 5, frontdesk_modules::model::AgentStatus::Online, &[dept_id]).await;
        }
        // Ann is already busy with two chats.
        let ann_key = frontdesk_modules::model::agent_key(env.site, agents[0].id);
        env.state.hset(&ann_key, &[("activeChats", "2")]).await.expect("busy");
        let mut got = Vec::new();
        let requests = if strategy == "round_robin" { 3 } else { 2 };
        for _ in 0..requests {
            let visitor = env.visitor().await;
            let data = request(node, &visitor, json!({"departmentId": dept_id.to_string(), "message": "hi"})).await;
            assert_eq!(data["status"], "offered", "{data}");
            let chat = chat_id(&data);
            let meta = env.state.hget(&format!("fd:{{c:{chat}}}:meta"), "offeredTo").await.expect("hget");
            got.push(meta.expect("offered to someone"));
        }
        got.sort();
        offered_to.push(got);
    }
    let mut all = ids.clone();
    all.sort();
    assert_eq!(offered_to[0], all, "round robin gives every agent a turn, busy or not");
    assert!(!offered_to[1].contains(&ids[0]), "least busy passes over the busy agent: {:?}", offered_to[1]);
    env.stop().await;
}

#[tokio::test]
async fn a_higher_priority_agent_is_offered_chats_first_embedded() {
    a_higher_priority_agent_is_offered_chats_first(Env::embedded().await).await
}

#[tokio::test]
async fn a_higher_priority_agent_is_offered_chats_first_on_redis() {
    a_higher_priority_agent_is_offered_chats_first(Env::cluster(1).await).await
}

async fn a_higher_priority_agent_is_offered_chats_first(env: Env) {
    let node = env.node();
    let (ann, bob) = (env.agent("Ann", Role::Agent).await, env.agent("Bob", Role::Agent).await);
    env.online(ann.id, 3).await;
    env.online(bob.id, 3).await;
    // Bob is the senior agent; Ann is even idler than him, which must not matter.
    let bob_key = frontdesk_modules::model::agent_key(env.site, bob.id);
    env.state.hset(&bob_key, &[("priority", "5"), ("activeChats", "1")]).await.expect("priority");
    for _ in 0..2 {
        let visitor = env.visitor().await;
        let data = request(node, &visitor, json!({"message": "hello"})).await;
        let chat = chat_id(&data);
        let offered = env.state.hget(&format!("fd:{{c:{chat}}}:meta"), "offeredTo").await.expect("hget");
        assert_eq!(offered, Some(bob.id.to_string()), "priority comes before load");
    }
    env.stop().await;
}
