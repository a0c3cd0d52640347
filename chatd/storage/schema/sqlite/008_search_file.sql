-- chatd schema 8: the search index moves to a file of its own.
-- The index (message_search) and the indexer's progress now live in the
-- search file beside this one (chatd.storage.engines.SqliteEngine
-- .search_path), written by a connection of their own, so the connection
-- that stores messages never waits behind the indexer. The new file starts
-- empty and the indexer builds it from the messages. The queue of edited,
-- recalled and deleted messages stays here, appended to in the same
-- transactions as those changes; the indexer reads it past the last entry
-- it indexed (kept in the search file) and does not write here, and the
-- indexer service deletes what it has read (chatd.stores.search).
DROP TRIGGER messages_search_forget;

DROP TABLE message_search;

DROP TABLE search_progress;

DROP TABLE search_pending;

CREATE TABLE search_pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL
);

CREATE TRIGGER messages_search_forget AFTER DELETE ON messages BEGIN INSERT INTO search_pending (message_id) VALUES (old.id); END;
