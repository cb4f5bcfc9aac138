-- Published files to delete from storage once their grace period is over: their version
-- left the signed manifest (withdrawn or pruned), and hosts that read the manifest before
-- may still be downloading them. A row stays once its file is removed (removed_at set); a
-- removal cancelled (the version published again) is deleted.
CREATE TABLE storage_removals (
    key TEXT PRIMARY KEY NOT NULL,   -- the storage key: alloy-1.2.3-amd64.raw.asc, canary/alloy-1.2.3-amd64.raw
    manifest_key TEXT NOT NULL,      -- the manifest whose listing guards it: SHA256SUMS, canary/SHA256SUMS
    listed_file TEXT NOT NULL,       -- the name that manifest would list: alloy-1.2.3-amd64.raw
    version TEXT NOT NULL,           -- 1.2.3
    why TEXT NOT NULL,               -- withdrawn, pruned
    scheduled_at TEXT NOT NULL,
    due_at TEXT NOT NULL,            -- not deleted before this
    removed_at TEXT                  -- NULL while pending
);

CREATE INDEX storage_removals_pending ON storage_removals (due_at) WHERE removed_at IS NULL;
