-- PostgreSQL's twin of migrations/sqlite/0006.
-- Workflow run attempts the App has handled: a run's report is posted at most once per
-- attempt, however often its body is replayed. Not swept with the workflow runs, so a replay
-- after the sweep finds the attempt handled.
CREATE TABLE reported_workflow_runs (
    run_id BIGINT NOT NULL,
    run_attempt BIGINT NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (run_id, run_attempt)
);

-- Comments whose commands were handled to the end (answered, queued, refused, or refused
-- and left unanswered): a comment's signed body replayed under a new delivery id, even days
-- later when the queue has room or the commenter has gained write permission, is ignored.
-- Never pruned: one short row per command comment.
CREATE TABLE handled_comments (
    comment_id BIGINT PRIMARY KEY NOT NULL,
    delivery_id TEXT NOT NULL,
    handled_at TEXT NOT NULL
);
