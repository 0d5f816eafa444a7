-- Sites, agents, departments and durable secrets (SQLite dialect).
--
-- Append-only: a released migration is never edited (sqlx refuses a changed checksum);
-- change the schema in a new file with the next number, in BOTH dialect folders, since a
-- test fails when migrations/sqlite and migrations/postgres declare different versions.
--
-- Ids are 64-bit snowflakes stored as signed INTEGER (they fit until 2093). Times are Unix
-- milliseconds. JSON lives in TEXT checked with json_valid, so a bad write fails here
-- rather than at the next read. STRICT makes SQLite refuse values of the wrong type, as
-- PostgreSQL would.

CREATE TABLE sites (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    allowed_domains TEXT    NOT NULL DEFAULT '[]'
                            CHECK (json_valid(allowed_domains) AND json_type(allowed_domains) = 'array'),
    settings        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
    created_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE agents (
    id            INTEGER PRIMARY KEY,
    site_id       INTEGER NOT NULL REFERENCES sites (id),
    -- NOCASE on the column makes every comparison (and the unique index) case-insensitive:
    -- agent.login takes only an email, so one address must name one agent everywhere.
    email         TEXT    NOT NULL COLLATE NOCASE,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'supervisor', 'agent')),
    status        TEXT    NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'away', 'offline')),
    max_chats     INTEGER NOT NULL,
    priority      INTEGER NOT NULL DEFAULT 0,
    preferences   TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(preferences)),
    created_at    INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX agents_email_key ON agents (email);
CREATE INDEX agents_site_id_idx ON agents (site_id);

CREATE TABLE departments (
    id         INTEGER PRIMARY KEY,
    site_id    INTEGER NOT NULL REFERENCES sites (id),
    name       TEXT    NOT NULL,
    -- No CHECK: the set of routing strategies grows with the dispatcher, and SQLite cannot
    -- alter a CHECK without rebuilding the table. The dispatcher validates it.
    strategy   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- Leads with site_id, so it also serves "departments of a site".
CREATE UNIQUE INDEX departments_site_id_name_key ON departments (site_id, name);

CREATE TABLE department_members (
    department_id INTEGER NOT NULL REFERENCES departments (id) ON DELETE CASCADE,
    agent_id      INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    PRIMARY KEY (department_id, agent_id)
) STRICT;

CREATE INDEX department_members_agent_id_idx ON department_members (agent_id);

CREATE TABLE secrets (
    -- 0 means installation-wide. Not NULL and not a foreign key, so that the primary key
    -- below is one rule for every secret on both dialects (NULLs never conflict).
    site_id    INTEGER NOT NULL DEFAULT 0,
    name       TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, name)
) STRICT;
