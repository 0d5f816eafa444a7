-- Agent sessions (issue 4, SPEC §5.3): refresh tokens, stored as their SHA-256 only, with
-- the session they belong to, so a logout revokes one session and the reuse of a rotated
-- token revokes its whole session (PostgreSQL dialect). Departments and their members are
-- in 0001 already.

CREATE TABLE refresh_tokens (
    -- Hex SHA-256 of the token; the token itself is never stored.
    token_hash TEXT    PRIMARY KEY,
    session_id TEXT    NOT NULL,
    site_id    BIGINT  NOT NULL REFERENCES sites (id),
    agent_id   BIGINT  NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    -- Unix milliseconds.
    expires_at BIGINT  NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT  NOT NULL
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_agent_id_idx ON refresh_tokens (agent_id);
