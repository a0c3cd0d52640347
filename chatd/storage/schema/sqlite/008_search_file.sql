-- chatd schema 8: the search index moves to a file of its own.
-- The index (message_search) and the indexer's progress now live in the
-- search file beside this one (chatd.storage.engines.SqliteEngine
-- .search_path), written by a connection of their own, so the connection
-- that stores messages never waits behind the indexer. The new file starts
-- empty and the indexer builds it from the messages. The queue of edited,
-- recalled and deleted messages stays here, appended to in the same
-- transactions as those changes; the indexer reads it past the last entry
-- it indexed (kept in the search file) and does not write here, and the
-- indexer service deletes what it has read (chatd.stores.search). The
-- database's identity lets a search file tell whether it was built from
-- this database (a recreated one gets a new identity), and the last queue
-- entry deleted whether the file has lost entries it had taken (a search
-- file put back from a copy).
DROP TRIGGER messages_search_forget;

DROP TABLE message_search;

DROP TABLE search_progress;

DROP TABLE search_pending;

CREATE TABLE search_pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL
);

CREATE TRIGGER messages_search_forget AFTER DELETE ON messages BEGIN INSERT INTO search_pending (message_id) VALUES (old.id); END;

CREATE TABLE database_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL
);

INSERT INTO database_identity (id, token) VALUES (1, lower(hex(randomblob(16))));

CREATE TABLE search_queue_trimmed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    through INTEGER NOT NULL
);

INSERT INTO search_queue_trimmed (id, through) VALUES (1, 0);
