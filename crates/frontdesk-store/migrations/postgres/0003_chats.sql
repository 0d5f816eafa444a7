-- Durable chat membership (SPEC §6): who belongs to a chat is written when the chat is
-- created and when an agent accepts or joins it, so a node that lost its runtime state
-- can still tell who may rebuild the chat (PostgreSQL dialect).

CREATE TABLE chats (
    id         BIGINT PRIMARY KEY,
    site_id    BIGINT NOT NULL REFERENCES sites (id),
    visitor_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX chats_site_id_idx ON chats (site_id);

CREATE TABLE chat_members (
    chat_id  BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    agent_id BIGINT NOT NULL,
    -- Unix milliseconds; orders the members as they were added.
    added_at BIGINT NOT NULL,
    PRIMARY KEY (chat_id, agent_id)
);
