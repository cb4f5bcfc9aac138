//! A staged rollout through the real server, the stateful fake GitHub and a real
//! S3-compatible server: with `publish.channels = ["canary", "stable"]` a release reaches the
//! canary channel only (its own signed manifest and files under `canary/`, the consumer
//! that follows it); `/promote` moves it to stable (the root, where hosts have always read)
//! and to the consumers that follow stable; after `publish.promote_after_hours` a version
//! moves on by itself, unless CI failed on a consumer's pull request for it.

use std::fs;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_github::Failure;
use crate::pipeline::{
    BUILD_REPO, GHOST, GHOST_PATH, INFISICAL, INFISICAL_PATH, RELEASE_KEY, World,
    build_repo_comment, signed_manifest_in, wait_for_jobs,
};
use crate::serve_process::Server;

const BRANCH: &str = "feature/update-alloy-sysext-to-1.18.0";
/// Every file of 1.18.0 in a channel, without the channel's prefix.
const FILES: [&str; 8] = [
    "alloy-1.18.0-amd64.raw",
    "alloy-1.18.0-amd64.raw.sha256",
    "alloy-1.18.0-amd64.raw.asc",
    "alloy-1.18.0-amd64.raw.intoto.json",
    "alloy-1.18.0-amd64.raw.intoto.json.asc",
    "alloy-1.18.0.raw",
    "alloy-1.18.0.raw.sha256",
    "alloy-1.18.0.raw.asc",
];

/// The pipeline's world with two channels: GHOST follows canary, INFISICAL stable (the
/// default, the last); `extra` goes into `[publish]`. A writer may comment commands.
fn staged_world(extra: &str) -> World {
    let world = World::new();
    // Every version is kept unless the test prunes.
    let keep = if extra.contains("keep_versions") {
        ""
    } else {
        "keep_versions = 0\n"
    };
    fs::write(
        &world.config,
        format!(
            "[publish]\nreplace_signatures_by = [\"{RELEASE_KEY}\"]\n{keep}\
             channels = [\"canary\", \"stable\"]\n{extra}\n\
             [schedule]\ncheck_upstream = \"off\"\n\
             [[consumers]]\nrepo = \"{GHOST}\"\npath = \"{GHOST_PATH}\"\nbase = \"develop\"\nchannel = \"canary\"\n\
             [[consumers]]\nrepo = \"{INFISICAL}\"\npath = \"{INFISICAL_PATH}\"\nbase = \"main\"\n"
        ),
    )
    .unwrap();
    world
        .github
        .set_permission(BUILD_REPO, "noahwhite", "admin");
    world
}

/// Posts `body` as comment `id` of a writer in the build repository (delivery `delivery`)
/// and gives the newest job once `jobs` have finished.
fn ask(server: &Server, delivery: &str, id: u64, body: &str, jobs: usize) -> Value {
    server.deliver(delivery, "issue_comment", &build_repo_comment(id, body));
    wait_for_jobs(server, jobs)[0].clone()
}

