-- Sites, agents, departments and durable secrets (PostgreSQL dialect).
--
-- Append-only: a released migration is never edited (sqlx refuses a changed checksum);
-- change the schema in a new file with the next number, in BOTH dialect folders, since a
-- test fails when migrations/sqlite and migrations/postgres declare different versions.
--
-- Ids are 64-bit snowflakes stored as BIGINT (they fit until 2093). Times are Unix
-- milliseconds. JSON lives in JSONB, so a bad write fails here and later reports can query
-- into settings.

CREATE TABLE sites (
    id              BIGINT PRIMARY KEY,
    name            TEXT   NOT NULL,
    allowed_domains JSONB  NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(allowed_domains) = 'array'),
    settings        JSONB  NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL
);

CREATE TABLE agents (
    id            BIGINT  PRIMARY KEY,
    site_id       BIGINT  NOT NULL REFERENCES sites (id),
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'supervisor', 'agent')),
    status        TEXT    NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'away', 'offline')),
    max_chats     INTEGER NOT NULL,
    priority      INTEGER NOT NULL DEFAULT 0,
    preferences   JSONB   NOT NULL DEFAULT '{}',
    created_at    BIGINT  NOT NULL
);

-- agent.login takes only an email, so one address must name one agent across all sites,
-- whatever its case. Lookups use lower(email) too, so they hit this index.
CREATE UNIQUE INDEX agents_email_key ON agents (lower(email));
CREATE INDEX agents_site_id_idx ON agents (site_id);

CREATE TABLE departments (
    id         BIGINT PRIMARY KEY,
    site_id    BIGINT NOT NULL REFERENCES sites (id),
    name       TEXT   NOT NULL,
    -- No CHECK, to match SQLite (which cannot alter one in place); the dispatcher validates.
    strategy   TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- Leads with site_id, so it also serves "departments of a site".
CREATE UNIQUE INDEX departments_site_id_name_key ON departments (site_id, name);

CREATE TABLE department_members (
    department_id BIGINT NOT NULL REFERENCES departments (id) ON DELETE CASCADE,
    agent_id      BIGINT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    PRIMARY KEY (department_id, agent_id)
);

CREATE INDEX department_members_agent_id_idx ON department_members (agent_id);

CREATE TABLE secrets (
    -- 0 means installation-wide. Not NULL and not a foreign key, so that the primary key
    -- below is one rule for every secret on both dialects (NULLs never conflict).
    site_id    BIGINT NOT NULL DEFAULT 0,
    name       TEXT   NOT NULL,
    value      BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (site_id, name)
);
