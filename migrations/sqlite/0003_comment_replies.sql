-- Replies posted to the commands of a comment, so that a comment handled again after a
-- failure part-way does not answer the same command twice.
CREATE TABLE comment_replies (
    comment_id INTEGER NOT NULL,           -- GitHub's id of the comment
    command_index INTEGER NOT NULL,        -- which command in it, from 0
    posted_at TEXT NOT NULL,
    PRIMARY KEY (comment_id, command_index)
);
