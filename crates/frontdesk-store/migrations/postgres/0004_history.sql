-- Durable chat history (SPEC §2, §5.3), written behind through the bus queue
-- `storage.write`: chats gain their history columns, messages and visitors get tables, and
-- generated `tsvector` columns with GIN indexes serve full-text search (PostgreSQL
-- dialect). Index and query both use the 'simple' configuration, or the index is skipped.

ALTER TABLE chats
    ADD COLUMN department_id BIGINT,
    ADD COLUMN status TEXT,
    ADD COLUMN agent_id BIGINT,
    ADD COLUMN started_at BIGINT,
    ADD COLUMN ended_at BIGINT,
    ADD COLUMN first_response_at BIGINT,
    ADD COLUMN rating BIGINT,
    ADD COLUMN comment TEXT,
    ADD COLUMN wrap_up_notes TEXT,
    ADD COLUMN tags JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN visitor_name TEXT NOT NULL DEFAULT '',
    ADD COLUMN visitor_email TEXT NOT NULL DEFAULT '',
    -- The `version` of the last snapshot applied (last writer wins); 0 before the first.
    ADD COLUMN history_version BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN visitor_tsv tsvector
        GENERATED ALWAYS AS (to_tsvector('simple', visitor_name || ' ' || visitor_email)) STORED;

CREATE INDEX chats_site_created_idx ON chats (site_id, created_at DESC, id DESC);
CREATE INDEX chats_site_agent_idx ON chats (site_id, agent_id);
CREATE INDEX chats_site_status_idx ON chats (site_id, status);
CREATE INDEX chats_site_department_idx ON chats (site_id, department_id);
CREATE INDEX chats_site_visitor_idx ON chats (site_id, visitor_id);
CREATE INDEX chats_tags_idx ON chats USING GIN (tags);
CREATE INDEX chats_visitor_tsv_idx ON chats USING GIN (visitor_tsv);
CREATE INDEX chat_members_agent_idx ON chat_members (agent_id, chat_id);

-- Keyed by the message id: a rebuild may renumber `seq`, so (chat_id, seq) is not unique
-- across time.
CREATE TABLE messages (
    id                BIGINT PRIMARY KEY,
    chat_id           BIGINT NOT NULL,
    site_id           BIGINT NOT NULL,
    seq               BIGINT NOT NULL,
    data_offset       BIGINT NOT NULL,
    message_type      BIGINT NOT NULL,
    sender_id         BIGINT NOT NULL,
    sender_name       TEXT NOT NULL,
    content           TEXT NOT NULL,
    client_message_id TEXT,
    send_time         TEXT NOT NULL,
    send_time_ms      BIGINT NOT NULL,
    content_tsv       tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED
);

CREATE INDEX messages_chat_seq_idx ON messages (chat_id, seq, id);
CREATE INDEX messages_content_tsv_idx ON messages USING GIN (content_tsv);

CREATE TABLE visitors (
    id               BIGINT PRIMARY KEY,
    site_id          BIGINT NOT NULL,
    name             TEXT NOT NULL DEFAULT '',
    email            TEXT NOT NULL DEFAULT '',
    custom_variables JSONB NOT NULL DEFAULT '{}',
    first_seen       BIGINT NOT NULL,
    last_seen        BIGINT NOT NULL,
    visit_count      BIGINT NOT NULL DEFAULT 0,
    page_views       BIGINT NOT NULL DEFAULT 0,
    version          BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX visitors_site_last_seen_idx ON visitors (site_id, last_seen);
