-- chatd schema 7: the search indexer finds new messages by id.
-- A trigger queued every new message in search_pending, in the message's
-- own statement (about 40% of MariaDB's time per stored row: see
-- docs/benchmarks.md, fifth round); the indexer now reads the messages
-- above the last id it indexed instead (chatd/stores/search.py), and the
-- queue keeps edited, recalled and deleted messages only. Messages become
-- visible in id order: one writer stores them, one transaction at a time
-- (chatd/batching.py).
DROP TRIGGER messages_search_queue;

CREATE TABLE search_progress (
    id TINYINT NOT NULL PRIMARY KEY,
    indexed_through BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A deleted message (a deleted group) is queued as well as dropped from the
-- index: a catch-up that read it by id before the delete committed may
-- have indexed it since, and the queue has the next one drop that again.
DROP TRIGGER messages_search_forget;

CREATE TRIGGER messages_search_forget AFTER DELETE ON messages FOR EACH ROW BEGIN DELETE FROM search_terms WHERE message_id = OLD.id; INSERT IGNORE INTO search_pending (message_id) VALUES (OLD.id); END;

-- What the trigger queued stays queued, and is indexed from the queue.
INSERT INTO search_progress (id, indexed_through)
    SELECT 1, COALESCE(MAX(id), 0) FROM messages;
