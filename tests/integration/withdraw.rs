//! Withdrawing a published version through the real server, the stateful fake GitHub and a
//! real S3-compatible server: `/withdraw` takes its lines out of the signed manifest (in
//! storage and in the build repository), marks its release, closes the open consumer pull
//! requests for it and moves consumers that pin it back; a release event for it is refused
//! from then on, and `/rebuild` brings it back.

use std::time::Duration;

use alloy_sysext_automation::database::Database;
use alloy_sysext_automation::database::storage_removals::{RemovalReason, StorageRemoval};
use serde_json::{Value, json};

use crate::pipeline::{
    BUILD_REPO, GHOST, INFISICAL, INFISICAL_PATH, World, build_repo_comment, signed_manifest,
    wait_for_jobs,
};
use crate::serve_process::Server;

const WITHDRAWN_BRANCH: &str = "feature/update-alloy-sysext-to-1.18.0";
const BACK_BRANCH: &str = "feature/update-alloy-sysext-to-1.17.1";
const IMAGE_KEYS: [&str; 8] = [
    "alloy-1.18.0-amd64.raw",
    "alloy-1.18.0-amd64.raw.sha256",
    "alloy-1.18.0-amd64.raw.asc",
    "alloy-1.18.0-amd64.raw.intoto.json",
    "alloy-1.18.0-amd64.raw.intoto.json.asc",
    "alloy-1.18.0.raw",
    "alloy-1.18.0.raw.sha256",
    "alloy-1.18.0.raw.asc",
];

