-- PostgreSQL's twin of migrations/sqlite/0009.
-- When each version entered each release channel (`publish.channels`): a promotion after
-- `publish.promote_after_hours` counts from here. A version that leaves a channel (pruned,
-- withdrawn) loses its row there.
CREATE TABLE channel_entries (
    version TEXT NOT NULL,
    channel TEXT NOT NULL,
    job_id BIGINT NOT NULL,
    entered_at TEXT NOT NULL,
    PRIMARY KEY (version, channel)
);

-- Failed CI runs on the App's own update pull requests in consumer repositories: a version
-- with one since it entered its channel is not promoted by itself.
CREATE TABLE consumer_ci_failures (
    run_id BIGINT NOT NULL,
    run_attempt BIGINT NOT NULL,
    repository TEXT NOT NULL,
    version TEXT NOT NULL,
    conclusion TEXT NOT NULL,
    html_url TEXT,
    failed_at TEXT NOT NULL,
    PRIMARY KEY (run_id, run_attempt)
);
CREATE INDEX consumer_ci_failures_by_version ON consumer_ci_failures (version, failed_at);
