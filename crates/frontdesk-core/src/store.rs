//! The durable store port (SPEC §2, §4): sites, agents, departments, secrets now;
//! transcripts, search and reports as they arrive. SQLite (embedded) and PostgreSQL
//! (cluster) implement it in `frontdesk-store`, with versioned migrations per dialect, and
//! one contract suite runs against both.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::BackendResult;
use crate::id::{AgentId, ChatId, SiteId, VisitorId};

/// An agent's role (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Supervisor,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Agent => "agent",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "supervisor" => Ok(Role::Supervisor),
            "agent" => Ok(Role::Agent),
            other => Err(format!("unknown role {other:?}: expected admin, supervisor or agent")),
        }
    }
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    /// Domains whose pages may embed the widget; empty means any.
    pub allowed_domains: Vec<String>,
    /// Site settings as JSON (business hours, max queue, auto-accept, offline form, …).
    pub settings: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub site_id: SiteId,
    /// Unique across all sites: `agent.login` takes only an email and a password.
    pub email: String,
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub max_chats: i32,
    pub priority: i32,
    pub created_at: i64,
}

/// A key the server keeps durably (JWT signing keys, the per-site message MAC key).
/// `site_id` is `None` for installation-wide secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef<'a> {
    pub site_id: Option<SiteId>,
    pub name: &'a str,
}

// agents, departments, sessions
/// A department (team / skill group) of a site, with its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub id: crate::id::DepartmentId,
    pub site_id: SiteId,
    pub name: String,
    /// Routing strategy (`round_robin`, `least_busy`); validated by the modules, not here,
    /// since the set grows with the dispatcher.
    pub strategy: String,
    /// Member agents, ascending by id.
    pub members: Vec<AgentId>,
    pub created_at: i64,
}

/// Changes to an agent; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentUpdate {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub max_chats: Option<i32>,
    pub priority: Option<i32>,
    /// Argon2id PHC string of a new password.
    pub password_hash: Option<String>,
    /// Replaces the agent's departments; ids that are not departments of its site are ignored.
    pub departments: Option<Vec<crate::id::DepartmentId>>,
}

/// Changes to a department; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartmentUpdate {
    pub name: Option<String>,
    pub strategy: Option<String>,
    /// Replaces the members; ids that are not agents of the department's site are ignored.
    pub members: Option<Vec<AgentId>>,
}

/// A refresh token of an agent session as stored: its SHA-256 (hex), never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub token_hash: String,
    pub session_id: String,
    pub site_id: SiteId,
    pub agent_id: AgentId,
    /// Unix milliseconds.
    pub expires_at: i64,
    /// Already exchanged for a new one (rotation); presenting it again is reuse.
    pub used: bool,
    /// Its session was logged out or revoked.
    pub revoked: bool,
    pub created_at: i64,
}
// end agents, departments, sessions

