-- PostgreSQL's twin of migrations/sqlite/0010.
-- Leases, for several replicas on one database (PostgreSQL); with SQLite there is one
-- replica, which holds them all.
--
-- A running job's lease: the replica that claimed it, the claim's generation (one more at
-- each claim), and until when the claim holds unless renewed. A job whose lease has lapsed is
-- taken over by another replica, which resumes it at its step; every write of the job (to
-- storage, GitHub, or its own row) first checks that its generation is still the job's.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;

-- Named leases held by one replica at a time: `leader` runs the inbox and the scheduled
-- tasks (the upstream check, the missed-delivery sweep, storage removals, promotions).
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    generation BIGINT NOT NULL,     -- one more each time another replica takes it
    expires_at TEXT NOT NULL
);
