-- Each run of each step of a job: when it started, how long it took and how it ended.
CREATE TABLE job_steps (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    step TEXT NOT NULL,                    -- download, build, upload, manifest, …
    attempt INTEGER NOT NULL,              -- the job's attempt it ran in, from 1
    started_at TEXT NOT NULL,
    finished_at TEXT,                      -- NULL while it runs, or when the process stopped
    seconds REAL,                          -- how long it took
    outcome TEXT NOT NULL,                 -- running, ok, error, interrupted
    PRIMARY KEY (job_id, step, attempt)
);
