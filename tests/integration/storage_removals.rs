//! Published files leaving storage after their grace period: the removal sweep against a
//! real S3-compatible server (moto) and a real database, then the real server running it
//! by itself between jobs.

use std::time::Duration;

use alloy_sysext_automation::database::Database;
use alloy_sysext_automation::database::storage_removals::{NewRemoval, RemovalReason};
use alloy_sysext_automation::manifest::{Manifest, ManifestEntry};
use alloy_sysext_automation::storage::StorageError;
use alloy_sysext_automation::worker::storage_removals::{RemovalError, SweepError, sweep};
use time::OffsetDateTime;

use crate::fake_github::FakeGitHub;
use crate::s3_server::S3Server;
use crate::serve_process::Server;
use crate::test_app::{app_env, install_app};

/// The storage keys of `version`'s amd64 image and its `.asc` and `.sha256` under `prefix`,
/// sorted.
fn image_keys(prefix: &str, version: &str) -> [String; 3] {
    ["", ".asc", ".sha256"].map(|suffix| format!("{prefix}alloy-{version}-amd64.raw{suffix}"))
}

/// Removals of `version`'s image and its companions under `prefix`, guarded by that
/// prefix's manifest.
fn removals(prefix: &str, version: &str, why: RemovalReason) -> Vec<NewRemoval> {
    image_keys(prefix, version)
        .into_iter()
        .map(|key| NewRemoval {
            key,
            manifest_key: format!("{prefix}SHA256SUMS"),
            listed_file: format!("alloy-{version}-amd64.raw"),
            version: version.parse().unwrap(),
            why,
        })
        .collect()
}

/// A manifest listing the amd64 images of `versions`.
fn manifest(versions: &[&str]) -> Vec<u8> {
    let mut manifest = Manifest::parse("").unwrap();
    for version in versions {
        manifest
            .upsert(ManifestEntry {
                sha256: "a".repeat(64),
                file: format!("alloy-{version}-amd64.raw"),
            })
            .unwrap();
    }
    manifest.render().into_bytes()
}

fn store_image(s3: &S3Server, prefix: &str, version: &str) {
    for key in image_keys(prefix, version) {
        s3.put_raw(&key, key.as_bytes(), &[]);
    }
}

async fn pending_keys(database: &Database) -> Vec<String> {
    let mut keys: Vec<String> = database
        .pending_removals()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    keys.sort();
    keys
}

