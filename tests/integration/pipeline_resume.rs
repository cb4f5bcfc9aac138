//! The release pipeline of `pipeline.rs` with two architectures, and killed (SIGKILL) in
//! the middle of each step that changes what others see: `upload`, `manifest`,
//! `consumers` and `tracking`. Restarted, the job finishes, and everything it publishes is there once.

use std::fs;
use std::process::Command;
use std::time::Duration;

use alloy_sysext_automation::arch::Arch;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::fake_github::{Asset, Failure};
use crate::pipeline::{
    BUILD_REPO, GHOST, INFISICAL, INFISICAL_PATH, VERSION, World, assert_published, wait_for_jobs,
};
use crate::serve_process::Server;

crate::pipeline::on_each_database!(
    a_kill_in_the_upload_step_resumes_and_publishes_once,
    a_kill_in_the_manifest_step_with_the_work_directory_gone_builds_again_and_commits_once,
    a_kill_in_the_consumers_step_resumes_and_opens_each_pull_request_once,
    a_kill_in_the_tracking_step_after_its_comment_resumes_and_comments_once,
);

/// The fake GitHub has seen a request `method path` (its answer may still be delayed).
fn asked(world: &World, method: &str, path: &str) -> bool {
    world
        .github
        .requests()
        .iter()
        .any(|r| r.method == method && r.path == path)
}

/// Runs the release job in a server killed once `killed_when` holds (while `step` runs),
/// does `meanwhile` (the server stopped), then runs it in a second server; gives the
/// finished job, as `/api/jobs/1` shows it.
fn kill_in(
    world: &World,
    step: &str,
    killed_when: impl Fn() -> bool,
    meanwhile: impl FnOnce(),
) -> (Value, Server) {
    let server = world.start_server();
    server.deliver("release-kill", "release", &world.release_payload());
    server.wait_for(
        &format!("the {step} step, at the request to stop in"),
        Duration::from_secs(120),
        || server.get("/api/jobs/1").json()["step"] == step && killed_when(),
    );
    let data_dir = server.kill();
    assert_eq!(data_dir, world.data.path());
    meanwhile();
    let restarted = world.start_server();
    let jobs = wait_for_jobs(&restarted, 1);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["attempts"], 2, "{}", jobs[0]);
    let job = restarted.get("/api/jobs/1").json();
    (job, restarted)
}

/// The build repository's commits since `before`: the manifest's and its signature's, once.
fn assert_manifest_committed_once(world: &World, before: usize) {
    // Newest first.
    let commits = world.github.commits(BUILD_REPO, "main");
    let messages: Vec<&str> = commits[..commits.len() - before]
        .iter()
        .rev()
        .map(|c| c.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "chore: publish alloy 1.18.0 in SHA256SUMS",
            "chore: sign SHA256SUMS for alloy 1.18.0"
        ],
        "{commits:?}"
    );
}

fn a_kill_in_the_upload_step_resumes_and_publishes_once(world: World) {
    let before = world.github.commits(BUILD_REPO, "main").len();
    // Checksums and signatures go first, in name order: killed while the checksum is
    // being written, the signature is in storage and the checksum and the images are not.
    let image = "alloy-1.18.0-amd64.raw";
    let checksum = format!("{image}.sha256");
    let signature = format!("{image}.asc");
    world
        .s3
        .stall_next("PUT", &checksum, Duration::from_secs(5));
    let writing_checksum = || {
        world
            .s3
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.target.contains(&checksum))
    };
    let (job, _server) = kill_in(&world, "upload", writing_checksum, || {
        let keys = world.s3.keys();
        assert!(keys.contains(&signature), "{keys:?}");
        for key in [checksum.as_str(), image, "alloy-1.18.0.raw"] {
            assert!(!keys.iter().any(|k| k == key), "{key}: {keys:?}");
        }
    });
    assert_published(&world, &job);
    assert_manifest_committed_once(&world, before);

    // Each file was written to storage once, the signature by the first attempt only.
    let uploaded = job["result"]["uploads"].as_array().unwrap();
    let keys: Vec<&str> = uploaded
        .iter()
        .map(|u| u["key"].as_str().unwrap())
        .collect();
    for key in &keys {
        let written = world
            .s3
            .requests()
            .iter()
            .filter(|r| {
                r.method == "PUT"
                    && r.status == 200
                    && r.target
                        .split('?')
                        .next()
                        .unwrap()
                        .ends_with(&format!("/{key}"))
            })
            .count();
        assert_eq!(written, 1, "{key}: {:?}", world.s3.requests());
    }
    for upload in uploaded {
        let first_attempt = upload["key"] == signature.as_str();
        assert_eq!(upload["uploaded"], !first_attempt, "{upload}");
    }
    assert!(
        keys.contains(&checksum.as_str()) && keys.contains(&image),
        "{keys:?}"
    );
    // With the right content: the checksum names the image's hash, the signature checks.
    let (data, _) = world.s3.object(image).unwrap();
    let sha256 = hex::encode(Sha256::digest(&data));
    let (listed, _) = world.s3.object(&checksum).unwrap();
    let listed = String::from_utf8(listed).unwrap();
    assert!(listed.starts_with(&sha256), "{listed}");
    let (signed, _) = world.s3.object(&signature).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(image), &data).unwrap();
    fs::write(dir.path().join(&signature), &signed).unwrap();
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&ed25519_keys().public());
    assert!(gpg.sysupdate_verify(
        &keyring,
        &dir.path().join(&signature),
        &dir.path().join(image)
    ));
}