// chats
/// Who belongs to a chat, written durably when the chat is created and when an agent
/// accepts or joins it (SPEC §6), so a node that lost its runtime state still knows who
/// may rebuild the chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMembership {
    pub site_id: SiteId,
    pub visitor_id: VisitorId,
    /// Agents that accepted or joined the chat, in the order they were added.
    pub agent_ids: Vec<AgentId>,
}
// end chats

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;
    async fn ping(&self) -> BackendResult<()>;
    /// Applies pending migrations; returns the versions applied now (empty when current).
    async fn migrate(&self) -> BackendResult<Vec<i64>>;
    /// The versions applied so far, ascending.
    async fn applied_migrations(&self) -> BackendResult<Vec<i64>>;

    async fn insert_site(&self, site: &Site) -> BackendResult<()>;
    async fn site(&self, id: SiteId) -> BackendResult<Option<Site>>;
    async fn site_count(&self) -> BackendResult<u64>;

    /// Fails with `Conflict` when the email is taken (case-insensitively).
    async fn insert_agent(&self, agent: &Agent) -> BackendResult<()>;
    /// Scoped to one site: another site's agent reads as `None`.
    async fn agent(&self, site_id: SiteId, id: AgentId) -> BackendResult<Option<Agent>>;
    /// Case-insensitive.
    async fn agent_by_email(&self, email: &str) -> BackendResult<Option<Agent>>;
    async fn agents(&self, site_id: SiteId) -> BackendResult<Vec<Agent>>;

    /// The stored secret, or `candidate` stored now if there is none yet. Concurrent callers
    /// (on any node) all get the same value.
    async fn secret_or_insert(&self, secret: SecretRef<'_>, candidate: &[u8]) -> BackendResult<Vec<u8>>;

    // agents, departments, sessions
    /// Applies `update` to an agent of `site_id`; `None` when the site has no such agent.
    /// Fails with `Conflict` when a role change would leave the site without an admin.
    async fn update_agent(&self, site_id: SiteId, id: AgentId, update: &AgentUpdate) -> BackendResult<Option<Agent>>;
    /// Deletes an agent of `site_id` with its memberships and refresh tokens; false when the
    /// site has no such agent. Fails with `Conflict` for the site's last admin.
    async fn delete_agent(&self, site_id: SiteId, id: AgentId) -> BackendResult<bool>;
    /// The agent's preferences (a JSON object); `None` when the site has no such agent.
    async fn agent_preferences(
        &self,
        site_id: SiteId,
        id: AgentId,
    ) -> BackendResult<Option<serde_json::Map<String, serde_json::Value>>>;
    /// Sets one preference and answers all of them after the change; `None` when the site
    /// has no such agent.
    async fn set_agent_preference(
        &self,
        site_id: SiteId,
        id: AgentId,
        key: &str,
        value: &serde_json::Value,
    ) -> BackendResult<Option<serde_json::Map<String, serde_json::Value>>>;
    /// The site's departments with their members, ascending by id.
    async fn departments(&self, site_id: SiteId) -> BackendResult<Vec<Department>>;
    /// Scoped to one site: another site's department reads as `None`.
    async fn department(&self, site_id: SiteId, id: crate::id::DepartmentId) -> BackendResult<Option<Department>>;
    /// Members that are not agents of the department's site are ignored. Fails with
    /// `Conflict` when the site has a department of that name already.
    async fn insert_department(&self, department: &Department) -> BackendResult<()>;
    async fn update_department(
        &self,
        site_id: SiteId,
        id: crate::id::DepartmentId,
        update: &DepartmentUpdate,
    ) -> BackendResult<Option<Department>>;
    /// False when the site has no such department.
    async fn delete_department(&self, site_id: SiteId, id: crate::id::DepartmentId) -> BackendResult<bool>;
    /// Stores a refresh token (and drops the agent's expired ones).
    async fn insert_refresh_token(&self, token: &RefreshToken) -> BackendResult<()>;
    /// Looked up by its hash: the token itself is the credential, so no site is known yet.
    async fn refresh_token(&self, token_hash: &str) -> BackendResult<Option<RefreshToken>>;
    /// Marks an unused, unrevoked token used. True only for the one caller that did, so two
    /// concurrent refreshes with one token cannot both rotate it.
    async fn use_refresh_token(&self, token_hash: &str) -> BackendResult<bool>;
    /// Revokes every refresh token of a session of `site_id`; how many were still live.
    async fn revoke_session(&self, site_id: SiteId, session_id: &str) -> BackendResult<u64>;
    /// Revokes every refresh token of an agent; answers the sessions that had a live one.
    async fn revoke_agent_sessions(&self, site_id: SiteId, agent_id: AgentId) -> BackendResult<Vec<String>>;
    // end agents, departments, sessions

    // chats
    /// Records a new chat and its visitor; inserting the same chat again is a no-op.
    async fn insert_chat(
        &self,
        chat_id: ChatId,
        site_id: SiteId,
        visitor_id: VisitorId,
        created_at: i64,
    ) -> BackendResult<()>;
    /// Adds an agent to a chat's members (idempotent). An unknown chat is an error.
    async fn add_chat_member(&self, chat_id: ChatId, agent_id: AgentId) -> BackendResult<()>;
    /// The chat's site, visitor and agents, or `None` when no such chat was ever created.
    async fn chat_membership(&self, chat_id: ChatId) -> BackendResult<Option<ChatMembership>>;
    // end chats

    // history
    /// Applies a batch of write-behind jobs in one transaction, idempotently: applying the
    /// same batch again changes nothing, and an older chat or visitor snapshot never
    /// overwrites a newer one. On error nothing of the batch is applied.
    async fn apply_history(&self, batch: &[crate::history::HistoryWrite]) -> BackendResult<()>;
    /// One page of a site's chat history.
    async fn list_chats(&self, query: &crate::history::ChatQuery) -> BackendResult<crate::history::ChatPage>;
    /// A chat of `site_id` with its messages in `seq` order; `None` for another site's chat.
    async fn chat_transcript(
        &self,
        site_id: SiteId,
        chat_id: ChatId,
    ) -> BackendResult<Option<crate::history::Transcript>>;
    // end history

    // reports, retention, privacy
    /// Chats created in the range per bucket of `interval` (and group), ascending by bucket.
    async fn report_chats(
        &self,
        query: &crate::reports::ReportQuery,
        interval: crate::reports::Interval,
    ) -> BackendResult<Vec<crate::reports::ChatBucket>>;
    /// Count, sum and nearest-rank 90th percentile of `span` over the chats created in the
    /// range that have both ends of it, per group.
    async fn report_spans(
        &self,
        query: &crate::reports::ReportQuery,
        span: crate::reports::Span,
    ) -> BackendResult<Vec<crate::reports::SpanStats>>;
    /// Ratings of the chats created in the range, per group.
    async fn report_ratings(
        &self,
        query: &crate::reports::ReportQuery,
    ) -> BackendResult<Vec<crate::reports::RatingStats>>;
    /// Online and away time per agent within `[from, to)`, from the agent status history: a
    /// status lasts until the agent's next change (or `to`); time after `now` never counts.
    async fn report_agent_time(
        &self,
        site_id: SiteId,
        from: i64,
        to: i64,
        now: i64,
    ) -> BackendResult<Vec<crate::reports::AgentTime>>;
    /// Every site, ascending by id (the retention timer visits them).
    async fn sites(&self) -> BackendResult<Vec<Site>>;
    /// Merges `patch` into the site's settings object (a `null` value removes the key) and
    /// answers the site after the change; `None` when there is no such site.
    async fn update_site_settings(
        &self,
        site_id: SiteId,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> BackendResult<Option<Site>>;
    /// Deletes or anonymises the site's chats whose `ended_at` (or `created_at`, when never
    /// ended) is before `before`, and nothing else; anonymising a chat twice counts it once.
    async fn purge_history(
        &self,
        site_id: SiteId,
        before: i64,
        mode: crate::reports::RetentionMode,
    ) -> BackendResult<crate::reports::Purged>;
    /// Deletes a visitor of the site with its chats, their members and messages (and so
    /// their search entries). Another site's visitor is untouched.
    async fn erase_visitor(&self, site_id: SiteId, visitor_id: VisitorId) -> BackendResult<crate::reports::Erased>;
    async fn insert_audit(&self, entry: &crate::reports::AuditEntry) -> BackendResult<()>;
    /// The site's audit entries, newest first, after the entry `after` (keyset paging).
    async fn audit_log(
        &self,
        site_id: SiteId,
        after: Option<crate::id::Id>,
        limit: u32,
    ) -> BackendResult<Vec<crate::reports::AuditEntry>>;
    // end reports, retention, privacy

    // offline messages
    /// One page of a site's offline messages, newest first. They are written through
    /// [`Store::apply_history`] ([`crate::history::HistoryWrite::OfflineMessage`]).
    async fn list_offline_messages(
        &self,
        query: &crate::history::OfflineQuery,
    ) -> BackendResult<crate::history::OfflinePage>;
    /// An offline message of `site_id`; `None` for another site's.
    async fn offline_message(
        &self,
        site_id: SiteId,
        id: crate::id::Id,
    ) -> BackendResult<Option<crate::history::OfflineMessage>>;
    /// Marks an offline message of `site_id` handled by `by` at `at` (`Some`), or not
    /// handled (`None`), and answers it after the change; `None` when the site has no such
    /// message. Marking it handled again keeps the first mark.
    async fn set_offline_message_handled(
        &self,
        site_id: SiteId,
        id: crate::id::Id,
        by: Option<(AgentId, i64)>,
    ) -> BackendResult<Option<crate::history::OfflineMessage>>;
    /// Deletes every offline message a visitor of the site left; how many.
    async fn erase_visitor_offline_messages(&self, site_id: SiteId, visitor_id: VisitorId) -> BackendResult<u64>;
    /// Deletes or anonymises (name, e-mail, page and text removed) the site's offline
    /// messages created before `before`; how many changed (anonymising twice counts once).
    async fn purge_offline_messages(
        &self,
        site_id: SiteId,
        before: i64,
        mode: crate::reports::RetentionMode,
    ) -> BackendResult<u64>;
    // end offline messages
}
