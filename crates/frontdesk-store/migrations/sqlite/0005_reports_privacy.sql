-- Reports, retention and privacy (issue 5, SQLite dialect): agent status history for the
-- online/away report, the audit log, a marker for anonymised chats, and the indexes the
-- reports and the retention sweep read by.

-- One row per status change of an agent; (agent_id, at, status) makes a replayed
-- write-behind job a no-op.
CREATE TABLE agent_status_history (
    site_id  INTEGER NOT NULL,
    agent_id INTEGER NOT NULL,
    status   TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (agent_id, at, status)
) STRICT;

CREATE INDEX agent_status_history_site_at_idx ON agent_status_history (site_id, at);

CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY,
    site_id        INTEGER NOT NULL,
    actor_agent_id INTEGER,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL DEFAULT '',
    details        TEXT NOT NULL DEFAULT '{}',
    at             INTEGER NOT NULL
) STRICT;

CREATE INDEX audit_log_site_id_idx ON audit_log (site_id, id DESC);

-- When retention anonymised the chat (Unix ms); NULL while it is intact.
ALTER TABLE chats ADD COLUMN anonymised_at INTEGER;

-- Reports filter a site's chats by creation time and aggregate a few columns: covering
-- indexes let them read the index alone.
CREATE INDEX chats_site_created_report_idx
    ON chats (site_id, created_at, agent_id, department_id, status, started_at, ended_at, first_response_at, rating);
-- The retention sweep: chats whose end (or creation, when never ended) is older than N days.
CREATE INDEX chats_site_retention_idx ON chats (site_id, COALESCE(ended_at, created_at));