fn a_kill_in_the_manifest_step_with_the_work_directory_gone_builds_again_and_commits_once(
    world: World,
) {
    let before = world.github.commits(BUILD_REPO, "main").len();
    // Killed between the manifest's commit and its signature's.
    let signature = format!("/repos/{BUILD_REPO}/contents/SHA256SUMS.gpg");
    world
        .github
        .fail_next("PUT", &signature, Failure::Delay(Duration::from_secs(5)));
    let work = world.data.path().join("work").join("job-1");
    let (job, _server) = kill_in(
        &world,
        "manifest",
        || asked(&world, "PUT", &signature),
        || {
            // The build output is lost with the work directory: the job cannot finish the
            // manifest from it, and starts again at the download.
            assert!(work.join("out").is_dir(), "{}", work.display());
            fs::remove_dir_all(&work).unwrap();
        },
    );
    let second: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|run| run["attempt"] == 2)
        .map(|run| run["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        second,
        [
            "download",
            "build",
            "upload",
            "manifest",
            "release",
            "consumers",
            "prune",
            "tracking",
            "report"
        ],
        "{job}"
    );
    // Reproducible: the second build is the one the first attempt published, so nothing is
    // uploaded again, and the job still reports what its first attempt published.
    assert_eq!(job["result"]["published"], "new", "{job}");
    assert_published(&world, &job);
    assert_manifest_committed_once(&world, before);
    assert!(!work.exists(), "the finished job's work directory goes");
}