fn sorted(keys: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut keys: Vec<String> = keys.into_iter().map(Into::into).collect();
    keys.sort();
    keys
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

#[tokio::test]
async fn due_files_go_unless_listed_again_and_failures_stay_pending() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let database = Database::open(None, dir.path()).await.unwrap();
    let now = OffsetDateTime::now_utc();

    // 1.3.0 is current; 1.2.0 was withdrawn and then published again; 1.1.0 was
    // withdrawn a week ago; 1.0.0 was pruned yesterday; 0.9.0's image is gone already.
    s3.put_raw("SHA256SUMS", &manifest(&["1.2.0", "1.3.0"]), &[]);
    for version in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        store_image(&s3, "", version);
    }
    let past = now - days(1);
    database
        .schedule_removals(&removals("", "1.1.0", RemovalReason::Withdrawn), past)
        .await
        .unwrap();
    database
        .schedule_removals(&removals("", "1.2.0", RemovalReason::Withdrawn), past)
        .await
        .unwrap();
    database
        .schedule_removals(&removals("", "0.9.0", RemovalReason::Pruned)[..1], past)
        .await
        .unwrap();
    database
        .schedule_removals(&removals("", "1.0.0", RemovalReason::Pruned), now + days(6))
        .await
        .unwrap();
    // The storage refuses to delete one file for as long as the SDK retries.
    s3.fail_matching(3, "DELETE", "alloy-1.1.0-amd64.raw.asc");

    let done = sweep(&storage, &database, now).await.unwrap();
    assert_eq!(
        sorted(&done.removed),
        ["alloy-1.1.0-amd64.raw", "alloy-1.1.0-amd64.raw.sha256"]
    );
    assert_eq!(done.already_gone, ["alloy-0.9.0-amd64.raw"]);
    assert_eq!(sorted(&done.kept_listed), image_keys("", "1.2.0"));
    assert_eq!(done.failed.len(), 1, "{:?}", done.failed);
    let failed = &done.failed[0];
    assert_eq!(failed.key, "alloy-1.1.0-amd64.raw.asc");
    assert!(
        matches!(
            &failed.error,
            RemovalError::Storage(StorageError::Remote {
                operation: "DELETE",
                transient: true,
                ..
            })
        ),
        "{:?}",
        failed.error
    );

    let mut expected_bucket = vec!["SHA256SUMS".to_owned(), "alloy-1.1.0-amd64.raw.asc".into()];
    for version in ["1.0.0", "1.2.0", "1.3.0"] {
        expected_bucket.extend(image_keys("", version));
    }
    assert_eq!(s3.keys(), sorted(expected_bucket.clone()));
    // The failed one stays pending with the one not yet due; the one listed again is no
    // longer scheduled at all; the ones done are recorded.
    let mut expected_pending = vec!["alloy-1.1.0-amd64.raw.asc".to_owned()];
    expected_pending.extend(image_keys("", "1.0.0"));
    assert_eq!(pending_keys(&database).await, sorted(expected_pending));
    for key in image_keys("", "1.2.0") {
        assert_eq!(database.storage_removal(&key).await.unwrap(), None, "{key}");
    }
    for key in ["alloy-1.1.0-amd64.raw", "alloy-0.9.0-amd64.raw"] {
        let row = database.storage_removal(key).await.unwrap().unwrap();
        assert!(row.removed_at.is_some(), "{row:?}");
    }

    // The next sweep gets the one that failed, and touches nothing else.
    let done = sweep(&storage, &database, now).await.unwrap();
    assert_eq!(done.removed, ["alloy-1.1.0-amd64.raw.asc"]);
    assert!(done.already_gone.is_empty() && done.kept_listed.is_empty() && done.failed.is_empty());
    expected_bucket.retain(|key| key != "alloy-1.1.0-amd64.raw.asc");
    assert_eq!(s3.keys(), sorted(expected_bucket));
    assert_eq!(pending_keys(&database).await, image_keys("", "1.0.0"));

    // Nothing is due until 1.0.0's time comes.
    assert!(sweep(&storage, &database, now).await.unwrap().is_empty());
    let done = sweep(&storage, &database, now + days(7)).await.unwrap();
    assert_eq!(sorted(&done.removed), image_keys("", "1.0.0"));
    assert!(pending_keys(&database).await.is_empty());
}

#[tokio::test]
async fn a_manifest_that_cannot_be_read_stops_the_sweep_before_any_delete() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let database = Database::open(None, dir.path()).await.unwrap();
    let now = OffsetDateTime::now_utc();

    // 1.1.0 was withdrawn from both channels; the canary manifest is not one.
    s3.put_raw("SHA256SUMS", &manifest(&["1.3.0"]), &[]);
    s3.put_raw("canary/SHA256SUMS", b"not a manifest\n", &[]);
    store_image(&s3, "", "1.1.0");
    store_image(&s3, "canary/", "1.1.0");
    let mut both = removals("", "1.1.0", RemovalReason::Withdrawn);
    both.extend(removals("canary/", "1.1.0", RemovalReason::Withdrawn));
    database
        .schedule_removals(&both, now - days(1))
        .await
        .unwrap();
    let bucket = s3.keys();
    let pending = pending_keys(&database).await;
    assert_eq!(pending.len(), 6);

    let error = sweep(&storage, &database, now).await.unwrap_err();
    assert!(
        matches!(&error, SweepError::ManifestInvalid { key, .. } if key == "canary/SHA256SUMS"),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(
            "the manifest canary/SHA256SUMS cannot be read as one: SHA256SUMS line 1: "
        ),
        "{error}"
    );

    // Missing, or storage failing while it is read: the same.
    storage.delete("canary/SHA256SUMS").await.unwrap();
    let error = sweep(&storage, &database, now).await.unwrap_err();
    assert!(
        matches!(&error, SweepError::ManifestMissing { key } if key == "canary/SHA256SUMS"),
        "{error:?}"
    );
    s3.set_failing(true);
    let error = sweep(&storage, &database, now).await.unwrap_err();
    assert!(
        matches!(&error, SweepError::ManifestUnreadable { source, .. } if source.is_transient()),
        "{error:?}"
    );
    s3.set_failing(false);

    let deletes = s3
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 1, "only the test's own delete of the manifest");
    let mut without_canary_manifest = bucket.clone();
    without_canary_manifest.retain(|key| key != "canary/SHA256SUMS");
    assert_eq!(s3.keys(), without_canary_manifest);
    assert_eq!(pending_keys(&database).await, pending);

    // Readable again (and listing nothing): both channels' files go.
    s3.put_raw("canary/SHA256SUMS", b"", &[]);
    let done = sweep(&storage, &database, now).await.unwrap();
    assert_eq!(sorted(&done.removed), pending);
    assert_eq!(s3.keys(), ["SHA256SUMS", "canary/SHA256SUMS"]);
}

