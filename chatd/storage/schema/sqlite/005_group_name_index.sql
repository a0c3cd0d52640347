-- chatd schema 5: exact-name look-ups of groups (GET /user/name) use an
-- index instead of scanning every group.

CREATE INDEX chat_groups_name ON chat_groups (name);
