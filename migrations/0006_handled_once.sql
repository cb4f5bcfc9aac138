-- Workflow run attempts the App has handled: a run's report is posted at most once per
-- attempt, however often its body is replayed. Not swept with the workflow runs, so a replay
-- after the sweep finds the attempt handled.
CREATE TABLE reported_workflow_runs (
    run_id INTEGER NOT NULL,
    run_attempt INTEGER NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (run_id, run_attempt)
);