/// Publishes 1.18.0 with the release event; INFISICAL then merges its pull request (its
/// base branch pins 1.18.0), GHOST leaves its own open.
pub(crate) fn published_world() -> (World, Server) {
    let world = World::new();
    let server = world.start_server();
    server.deliver("release-1", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    let merged = world
        .github
        .file(INFISICAL, WITHDRAWN_BRANCH, INFISICAL_PATH)
        .unwrap();
    world
        .github
        .set_file(INFISICAL, "main", INFISICAL_PATH, &merged);
    world
        .github
        .set_permission(BUILD_REPO, "noahwhite", "admin");
    (world, server)
}

fn newest_job(server: &Server, count: usize) -> Value {
    wait_for_jobs(server, count)[0].clone()
}

#[test]
fn a_withdrawn_version_leaves_the_manifest_and_consumers_and_only_a_rebuild_brings_it_back() {
    let (world, server) = published_world();
    let before = signed_manifest(&world);
    assert!(before.contains("alloy-1.18.0-amd64.raw"));

    server.deliver(
        "withdraw-1",
        "issue_comment",
        &build_repo_comment(901, "/withdraw 1.18.0 crashes on start @everyone"),
    );
    let job = newest_job(&server, 2);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "withdraw", "{job}");

    // The manifest hosts read lists every line it did but 1.18.0's, signed.
    let after = signed_manifest(&world);
    let expected: String = before
        .lines()
        .filter(|line| !line.contains("alloy-1.18.0"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(after, expected);
    assert_eq!(
        job["result"]["withdrawal"]["files"],
        json!(["alloy-1.18.0-amd64.raw"]),
        "{job}"
    );
    // The removal is a commit of its own, saying why; then the signature's.
    let commits = world.github.commits(BUILD_REPO, "main");
    assert_eq!(commits[0].changed_paths, ["SHA256SUMS.gpg"]);
    assert_eq!(
        commits[0].message,
        "chore: sign SHA256SUMS for the withdrawal of alloy 1.18.0"
    );
    assert_eq!(commits[1].changed_paths, ["SHA256SUMS"]);
    assert_eq!(
        commits[1].message,
        "chore: withdraw alloy 1.18.0 from SHA256SUMS: crashes on start @everyone"
    );
    // The files stay for hosts that were downloading them, for the grace period.
    let keys = world.s3.keys();
    for key in IMAGE_KEYS {
        assert!(keys.iter().any(|k| k == key), "{key} is gone: {keys:?}");
    }
    let pending = pending_removals(&world);
    let mut pending_keys: Vec<&str> = pending.iter().map(|r| r.key.as_str()).collect();
    pending_keys.sort();
    let mut expected_keys = IMAGE_KEYS.to_vec();
    expected_keys.sort();
    assert_eq!(pending_keys, expected_keys);
    let due = &pending[0].due_at;
    assert!(pending.iter().all(|r| &r.due_at == due
        && r.why == RemovalReason::Withdrawn
        && r.manifest_key == "SHA256SUMS"));
    let in_a_week = alloy_sysext_automation::database::timestamp::after(
        std::time::Duration::from_secs(7 * 24 * 3600),
    );
    let in_six_days = alloy_sysext_automation::database::timestamp::after(
        std::time::Duration::from_secs(6 * 24 * 3600),
    );
    assert!(
        due.as_str() > in_six_days.as_str() && due.as_str() <= in_a_week.as_str(),
        "{due}"
    );
    assert_eq!(
        job["result"]["withdrawal"]["files_removed_after"],
        due.as_str()
    );

    // The release says it is withdrawn, by whom and why, the words shown as code.
    let release = &world.github.releases(BUILD_REPO)[0];
    assert_eq!(release.name, "Alloy Sysext 1.18.0 (withdrawn)");
    assert!(
        release
            .body
            .starts_with("<!-- alloy-sysext: withdrawn -->\n> [!CAUTION]\n> **Withdrawn** on "),
        "{}",
        release.body
    );
    assert!(
        release
            .body
            .contains(" by `noahwhite`: `crashes on start @everyone`\n"),
        "{}",
        release.body
    );

    // GHOST pins an older version: its pull request for 1.18.0 is closed with a comment,
    // nothing else. INFISICAL pins 1.18.0: its pull request for it is closed, and it gets
    // one back to 1.17.1 whose file is the base's with 1.17.1 pinned.
    for repo in [GHOST, INFISICAL] {
        let pulls = world.github.pulls(repo);
        let withdrawn = pulls.iter().find(|p| p.head == WITHDRAWN_BRANCH).unwrap();
        assert_eq!(withdrawn.state, "closed", "{repo}");
        assert!(!withdrawn.merged, "{repo}");
        let comments = world.github.comments(repo, withdrawn.number);
        assert_eq!(comments.len(), 1, "{repo}: {comments:?}");
        assert_eq!(
            comments[0].body,
            "Grafana Alloy 1.18.0 was withdrawn from the published images: hosts no longer \
             install it. The reason given: `crashes on start @everyone`. This pull request is \
             closed; a later version gets a pull request of its own."
        );
    }
    assert_eq!(world.github.pulls(GHOST).len(), 1);
    assert_eq!(consumer(&job, GHOST)["outcome"], "pins another version");
    let back: Vec<_> = world
        .github
        .pulls(INFISICAL)
        .into_iter()
        .filter(|p| p.head == BACK_BRANCH)
        .collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].state, "open");
    assert_eq!(
        back[0].title,
        "Move Grafana Alloy sysext back to 1.17.1: 1.18.0 was withdrawn"
    );
    let moved = String::from_utf8(
        world
            .github
            .file(INFISICAL, BACK_BRANCH, INFISICAL_PATH)
            .unwrap(),
    )
    .unwrap();
    let base = String::from_utf8(
        world
            .github
            .file(INFISICAL, "main", INFISICAL_PATH)
            .unwrap(),
    )
    .unwrap();
    let hash_1181 = line_hash(&before, "alloy-1.18.0-amd64.raw");
    let hash_1171 = line_hash(&before, "alloy-1.17.1-amd64.raw");
    assert_eq!(
        moved,
        base.replace("1.18.0", "1.17.1")
            .replace(&hash_1181, &hash_1171)
    );
    assert_eq!(consumer(&job, INFISICAL)["outcome"], "opened");
    assert_eq!(job["result"]["withdrawal"]["moved_to"], "1.17.1");

    // The status page and /status name the withdrawn version, who withdrew it and why.
    let page = server.get("/").body;
    assert!(
        page.contains("<h2 id=\"withdrawn\">Withdrawn</h2>"),
        "{page}"
    );
    assert!(page.contains("crashes on start @everyone"));

    // A release event for it (a release made again) is refused: nothing is built or
    // published.
    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    let puts_before = world.s3.put_count();
    let release_again = json!({
        "action": "published",
        "release": {"id": 9002, "tag_name": "v1.18.0", "draft": false, "prerelease": false, "author": {"login": "noahwhite"}},
        "repository": {"full_name": BUILD_REPO},
        "sender": {"login": "noahwhite", "type": "User"},
        "installation": {"id": 77},
    });
    server.deliver("release-2", "release", release_again.to_string().as_bytes());
    let job = newest_job(&server, 3);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["error"],
        "1.18.0 was withdrawn by noahwhite (job #2) and is not published again by a release, a \
         dispatch or the upstream check; comment `/rebuild 1.18.0` to publish it again"
    );
    assert_eq!(job["step"], "download");
    assert_eq!(
        world.github.commits(BUILD_REPO, "main").len(),
        commits_before
    );
    assert_eq!(world.s3.put_count(), puts_before);
    assert_eq!(signed_manifest(&world), expected);

    // `/rebuild` publishes it again and restores the release.
    server.deliver(
        "rebuild-1",
        "issue_comment",
        &build_repo_comment(902, "/rebuild 1.18.0"),
    );
    let job = newest_job(&server, 4);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(signed_manifest(&world), before);
    let release = &world.github.releases(BUILD_REPO)[0];
    assert_eq!(release.name, "Alloy Sysext 1.18.0");
    assert!(!release.body.contains("withdrawn"), "{}", release.body);
    let page = server.get("/").body;
    assert!(!page.contains("id=\"withdrawn\""), "{page}");
    // Its files no longer leave storage.
    assert_eq!(pending_removals(&world), []);
}

