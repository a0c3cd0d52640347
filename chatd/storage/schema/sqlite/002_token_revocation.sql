-- chatd schema 2: revoking access tokens.
-- A token is refused when its id is in revoked_tokens (logout), or when it
-- was issued before its user's tokens_valid_after (a password change
-- revokes every earlier token). Times are milliseconds since the epoch.

ALTER TABLE users ADD COLUMN tokens_valid_after INTEGER NOT NULL DEFAULT 0;

CREATE TABLE revoked_tokens (
    jti TEXT NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
