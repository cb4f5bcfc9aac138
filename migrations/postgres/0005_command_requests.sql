-- PostgreSQL's twin of migrations/sqlite/0005. `user` is a reserved word here, so queries
-- quote it ("user"), as SQLite accepts too; logins are compared with lower() on both sides
-- where SQLite's columns say COLLATE NOCASE.
-- Every comment that asked for a build job: several comments may join one queued job, and
-- its end report goes to each of their issues, naming everyone who asked.
CREATE TABLE job_requests (
    request_key TEXT PRIMARY KEY NOT NULL, -- comment:{comment id}:{command}:{version}; a replay finds it
    job_id BIGINT NOT NULL REFERENCES jobs (id),
    "user" TEXT NOT NULL,                  -- the commenter's login
    repository TEXT NOT NULL,              -- owner/name of the comment's repository
    issue_number BIGINT NOT NULL,          -- where the comment is; the end report goes there
    comment_id BIGINT NOT NULL,
    asked_at TEXT NOT NULL,
    -- The order rows were written in, which SQLite keeps as its implicit rowid: requests
    -- asked in the same microsecond are listed in that order.
    rowid BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX job_requests_by_job ON job_requests (job_id);
CREATE INDEX job_requests_by_user ON job_requests (lower("user"));

-- Refused `/build` and `/rebuild` commands, one row per comment, so that refusals to one user
-- in one repository are answered at most once an hour, and a comment handled again after a
-- failure keeps the decision made the first time.
CREATE TABLE command_refusals (
    comment_id BIGINT PRIMARY KEY NOT NULL,
    "user" TEXT NOT NULL,
    repository TEXT NOT NULL,
    reason TEXT NOT NULL,                  -- permission, queue_limit
    answered BIGINT NOT NULL,              -- 1: the comment's reply says why; 0: recorded only
    refused_at TEXT NOT NULL
);

CREATE INDEX command_refusals_by_user ON command_refusals (lower("user"), lower(repository), refused_at);

-- What a dispatch-started job asks for (dispatch:{build|rebuild}:{version}): a replayed body
-- under a new delivery id finds the job while it is queued, running, or succeeded lately.
ALTER TABLE jobs ADD COLUMN request_key TEXT;

CREATE INDEX jobs_by_request_key ON jobs (request_key, state);