fn a_kill_in_the_consumers_step_resumes_and_opens_each_pull_request_once(world: World) {
    let before = world.github.commits(BUILD_REPO, "main").len();
    let pulls = format!("/repos/{GHOST}/pulls");
    world
        .github
        .fail_next("POST", &pulls, Failure::Delay(Duration::from_secs(5)));
    let (job, _server) = kill_in(&world, "consumers", || asked(&world, "POST", &pulls), || {});
    // assert_published: one release, one pull request per consumer, the tracking issue
    // closed.
    assert_published(&world, &job);
    assert_manifest_committed_once(&world, before);
    for repo in [GHOST, INFISICAL] {
        let consumer = job["result"]["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["repo"] == repo)
            .cloned()
            .unwrap_or_else(|| panic!("{repo}: {job}"));
        let pull = &world.github.pulls(repo)[0];
        assert!(
            consumer["pull_request"]
                .as_str()
                .is_some_and(|url| url.ends_with(&format!("/pull/{}", pull.number))),
            "{consumer}"
        );
    }
}

fn a_kill_in_the_tracking_step_after_its_comment_resumes_and_comments_once(world: World) {
    let tracking = |world: &World| {
        world
            .github
            .issues(BUILD_REPO)
            .into_iter()
            .find(|issue| issue.title == "Alloy 1.18.0 sysext build triggered")
            .expect("the tracking issue")
    };
    // Killed after the outcome is commented, while the issue is being closed.
    let close = format!("/repos/{BUILD_REPO}/issues/{}", tracking(&world).number);
    world
        .github
        .fail_next("PATCH", &close, Failure::Delay(Duration::from_secs(5)));
    let (job, _server) = kill_in(
        &world,
        "tracking",
        || asked(&world, "PATCH", &close),
        || {
            let issue = tracking(&world);
            assert_eq!(issue.state, "open");
            assert_eq!(issue.comments.len(), 1, "{:?}", issue.comments);
        },
    );
    // assert_published: the issue is closed, its last comment the outcome.
    assert_published(&world, &job);
    let issue = tracking(&world);
    assert_eq!(issue.comments.len(), 1, "{:?}", issue.comments);
    assert_eq!(
        job["result"]["tracking_issue"],
        format!("https://github.com/{BUILD_REPO}/issues/{}", issue.number),
        "{job}"
    );
}

#[test]
fn two_architectures_are_built_uploaded_listed_and_pinned() {
    let world = World::new();
    let mut settings = fs::read_to_string(&world.config).unwrap();
    settings.push_str("[image]\narches = [\"amd64\", \"arm64\"]\n");
    fs::write(&world.config, settings).unwrap();
    let work = tempfile::tempdir().unwrap();
    let assets: Vec<Asset> = [Arch::Amd64, Arch::Arm64]
        .into_iter()
        .map(|arch| {
            let (zip, _) = upstream_zip(work.path(), arch, 256 << 10);
            let data = fs::read(zip).unwrap();
            Asset {
                name: format!("alloy-linux-{arch}.zip"),
                digest: Some(format!("sha256:{}", hex::encode(Sha256::digest(&data)))),
                data,
            }
        })
        .collect();
    world
        .github
        .add_release("grafana/alloy", &format!("v{VERSION}"), assets);
    // One consumer pins the arm64 image.
    let ghost = fs::read_to_string(fixture("real-world/ghost.bu")).unwrap();
    world.github.set_file(
        INFISICAL,
        "main",
        INFISICAL_PATH,
        ghost.replace("-amd64.raw", "-arm64.raw"),
    );
    let server = world.start_server();
    server.deliver("release-arches", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);

    let keys = world.s3.keys();
    let mut hashes = Vec::new();
    for arch in ["amd64", "arm64"] {
        let image = format!("alloy-1.18.0-{arch}.raw");
        for key in [
            image.clone(),
            format!("{image}.sha256"),
            format!("{image}.asc"),
        ] {
            assert!(keys.contains(&key), "{key} missing: {keys:?}");
        }
        let (data, _) = world.s3.object(&image).unwrap();
        hashes.push((arch, image, hex::encode(Sha256::digest(&data))));
    }
    let (manifest, _) = world.s3.object("SHA256SUMS").unwrap();
    let manifest = String::from_utf8(manifest).unwrap();
    for (_, image, sha256) in &hashes {
        assert!(
            manifest.contains(&format!("{sha256}  {image}")),
            "{image}: {manifest}"
        );
    }
    assert_eq!(
        world.github.file(BUILD_REPO, "main", "SHA256SUMS").unwrap(),
        manifest.as_bytes()
    );
    let releases = world.github.releases(BUILD_REPO);
    assert_eq!(releases.len(), 1);
    for (_, image, sha256) in &hashes {
        assert!(
            releases[0].body.contains(image.as_str()) && releases[0].body.contains(sha256.as_str()),
            "{image}: {}",
            releases[0].body
        );
    }
    // Each consumer gets the image of the architecture it pins.
    for (repo, (arch, image, sha256)) in [(GHOST, &hashes[0]), (INFISICAL, &hashes[1])] {
        let pulls = world.github.pulls(repo);
        assert_eq!(pulls.len(), 1, "{repo}: {pulls:?}");
        assert!(
            pulls[0].body.contains(sha256.as_str()),
            "{arch}: {}",
            pulls[0].body
        );
        let diff = world.github.pull_diff(repo, pulls[0].number);
        let added = &diff[0].2;
        assert!(
            added
                .iter()
                .any(|l| l.trim() == format!("hash: sha256-{sha256}")),
            "{repo}: {added:?}"
        );
        assert!(
            added.iter().any(|l| l.contains(image.as_str())),
            "{added:?}"
        );
    }

    // The job API shows the result under the keys it always had, each image with its
    // fields, each consumer with its outcome.
    let job = server.get("/api/jobs/1").json();
    let result = job["result"].as_object().unwrap();
    let mut keys: Vec<&str> = result.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "consumers",
            "downloads",
            "images",
            "manifest_commits",
            "published",
            "release",
            "release_created",
            "tracking_issue",
            "uploads",
            "upstream_notes",
            "upstream_release"
        ],
        "{job}"
    );
    assert_eq!(job["version"], VERSION);
    assert_eq!(job["step"], "report");
    assert_eq!(result["published"], "new");
    assert_eq!(result["release_created"], true);
    assert_eq!(result["upstream_notes"], "release notes");
    for (index, (arch, image, sha256)) in hashes.iter().enumerate() {
        let shown = &result["images"][index];
        assert_eq!(shown["arch"], *arch, "{shown}");
        assert_eq!(shown["file"], *image, "{shown}");
        assert_eq!(shown["sha256"], *sha256, "{shown}");
        assert!(shown["size"].as_u64().is_some_and(|s| s > 0), "{shown}");
        assert!(
            shown["binary_sha256"]
                .as_str()
                .is_some_and(|s| s.len() == 64)
        );
        assert!(shown["url"].as_str().unwrap().ends_with(image.as_str()));
        let download = &result["downloads"][index];
        assert_eq!(download["asset"], format!("alloy-linux-{arch}.zip"));
    }
    for (repo, (_, image, _)) in [(GHOST, &hashes[0]), (INFISICAL, &hashes[1])] {
        let consumer = result["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["repo"] == repo)
            .unwrap();
        let mut fields: Vec<&str> = consumer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["from", "image", "outcome", "path", "pull_request", "repo"],
            "{consumer}"
        );
        assert_eq!(consumer["outcome"], "opened");
        assert_eq!(consumer["from"], "1.14.2");
        assert_eq!(consumer["image"], *image);
    }
    assert_eq!(
        result["manifest_commits"].as_array().map(Vec::len),
        Some(2),
        "{job}"
    );
}

