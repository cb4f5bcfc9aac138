-- Scheduled tasks run once per tick across replicas: the replica that records a tick here
-- first runs it, and the others skip it. A tick is the time the schedule named (the same on
-- every replica), as stored timestamps are written.
CREATE TABLE scheduled_runs (
    task TEXT PRIMARY KEY NOT NULL,  -- upstream-check
    run_for TEXT NOT NULL,           -- the last tick run
    run_by TEXT NOT NULL             -- the replica that ran it
);
