//! Offering chats: who may take one now, in which order, the atomic offer itself, the
//! queues, and `queue.updated` pushes to waiting visitors.

use std::collections::HashSet;

use frontdesk_core::id::{AgentId, ChatId, DepartmentId, Id, SiteId};
use frontdesk_core::object;
use frontdesk_core::pipeline::Failure;
use frontdesk_core::push::Recipient;
use frontdesk_core::state::ScriptValue;
use serde_json::{json, Value};

use super::scripts::{ADJUST_CAPACITY, OFFER};
use super::{cursor_key, now_ms, offers_key, queues_key, sites_key, Dispatch};
use crate::model::{
    agent_key, agents_key, chat_meta_key, queue_key, visitor_key, AgentPresence, AgentStatus, ChatMeta, ChatStatus,
};

/// How agents of equal stickiness and priority are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Fewest active chats first.
    LeastBusy,
    /// A cursor per department that moves on at every offer.
    RoundRobin,
}

/// How many queued chats one drain tries to offer.
const DRAIN_LIMIT: usize = 50;

impl Dispatch {
    pub(crate) async fn load_chat(&self, chat: ChatId) -> Result<Option<ChatMeta>, Failure> {
        Ok(object::load::<ChatMeta>(self.state.as_ref(), &chat_meta_key(chat)).await?)
    }

    /// The routing strategy and members of the chat's department (from the durable store),
    /// or, for the site-wide queue, the site's `settings.routingStrategy`; `least_busy`
    /// when unset or unknown.
    async fn strategy(&self, meta: &ChatMeta) -> Result<(Strategy, Vec<AgentId>), Failure> {
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
        Ok((strategy, members))
    }