/// A job whose process died in it again and again fails at its next start instead of
/// starting once more, says why, and publishes nothing: killed in its upload step after
/// nine earlier starts (its attempts count set as they would have left it), the next
/// server claims it an eleventh time and ends it.
#[test]
fn a_job_started_too_often_without_ending_fails_instead_of_starting_again() {
    let world = World::new();
    let image = "alloy-1.18.0-amd64.raw";
    let checksum = format!("{image}.sha256");
    world
        .s3
        .stall_next("PUT", &checksum, Duration::from_secs(5));
    let server = world.start_server();
    server.deliver("release-crashing", "release", &world.release_payload());
    server.wait_for(
        "the upload step, writing the checksum",
        Duration::from_secs(120),
        || {
            server.get("/api/jobs/1").json()["step"] == "upload"
                && world
                    .s3
                    .requests()
                    .iter()
                    .any(|r| r.method == "PUT" && r.target.contains(&checksum))
        },
    );
    server.kill();
    let database = world.data.path().join("alloy-sysext.db");
    run_ok(Command::new("python3").arg("-c").arg(format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute('UPDATE jobs SET attempts = 10 WHERE id = 1'); c.commit()",
        database.to_str().unwrap()
    )));

    let restarted = world.start_server();
    let jobs = wait_for_jobs(&restarted, 1);
    assert_eq!(jobs[0]["state"], "failed", "{}", jobs[0]);
    assert_eq!(jobs[0]["attempts"], 11, "{}", jobs[0]);
    let error = jobs[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "the job was started 11 times without ending, the last time at the upload step"
        ) && error.contains("/rebuild"),
        "{error}"
    );
    restarted.wait_for(
        "the failure on the tracking issue",
        Duration::from_secs(30),
        || {
            world
                .tracking_issue()
                .comments
                .iter()
                .any(|c| c.body.contains("started 11 times"))
        },
    );
    assert!(world.github.releases(BUILD_REPO).is_empty());
    assert!(world.github.pulls(GHOST).is_empty());
    assert!(!world.s3.keys().iter().any(|key| key == image));
}
