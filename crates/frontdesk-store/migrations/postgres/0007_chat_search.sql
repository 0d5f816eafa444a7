-- Full-text search per chat (issue 5, PostgreSQL dialect): search ranks chats, not messages.
--
-- A chat's message text is kept in "parts": the `tsvector` of consecutive messages (in seq
-- order) until a part covers about 8,192 characters, then a new part starts. A query ranks
-- parts (`ts_rank`) and keeps each chat's best, so a word in a quarter of a million messages
-- ranks some ten thousand parts instead of 250,000 messages. Parts are bounded so that
-- appending a message rewrites at most one part of bounded size, never a chat's whole text,
-- and so that a part's `tsvector` stays within one heap page: `STORAGE MAIN` keeps it there
-- (compressed) instead of in TOAST, which makes ranking ~4x cheaper.
--
-- Triggers keep parts in step with `messages`, statement by statement, so every writer
-- (including a node of an older release during a rolling upgrade) maintains them:
-- * an INSERT appends the rows it inserted (with ON CONFLICT DO UPDATE, PostgreSQL's
--   inserted-rows transition table holds only the rows that were new, so a replayed batch
--   appends nothing);
-- * a DELETE, or an UPDATE that changes a message's text (retention, GDPR erase), takes the
--   chat's text out of search: a removed or anonymised message is never found again
--   through the old text.
--
-- `messages.content_tsv` and its index stay: releases before this one search them. A later
-- migration drops them once no released version reads them (SPEC §7).

CREATE TABLE chat_text (
    chat_id BIGINT NOT NULL,
    site_id BIGINT NOT NULL,
    -- 0, 1, 2, … in the order the chat's text arrived; the highest one takes appends.
    part    INTEGER NOT NULL,
    -- Characters covered (each message counts its length plus one separator).
    chars   INTEGER NOT NULL,
    tsv     tsvector NOT NULL,
    PRIMARY KEY (chat_id, site_id, part)
);

ALTER TABLE chat_text ALTER COLUMN tsv SET STORAGE MAIN;

-- Appends the rows a statement inserted (`fresh`) to their chats' parts, in seq order. A
-- message that starts at or past 8,192 characters into the open part goes to the next one.
CREATE FUNCTION chat_text_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One primary-key probe per chat (LATERAL … LIMIT 1): a join would let the planner,
    -- which cannot know how few rows `fresh` holds, scan every part of the site.
    WITH open AS (
        SELECT k.chat_id, k.site_id, o.part, o.chars
        FROM (SELECT DISTINCT chat_id, site_id FROM fresh) k
        CROSS JOIN LATERAL (
            SELECT p.part, p.chars FROM chat_text p
            WHERE p.chat_id = k.chat_id AND p.site_id = k.site_id
            ORDER BY p.part DESC LIMIT 1
        ) o
    ), placed AS (
        SELECT f.chat_id, f.site_id, f.seq, f.id, f.content,
            COALESCE(o.part, 0) + (COALESCE(o.chars, 0)
                + SUM(length(f.content) + 1) OVER (PARTITION BY f.chat_id, f.site_id ORDER BY f.seq, f.id
                    ROWS UNBOUNDED PRECEDING)
                - length(f.content) - 1) / 8192 AS part
        FROM fresh f
        LEFT JOIN open o ON o.chat_id = f.chat_id AND o.site_id = f.site_id
    )
    INSERT INTO chat_text AS t (chat_id, site_id, part, chars, tsv)
    SELECT chat_id, site_id, part, SUM(length(content) + 1),
        to_tsvector('simple', string_agg(content, ' ' ORDER BY seq, id))
    FROM placed
    GROUP BY chat_id, site_id, part
    -- One order for every writer, so concurrent batches lock shared parts alike.
    ORDER BY chat_id, site_id, part
    ON CONFLICT (chat_id, site_id, part) DO UPDATE SET chars = t.chars + EXCLUDED.chars, tsv = t.tsv || EXCLUDED.tsv;
    RETURN NULL;
END
$$;

CREATE FUNCTION chat_text_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM chat_text t
    USING (SELECT DISTINCT o.chat_id, o.site_id FROM old_rows o JOIN new_rows n ON n.id = o.id
           WHERE n.content IS DISTINCT FROM o.content) AS changed
    WHERE t.chat_id = changed.chat_id AND t.site_id = changed.site_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION chat_text_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM chat_text t
    USING (SELECT DISTINCT chat_id, site_id FROM old_rows) AS gone
    WHERE t.chat_id = gone.chat_id AND t.site_id = gone.site_id;
    RETURN NULL;
END
$$;

-- Every chat's messages so far, cut into parts the way the trigger cuts them.
INSERT INTO chat_text (chat_id, site_id, part, chars, tsv)
SELECT chat_id, site_id, part, SUM(length(content) + 1), to_tsvector('simple', string_agg(content, ' ' ORDER BY seq, id))
FROM (
    SELECT chat_id, site_id, seq, id, content,
        (SUM(length(content) + 1) OVER (PARTITION BY chat_id, site_id ORDER BY seq, id ROWS UNBOUNDED PRECEDING)
            - length(content) - 1) / 8192 AS part
    FROM messages
) m
GROUP BY chat_id, site_id, part;

CREATE INDEX chat_text_tsv_idx ON chat_text USING GIN (tsv);

CREATE TRIGGER messages_chat_text_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS fresh FOR EACH STATEMENT EXECUTE FUNCTION chat_text_on_insert();
CREATE TRIGGER messages_chat_text_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION chat_text_on_update();
CREATE TRIGGER messages_chat_text_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION chat_text_on_delete();
