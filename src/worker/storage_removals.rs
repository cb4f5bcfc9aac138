//! The removal sweep: published files whose grace period is over leave storage.
//!
//! A version that left the signed manifest (withdrawn, or pruned) keeps its files in storage
//! for a grace period, for hosts that read the manifest before and are still downloading
//! ([`crate::database::storage_removals`] holds the schedule). The sweep takes every
//! removal that is due and reads the manifest guarding it, as stored now: a file that
//! manifest lists again (its version was published again) is never deleted and its removal
//! is cancelled; any other is deleted, and its removal recorded as done.
//!
//! The job loop runs the sweep when the queue is empty (soon after start, then at most
//! every [`SWEEP_INTERVAL`]): jobs run one at a time there, so a sweep never runs while a
//! job writes to storage, and cannot race a `/rebuild` putting a version's files back.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::Worker;
use crate::database::storage_removals::StorageRemoval;
use crate::database::{Database, DatabaseError};
use crate::manifest::Manifest;
use crate::storage::{DeleteOutcome, Storage, StorageError};

/// The least time between two sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// What one sweep did, by storage key.
#[derive(Debug, Default)]
pub struct RemovalSweep {
    /// Deleted from storage.
    pub removed: Vec<String>,
    /// Not in storage any more (deleted by hand, or by a sweep stopped before it recorded
    /// the removal): recorded as done.
    pub already_gone: Vec<String>,
    /// Listed by their manifest again: kept, and their removal cancelled.
    pub kept_listed: Vec<String>,
    /// Still pending: tried again by the next sweep.
    pub failed: Vec<FailedRemoval>,
}

impl RemovalSweep {
    /// Whether the sweep found nothing to do.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.already_gone.is_empty()
            && self.kept_listed.is_empty()
            && self.failed.is_empty()
    }
}

/// A due removal that did not happen; it stays pending.
#[derive(Debug)]
pub struct FailedRemoval {
    pub key: String,
    pub error: RemovalError,
}

/// Why a due removal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RemovalError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("recording it: {0}")]
    Database(#[from] DatabaseError),
}

/// Why a sweep stopped before deleting anything.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("reading the scheduled storage removals: {0}")]
    Database(#[from] DatabaseError),
    /// Without the manifest there is no telling whether a file is published again.
    #[error("the manifest {key} is not in storage; no file is removed until it is")]
    ManifestMissing { key: String },
    #[error("reading the manifest {key}: {source}; no file is removed until it can be read")]
    ManifestUnreadable {
        key: String,
        #[source]
        source: StorageError,
    },
    #[error("the manifest {key} cannot be read as one: {reason}; no file is removed until it can")]
    ManifestInvalid { key: String, reason: String },
}

/// Takes every removal due at `now`: deletes its file from `storage` unless the manifest
/// guarding it lists it again, in which case the removal is cancelled. Every guarding
/// manifest is read before anything is deleted; one that cannot be read (missing, failing
/// storage, not a manifest) stops the sweep with nothing deleted. A file that cannot be
/// deleted stays pending for the next sweep.
pub async fn sweep(
    storage: &Storage,
    database: &Database,
    now: OffsetDateTime,
) -> Result<RemovalSweep, SweepError> {
    let due = database.due_removals(now).await?;
    let mut manifests: HashMap<&str, Manifest> = HashMap::new();
    for removal in &due {
        let key = removal.manifest_key.as_str();
        if !manifests.contains_key(key) {
            manifests.insert(key, read_manifest(storage, key).await?);
        }
    }
    let mut done = RemovalSweep::default();
    for removal in &due {
        let listed = manifests[removal.manifest_key.as_str()]
            .get(&removal.listed_file)
            .is_some();
        if listed {
            keep_listed(database, removal, &mut done).await;
        } else {
            remove(storage, database, removal, &mut done).await;
        }
    }
    Ok(done)
}

async fn keep_listed(database: &Database, removal: &StorageRemoval, done: &mut RemovalSweep) {
    let key = removal.key.clone();
    match database.cancel_removal(&removal.key).await {
        Ok(_) => {
            tracing::info!(key, manifest = %removal.manifest_key, version = %removal.version, "kept: its manifest lists it again; its removal is cancelled");
            done.kept_listed.push(key);
        }
        Err(error) => {
            tracing::warn!(key, %error, "could not cancel the removal of a file listed again; it is checked again next sweep");
            done.failed.push(FailedRemoval {
                key,
                error: error.into(),
            });
        }
    }
}

async fn remove(
    storage: &Storage,
    database: &Database,
    removal: &StorageRemoval,
    done: &mut RemovalSweep,
) {
    let key = removal.key.clone();
    let outcome = match storage.delete(&removal.key).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(key, %error, transient = error.is_transient(), "could not delete a file whose grace period is over; tried again next sweep");
            done.failed.push(FailedRemoval {
                key,
                error: error.into(),
            });
            return;
        }
    };
    if outcome == DeleteOutcome::Removed {
        crate::metrics::global().removed_files.inc();
    }
    if let Err(error) = database.mark_removed(&removal.key).await {
        // Still pending: the next sweep finds the file gone and records it then.
        tracing::warn!(key, %error, "deleted, but could not record it");
        done.failed.push(FailedRemoval {
            key,
            error: error.into(),
        });
        return;
    }
    match outcome {
        DeleteOutcome::Removed => {
            tracing::info!(key, version = %removal.version, why = %removal.why, scheduled_at = %removal.scheduled_at, "deleted from storage: its grace period is over");
            done.removed.push(key);
        }
        DeleteOutcome::Absent => {
            tracing::info!(key, version = %removal.version, "already gone from storage; its removal is recorded as done");
            done.already_gone.push(key);
        }
    }
}

/// The manifest stored under `key`, as hosts read it now.
async fn read_manifest(storage: &Storage, key: &str) -> Result<Manifest, SweepError> {
    let bytes = storage
        .get(key)
        .await
        .map_err(|source| SweepError::ManifestUnreadable {
            key: key.to_owned(),
            source,
        })?
        .ok_or_else(|| SweepError::ManifestMissing {
            key: key.to_owned(),
        })?;
    let invalid = |reason: String| SweepError::ManifestInvalid {
        key: key.to_owned(),
        reason,
    };
    let text = String::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8 text".to_owned()))?;
    Manifest::parse(&text).map_err(|error| invalid(error.to_string()))
}

impl Worker {
    /// Runs a sweep now, logging what it did.
    pub(super) async fn sweep_storage_removals(&self) {
        let services = &self.services;
        match sweep(
            &services.storage,
            &services.database,
            OffsetDateTime::now_utc(),
        )
        .await
        {
            Ok(done) if done.is_empty() => {}
            Ok(done) => tracing::info!(
                removed = done.removed.len(),
                already_gone = done.already_gone.len(),
                kept_listed = done.kept_listed.len(),
                failed = done.failed.len(),
                "storage removal sweep"
            ),
            Err(error) => tracing::warn!(%error, "storage removal sweep stopped"),
        }
    }
}
