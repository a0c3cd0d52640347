-- chatd schema 9: members a group's owner removed. Joining is open (as in
-- go-chat), so a removal is kept until the owner lifts it; until then the
-- removed user cannot join the group again.

CREATE TABLE group_removals (
    group_id INTEGER NOT NULL REFERENCES chat_groups(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    removed_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
