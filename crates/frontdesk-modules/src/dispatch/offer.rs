//! Offering chats: who may take one now, in which order, the atomic offer itself, the
//! queues, and `queue.updated` pushes to waiting visitors.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use frontdesk_core::id::{AgentId, ChatId, DepartmentId, Id, SiteId};
use frontdesk_core::object;
use frontdesk_core::pipeline::Failure;
use frontdesk_core::push::Recipient;
use frontdesk_core::state::ScriptValue;
use serde_json::{json, Value};

use super::scripts::{ADJUST_CAPACITY, OFFER};
use super::{now_ms, offers_key, queues_key, sites_key, Dispatch};
use crate::model::availability::{available_key, offer_seq_key, turns_key};
use crate::model::{agent_key, agents_key, chat_meta_key, queue_key, visitor_key, ChatMeta, ChatStatus};

/// How agents of equal stickiness and priority are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Fewest active chats first.
    LeastBusy,
    /// The agent offered a chat longest ago first.
    RoundRobin,
}

/// How long a node keeps a department's strategy and members (or a site's strategy).
pub(crate) const ROUTING_TTL: Duration = Duration::from_secs(1);

/// Per node: `(site, department)` → when read, strategy, members.
pub(crate) type RoutingCache = Mutex<HashMap<(SiteId, Option<DepartmentId>), (Instant, Strategy, Arc<Vec<AgentId>>)>>;

/// A node-local cache's guard; a poisoned one is still a valid cache.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Per node: queues whose drain or positions pass is running → whether another was asked
/// for meanwhile.
pub(crate) type RunningPasses = Mutex<HashMap<String, bool>>;

/// Clears a queue's "pass running" mark when dropped.
struct Running<'a> {
    map: &'a RunningPasses,
    queue: &'a str,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(self.map).remove(self.queue);
    }
}

/// Passes a caller may run for others before it returns (the sweeper picks up the rest).
const MAX_PASSES: usize = 4;

/// Runs `pass` for `key` unless this node already runs one: then marks the key dirty and
/// returns at once, and the running caller goes again (up to [`MAX_PASSES`]). So a storm of
/// requests on one queue costs a few passes, not one each.
async fn coalesced<F, Fut>(map: &RunningPasses, key: &str, mut pass: F) -> Result<(), Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    {
        let mut running = lock(map);
        if let Some(dirty) = running.get_mut(key) {
            *dirty = true;
            return Ok(());
        }
        running.insert(key.to_string(), false);
    }
    // Removes the mark however this ends (an error, or the request cancelled).
    let _guard = Running { map, queue: key };
    for _ in 0..MAX_PASSES {
        pass().await?;
        let mut running = lock(map);
        match running.get_mut(key) {
            Some(dirty) if *dirty => *dirty = false,
            _ => break,
        }
    }
    Ok(())
}

/// What one offer attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Offered(AgentId),
    /// No agent may take the chat now.
    Nobody,
    /// The chat was no longer waiting (offered by another node, or ended).
    Gone,
}

/// Per node: a queue's key → a fingerprint of its members in order when this node last
/// told its visitors their positions, and those positions.
pub(crate) type PositionCache = Mutex<HashMap<String, (u64, HashMap<String, i64>)>>;

/// Queued chats one drain reads at a time.
const DRAIN_LIMIT: usize = 50;
/// Queued chats one drain pass tries at most.
const DRAIN_MAX: usize = 5_000;

impl Dispatch {
    pub(crate) async fn load_chat(&self, chat: ChatId) -> Result<Option<ChatMeta>, Failure> {
        Ok(object::load::<ChatMeta>(self.state.as_ref(), &chat_meta_key(chat)).await?)
    }

