-- chatd schema 6: the conversations each user takes part in.
-- Sync (chatd.stores.messages.since_txn) finds a user's one-to-one
-- messages through these rows and messages_conversation, instead of two
-- indexes of messages of its own: every index of messages is written for
-- every message stored, while a row here is written once per user and
-- conversation.
CREATE TABLE user_conversations (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    conversation TEXT NOT NULL,
    PRIMARY KEY (user_id, conversation)
) WITHOUT ROWID;

INSERT OR IGNORE INTO user_conversations (user_id, conversation)
    SELECT sender_id, conversation FROM messages WHERE message_type = 1;

INSERT OR IGNORE INTO user_conversations (user_id, conversation)
    SELECT recipient_id, conversation FROM messages WHERE message_type = 1;

DROP INDEX messages_sender;

DROP INDEX messages_recipient;
