-- PostgreSQL's twin of migrations/sqlite/0004.
-- Each run of each step of a job: when it started, how long it took and how it ended.
CREATE TABLE job_steps (
    job_id BIGINT NOT NULL REFERENCES jobs (id),
    step TEXT NOT NULL,                    -- download, build, upload, manifest, …
    attempt BIGINT NOT NULL,               -- the job's attempt it ran in, from 1
    started_at TEXT NOT NULL,
    finished_at TEXT,                      -- NULL while it runs, or when the process stopped
    seconds DOUBLE PRECISION,              -- how long it took
    outcome TEXT NOT NULL,                 -- running, ok, error, interrupted
    PRIMARY KEY (job_id, step, attempt)
);
