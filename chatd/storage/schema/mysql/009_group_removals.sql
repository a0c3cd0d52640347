-- chatd schema 9: members a group's owner removed. Joining is open (as in
-- go-chat), so a removal is kept until the owner lifts it; until then the
-- removed user cannot join the group again.

CREATE TABLE group_removals (
    group_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    removed_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id),
    FOREIGN KEY (group_id) REFERENCES chat_groups(id) ON DELETE CASCADE,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
