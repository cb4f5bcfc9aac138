-- Jobs: the one queue the worker runs, one build at a time.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                    -- build
    version TEXT NOT NULL,                 -- X.Y.Z
    rebuild INTEGER NOT NULL DEFAULT 0,    -- 1: republish even if the version exists
    dedupe_key TEXT NOT NULL UNIQUE,       -- what started it, so a replay cannot start it twice
    trigger TEXT NOT NULL,                 -- JSON: who or what asked, and where to reply
    installation_id INTEGER,               -- whose token the job acts with
    state TEXT NOT NULL DEFAULT 'queued',  -- queued, running, retrying, succeeded, failed
    step TEXT,                             -- the step it is in, or last ran
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,                  -- when a retrying job may run again
    created_at TEXT NOT NULL,
    started_at TEXT,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    error TEXT,
    result TEXT                            -- JSON: what it produced
);

CREATE INDEX jobs_by_state ON jobs (state, id);

-- Which delivery made which job, and how often handling it has failed transiently.
ALTER TABLE deliveries ADD COLUMN job_id INTEGER REFERENCES jobs (id);
ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

-- Where the App is installed, kept from installation and installation_repositories events.
CREATE TABLE installations (
    id INTEGER PRIMARY KEY NOT NULL,
    account TEXT,
    state TEXT NOT NULL,                   -- active, suspended, deleted
    updated_at TEXT NOT NULL
);

CREATE TABLE installation_repositories (
    installation_id INTEGER NOT NULL REFERENCES installations (id),
    repository TEXT NOT NULL,              -- owner/name
    PRIMARY KEY (installation_id, repository)
);

-- Finished workflow runs, kept for the pipeline's pull request reports.
CREATE TABLE workflow_runs (
    id INTEGER PRIMARY KEY NOT NULL,       -- the run id
    repository TEXT NOT NULL,
    head_branch TEXT,
    conclusion TEXT,
    html_url TEXT,
    delivery_id TEXT NOT NULL,
    received_at TEXT NOT NULL
);
