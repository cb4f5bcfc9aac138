-- Versions withdrawn from SHA256SUMS: never published again by a release event, a dispatch
-- or the upstream check; a `/rebuild` of the version publishes it and removes its row.
CREATE TABLE withdrawals (
    version TEXT PRIMARY KEY NOT NULL,
    -- How it was asked for: `comment` (a `/withdraw`) or `cli`.
    source TEXT NOT NULL,
    -- The GitHub login of the commenter, or the operator's login name for the CLI.
    withdrawn_by TEXT,
    reason TEXT,
    job_id INTEGER NOT NULL,
    withdrawn_at TEXT NOT NULL
);
