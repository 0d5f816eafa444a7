-- Offline messages (issue 5, SQLite dialect): what visitors leave while no agent is online,
-- written behind through the bus queue `storage.write` (keyed by id, so a replayed job
-- inserts nothing), listed per site newest first, and marked handled by agents.

CREATE TABLE offline_messages (
    id            INTEGER PRIMARY KEY,
    site_id       INTEGER NOT NULL,
    visitor_id    INTEGER NOT NULL,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    message       TEXT NOT NULL,
    page_url      TEXT,
    created_at    INTEGER NOT NULL,
    -- 0 or 1; handled_at / handled_by say when and who (NULL while not handled).
    handled       INTEGER NOT NULL DEFAULT 0,
    handled_at    INTEGER,
    handled_by    INTEGER,
    -- When retention anonymised it (Unix ms); NULL while it is intact.
    anonymised_at INTEGER
) STRICT;

-- Listing: a site's messages newest first (ids are snowflakes, so id order is time order),
-- all of them or only the handled / unhandled ones.
CREATE INDEX offline_messages_site_id_idx ON offline_messages (site_id, id DESC);
CREATE INDEX offline_messages_site_handled_idx ON offline_messages (site_id, handled, id DESC);
-- A visitor's erase.
CREATE INDEX offline_messages_site_visitor_idx ON offline_messages (site_id, visitor_id);
-- The retention sweep.
CREATE INDEX offline_messages_site_created_idx ON offline_messages (site_id, created_at);
