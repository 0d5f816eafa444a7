-- Versioned write-behind of messages (issue #8, SQLite dialect): the durable transcript
-- ends up equal to the chat a rebuild merged (SPEC §6), whatever order the jobs arrive in.
-- The rules are in `frontdesk_core::history`; `history_apply` (src/sqlite/history.rs)
-- applies them.
--
-- * `messages.rev`: the rev of the record that last set the row's seq (0 before this).
-- * `chats.merged_rev`: the rev of the last rebuild applied to the chat; ordinary records
--   older than it are dropped, rebuild records older than it change nothing.
-- * One message per (chat, clientMessageId), as the rebuild's union keeps it: the copies
--   stored before this migration are removed first, keeping the smallest id of each.
--   Removing a message takes its chat's text out of search (migration 0007's trigger), so
--   those chats' text is written again from the messages that stay, cut as 0007 cuts it.

ALTER TABLE messages ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chats ADD COLUMN merged_rev INTEGER NOT NULL DEFAULT 0;

CREATE TEMP TABLE merged_away AS
SELECT id, chat_id, site_id FROM (
    SELECT id, chat_id, site_id,
        ROW_NUMBER() OVER (PARTITION BY chat_id, client_message_id ORDER BY id) AS n
    FROM messages
    WHERE client_message_id IS NOT NULL
)
WHERE n > 1;

DELETE FROM messages WHERE id IN (SELECT id FROM merged_away);

DELETE FROM chat_text WHERE (chat_id, site_id) IN (SELECT chat_id, site_id FROM merged_away);

INSERT INTO chat_text (chat_id, site_id, part, chars, body)
SELECT chat_id, site_id, part, SUM(length(content) + 1), group_concat(content, ' ' ORDER BY seq, id)
FROM (
    SELECT chat_id, site_id, seq, id, content,
        (SUM(length(content) + 1) OVER (PARTITION BY chat_id, site_id ORDER BY seq, id ROWS UNBOUNDED PRECEDING)
            - length(content) - 1) / 8192 AS part
    FROM messages
    WHERE (chat_id, site_id) IN (SELECT chat_id, site_id FROM merged_away)
)
GROUP BY chat_id, site_id, part;

DROP TABLE merged_away;

CREATE UNIQUE INDEX messages_chat_client_message_idx ON messages (chat_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
