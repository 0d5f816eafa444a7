-- Full-text search per chat (issue 5, SQLite dialect): search ranks chats, not messages.
--
-- A chat's message text is kept in "parts": consecutive messages concatenated (in seq
-- order) until a part holds about 8,192 characters, then a new part starts. A query ranks
-- parts (bm25) and keeps each chat's best, so a word in a quarter of a million messages
-- ranks some ten thousand parts instead of 250,000 messages. Parts are bounded so that
-- appending a message rewrites at most one part of bounded size, never a chat's whole text.
--
-- `history_apply` (src/sqlite/history.rs) appends the messages a batch inserts for the
-- first time (a replay appends nothing). The triggers below take a chat's text out of search
-- as soon as one of its messages is deleted or its text changes (retention, GDPR erase): a
-- removed or anonymised message is never found again through the old text. The FTS5 index
-- is an external-content table over `chat_text`, kept in step by triggers in the same
-- transaction.
--
-- The per-message index of migration 0004 (`messages_fts`) is dropped: nothing reads it
-- any more, and an embedded store has one process, so no older node still searches it.

CREATE TABLE chat_text (
    id      INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL,
    site_id INTEGER NOT NULL,
    -- 0, 1, 2, … in the order the chat's text arrived; the highest one takes appends.
    part    INTEGER NOT NULL,
    -- Characters in `body` (each message counts its length plus one separator).
    chars   INTEGER NOT NULL,
    body    TEXT NOT NULL
) STRICT;

CREATE UNIQUE INDEX chat_text_chat_part_idx ON chat_text (chat_id, site_id, part);

CREATE VIRTUAL TABLE chat_text_fts USING fts5 (body, content = 'chat_text', content_rowid = 'id');

-- Every chat's messages so far, cut into parts the way `history_apply` cuts them.
INSERT INTO chat_text (chat_id, site_id, part, chars, body)
SELECT chat_id, site_id, part, SUM(length(content) + 1), group_concat(content, ' ' ORDER BY seq, id)
FROM (
    SELECT chat_id, site_id, seq, id, content,
        (SUM(length(content) + 1) OVER (PARTITION BY chat_id, site_id ORDER BY seq, id ROWS UNBOUNDED PRECEDING)
            - length(content) - 1) / 8192 AS part
    FROM messages
)
GROUP BY chat_id, site_id, part;

INSERT INTO chat_text_fts (chat_text_fts) VALUES ('rebuild');

CREATE TRIGGER chat_text_fts_insert AFTER INSERT ON chat_text BEGIN
    INSERT INTO chat_text_fts (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER chat_text_fts_delete AFTER DELETE ON chat_text BEGIN
    INSERT INTO chat_text_fts (chat_text_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER chat_text_fts_update AFTER UPDATE OF body ON chat_text BEGIN
    INSERT INTO chat_text_fts (chat_text_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO chat_text_fts (rowid, body) VALUES (new.id, new.body);
END;

CREATE TRIGGER messages_chat_text_delete AFTER DELETE ON messages BEGIN
    DELETE FROM chat_text WHERE chat_id = old.chat_id AND site_id = old.site_id;
END;
CREATE TRIGGER messages_chat_text_update AFTER UPDATE OF content ON messages
    WHEN old.content IS NOT new.content
BEGIN
    DELETE FROM chat_text WHERE chat_id = old.chat_id AND site_id = old.site_id;
END;

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
DROP TABLE messages_fts;