fn outcome(job: &Value, repo: &str) -> Value {
    job["result"]["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["repo"] == repo)
        .cloned()
        .unwrap_or_else(|| panic!("{repo} is reported: {job}"))
}

/// The root manifest of the fake build repository as the fixture has it (no 1.18.0).
fn fixture_manifest(world: &World) -> Vec<u8> {
    world.github.file(BUILD_REPO, "main", "SHA256SUMS").unwrap()
}

/// The release reaches canary only, as checked here; returns the server and the job.
fn released_to_canary(world: &World) -> (Server, Value) {
    released_to_canary_with(world, &[])
}

/// [`released_to_canary`] on a server with the environment variables `env` too.
fn released_to_canary_with(world: &World, env: &[(&'static str, &str)]) -> (Server, Value) {
    let root_before = fixture_manifest(world);
    let server = world.start_server_with(env);
    server.deliver("release-1", "release", &world.release_payload());
    let job = wait_for_jobs(&server, 1)[0].clone();
    assert_eq!(job["state"], "succeeded", "{job}");

    // canary/SHA256SUMS: signed, in storage and in the build repository, listing 1.18.0.
    let canary = signed_manifest_in(world, "canary/");
    let listed: Vec<&str> = canary
        .lines()
        .map(|line| line.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(listed, ["alloy-1.18.0-amd64.raw"], "{canary}");
    // The files are under canary/ only; the root, which stable hosts read, is unchanged.
    let keys = world.s3.keys();
    for file in FILES {
        assert!(keys.contains(&format!("canary/{file}")), "{file}: {keys:?}");
        assert!(
            !keys.contains(&file.to_owned()),
            "{file} at the root: {keys:?}"
        );
    }
    assert!(!keys.contains(&"SHA256SUMS".to_owned()), "{keys:?}");
    assert_eq!(fixture_manifest(world), root_before);
    assert_eq!(
        job["result"]["images"][0]["url"],
        "https://ghost-sysext-images.separationofconcerns.dev/canary/alloy-1.18.0-amd64.raw"
    );

    // GHOST follows canary and gets its pull request; INFISICAL waits for stable.
    assert_eq!(outcome(&job, GHOST)["outcome"], "opened", "{job}");
    assert_eq!(
        outcome(&job, INFISICAL),
        json!({"repo": INFISICAL, "path": INFISICAL_PATH, "outcome": "follows another channel", "channel": "stable"})
    );
    assert!(world.github.pulls(INFISICAL).is_empty());
    let ghost_pull = &world.github.pulls(GHOST)[0];
    assert!(
        ghost_pull.body.contains(
            "- Image: https://ghost-sysext-images.separationofconcerns.dev/canary/alloy-1.18.0-amd64.raw\n"
        ),
        "{}",
        ghost_pull.body
    );
    (server, job)
}

#[test]
fn a_release_reaches_the_first_channel_and_promote_moves_it_to_the_next() {
    let world = staged_world("");
    let root_before = String::from_utf8(fixture_manifest(&world)).unwrap();
    let (server, _) = released_to_canary(&world);

    let job = ask(&server, "promote-1", 501, "/promote 1.18.0", 2);
    assert_eq!(job["kind"], "promote", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["promotion"]["from"], "canary");
    assert_eq!(job["result"]["promotion"]["to"], "stable");

    // The root manifest lists 1.18.0 beside everything it listed, signed, with canary's hash.
    let stable = signed_manifest_in(&world, "");
    let canary = signed_manifest_in(&world, "canary/");
    let expected = format!("{root_before}{canary}");
    assert_eq!(stable, expected);
    // Every file of the version is at the root now, byte for byte canary's.
    for file in FILES {
        let (copied, _) = world.s3.object(file).unwrap();
        let (original, _) = world.s3.object(&format!("canary/{file}")).unwrap();
        assert_eq!(copied, original, "{file}");
    }
    let commits = world.github.commits(BUILD_REPO, "main");
    assert_eq!(commits[1].changed_paths, ["SHA256SUMS"]);
    assert_eq!(
        commits[1].message,
        "chore: promote alloy 1.18.0 from canary to stable: list it in SHA256SUMS"
    );
    assert_eq!(
        commits[0].message,
        "chore: sign SHA256SUMS for the promotion of alloy 1.18.0"
    );

    // INFISICAL follows stable and gets its pull request now; GHOST's stays the one it had.
    assert_eq!(outcome(&job, INFISICAL)["outcome"], "opened", "{job}");
    assert_eq!(outcome(&job, GHOST)["outcome"], "follows another channel");
    let pulls = world.github.pulls(INFISICAL);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].head, BRANCH);
    assert!(
        pulls[0].body.contains(
            "- Image: https://ghost-sysext-images.separationofconcerns.dev/alloy-1.18.0-amd64.raw\n"
        ),
        "{}",
        pulls[0].body
    );
    assert_eq!(world.github.pulls(GHOST).len(), 1);

    // The asker hears where it went.
    server.wait_for("the promotion's report", Duration::from_secs(30), || {
        world.github.comments(BUILD_REPO, 1).iter().any(|c| {
            c.body
                .contains("⏩ Alloy 1.18.0 is promoted from `canary` to `stable`")
        })
    });

    // Promoting it again: it is in the last channel.
    let again = ask(&server, "promote-2", 502, "/promote 1.18.0", 3);
    assert_eq!(again["state"], "failed", "{again}");
    assert_eq!(
        again["error"],
        "alloy 1.18.0 is in stable, the last channel: there is nothing to promote it to"
    );
    assert_eq!(signed_manifest_in(&world, ""), expected);

    // `/status` shows the channels.
    server.deliver(
        "status-1",
        "issue_comment",
        &build_repo_comment(503, "/status"),
    );
    server.wait_for("the status reply", Duration::from_secs(30), || {
        world
            .github
            .comments(BUILD_REPO, 1)
            .iter()
            .any(|c| c.body.contains("Channels ("))
    });
    let comments = world.github.comments(BUILD_REPO, 1);
    let status = &comments
        .iter()
        .find(|c| c.body.contains("Channels ("))
        .unwrap()
        .body;
    assert!(
        status.contains("- `canary` (`canary/`): 1.18.0 since "),
        "{status}"
    );
    assert!(
        status.contains("- `stable` (the root): 1.18.0 since "),
        "{status}"
    );
}

#[test]
fn a_version_published_before_records_existed_is_promoted_without_one() {
    let world = staged_world("");
    let (server, _) = released_to_canary(&world);
    // canary holds the version as one published before provenance records existed would.
    let storage = world.s3.storage();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for key in [
            "canary/alloy-1.18.0-amd64.raw.intoto.json",
            "canary/alloy-1.18.0-amd64.raw.intoto.json.asc",
        ] {
            storage.delete(key).await.unwrap();
        }
    });
    let job = ask(&server, "promote-1", 531, "/promote 1.18.0", 2);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        job["result"]["promotion"]["copied"],
        json!([
            "alloy-1.18.0-amd64.raw.sha256",
            "alloy-1.18.0-amd64.raw.asc",
            "alloy-1.18.0-amd64.raw",
            "alloy-1.18.0.raw.sha256",
            "alloy-1.18.0.raw.asc",
            "alloy-1.18.0.raw",
        ])
    );
    let keys = world.s3.keys();
    assert!(
        !keys.iter().any(|key| key.contains(".intoto.json")),
        "{keys:?}"
    );
    assert!(signed_manifest_in(&world, "").contains("alloy-1.18.0-amd64.raw"));
}