    /// The routing strategy and members of the chat's department (from the durable store),
    /// or, for the site-wide queue, the site's `settings.routingStrategy`; `least_busy`
    /// when unset or unknown. Kept per node for [`ROUTING_TTL`], so a storm of requests
    /// does not read the store once per attempt.
    async fn strategy(&self, meta: &ChatMeta) -> Result<(Strategy, Arc<Vec<AgentId>>), Failure> {
        let key = (meta.site_id, meta.department_id);
        if let Some((at, strategy, members)) = lock(&self.routing).get(&key) {
            if at.elapsed() < ROUTING_TTL {
                return Ok((*strategy, members.clone()));
            }
        }
        let (name, members) = match meta.department_id {
            Some(d) => match self.store.department(meta.site_id, d).await? {
                Some(dept) => (Some(dept.strategy), dept.members),
                None => (None, vec![]),
            },
            None => {
                let site = self.store.site(meta.site_id).await?;
                let name = site.as_ref().and_then(|s| s.settings.get("routingStrategy")).and_then(Value::as_str);
                (name.map(str::to_string), vec![])
            }
        };
        let strategy = if name.as_deref() == Some("round_robin") { Strategy::RoundRobin } else { Strategy::LeastBusy };
        let members = Arc::new(members);
        let mut cache = lock(&self.routing);
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _, _)| at.elapsed() < ROUTING_TTL);
        }
        cache.insert(key, (Instant::now(), strategy, members.clone()));
        Ok((strategy, members))
    }

    /// Changes an agent's `activeChats` by `by` (and its place in the availability index).
    pub(crate) async fn adjust(&self, site: SiteId, agent: AgentId, by: i64) -> Result<(), Failure> {
        let (by, id) = (by.to_string(), agent.to_string());
        let keys = [agent_key(site, agent), available_key(site), turns_key(site)];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.state.eval(&ADJUST_CAPACITY, &keys, &[&by, &id]).await?;
        Ok(())
    }

    /// Puts a chat in its department's queue, keeping its place if it was there before.
    pub(crate) async fn enqueue(&self, meta: &ChatMeta) -> Result<(), Failure> {
        let at = if meta.queued_at > 0 { meta.queued_at } else { now_ms() };
        let chat = meta.chat_id.to_string();
        self.state.zadd(&queue_key(meta.site_id, meta.department_id), &[(at as f64, &chat)]).await?;
        let dept = meta.department_id.map(|d| d.0).unwrap_or(0).to_string();
        self.state.sadd(&queues_key(meta.site_id), &[&dept]).await?;
        self.state.sadd(&sites_key(), &[&meta.site_id.to_string()]).await?;
        Ok(())
    }

    /// Offers the chat to the best available agent (or only to `only`), atomically: the
    /// offer script picks the agent from the site's availability index. Returns the agent,
    /// or `None` when nobody can take it now.
    pub(crate) async fn offer(&self, meta: &ChatMeta, only: Option<AgentId>) -> Result<Option<AgentId>, Failure> {
        Ok(match self.try_offer(meta, only).await? {
            Outcome::Offered(agent) => Some(agent),
            Outcome::Nobody | Outcome::Gone => None,
        })
    }

    async fn try_offer(&self, meta: &ChatMeta, only: Option<AgentId>) -> Result<Outcome, Failure> {
        let mut exclude: Vec<AgentId> = meta.refused_by.clone();
        exclude.extend(meta.agent_id.filter(|_| meta.status == ChatStatus::Active));
        exclude.extend(meta.transfer_from);
        let (strategy, members) = self.strategy(meta).await?;
        let sticky = match only {
            Some(_) => None,
            None => self.state.hget(&visitor_key(meta.site_id, meta.visitor_id), "lastAgentId").await?,
        };
        let now = now_ms();
        let deadline = now + i64::try_from(self.settings.offer_timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let timeout = i64::try_from(self.settings.presence_timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let site = meta.site_id;
        let keys = [
            queue_key(site, meta.department_id),
            offers_key(site),
            agents_key(site),
            available_key(site),
            turns_key(site),
            offer_seq_key(site),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let join = |ids: &[AgentId]| ids.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
        let args = [
            meta.chat_id.to_string(),
            deadline.to_string(),
            if only.is_some() { "1" } else { "0" }.to_string(),
            now.to_string(),
            timeout.to_string(),
            if strategy == Strategy::RoundRobin { "1" } else { "0" }.to_string(),
            sticky.unwrap_or_default(),
            only.map(|a| a.to_string()).unwrap_or_default(),
            meta.department_id.map(|d| d.to_string()).unwrap_or_default(),
            join(&exclude),
            join(&members),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent: AgentId = match self.state.eval(&OFFER, &keys, &args).await? {
            ScriptValue::Str(id) => {
                id.parse().map_err(|_| Failure::internal(format!("the offer script answered {id:?}, not an agent")))?
            }
            ScriptValue::Int(-1) => return Ok(Outcome::Gone),
            _ => return Ok(Outcome::Nobody),
        };
        let (chat, offers) = (meta.chat_id.to_string(), offers_key(site));
        let key = chat_meta_key(meta.chat_id);
        // A queued chat becomes offered only if it is still queued (not ended meanwhile);
        // an active chat being transferred stays active.
        let still_open = if meta.status == ChatStatus::Active {
            self.state.hget(&key, "status").await?.as_deref() == Some("active")
        } else {
            self.state.hcas(&key, "status", Some("queued"), Some("offered")).await?
        };
        if !still_open {
            if self.state.zrem(&offers, &[&chat]).await? == 1 {
                self.adjust(meta.site_id, agent, -1).await?;
            }
            return Ok(Outcome::Gone);
        }
        let agent_s = agent.to_string();
        let now_s = now.to_string();
        self.state.hset(&key, &[("offeredTo", &agent_s), ("offeredAt", &now_s), ("queuePosition", "0")]).await?;
        self.state.sadd(&sites_key(), &[&meta.site_id.to_string()]).await?;
        let data = json!({"chatId": meta.chat_id, "visitorId": meta.visitor_id, "visitorName": meta.visitor_name,
            "departmentId": meta.department_id, "transferFrom": meta.transfer_from, "expiresAt": deadline});
        self.push_to(&[Recipient::Agent(agent)], "chat.offered", &data).await;
        Ok(Outcome::Offered(agent))
    }

    pub(crate) async fn push_to(&self, to: &[Recipient], name: &str, data: &Value) {
        if let Err(e) = self.push.push(to, name, data).await {
            tracing::warn!(error = %e, push = name, "push failed");
        }
    }

    /// Offers the queued chats of one queue, oldest first, while agents can take them; then
    /// tells the visitors still waiting where they stand. Stops at the first chat nobody
    /// could take that excludes no agent: every later chat of the queue wants the same
    /// agents, so none of them could be offered either.
    pub(crate) async fn drain(&self, site: SiteId, department: Option<DepartmentId>) -> Result<(), Failure> {
        let queue = queue_key(site, department);
        coalesced(&self.drains_running, &queue, || self.drain_pass(site, department)).await?;
        self.update_positions(site, department).await
    }

    /// Offers batches of [`DRAIN_LIMIT`] queued chats, oldest first, while a batch moves
    /// something (a chat offered, or one found ended and dropped), up to [`DRAIN_MAX`]
    /// chats: a pass empties a long queue that agents can take, and ends at once when
    /// nobody can.
    async fn drain_pass(&self, site: SiteId, department: Option<DepartmentId>) -> Result<(), Failure> {
        let queue = queue_key(site, department);
        let mut tried = 0;
        while tried < DRAIN_MAX {
            let waiting =
                self.state.zrange_by_score(&queue, f64::NEG_INFINITY, f64::INFINITY, Some((0, DRAIN_LIMIT))).await?;
            let full = waiting.len() == DRAIN_LIMIT;
            tried += waiting.len();
            let mut moved = false;
            let mut blocked = false;
            for (chat, _) in waiting {
                let Ok(chat) = chat.parse::<Id>() else { continue };
                match self.load_chat(chat).await? {
                    Some(meta) if meta.status != ChatStatus::Ended => {
                        let excludes = !meta.refused_by.is_empty() || meta.transfer_from.is_some();
                        match self.try_offer(&meta, None).await? {
                            Outcome::Offered(_) | Outcome::Gone => moved = true,
                            Outcome::Nobody if !excludes && meta.status == ChatStatus::Queued => {
                                blocked = true;
                                break;
                            }
                            Outcome::Nobody => {}
                        }
                    }
                    // Ended or lost: it has nothing to wait for.
                    _ => {
                        self.state.zrem(&queue, &[&chat.to_string()]).await?;
                        moved = true;
                    }
                }
            }
            if blocked || !moved || !full {
                break;
            }
        }
        Ok(())
    }

    /// Drains every queue of a site.
    pub(crate) async fn drain_site(&self, site: SiteId) -> Result<(), Failure> {
        for dept in self.state.smembers(&queues_key(site)).await? {
            let dept = dept.parse::<u64>().ok().filter(|d| *d != 0).map(Id);
            self.drain(site, dept).await?;
        }
        Ok(())
    }

    /// Pushes `queue.updated {chatId, position}` to each waiting visitor whose position
    /// changed since it was last told. One pass per queue per node at a time: a call that
    /// finds a pass running marks the queue dirty and returns, and the running pass goes
    /// again — so a storm of requests against a long queue costs a few passes, not one
    /// per request (each pass reads every waiting chat whose place moved).
    pub(crate) async fn update_positions(&self, site: SiteId, department: Option<DepartmentId>) -> Result<(), Failure> {
        let queue = queue_key(site, department);
        coalesced(&self.positions_running, &queue, || self.positions_pass(&queue)).await
    }

    /// One pass of [`Self::update_positions`]: one read of the queue when it is as this node
    /// last saw it (the sweeper's case when nothing moved); else one read per chat whose
    /// place changed.
    async fn positions_pass(&self, queue: &str) -> Result<(), Failure> {
        let waiting = self.state.zrange_by_score(queue, f64::NEG_INFINITY, f64::INFINITY, None).await?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (chat, _) in &waiting {
            chat.hash(&mut hasher);
        }
        let fingerprint = hasher.finish();
        let before = {
            let mut cache = lock(&self.positions);
            match cache.get(queue) {
                Some((f, _)) if *f == fingerprint => return Ok(()),
                _ => cache.remove(queue).map(|(_, p)| p).unwrap_or_default(),
            }
        };
        let mut now = HashMap::with_capacity(waiting.len());
        for (i, (chat, _)) in waiting.iter().enumerate() {
            let position = i as i64 + 1;
            now.insert(chat.clone(), position);
            if before.get(chat) == Some(&position) {
                continue;
            }
            let Ok(chat_id) = chat.parse::<Id>() else { continue };
            let key = chat_meta_key(chat_id);
            let fields = self.state.hmget(&key, &["queuePosition", "visitorId", "status"]).await?;
            let told: i64 = fields.first().cloned().flatten().and_then(|v| v.parse().ok()).unwrap_or(0);
            let visitor: Option<Id> = fields.get(1).cloned().flatten().and_then(|v| v.parse().ok());
            let status = fields.get(2).cloned().flatten();
            let (Some(visitor), Some("queued")) = (visitor, status.as_deref()) else { continue };
            if told != position {
                let pos = position.to_string();
                self.state.hset(&key, &[("queuePosition", &pos)]).await?;
                self.push_to(
                    &[Recipient::Visitor(visitor)],
                    "queue.updated",
                    &json!({"chatId": chat_id, "position": position}),
                )
                .await;
            }
        }
        let mut cache = lock(&self.positions);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(queue.to_string(), (fingerprint, now));
        Ok(())
    }

    /// An offer refused or expired (already claimed from the offers set by the caller):
    /// the agent's capacity comes back, it is not offered this chat again, and the chat is
    /// offered to the next agent or goes back to its place in the queue (a transfer to a
    /// named agent simply ends, the chat staying with its owner).
    pub(crate) async fn offer_declined(&self, chat: ChatId, agent: AgentId) -> Result<(), Failure> {
        let Some(mut meta) = self.load_chat(chat).await? else { return Ok(()) };
        self.adjust(meta.site_id, agent, -1).await?;
        if meta.status == ChatStatus::Ended {
            return Ok(());
        }
        let key = chat_meta_key(chat);
        if !meta.refused_by.contains(&agent) {
            meta.refused_by.push(agent);
        }
        let refused = serde_json::to_string(&meta.refused_by).map_err(|e| Failure::internal(e.to_string()))?;
        self.state.hset(&key, &[("refusedBy", &refused), ("offeredAt", "0")]).await?;
        self.state.hdel(&key, &["offeredTo"]).await?;
        meta.offered_to = None;
        if meta.status == ChatStatus::Active {
            // A transfer: to a department, the next agent of it may take it; to a named
            // agent, the transfer is over.
            if meta.transfer_department.is_some() {
                self.enqueue(&meta).await?;
                return self.drain(meta.site_id, meta.department_id).await;
            }
            self.state.hdel(&key, &["transferFrom"]).await?;
            if let Some(owner) = meta.agent_id {
                self.push_to(
                    &[Recipient::Agent(owner)],
                    "chat.transferred",
                    &json!({"chatId": chat, "from": owner,
                    "to": Value::Null, "refusedBy": agent}),
                )
                .await;
            }
            return Ok(());
        }
        if !self.state.hcas(&key, "status", Some("offered"), Some("queued")).await? {
            return Ok(());
        }
        meta.status = ChatStatus::Queued;
        self.enqueue(&meta).await?;
        self.drain(meta.site_id, meta.department_id).await
    }
}
