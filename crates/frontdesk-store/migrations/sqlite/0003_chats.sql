-- Durable chat membership (SPEC §6): who belongs to a chat is written when the chat is
-- created and when an agent accepts or joins it, so a node that lost its runtime state
-- can still tell who may rebuild the chat (SQLite dialect).

CREATE TABLE chats (
    id         INTEGER PRIMARY KEY,
    site_id    INTEGER NOT NULL REFERENCES sites (id),
    visitor_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX chats_site_id_idx ON chats (site_id);

CREATE TABLE chat_members (
    chat_id  INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    agent_id INTEGER NOT NULL,
    -- Unix milliseconds; orders the members as they were added.
    added_at INTEGER NOT NULL,
    PRIMARY KEY (chat_id, agent_id)
) STRICT;