/// The storage removals the server has pending, read from its database.
pub(crate) fn pending_removals(world: &World) -> Vec<StorageRemoval> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        Database::open_existing(None, world.data.path())
            .await
            .unwrap()
            .pending_removals()
            .await
            .unwrap()
    })
}

#[test]
fn withdrawing_a_version_that_is_not_listed_changes_nothing_and_says_what_is() {
    let (world, server) = published_world();
    let state = world.state();
    let commits = world.github.commits(BUILD_REPO, "main").len();
    server.deliver(
        "withdraw-1",
        "issue_comment",
        &build_repo_comment(901, "/withdraw 1.12.0"),
    );
    let job = newest_job(&server, 2);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["error"],
        "alloy 1.12.0 is not listed in SHA256SUMS, so there is nothing to withdraw (the newest \
         it lists: 1.18.0, 1.17.1, 1.17.0, 1.16.3, 1.16.2)"
    );
    assert_eq!(world.state(), state);
    assert_eq!(world.github.commits(BUILD_REPO, "main").len(), commits);
    let page = server.get("/").body;
    assert!(!page.contains("id=\"withdrawn\""));
}

fn consumer<'a>(job: &'a Value, repo: &str) -> &'a Value {
    job["result"]["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["repo"] == repo)
        .unwrap_or_else(|| panic!("no outcome for {repo}: {job}"))
}

/// The hash `manifest` lists for `file`.
fn line_hash(manifest: &str, file: &str) -> String {
    manifest
        .lines()
        .find_map(|line| line.strip_suffix(&format!("  {file}")))
        .unwrap_or_else(|| panic!("{file} not in {manifest}"))
        .to_owned()
}

#[test]
fn a_build_waiting_to_retry_when_its_version_is_withdrawn_publishes_nothing_more() {
    let world = World::new();
    world
        .github
        .set_permission(BUILD_REPO, "noahwhite", "admin");
    // GitHub holds GHOST's pull request back for longer than the server waits: the build
    // waits five seconds to retry its consumers.
    world.github.fail_next(
        "POST",
        &format!("/repos/{GHOST}/pulls"),
        crate::fake_github::Failure::SecondaryRateLimit {
            retry_after: 100_000,
        },
    );
    let server = world.start_server_with(&[("JOB_RETRY_SECONDS", "5")]);
    server.deliver("release-1", "release", &world.release_payload());
    server.wait_for(
        "the build to wait for a retry",
        Duration::from_secs(60),
        || {
            let jobs = server.get("/api/jobs").json()["jobs"].clone();
            jobs[0]["state"] == "retrying"
        },
    );
    server.deliver(
        "withdraw-1",
        "issue_comment",
        &build_repo_comment(911, "/withdraw 1.18.0 crashes on start"),
    );
    let jobs = wait_for_jobs(&server, 2);
    let (withdraw, build) = (&jobs[0], &jobs[1]);
    assert_eq!(withdraw["kind"], "withdraw", "{withdraw}");
    assert_eq!(withdraw["state"], "succeeded", "{withdraw}");
    // The build resumed after the withdrawal and stopped at once, saying why.
    assert_eq!(build["state"], "failed", "{build}");
    assert_eq!(build["step"], "consumers", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(
        error.starts_with("1.18.0 was withdrawn by noahwhite (job #2)"),
        "{error}"
    );
    // GHOST got no pull request for the withdrawn version; INFISICAL's is closed.
    assert!(
        world
            .github
            .pulls(GHOST)
            .iter()
            .all(|pull| pull.head != WITHDRAWN_BRANCH || pull.state == "closed"),
        "{:?}",
        world.github.pulls(GHOST)
    );
    let manifest = signed_manifest(&world);
    assert!(!manifest.contains("alloy-1.18.0"), "{manifest}");
}
