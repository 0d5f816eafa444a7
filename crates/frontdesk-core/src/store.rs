//! The durable store port (SPEC §2, §4): sites, agents, departments, secrets now;
//! transcripts, search and reports as they arrive. SQLite (embedded) and PostgreSQL
//! (cluster) implement it in `frontdesk-store`, with versioned migrations per dialect, and
//! one contract suite runs against both.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::BackendResult;
use crate::id::{AgentId, SiteId};

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
}
