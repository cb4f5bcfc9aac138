//! Published files waiting to leave storage.
//!
//! When a version leaves the signed manifest (withdrawn, or pruned as old), hosts that read
//! the manifest just before may still be downloading its files, so the files stay for a
//! grace period: each is scheduled here with the time it may go, and the removal sweep
//! ([`crate::worker::storage_removals`]) deletes it then, unless its manifest lists it again. Each
//! row names the manifest that guards the file and the name that manifest would list, so
//! the sweep can check that before deleting anything.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::job_result::as_text;
use super::stored_name::stored_name;
use super::{Database, DatabaseError};
use crate::database::timestamp;
use crate::version::Version;

/// Why a version's files leave storage, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RemovalReason {
    /// Taken out of the manifest on purpose (`/withdraw`, `withdraw`).
    Withdrawn,
    /// Older than the versions the manifest keeps.
    Pruned,
    /// Copied into a channel for a promotion: they go unless the promotion lists them.
    Unlisted,
}

stored_name!(RemovalReason, "removal reason", {
    Withdrawn => "withdrawn",
    Pruned => "pruned",
    Unlisted => "unlisted",
});

/// A file to schedule for removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRemoval {
    /// The storage key: `alloy-1.2.3-amd64.raw`, `alloy-1.2.3-amd64.raw.asc`,
    /// `canary/alloy-1.2.3-amd64.raw`.
    pub key: String,
    /// The key of the manifest whose listing guards the file: `SHA256SUMS`,
    /// `canary/SHA256SUMS`.
    pub manifest_key: String,
    /// The name that manifest would list if the version were published again:
    /// `alloy-1.2.3-amd64.raw` for the image and for its `.sha256` and `.asc`.
    pub listed_file: String,
    pub version: Version,
    pub why: RemovalReason,
}

/// A scheduled removal, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageRemoval {
    pub key: String,
    pub manifest_key: String,
    pub listed_file: String,
    #[serde(with = "as_text")]
    pub version: Version,
    pub why: RemovalReason,
    /// When it was scheduled (a stored timestamp, [`timestamp`]).
    pub scheduled_at: String,
    /// The file is not deleted before this.
    pub due_at: String,
    /// When the file was deleted (or found gone); `None` while pending.
    pub removed_at: Option<String>,
}

impl StorageRemoval {
    pub fn is_pending(&self) -> bool {
        self.removed_at.is_none()
    }
}

const COLUMNS: &str =
    "key, manifest_key, listed_file, version, why, scheduled_at, due_at, removed_at";

fn removal_from_row(row: &AnyRow) -> Result<StorageRemoval, DatabaseError> {
    let version: String = row.try_get("version")?;
    let why: String = row.try_get("why")?;
    Ok(StorageRemoval {
        key: row.try_get("key")?,
        manifest_key: row.try_get("manifest_key")?,
        listed_file: row.try_get("listed_file")?,
        version: version
            .parse()
            .map_err(|e| DatabaseError::Corrupt(format!("storage removal version: {e}")))?,
        why: RemovalReason::parse(&why)?,
        scheduled_at: row.try_get("scheduled_at")?,
        due_at: row.try_get("due_at")?,
        removed_at: row.try_get("removed_at")?,
    })
}

/// The rows that can be read; one that cannot is logged and left out, so it does not hide
/// the others (nor is its file deleted on a guess).
fn readable(rows: &[AnyRow]) -> Vec<StorageRemoval> {
    rows.iter()
        .filter_map(|row| match removal_from_row(row) {
            Ok(removal) => Some(removal),
            Err(error) => {
                let key = row.try_get::<String, _>("key").ok();
                tracing::warn!(key = ?key, %error, "a scheduled storage removal cannot be read; left alone");
                None
            }
        })
        .collect()
}

