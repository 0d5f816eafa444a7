//! Reports, retention and privacy (issue 5): the query and answer shapes of the
//! [`Store`](crate::store::Store) methods behind `reports.*`, the retention sweep,
//! `visitors.erase` and the audit log. Times are Unix milliseconds; a report covers the
//! chats *created* in `[from, to)` of one site.

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, Id, SiteId};

/// What a report groups its rows by; `None` in [`ReportQuery::by`] is one row for the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The chat's owner (`chats.agent_id`).
    Agent,
    Department,
}

/// The scope of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportQuery {
    pub site_id: SiteId,
    pub from: i64,
    pub to: i64,
    pub by: Option<GroupBy>,
}

/// Chats per bucket of this width (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    pub fn millis(self) -> i64 {
        match self {
            Interval::Hour => 3_600_000,
            Interval::Day => 86_400_000,
        }
    }
}

/// One bucket of the chat-volume report. `group` is the agent or department (`None` when
/// not grouped, or for chats without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatBucket {
    pub start: i64,
    pub group: Option<Id>,
    pub total: i64,
    /// Ended without ever being accepted.
    pub missed: i64,
}

/// Which span of a chat's life a timing report measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// `started_at − created_at`, over accepted chats.
    Wait,
    /// `first_response_at − started_at`.
    FirstResponse,
    /// `ended_at − started_at`.
    Duration,
}

/// Count, sum and 90th percentile of one span, per group. The percentile is the
/// nearest-rank one: the smallest value with at least 90 % of the values at or below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanStats {
    pub group: Option<Id>,
    pub count: i64,
    pub sum_ms: i64,
    pub p90_ms: Option<i64>,
}

impl SpanStats {
    pub fn average_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms as f64 / self.count as f64)
    }
}

/// Ratings 1..=5 per group: `counts[r - 1]` chats rated `r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingStats {
    pub group: Option<Id>,
    pub counts: [i64; 5],
    /// The sum of the ratings.
    pub sum: i64,
}

impl RatingStats {
    pub fn count(&self) -> i64 {
        self.counts.iter().sum()
    }

    pub fn average(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum as f64 / n as f64)
    }
}

/// Time an agent spent online and away within a report's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentTime {
    pub agent_id: AgentId,
    pub online_ms: i64,
    pub away_ms: i64,
}

/// A change of an agent's status (online, away, offline), written behind through the
/// history queue as [`HistoryWrite::AgentStatus`](crate::history::HistoryWrite::AgentStatus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatusChange {
    pub site_id: SiteId,
    pub agent_id: AgentId,
    pub status: String,
    pub at: i64,
}

/// What retention does with a transcript past its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionMode {
    /// The chat, its members and messages are deleted.
    Delete,
    /// Message content becomes `[removed]`; the visitor's name, email and comment are cleared.
    Anonymise,
}

/// What a retention sweep touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub chats: u64,
    pub messages: u64,
}

/// What a visitor erase deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub visitors: u64,
    pub chats: u64,
    pub messages: u64,
}

/// One entry of a site's audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: Id,
    pub site_id: SiteId,
    /// `None` for the server itself (the retention timer).
    pub actor_agent_id: Option<AgentId>,
    /// The event, e.g. `agents.create`.
    pub action: String,
    /// The id of what was acted on, or empty.
    pub target: String,
    pub details: serde_json::Value,
    pub at: i64,
}
