-- PostgreSQL's twin of migrations/sqlite/0001: the same tables, columns and meaning; integers
-- are BIGINT, as SQLite's are 64-bit.
-- The inbox: every verified webhook delivery, stored before GitHub gets its 2xx.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY NOT NULL,          -- X-GitHub-Delivery; redeliveries keep it
    event TEXT NOT NULL,                   -- X-GitHub-Event
    action TEXT,                           -- payload.action, when there is one
    installation_id BIGINT,                -- payload.installation.id
    repository TEXT,                       -- payload.repository.full_name
    payload TEXT NOT NULL,                 -- the raw JSON body
    received_at TEXT NOT NULL,             -- RFC 3339, UTC
    state TEXT NOT NULL DEFAULT 'pending', -- pending, processed, ignored, failed
    processed_at TEXT,
    error TEXT
);

CREATE INDEX deliveries_by_state ON deliveries (state, received_at);
