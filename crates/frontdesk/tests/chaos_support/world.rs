//! One installation for a chaos scenario: its own Redis, a fresh PostgreSQL database, N node
//! processes, two sites (I5: nothing may cross them), and the setup of conversations — agents
//! stored durably and put online, visitors asking for chats, each chat accepted by the agent
//! dispatch offered it to — with every participant a [`Client`] logging to one [`History`].
//! At the end, [`World::durable`] reads each chat's transcript through the API once the
//! write-behind drained.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use frontdesk::bootstrap::{create_site, NewSite};
use frontdesk_core::id::{Id, IdGenerator};
use frontdesk_core::object;
use frontdesk_core::state::StateStore;
use frontdesk_core::store::{Agent, Role, Store};
use frontdesk_modules::model::{agent_key, agents_key, chat_meta_key, AgentPresence, AgentStatus, ChatMeta};
use frontdesk_modules::tokens::Tokens;
use frontdesk_state::redis_state::RedisState;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::checker::{History, Msg};
use super::client::{Client, Kind};
use super::cluster::{self, Node, Redis, ADMIN_EMAIL};

/// A site and a token of its admin.
pub struct Site {
    pub id: Id,
    pub admin_token: String,
}

/// An agent and the visitors whose chats it took.
pub struct Team {
    pub agent: Client,
    pub visitors: Vec<Client>,
}

pub struct World {
    pub redis: Redis,
    pub db: String,
    pub prefix: String,
    pub nodes: Vec<Node>,
    pub sites: Vec<Site>,
    pub history: Arc<History>,
    pub addrs: Arc<Vec<String>>,
    state: Arc<dyn StateStore>,
    store: Arc<dyn Store>,
    tokens: Tokens,
    ids: IdGenerator,
    password_hash: String,
    http: reqwest::Client,
}

impl World {
    /// `n` nodes on a Redis of the test's own and a fresh database, with two sites.
    pub async fn start(n: usize) -> World {
        World::start_on(n, cluster::database().await).await
    }