impl Database {
    /// Schedules `removals`, each not to happen before `due_at`, in one transaction. A key
    /// already pending keeps its row as it is (its earlier due time and reason); a key
    /// removed before is pending again, with this schedule. Returns how many became
    /// pending.
    pub async fn schedule_removals(
        &self,
        removals: &[NewRemoval],
        due_at: OffsetDateTime,
    ) -> Result<u64, DatabaseError> {
        let now = timestamp::now();
        let due_at = timestamp::format(due_at);
        let mut scheduled = 0;
        let mut tx = self.pool().begin().await?;
        for removal in removals {
            scheduled += sqlx::query(
                "INSERT INTO storage_removals
                     (key, manifest_key, listed_file, version, why, scheduled_at, due_at, removed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
                 ON CONFLICT (key) DO UPDATE SET
                     manifest_key = excluded.manifest_key,
                     listed_file = excluded.listed_file,
                     version = excluded.version,
                     why = excluded.why,
                     scheduled_at = excluded.scheduled_at,
                     due_at = excluded.due_at,
                     removed_at = NULL
                 WHERE storage_removals.removed_at IS NOT NULL",
            )
            .bind(&removal.key)
            .bind(&removal.manifest_key)
            .bind(&removal.listed_file)
            .bind(removal.version.as_str())
            .bind(removal.why.as_str())
            .bind(&now)
            .bind(&due_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(scheduled)
    }

    /// Cancels every pending removal of `version`'s files guarded by the manifest at
    /// `manifest_key` (a channel's): the version is being published there again. Must run
    /// before its files are uploaded again, so no sweep deletes what was just put back.
    /// Returns how many were cancelled; removals done before stay recorded.
    pub async fn cancel_removals_of(
        &self,
        version: &Version,
        manifest_key: &str,
    ) -> Result<u64, DatabaseError> {
        Ok(sqlx::query(
            "DELETE FROM storage_removals
                 WHERE version = $1 AND manifest_key = $2 AND removed_at IS NULL",
        )
        .bind(version.as_str())
        .bind(manifest_key)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Cancels the pending removal of `key`, if there is one (its manifest lists its file
    /// again). Returns whether one was cancelled.
    pub async fn cancel_removal(&self, key: &str) -> Result<bool, DatabaseError> {
        Ok(
            sqlx::query("DELETE FROM storage_removals WHERE key = $1 AND removed_at IS NULL")
                .bind(key)
                .execute(self.pool())
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// The pending removals due at `at` (their due time is not after it), earliest first.
    pub async fn due_removals(
        &self,
        at: OffsetDateTime,
    ) -> Result<Vec<StorageRemoval>, DatabaseError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM storage_removals
             WHERE removed_at IS NULL AND due_at <= $1
             ORDER BY due_at, key"
        )))
        .bind(timestamp::format(at))
        .fetch_all(self.pool())
        .await?;
        Ok(readable(&rows))
    }

    /// Every pending removal, due or not, earliest first: what will leave storage.
    pub async fn pending_removals(&self) -> Result<Vec<StorageRemoval>, DatabaseError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM storage_removals
             WHERE removed_at IS NULL
             ORDER BY due_at, key"
        )))
        .fetch_all(self.pool())
        .await?;
        Ok(readable(&rows))
    }

