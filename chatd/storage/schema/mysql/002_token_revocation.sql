-- chatd schema 2: revoking access tokens.
-- A token is refused when its id is in revoked_tokens (logout), or when it
-- was issued before its user's tokens_valid_after (a password change
-- revokes every earlier token). Times are milliseconds since the epoch.

ALTER TABLE users ADD COLUMN tokens_valid_after BIGINT NOT NULL DEFAULT 0;

CREATE TABLE revoked_tokens (
    jti CHAR(32) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    KEY revoked_tokens_expiry (expires_at),
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
