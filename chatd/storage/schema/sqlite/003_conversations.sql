-- chatd schema 3: conversations (read positions, presence, search).
-- Times are milliseconds since the epoch.

-- How far each user has read each conversation ('d:<low>:<high>' or
-- 'g:<group id>', as in messages.conversation); positions only move forward.
CREATE TABLE conversation_reads (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    conversation TEXT NOT NULL,
    last_read_id INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation)
);

-- When a user's last device disconnected.
CREATE TABLE user_presence (
    user_id INTEGER NOT NULL PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    last_seen_at INTEGER NOT NULL
);

-- Messages not yet in the search index: filled by a trigger in the same
-- transaction as the message, emptied by the indexer (chatd/stores/search.py),
-- so the message write path does no tokenizing.
CREATE TABLE search_pending (
    message_id INTEGER NOT NULL PRIMARY KEY
);

-- The search index: FTS5 over terms made by chatd.stores.search.terms
-- (Latin words, CJK bigrams), rowid = message id.
CREATE VIRTUAL TABLE message_search USING fts5(terms, tokenize = 'unicode61 remove_diacritics 2');

CREATE TRIGGER messages_search_queue AFTER INSERT ON messages BEGIN INSERT OR IGNORE INTO search_pending (message_id) VALUES (new.id); END;

CREATE TRIGGER messages_search_forget AFTER DELETE ON messages BEGIN DELETE FROM search_pending WHERE message_id = old.id; DELETE FROM message_search WHERE rowid = old.id; END;

INSERT INTO search_pending (message_id) SELECT id FROM messages WHERE recalled_at IS NULL AND content <> '';