#[test]
fn a_version_not_in_any_channel_and_a_single_channel_are_refused_with_why() {
    let world = staged_world("");
    let server = world.start_server();
    let job = ask(&server, "promote-1", 601, "/promote 1.18.0", 1);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["error"],
        "alloy 1.18.0 is listed in no channel (canary/SHA256SUMS, SHA256SUMS), so there is nothing to promote"
    );
    assert!(world.s3.keys().is_empty(), "{:?}", world.s3.keys());
    drop(server);

    // One channel (the default): nothing to promote to.
    let world = World::new();
    world
        .github
        .set_permission(BUILD_REPO, "noahwhite", "admin");
    let server = world.start_server();
    let job = ask(&server, "promote-2", 602, "/promote 1.17.1", 1);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["error"],
        "there is one channel (stable), so there is nothing to promote to: list the channels in publish.channels, first to last (for example [\"canary\", \"stable\"])"
    );
}

/// Moves 1.18.0's arrival in canary `hours` into the past, as if the server had waited
/// that long; the server must be stopped.
fn backdate_canary_entry(world: &World, hours: i64) {
    let at = time::OffsetDateTime::now_utc() - time::Duration::hours(hours);
    let path = world
        .data
        .path()
        .join(alloy_sysext_automation::database::DATABASE_FILE);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let changed = sqlx::query(
            "UPDATE channel_entries SET entered_at = ? WHERE version = '1.18.0' AND channel = 'canary'",
        )
        .bind(alloy_sysext_automation::database::timestamp::format(at))
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(changed, 1);
        pool.close().await;
    });
}

