-- chatd schema 4: indexes for sync (chatd.stores.messages.since_txn): a
-- user's one-to-one messages after an id, sent and received, are index
-- range scans instead of a scan of every later message.
CREATE INDEX messages_sender ON messages (sender_id, id);
CREATE INDEX messages_recipient ON messages (recipient_id, message_type, id);