    /// `n` nodes on a Redis of the test's own and the (fresh, empty) database `db`.
    pub async fn start_on(n: usize, db: String) -> World {
        let redis = Redis::start();
        let prefix = cluster::prefix();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let (url, db, prefix) = (redis.url(), db.clone(), prefix.clone());
            nodes.push(tokio::task::spawn_blocking(move || Node::start(&url, &db, &prefix)).await.expect("node"));
        }
        let addrs = Arc::new(nodes.iter().map(Node::addr).collect());
        let store = frontdesk_store::connect(&db).await.expect("store");
        let tokens = Tokens::load(store.as_ref()).await.expect("signing key");
        let state: Arc<dyn StateStore> =
            Arc::new(RedisState::connect(&redis.url(), &format!("{prefix}:")).await.expect("redis"));
        let ids = IdGenerator::new(900 + u32::from(rand::random::<u8>() % 100)).expect("ids");
        let admin = store.agent_by_email(ADMIN_EMAIL).await.expect("read").expect("admin");
        let mut sites = vec![Site { id: admin.site_id, admin_token: admin_token(&tokens, &admin) }];
        let other = ids.next().expect("id");
        let email = format!("{}@chaos.example", frontdesk_testkit::env::unique_name("admin"));
        let new = NewSite { name: "Other", admin_email: &email, admin_name: "Olga", admin_password: "olga-password" };
        let (_, olga) = create_site(store.as_ref(), &ids, other, &new).await.expect("second site");
        sites.push(Site { id: other, admin_token: admin_token(&tokens, &olga) });
        let password_hash = frontdesk_core::password::hash("agent-password".into()).await.expect("hash");
        World {
            redis,
            db,
            prefix,
            nodes,
            sites,
            history: Arc::new(History::new()),
            addrs,
            state,
            store,
            tokens,
            ids,
            password_hash,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http"),
        }
    }

    /// `agents` agents of site `site` (index into `sites`), each taking `per_agent` chats;
    /// clients are spread over the nodes. Returns the teams with every chat active.
    pub async fn teams(&self, site: usize, agents: usize, per_agent: usize) -> Vec<Team> {
        let site_id = self.sites[site].id;
        let mut teams = Vec::new();
        let mut by_id = BTreeMap::new();
        for i in 0..agents {
            let id = self.ids.next().expect("id");
            let agent = Agent {
                id,
                site_id,
                email: format!("{}@chaos.example", frontdesk_testkit::env::unique_name("agent")),
                name: format!("Agent {i}"),
                password_hash: self.password_hash.clone(),
                role: Role::Agent,
                max_chats: per_agent as i32,
                priority: 0,
                created_at: frontdesk_core::time::now_ms(),
            };
            self.store.insert_agent(&agent).await.expect("insert agent");
            self.online(site_id, id, per_agent as i64).await;
            let token = admin_token(&self.tokens, &agent);
            let client = Client::new(Kind::Agent, &id.to_string(), &site_id.to_string(), token, self.addrs.clone(), i)
                .with_history(self.history.clone());
            by_id.insert(id, teams.len());
            teams.push(Team { agent: client, visitors: Vec::new() });
        }
        // Visitors ask at once (bounded); each chat goes to the agent dispatch offered it to,
        // who accepts it (over HTTP: the agent's socket comes later).
        let asks = (0..agents * per_agent).map(|n| self.ask(site, n));
        let asked: Vec<(Client, String)> = futures::stream::iter(asks).buffer_unordered(16).collect().await;
        let accepts = asked.into_iter().map(|(visitor, chat)| async move {
            let meta: ChatMeta = object::load(self.state.as_ref(), &chat_meta_key(chat.parse().expect("chat id")))
                .await
                .expect("meta")
                .expect("the chat exists");
            let agent = meta.offered_to.unwrap_or_else(|| panic!("chat {chat} was not offered: {meta:?}"));
            (visitor, chat, agent)
        });
        let offered: Vec<(Client, String, Id)> = futures::stream::iter(accepts).buffer_unordered(16).collect().await;
        let accepted = offered.into_iter().map(|(visitor, chat, agent)| {
            let token = teams[by_id[&agent]].agent.token().to_string();
            async move {
                let answer = self.post("chat.agent_accept", &token, json!({"chatId": chat})).await;
                assert_eq!(answer["code"], 0, "accept {chat}: {answer}");
                (visitor, chat, agent)
            }
        });
        let accepted: Vec<(Client, String, Id)> = futures::stream::iter(accepted).buffer_unordered(16).collect().await;
        for (visitor, chat, agent) in accepted {
            let team = &mut teams[by_id[&agent]];
            self.history.chat(&chat, &site_id.to_string(), &visitor.reader, &[&team.agent.reader]);
            team.agent.chats.insert(chat, Default::default());
            team.visitors.push(visitor);
        }
        teams
    }

    /// A new visitor of `site` who asked for a chat over its socket; the visitor and the chat.
    async fn ask(&self, site: usize, n: usize) -> (Client, String) {
        let site_id = self.sites[site].id;
        let id = self.ids.next().expect("id");
        let token = self.tokens.issue_visitor(site_id, id, Duration::from_secs(3600)).expect("visitor token");
        let mut visitor =
            Client::new(Kind::Visitor, &id.to_string(), &site_id.to_string(), token, self.addrs.clone(), n)
                .with_history(self.history.clone());
        let answer = visitor.call("chat.request", json!({}), None).await.expect("chat.request answered");
        assert_eq!(answer["code"], 0, "chat.request: {answer}");
        let chat = answer["data"]["chatId"].as_str().expect("chatId").to_string();
        visitor.chats.insert(chat.clone(), Default::default());
        (visitor, chat)
    }

    /// Marks an agent online with capacity `max_chats`, as the agent module's presence would.
    async fn online(&self, site: Id, agent: Id, max_chats: i64) {
        // `..default()`: fields other modules add later keep their defaults.
        #[allow(clippy::needless_update)]
        let p = AgentPresence {
            agent_id: agent,
            site_id: site,
            name: format!("Agent {agent}"),
            role: "agent".into(),
            status: AgentStatus::Online,
            max_chats,
            active_chats: 0,
            priority: 0,
            departments: Vec::new(),
            last_seen: frontdesk_core::time::now_ms(),
            sockets: 0,
            ..AgentPresence::default()
        };
        object::save(self.state.as_ref(), &agent_key(site, agent), &p).await.expect("presence");
        self.state.sadd(&agents_key(site), &[&agent.to_string()]).await.expect("agents set");
    }

    /// The runtime state, as the nodes see it.
    pub fn state(&self) -> &dyn StateStore {
        self.state.as_ref()
    }

    /// POSTs an event to the first live node.
    pub async fn post(&self, event: &str, token: &str, body: Value) -> Value {
        let node = self.nodes.iter().find(|n| n.is_running()).expect("a live node");
        let resp = self
            .http
            .post(node.url(&format!("/api/v1/{event}")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{event}: {e}"));
        resp.json().await.unwrap_or_else(|e| panic!("{event}: not JSON: {e}"))
    }

    /// Polls each chat's transcript (`GET /api/v1/chats/{id}` as its site's admin) until it
    /// holds what the participants read at the end (the write-behind drained), up to
    /// `within`, and logs it; returns how long the slowest took.
    pub async fn durable(&self, chats: &[(usize, String, usize)], within: Duration) -> Duration {
        let start = Instant::now();
        let node = self.nodes.iter().find(|n| n.is_running()).expect("a live node");
        for (site, chat, expect) in chats {
            let url = node.url(&format!("/api/v1/chats/{chat}"));
            let messages = loop {
                let got: Option<Value> = async {
                    let resp = self.http.get(&url).bearer_auth(&self.sites[*site].admin_token).send().await.ok()?;
                    resp.json().await.ok()
                }
                .await;
                let messages = got.as_ref().map(|g| Msg::all(&g["data"]["messages"])).unwrap_or_default();
                if messages.len() >= *expect || start.elapsed() > within {
                    break messages;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            self.history.durable(chat, messages);
        }
        start.elapsed()
    }
}

fn admin_token(tokens: &Tokens, agent: &Agent) -> String {
    tokens
        .issue_agent(agent.site_id, agent.id, agent.role, "chaos-session", Duration::from_secs(3600))
        .expect("agent token")
}

/// Every client of the teams, visitors and agents.
pub fn clients(teams: Vec<Team>) -> Vec<Client> {
    teams.into_iter().flat_map(|t| std::iter::once(t.agent).chain(t.visitors)).collect()
}
