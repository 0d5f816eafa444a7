-- Durable chat history (SPEC §2, §5.3), written behind through the bus queue
-- `storage.write`: chats gain their history columns, messages and visitors get tables, and
-- FTS5 indexes message content and the visitor's name and email (SQLite dialect).
--
-- The FTS tables are external-content tables kept in step by triggers, so they change in
-- the same transaction as the rows they index.

ALTER TABLE chats ADD COLUMN department_id INTEGER;
ALTER TABLE chats ADD COLUMN status TEXT;
ALTER TABLE chats ADD COLUMN agent_id INTEGER;
ALTER TABLE chats ADD COLUMN started_at INTEGER;
ALTER TABLE chats ADD COLUMN ended_at INTEGER;
ALTER TABLE chats ADD COLUMN first_response_at INTEGER;
ALTER TABLE chats ADD COLUMN rating INTEGER;
ALTER TABLE chats ADD COLUMN comment TEXT;
ALTER TABLE chats ADD COLUMN wrap_up_notes TEXT;
-- A JSON array of strings.
ALTER TABLE chats ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE chats ADD COLUMN visitor_name TEXT NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN visitor_email TEXT NOT NULL DEFAULT '';
-- The `version` of the last snapshot applied (last writer wins); 0 before the first.
ALTER TABLE chats ADD COLUMN history_version INTEGER NOT NULL DEFAULT 0;

CREATE INDEX chats_site_created_idx ON chats (site_id, created_at DESC, id DESC);
CREATE INDEX chats_site_agent_idx ON chats (site_id, agent_id);
CREATE INDEX chats_site_status_idx ON chats (site_id, status);
CREATE INDEX chats_site_department_idx ON chats (site_id, department_id);
CREATE INDEX chats_site_visitor_idx ON chats (site_id, visitor_id);
CREATE INDEX chat_members_agent_idx ON chat_members (agent_id, chat_id);

-- Keyed by the message id: a rebuild may renumber `seq`, so (chat_id, seq) is not unique
-- across time.
CREATE TABLE messages (
    id                INTEGER PRIMARY KEY,
    chat_id           INTEGER NOT NULL,
    site_id           INTEGER NOT NULL,
    seq               INTEGER NOT NULL,
    data_offset       INTEGER NOT NULL,
    message_type      INTEGER NOT NULL,
    sender_id         INTEGER NOT NULL,
    sender_name       TEXT NOT NULL,
    content           TEXT NOT NULL,
    client_message_id TEXT,
    send_time         TEXT NOT NULL,
    send_time_ms      INTEGER NOT NULL
) STRICT;

CREATE INDEX messages_chat_seq_idx ON messages (chat_id, seq, id);

CREATE TABLE visitors (
    id               INTEGER PRIMARY KEY,
    site_id          INTEGER NOT NULL,
    name             TEXT NOT NULL DEFAULT '',
    email            TEXT NOT NULL DEFAULT '',
    custom_variables TEXT NOT NULL DEFAULT '{}',
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    visit_count      INTEGER NOT NULL DEFAULT 0,
    page_views       INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX visitors_site_last_seen_idx ON visitors (site_id, last_seen);

CREATE VIRTUAL TABLE messages_fts USING fts5 (content, content = 'messages', content_rowid = 'id');

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE VIRTUAL TABLE chats_fts USING fts5 (visitor_name, visitor_email, content = 'chats', content_rowid = 'id');

CREATE TRIGGER chats_fts_insert AFTER INSERT ON chats BEGIN
    INSERT INTO chats_fts (rowid, visitor_name, visitor_email) VALUES (new.id, new.visitor_name, new.visitor_email);
END;
CREATE TRIGGER chats_fts_delete AFTER DELETE ON chats BEGIN
    INSERT INTO chats_fts (chats_fts, rowid, visitor_name, visitor_email)
        VALUES ('delete', old.id, old.visitor_name, old.visitor_email);
END;
CREATE TRIGGER chats_fts_update AFTER UPDATE OF visitor_name, visitor_email ON chats
    WHEN old.visitor_name IS NOT new.visitor_name OR old.visitor_email IS NOT new.visitor_email
BEGIN
    INSERT INTO chats_fts (chats_fts, rowid, visitor_name, visitor_email)
        VALUES ('delete', old.id, old.visitor_name, old.visitor_email);
    INSERT INTO chats_fts (rowid, visitor_name, visitor_email) VALUES (new.id, new.visitor_name, new.visitor_email);
END;

-- Chats that existed before this migration.
INSERT INTO chats_fts (chats_fts) VALUES ('rebuild');
