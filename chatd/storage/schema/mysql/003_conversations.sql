-- chatd schema 3: conversations (read positions, presence, search).
-- Times are milliseconds since the epoch.

-- How far each user has read each conversation ('d:<low>:<high>' or
-- 'g:<group id>', as in messages.conversation); positions only move forward.
CREATE TABLE conversation_reads (
    user_id BIGINT NOT NULL,
    conversation VARCHAR(48) CHARACTER SET ascii NOT NULL,
    last_read_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation),
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- When a user's last device disconnected.
CREATE TABLE user_presence (
    user_id BIGINT NOT NULL PRIMARY KEY,
    last_seen_at BIGINT NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Messages not yet in the search index: filled by a trigger in the same
-- transaction as the message, emptied by the indexer (chatd/stores/search.py),
-- so the message write path does no tokenizing.
CREATE TABLE search_pending (
    message_id BIGINT NOT NULL PRIMARY KEY
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The search index (MariaDB has no n-gram FULLTEXT parser; see
-- docs/search.md): one row per (term, message), terms made by
-- chatd.stores.search.terms (Latin words, CJK bigrams), compared bytewise.
CREATE TABLE search_terms (
    term VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (term, message_id),
    KEY search_terms_message (message_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TRIGGER messages_search_queue AFTER INSERT ON messages FOR EACH ROW INSERT IGNORE INTO search_pending (message_id) VALUES (NEW.id);

CREATE TRIGGER messages_search_forget AFTER DELETE ON messages FOR EACH ROW BEGIN DELETE FROM search_pending WHERE message_id = OLD.id; DELETE FROM search_terms WHERE message_id = OLD.id; END;

INSERT INTO search_pending (message_id) SELECT id FROM messages WHERE recalled_at IS NULL AND content <> '';