    /// Agents that may take `meta` now, best first.
    async fn candidates(&self, meta: &ChatMeta, exclude: &HashSet<AgentId>) -> Result<Vec<AgentPresence>, Failure> {
        let now = now_ms();
        let timeout = i64::try_from(self.settings.presence_timeout.as_millis()).unwrap_or(i64::MAX);
        let (strategy, members) = self.strategy(meta).await?;
        let mut found = Vec::new();
        for id in self.state.smembers(&agents_key(meta.site_id)).await? {
            let Ok(id) = id.parse::<Id>() else { continue };
            if exclude.contains(&id) {
                continue;
            }
            let Some(p) = object::load::<AgentPresence>(self.state.as_ref(), &agent_key(meta.site_id, id)).await?
            else {
                continue;
            };
            let available = p.status == AgentStatus::Online
                && now.saturating_sub(p.last_seen) <= timeout
                && p.active_chats < p.max_chats
                && meta.department_id.is_none_or(|d| p.departments.contains(&d) || members.contains(&id));
            if available {
                found.push(AgentPresence { agent_id: id, ..p });
            }
        }
        let sticky: Option<AgentId> = self
            .state
            .hget(&visitor_key(meta.site_id, meta.visitor_id), "lastAgentId")
            .await?
            .and_then(|v| v.parse().ok());
        found.sort_by_key(|p| p.agent_id);
        let n = found.len().max(1) as i64;
        let cursor = if strategy == Strategy::RoundRobin && found.len() > 1 {
            self.state.incrby(&cursor_key(meta.site_id, meta.department_id), 1).await?.rem_euclid(n)
        } else {
            0
        };
        let mut keyed: Vec<(bool, i64, i64, usize, AgentPresence)> = found
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let turn = match strategy {
                    Strategy::LeastBusy => p.active_chats,
                    Strategy::RoundRobin => (i as i64 - cursor).rem_euclid(n),
                };
                (Some(p.agent_id) != sticky, -p.priority, turn, i, p)
            })
            .collect();
        keyed.sort_by_key(|a| (a.0, a.1, a.2, a.3));
        Ok(keyed.into_iter().map(|k| k.4).collect())
    }

    /// Changes an agent's `activeChats` by `by`.
    pub(crate) async fn adjust(&self, site: SiteId, agent: AgentId, by: i64) -> Result<(), Failure> {
        let by = by.to_string();
        self.state.eval(&ADJUST_CAPACITY, &[&agent_key(site, agent)], &[&by]).await?;
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

    /// Offers the chat to the best available agent (or only to `only`), atomically.
    /// Returns the agent, or `None` when nobody can take it now.
    pub(crate) async fn offer(&self, meta: &ChatMeta, only: Option<AgentId>) -> Result<Option<AgentId>, Failure> {
        let mut exclude: HashSet<AgentId> = meta.refused_by.iter().copied().collect();
        exclude.extend(meta.agent_id.filter(|_| meta.status == ChatStatus::Active));
        exclude.extend(meta.transfer_from);
        let mut cands = self.candidates(meta, &exclude).await?;
        if let Some(only) = only {
            cands.retain(|p| p.agent_id == only);
        }
        if cands.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        let deadline = now + i64::try_from(self.settings.offer_timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let (queue, offers) = (queue_key(meta.site_id, meta.department_id), offers_key(meta.site_id));
        let agent_keys: Vec<String> = cands.iter().map(|p| agent_key(meta.site_id, p.agent_id)).collect();
        let mut keys: Vec<&str> = vec![&queue, &offers];
        keys.extend(agent_keys.iter().map(String::as_str));
        let (chat, deadline_s) = (meta.chat_id.to_string(), deadline.to_string());
        let force = if only.is_some() { "1" } else { "0" };
        let out = self.state.eval(&OFFER, &keys, &[&chat, &deadline_s, force]).await?;
        let index = match out {
            ScriptValue::Int(i) if i > 0 => usize::try_from(i - 1).unwrap_or(usize::MAX),
            _ => return Ok(None),
        };
        let Some(agent) = cands.get(index).map(|p| p.agent_id) else {
            return Err(Failure::internal("the offer script named an agent it was not given"));
        };
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
            return Ok(None);
        }
        let agent_s = agent.to_string();
        let now_s = now.to_string();
        self.state.hset(&key, &[("offeredTo", &agent_s), ("offeredAt", &now_s), ("queuePosition", "0")]).await?;
        self.state.sadd(&sites_key(), &[&meta.site_id.to_string()]).await?;
        let data = json!({"chatId": meta.chat_id, "visitorId": meta.visitor_id, "visitorName": meta.visitor_name,
            "departmentId": meta.department_id, "transferFrom": meta.transfer_from, "expiresAt": deadline});
        self.push_to(&[Recipient::Agent(agent)], "chat.offered", &data).await;
        Ok(Some(agent))
    }

    pub(crate) async fn push_to(&self, to: &[Recipient], name: &str, data: &Value) {
        if let Err(e) = self.push.push(to, name, data).await {
            tracing::warn!(error = %e, push = name, "push failed");
        }
    }

    /// Offers the queued chats of one queue, oldest first, while agents can take them; then
    /// tells the visitors still waiting where they stand.
    pub(crate) async fn drain(&self, site: SiteId, department: Option<DepartmentId>) -> Result<(), Failure> {
        let queue = queue_key(site, department);
        let waiting =
            self.state.zrange_by_score(&queue, f64::NEG_INFINITY, f64::INFINITY, Some((0, DRAIN_LIMIT))).await?;
        for (chat, _) in waiting {
            let Ok(chat) = chat.parse::<Id>() else { continue };
            match self.load_chat(chat).await? {
                Some(meta) if meta.status != ChatStatus::Ended => {
                    self.offer(&meta, None).await?;
                }
                // Ended or lost: it has nothing to wait for.
                _ => {
                    self.state.zrem(&queue, &[&chat.to_string()]).await?;
                }
            }
        }
        self.update_positions(site, department).await
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
    /// changed since it was last told.
    pub(crate) async fn update_positions(&self, site: SiteId, department: Option<DepartmentId>) -> Result<(), Failure> {
        let queue = queue_key(site, department);
        let waiting = self.state.zrange_by_score(&queue, f64::NEG_INFINITY, f64::INFINITY, None).await?;
        for (i, (chat, _)) in waiting.iter().enumerate() {
            let Ok(chat_id) = chat.parse::<Id>() else { continue };
            let key = chat_meta_key(chat_id);
            let position = i as i64 + 1;
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
