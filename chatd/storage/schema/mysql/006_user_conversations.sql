-- chatd schema 6: the conversations each user takes part in.
-- Sync (chatd.stores.messages.since_txn) finds a user's one-to-one
-- messages through these rows and messages_conversation, instead of two
-- indexes of messages of its own: every index of messages is written for
-- every message stored, while a row here is written once per user and
-- conversation.
CREATE TABLE user_conversations (
    user_id BIGINT NOT NULL,
    conversation VARCHAR(48) CHARACTER SET ascii NOT NULL,
    PRIMARY KEY (user_id, conversation),
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO user_conversations (user_id, conversation)
    SELECT sender_id, conversation FROM messages WHERE message_type = 1
    UNION
    SELECT recipient_id, conversation FROM messages WHERE message_type = 1;

DROP INDEX messages_sender ON messages;

DROP INDEX messages_recipient ON messages;