fn status_page(server: &Server) -> String {
    let page = server.get("/");
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

/// A failed run of GHOST's CI on the App's pull request for 1.18.0, at its head.
fn ghost_ci_failed(world: &World, id: u64) -> Vec<u8> {
    let pull = world.github.pulls(GHOST)[0].clone();
    json!({
        "action": "completed",
        "workflow_run": {
            "id": id,
            "run_attempt": 1,
            "name": "Validate",
            "head_branch": BRANCH,
            "head_sha": pull.head_sha,
            "head_repository": {"full_name": GHOST},
            "conclusion": "failure",
            "html_url": format!("https://github.com/{GHOST}/actions/runs/{id}"),
        },
        "repository": {"full_name": GHOST},
        "sender": {"login": "noahwhite", "type": "User"},
        "installation": {"id": 77},
    })
    .to_string()
    .into_bytes()
}

#[test]
fn after_its_hours_a_version_moves_on_by_itself_unless_consumer_ci_failed() {
    let world = staged_world("promote_after_hours = 24");
    let root_before = String::from_utf8(fixture_manifest(&world)).unwrap();
    let (server, _) = released_to_canary(&world);
    // A day has not passed: the status page says when it goes.
    let page = status_page(&server);
    assert!(
        page.contains("1.18.0 goes from canary to stable at "),
        "{page}"
    );

    // GHOST's CI fails on the pull request for it.
    server.deliver("run-1", "workflow_run", &ghost_ci_failed(&world, 801));
    server.wait_for("the CI report", Duration::from_secs(30), || {
        !world.github.comments(GHOST, 1).is_empty()
    });
    let mut server = server;
    server.terminate();

    // A day later the promotion is held: the server says so, and nothing moves.
    backdate_canary_entry(&world, 25);
    let server = world.start_server();
    server.wait_for("the held promotion", Duration::from_secs(30), || {
        server.log().contains("promotion held")
    });
    let page = status_page(&server);
    assert!(
        page.contains("1.18.0 stays in canary: CI failed on its pull request in noahwhite/ghost-stack (failure)"),
        "{page}"
    );
    let jobs = server.get("/api/jobs").json()["jobs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(fixture_manifest(&world), root_before.as_bytes());
    drop(server);

    // Without the failure (another server's history, same storage and GitHub), the day is
    // enough.
    let world = staged_world("promote_after_hours = 24");
    let (server, _) = released_to_canary(&world);
    let mut server = server;
    server.terminate();
    backdate_canary_entry(&world, 25);
    let server = world.start_server();
    let jobs = wait_for_jobs(&server, 2);
    let job = &jobs[0];
    assert_eq!(job["kind"], "promote", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["trigger"]["source"], "schedule", "{job}");
    assert_eq!(job["result"]["promotion"]["to"], "stable", "{job}");
    let stable = signed_manifest_in(&world, "");
    assert!(stable.contains("alloy-1.18.0-amd64.raw"), "{stable}");
    assert_eq!(outcome(job, INFISICAL)["outcome"], "opened", "{job}");
    // Promoted once: the next check finds it in stable.
    let page = status_page(&server);
    assert!(!page.contains("goes from canary"), "{page}");
}

/// The files of `version` in storage under `prefix`.
fn version_keys(prefix: &str, version: &str) -> Vec<String> {
    let mut keys: Vec<String> = FILES
        .iter()
        .map(|file| format!("{prefix}{}", file.replace("1.18.0", version)))
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_withdrawal_leaves_every_channel_and_moves_each_consumer_within_its_own() {
    let world = staged_world("");
    let root_before = String::from_utf8(fixture_manifest(&world)).unwrap();
    let (server, _) = released_to_canary(&world);
    server.deliver(
        "promote-1",
        "issue_comment",
        &build_repo_comment(511, "/promote 1.18.0"),
    );
    assert_eq!(wait_for_jobs(&server, 2)[0]["state"], "succeeded");

    let job = ask(
        &server,
        "withdraw-1",
        512,
        "/withdraw 1.18.0 crashes on start",
        3,
    );
    assert_eq!(job["kind"], "withdraw", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        job["result"]["withdrawal"]["channels"],
        json!(["canary", "stable"])
    );
    // Both manifests are without it, signed: canary is empty, stable as before.
    assert_eq!(signed_manifest_in(&world, "canary/"), "");
    assert_eq!(signed_manifest_in(&world, ""), root_before);
    let messages: Vec<String> = world
        .github
        .commits(BUILD_REPO, "main")
        .into_iter()
        .take(4)
        .map(|c| c.message)
        .collect();
    assert_eq!(
        messages,
        [
            "chore: sign SHA256SUMS for the withdrawal of alloy 1.18.0",
            "chore: withdraw alloy 1.18.0 from SHA256SUMS: crashes on start",
            "chore: sign canary/SHA256SUMS for the withdrawal of alloy 1.18.0",
            "chore: withdraw alloy 1.18.0 from canary/SHA256SUMS: crashes on start",
        ]
    );
    // Each channel's copies wait for the grace period, guarded by that channel's manifest.
    let pending = crate::withdraw::pending_removals(&world);
    let mut keys: Vec<String> = pending.iter().map(|r| r.key.clone()).collect();
    keys.sort();
    let mut expected = version_keys("", "1.18.0");
    expected.extend(version_keys("canary/", "1.18.0"));
    expected.sort();
    assert_eq!(keys, expected);
    for removal in &pending {
        let prefix = if removal.key.starts_with("canary/") {
            "canary/"
        } else {
            ""
        };
        assert_eq!(removal.manifest_key, format!("{prefix}SHA256SUMS"));
    }
    // Both pull requests for it are closed; neither base branch pinned it.
    for repo in [GHOST, INFISICAL] {
        let pulls = world.github.pulls(repo);
        assert_eq!(pulls.len(), 1, "{repo}");
        assert_eq!(pulls[0].state, "closed", "{repo}");
        assert_eq!(outcome(&job, repo)["outcome"], "pins another version");
    }
}

#[test]
fn a_prune_takes_a_version_out_of_its_own_channel_only_and_keeps_each_channels_newest() {
    let world = staged_world("keep_versions = 1");
    let (server, _) = released_to_canary(&world);
    // Promoted: stable keeps its newest (1.18.0) and what a consumer pins (1.14.2).
    let job = ask(&server, "promote-1", 521, "/promote 1.18.0", 2);
    assert_eq!(job["state"], "succeeded", "{job}");
    let stable = signed_manifest_in(&world, "");
    let listed: Vec<&str> = stable
        .lines()
        .map(|line| line.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(listed, ["alloy-1.14.2-amd64.raw", "alloy-1.18.0-amd64.raw"]);

    // 1.19.0 reaches canary, whose own 1.18.0 goes; stable's stays, files and all.
    crate::test_app::add_upstream_alloy_from_seed(&world.github, "1.19.0", 19);
    let job = ask(&server, "build-1", 522, "/build 1.19.0", 3);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        job["result"]["pruned"]["removed"],
        json!(["1.18.0"]),
        "{job}"
    );
    let canary = signed_manifest_in(&world, "canary/");
    assert!(
        !canary.contains("1.18.0") && canary.contains("alloy-1.19.0-amd64.raw"),
        "{canary}"
    );
    assert_eq!(signed_manifest_in(&world, ""), stable);
    let pending: Vec<String> = crate::withdraw::pending_removals(&world)
        .into_iter()
        .filter(|r| r.key.contains("1.18.0"))
        .map(|r| r.key)
        .collect();
    let mut pending = pending;
    pending.sort();
    assert_eq!(pending, version_keys("canary/", "1.18.0"));
    let commit = &world.github.commits(BUILD_REPO, "main")[1];
    assert_eq!(
        commit.message,
        "chore: prune alloy 1.18.0 from canary/SHA256SUMS: older than the newest 1 versions, and no consumer pins it"
    );
}

#[test]
fn a_promotion_waiting_to_retry_when_its_version_is_withdrawn_lists_nothing() {
    let world = staged_world("");
    let (server, _) = released_to_canary_with(&world, &[("JOB_RETRY_SECONDS", "5")]);
    // The promotion decides (reading canary's manifest once), copies, then cannot read
    // canary's manifest again for a while: it waits five seconds to retry its listing.
    let canary_manifest = format!("/repos/{BUILD_REPO}/contents/canary/SHA256SUMS");
    world
        .github
        .fail_next("GET", &canary_manifest, Failure::Delay(Duration::ZERO));
    world.github.fail_next(
        "GET",
        &canary_manifest,
        Failure::SecondaryRateLimit {
            retry_after: 100_000,
        },
    );
    server.deliver(
        "promote-1",
        "issue_comment",
        &build_repo_comment(531, "/promote 1.18.0"),
    );
    server.wait_for(
        "the promotion to wait for a retry",
        Duration::from_secs(60),
        || {
            let jobs = server.get("/api/jobs").json()["jobs"].clone();
            jobs[0]["kind"] == "promote" && jobs[0]["state"] == "retrying"
        },
    );
    server.deliver(
        "withdraw-1",
        "issue_comment",
        &build_repo_comment(532, "/withdraw 1.18.0 crashes on start"),
    );
    let jobs = wait_for_jobs(&server, 3);
    let (withdraw, promote) = (&jobs[0], &jobs[1]);
    assert_eq!(withdraw["state"], "succeeded", "{withdraw}");
    assert_eq!(promote["state"], "failed", "{promote}");
    assert_eq!(promote["step"], "manifest", "{promote}");
    let error = promote["error"].as_str().unwrap();
    assert!(
        error.starts_with("1.18.0 was withdrawn by noahwhite"),
        "{error}"
    );
    // Stable never listed it; its copies wait to leave, unlisted.
    assert!(world.s3.object("SHA256SUMS").is_none());
    assert!(
        !String::from_utf8(fixture_manifest(&world))
            .unwrap()
            .contains("1.18.0")
    );
    let mut copies: Vec<String> = crate::withdraw::pending_removals(&world)
        .into_iter()
        .filter(|r| r.manifest_key == "SHA256SUMS")
        .map(|r| r.key)
        .collect();
    copies.sort();
    assert_eq!(copies, version_keys("", "1.18.0"));
    assert!(world.github.pulls(INFISICAL).is_empty());
}

#[test]
fn a_listing_that_reached_storage_but_not_github_is_withdrawn_from_storage_too() {
    let world = staged_world("");
    let (server, _) = released_to_canary(&world);
    // The promotion puts stable's manifest in storage, then GitHub refuses the commit for
    // good: hosts reading the root see 1.18.0, the build repository does not.
    world.github.fail_next(
        "PUT",
        &format!("/repos/{BUILD_REPO}/contents/SHA256SUMS"),
        Failure::Status {
            status: 422,
            message: "refused".into(),
        },
    );
    let promote = ask(&server, "promote-1", 541, "/promote 1.18.0", 2);
    assert_eq!(promote["state"], "failed", "{promote}");
    let (stored, _) = world.s3.object("SHA256SUMS").unwrap();
    assert!(
        String::from_utf8(stored)
            .unwrap()
            .contains("alloy-1.18.0-amd64.raw")
    );

    let withdraw = ask(
        &server,
        "withdraw-1",
        542,
        "/withdraw 1.18.0 crashes on start",
        3,
    );
    assert_eq!(withdraw["state"], "succeeded", "{withdraw}");
    assert_eq!(
        withdraw["result"]["withdrawal"]["channels"],
        json!(["canary", "stable"])
    );
    // What hosts read at the root is the build repository's manifest again, signed.
    let stable = signed_manifest_in(&world, "");
    assert!(!stable.contains("1.18.0"), "{stable}");
    assert_eq!(signed_manifest_in(&world, "canary/"), "");
}
