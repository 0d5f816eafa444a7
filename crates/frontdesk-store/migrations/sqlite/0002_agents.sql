-- Agent sessions (issue 4, SPEC §5.3): refresh tokens, stored as their SHA-256 only, with
-- the session they belong to, so a logout revokes one session and the reuse of a rotated
-- token revokes its whole session (SQLite dialect). Departments and their members are in
-- 0001 already.

CREATE TABLE refresh_tokens (
    -- Hex SHA-256 of the token; the token itself is never stored.
    token_hash TEXT    PRIMARY KEY,
    session_id TEXT    NOT NULL,
    site_id    INTEGER NOT NULL REFERENCES sites (id),
    agent_id   INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    -- Unix milliseconds.
    expires_at INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    revoked    INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_agent_id_idx ON refresh_tokens (agent_id);
