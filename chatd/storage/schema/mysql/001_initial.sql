-- chatd schema 1: what go-chat stores, with constraints and indexes.
-- Times are milliseconds since the epoch.

CREATE TABLE users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    uuid CHAR(36) CHARACTER SET ascii NOT NULL UNIQUE,
    username VARCHAR(64) NOT NULL UNIQUE,
    nickname VARCHAR(64) NOT NULL DEFAULT '',
    email VARCHAR(255) NOT NULL DEFAULT '',
    password_hash VARCHAR(255) CHARACTER SET ascii NOT NULL,
    avatar VARCHAR(255) NOT NULL DEFAULT '',
    is_admin TINYINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Friendship is mutual: one row for each direction.
CREATE TABLE friendships (
    user_id BIGINT NOT NULL,
    friend_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id),
    KEY friendships_friend (friend_id),
    CONSTRAINT friendships_not_self CHECK (user_id <> friend_id),
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
    FOREIGN KEY (friend_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE chat_groups (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    uuid CHAR(36) CHARACTER SET ascii NOT NULL UNIQUE,
    owner_id BIGINT NOT NULL,
    name VARCHAR(128) NOT NULL,
    notice VARCHAR(1024) NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    KEY chat_groups_owner (owner_id),
    FOREIGN KEY (owner_id) REFERENCES users(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE group_members (
    group_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    nickname VARCHAR(64) NOT NULL DEFAULT '',
    muted TINYINT NOT NULL DEFAULT 0,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY group_members_user (user_id),
    FOREIGN KEY (group_id) REFERENCES chat_groups(id) ON DELETE CASCADE,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Stored files: avatars and message attachments, named by the server.
CREATE TABLE files (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(128) CHARACTER SET ascii NOT NULL UNIQUE,
    owner_id BIGINT NULL,
    media_type VARCHAR(128) CHARACTER SET ascii NOT NULL,
    size BIGINT NOT NULL,
    sha256 CHAR(64) CHARACTER SET ascii NOT NULL,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (owner_id) REFERENCES users(id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- conversation is 'd:<low user id>:<high user id>' for one-to-one messages
-- and 'g:<group id>' for group messages, so that a conversation's history
-- is one index range scan by id.
CREATE TABLE messages (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    conversation VARCHAR(48) CHARACTER SET ascii NOT NULL,
    sender_id BIGINT NOT NULL,
    client_msg_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    message_type TINYINT NOT NULL,
    recipient_id BIGINT NOT NULL,
    content_type SMALLINT NOT NULL,
    content MEDIUMTEXT NOT NULL,
    url VARCHAR(255) NOT NULL DEFAULT '',
    file_id BIGINT NULL,
    created_at BIGINT NOT NULL,
    edited_at BIGINT NULL,
    recalled_at BIGINT NULL,
    UNIQUE KEY messages_client_id (sender_id, client_msg_id),
    KEY messages_conversation (conversation, id),
    FOREIGN KEY (sender_id) REFERENCES users(id),
    FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