/// The value of the metric sample `series` in the server's `/metrics`.
fn metric(server: &Server, series: &str) -> Option<f64> {
    server
        .get("/metrics")
        .body
        .lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
        .next()
}

#[test]
fn the_server_sweeps_due_removals_soon_after_start() {
    // The server is a process driven from this thread; the database is read beside it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let github = FakeGitHub::start();
    install_app(&github, &[(77, "noahwhite")]);
    github.add_repo("noahwhite/alloy-sysext-build", "main");
    let s3 = S3Server::start();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("settings.toml");
    std::fs::write(
        &config,
        "consumers = []\n[schedule]\ncheck_upstream = \"off\"\n",
    )
    .unwrap();

    // Before the server starts: 1.1.0 withdrawn past its grace period, 1.2.0 published
    // again after its withdrawal, 1.0.0 pruned and still in its grace period.
    s3.put_raw("SHA256SUMS", &manifest(&["1.2.0", "1.3.0"]), &[]);
    for version in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        store_image(&s3, "", version);
    }
    let now = OffsetDateTime::now_utc();
    let database = runtime.block_on(async {
        let database = Database::open(None, data.path()).await.unwrap();
        for (version, why, due) in [
            ("1.1.0", RemovalReason::Withdrawn, now - days(1)),
            ("1.2.0", RemovalReason::Withdrawn, now - days(1)),
            ("1.0.0", RemovalReason::Pruned, now + days(6)),
        ] {
            database
                .schedule_removals(&removals("", version, why), due)
                .await
                .unwrap();
        }
        database
    });

    let mut env = app_env(&github, &config);
    env.extend(s3.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(data.path(), &env);
    server.wait_for("the sweep at start", Duration::from_secs(60), || {
        runtime.block_on(pending_keys(&database)) == image_keys("", "1.0.0")
    });

    let mut expected_bucket = vec!["SHA256SUMS".to_owned()];
    for version in ["1.0.0", "1.2.0", "1.3.0"] {
        expected_bucket.extend(image_keys("", version));
    }
    assert_eq!(s3.keys(), sorted(expected_bucket));
    runtime.block_on(async {
        for key in image_keys("", "1.2.0") {
            assert_eq!(database.storage_removal(&key).await.unwrap(), None);
        }
        for key in image_keys("", "1.1.0") {
            let row = database.storage_removal(&key).await.unwrap().unwrap();
            assert!(row.removed_at.is_some(), "{row:?}");
        }
    });
    assert_eq!(
        metric(&server, "alloy_sysext_removed_files_total"),
        Some(3.0)
    );
    let log = server.log();
    for key in image_keys("", "1.1.0") {
        assert!(
            log.lines().any(
                |line| line.contains("deleted from storage: its grace period is over")
                    && line.contains(&format!("\"key\":\"{key}\""))
            ),
            "{key} is logged as deleted:\n{log}"
        );
    }
}