    /// Records that the pending removal of `key` is done: its file is gone. Returns
    /// whether a pending removal was there to record.
    pub async fn mark_removed(&self, key: &str) -> Result<bool, DatabaseError> {
        Ok(sqlx::query(
            "UPDATE storage_removals SET removed_at = $1 WHERE key = $2 AND removed_at IS NULL",
        )
        .bind(timestamp::now())
        .bind(key)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// The removal of `key`, pending or done, if one was scheduled.
    pub async fn storage_removal(
        &self,
        key: &str,
    ) -> Result<Option<StorageRemoval>, DatabaseError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM storage_removals WHERE key = $1"
        )))
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(removal_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::testing::on_each_backend;
    use time::macros::datetime;

    const DUE: OffsetDateTime = datetime!(2026-03-10 12:00 UTC);

    /// The image of `version` and its `.sha256` and `.asc` under `prefix` (`""` or
    /// `canary/`), guarded by that prefix's manifest.
    fn image_files(prefix: &str, version: &str, why: RemovalReason) -> Vec<NewRemoval> {
        let image = format!("alloy-{version}-amd64.raw");
        ["", ".sha256", ".asc"]
            .into_iter()
            .map(|suffix| NewRemoval {
                key: format!("{prefix}{image}{suffix}"),
                manifest_key: format!("{prefix}SHA256SUMS"),
                listed_file: image.clone(),
                version: version.parse().unwrap(),
                why,
            })
            .collect()
    }

    fn keys(removals: &[StorageRemoval]) -> Vec<&str> {
        removals.iter().map(|r| r.key.as_str()).collect()
    }

    on_each_backend! {
        async fn scheduled_removals_are_pending_and_come_due_at_their_time(database) {
            let before = timestamp::now();
            let scheduled = database
                .schedule_removals(&image_files("", "1.2.3", RemovalReason::Withdrawn), DUE)
                .await
                .unwrap();
            let after = timestamp::now();
            assert_eq!(scheduled, 3);

            let pending = database.pending_removals().await.unwrap();
            assert_eq!(
                keys(&pending),
                [
                    "alloy-1.2.3-amd64.raw",
                    "alloy-1.2.3-amd64.raw.asc",
                    "alloy-1.2.3-amd64.raw.sha256"
                ]
            );
            let asc = &pending[1];
            assert_eq!(asc.manifest_key, "SHA256SUMS");
            assert_eq!(asc.listed_file, "alloy-1.2.3-amd64.raw");
            assert_eq!(asc.version, "1.2.3".parse::<Version>().unwrap());
            assert_eq!(asc.why, RemovalReason::Withdrawn);
            assert_eq!(asc.due_at, "2026-03-10T12:00:00.000000Z");
            assert!(before <= asc.scheduled_at && asc.scheduled_at <= after);
            assert_eq!(asc.removed_at, None);
            assert!(asc.is_pending());

            let just_before = DUE - time::Duration::microseconds(1);
            assert!(database.due_removals(just_before).await.unwrap().is_empty());
            assert_eq!(database.due_removals(DUE).await.unwrap(), pending);
            assert_eq!(
                serde_json::to_value(asc).unwrap(),
                serde_json::json!({
                    "key": "alloy-1.2.3-amd64.raw.asc",
                    "manifest_key": "SHA256SUMS",
                    "listed_file": "alloy-1.2.3-amd64.raw",
                    "version": "1.2.3",
                    "why": "withdrawn",
                    "scheduled_at": asc.scheduled_at,
                    "due_at": "2026-03-10T12:00:00.000000Z",
                    "removed_at": null,
                })
            );
        }
    }

    on_each_backend! {
        async fn a_key_already_pending_keeps_its_earlier_schedule(database) {
            let first = image_files("", "1.2.3", RemovalReason::Withdrawn);
            database.schedule_removals(&first, DUE).await.unwrap();
            let before = database.pending_removals().await.unwrap();

            // Pruned later, with a later due time: nothing changes for the pending keys; the
            // one new key is scheduled.
            let mut again = image_files("", "1.2.3", RemovalReason::Pruned);
            let compat = NewRemoval {
                key: "alloy-1.2.3.raw".to_owned(),
                listed_file: "alloy-1.2.3.raw".to_owned(),
                ..again[0].clone()
            };
            again.push(compat);
            let later = DUE + time::Duration::days(7);
            assert_eq!(database.schedule_removals(&again, later).await.unwrap(), 1);
            let pending = database.pending_removals().await.unwrap();
            assert_eq!(&pending[..3], &before[..]);
            assert_eq!(pending[3].key, "alloy-1.2.3.raw");
            assert_eq!(pending[3].why, RemovalReason::Pruned);
            assert_eq!(pending[3].due_at, timestamp::format(later));
        }
    }

    on_each_backend! {
        async fn a_removed_key_stays_recorded_and_a_new_schedule_makes_it_pending_again(database) {
            let files = image_files("canary/", "1.2.3", RemovalReason::Pruned);
            database.schedule_removals(&files, DUE).await.unwrap();

            let key = "canary/alloy-1.2.3-amd64.raw";
            assert!(database.mark_removed(key).await.unwrap());
            assert!(!database.mark_removed(key).await.unwrap());
            assert!(!database.mark_removed("never-scheduled").await.unwrap());
            let removed = database.storage_removal(key).await.unwrap().unwrap();
            assert!(!removed.is_pending());
            let removed_at = removed.removed_at.clone().unwrap();
            assert!(removed.scheduled_at <= removed_at);
            assert_eq!(
                keys(&database.pending_removals().await.unwrap()),
                [
                    "canary/alloy-1.2.3-amd64.raw.asc",
                    "canary/alloy-1.2.3-amd64.raw.sha256"
                ]
            );
            assert_eq!(database.due_removals(DUE).await.unwrap().len(), 2);

            // Published again and withdrawn again: pending again, on the new schedule.
            let later = DUE + time::Duration::days(30);
            let again = image_files("canary/", "1.2.3", RemovalReason::Withdrawn);
            assert_eq!(database.schedule_removals(&again, later).await.unwrap(), 1);
            let row = database.storage_removal(key).await.unwrap().unwrap();
            assert_eq!(row.removed_at, None);
            assert_eq!(row.why, RemovalReason::Withdrawn);
            assert_eq!(row.due_at, timestamp::format(later));
            assert!(row.scheduled_at >= removed_at);
            assert_eq!(
                keys(&database.due_removals(DUE).await.unwrap()),
                [
                    "canary/alloy-1.2.3-amd64.raw.asc",
                    "canary/alloy-1.2.3-amd64.raw.sha256"
                ]
            );
        }
    }

    on_each_backend! {
        async fn cancelling_a_version_drops_its_pending_removals_under_one_manifest_only(database) {
            let mut files = image_files("", "1.2.3", RemovalReason::Withdrawn);
            files.extend(image_files("canary/", "1.2.3", RemovalReason::Withdrawn));
            files.extend(image_files("", "1.2.0", RemovalReason::Pruned));
            database.schedule_removals(&files, DUE).await.unwrap();
            // One of 1.2.3's files went already: that stays recorded.
            database
                .mark_removed("alloy-1.2.3-amd64.raw.asc")
                .await
                .unwrap();

            let version: Version = "1.2.3".parse().unwrap();
            assert_eq!(
                database
                    .cancel_removals_of(&version, "canary/SHA256SUMS")
                    .await
                    .unwrap(),
                3
            );
            assert_eq!(
                database
                    .cancel_removals_of(&version, "SHA256SUMS")
                    .await
                    .unwrap(),
                2
            );
            assert_eq!(
                database
                    .cancel_removals_of(&version, "SHA256SUMS")
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(
                keys(&database.pending_removals().await.unwrap()),
                [
                    "alloy-1.2.0-amd64.raw",
                    "alloy-1.2.0-amd64.raw.asc",
                    "alloy-1.2.0-amd64.raw.sha256"
                ]
            );
            assert!(
                database
                    .storage_removal("alloy-1.2.3-amd64.raw.asc")
                    .await
                    .unwrap()
                    .unwrap()
                    .removed_at
                    .is_some()
            );
            assert_eq!(
                database
                    .storage_removal("alloy-1.2.3-amd64.raw")
                    .await
                    .unwrap(),
                None
            );

            assert!(
                database
                    .cancel_removal("alloy-1.2.0-amd64.raw")
                    .await
                    .unwrap()
            );
            assert!(
                !database
                    .cancel_removal("alloy-1.2.0-amd64.raw")
                    .await
                    .unwrap()
            );
            assert!(
                !database
                    .cancel_removal("alloy-1.2.3-amd64.raw.asc")
                    .await
                    .unwrap()
            );
            assert_eq!(database.pending_removals().await.unwrap().len(), 2);
        }
    }

    on_each_backend! {
        async fn an_unreadable_row_is_left_out_and_left_alone(database) {
            let mut files = image_files("", "1.2.3", RemovalReason::Withdrawn);
            files.truncate(2);
            database.schedule_removals(&files, DUE).await.unwrap();
            sqlx::query("UPDATE storage_removals SET why = 'forgotten' WHERE key = $1")
                .bind("alloy-1.2.3-amd64.raw")
                .execute(database.pool())
                .await
                .unwrap();
            assert_eq!(
                keys(&database.due_removals(DUE).await.unwrap()),
                ["alloy-1.2.3-amd64.raw.sha256"]
            );
            assert_eq!(database.pending_removals().await.unwrap().len(), 1);
            let error = database
                .storage_removal("alloy-1.2.3-amd64.raw")
                .await
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                "the database holds something unreadable: unknown removal reason \"forgotten\""
            );
        }
    }
}
