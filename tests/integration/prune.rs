//! Pruning through the real server, the stateful fake GitHub and a real S3-compatible
//! server: after a publish, versions beyond `publish.keep_versions` leave the signed
//! manifest one commit each, those a consumer pins stay, and `plan` says so beforehand.

use std::fs;

use alloy_sysext_automation::database::Database;
use alloy_sysext_automation::database::storage_removals::RemovalReason;
use serde_json::{Value, json};

use crate::common::*;
use crate::pipeline::{
    BUILD_REPO, GHOST, INFISICAL, INFISICAL_PATH, RELEASE_KEY, VERSION, World, signed_manifest,
    wait_for_jobs,
};
use crate::plan::plan_command;

const PRUNED: [&str; 8] = [
    "1.13.1", "1.13.2", "1.14.0", "1.14.1", "1.15.0", "1.15.1", "1.16.0", "1.16.1",
];

/// The pipeline's world, keeping the newest five versions.
fn world_keeping_five() -> World {
    let world = World::new();
    fs::write(
        &world.config,
        format!(
            "[publish]\nreplace_signatures_by = [\"{RELEASE_KEY}\"]\nkeep_versions = 5\n[schedule]\ncheck_upstream = \"off\"\n"
        ),
    )
    .unwrap();
    world
}

fn versions(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .map(|line| {
            let file = line.split_once("  ").unwrap().1;
            file.trim_start_matches("alloy-")
                .trim_end_matches("-amd64.raw")
                .to_owned()
        })
        .collect()
}

#[test]
fn versions_beyond_keep_leave_one_commit_each_and_those_a_consumer_pins_stay() {
    let world = world_keeping_five();
    let server = world.start_server();

    // The plan says beforehand what the prune would take out.
    let output = run_ok(&mut plan_command(&world, &["--version", VERSION, "--json"]));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        plan["prune"],
        json!({
            "keep": 5,
            "remove": PRUNED,
            "kept_pinned": [{"version": "1.14.2", "by": [GHOST, INFISICAL]}],
            "skipped": null,
        })
    );
    let text = run_ok(&mut plan_command(&world, &["--version", VERSION]));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(
            "Prune:\n  would take 1.13.1 out of SHA256SUMS (older than the newest 5, pinned by no \
             consumer); its files leave storage after the grace period\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("  keeps 1.14.2: pinned by {GHOST}, {INFISICAL}\n")),
        "{text}"
    );

    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    server.deliver("release-1", "release", &world.release_payload());
    let job = wait_for_jobs(&server, 1)[0].clone();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["pruned"]["removed"], json!(PRUNED), "{job}");
    assert_eq!(
        job["result"]["pruned"]["kept_pinned"],
        json!([{"version": "1.14.2", "by": [GHOST, INFISICAL]}])
    );

    // The manifest hosts read: the newest five, and the pinned one.
    let manifest = signed_manifest(&world);
    assert_eq!(
        versions(&manifest),
        ["1.14.2", "1.16.2", "1.16.3", "1.17.0", "1.17.1", "1.18.0"]
    );
    let fixture = fs::read_to_string(fixture("real-world/SHA256SUMS")).unwrap();
    for line in fixture
        .lines()
        .filter(|l| !PRUNED.iter().any(|v| l.contains(&format!("-{v}-"))))
    {
        assert!(manifest.contains(line), "{line} was lost");
    }

    // The publish's two commits, then two per pruned version, each saying why.
    let commits = world.github.commits(BUILD_REPO, "main");
    assert_eq!(commits.len(), commits_before + 2 + 2 * PRUNED.len());
    for (index, version) in PRUNED.iter().rev().enumerate() {
        let signature = &commits[2 * index];
        let manifest = &commits[2 * index + 1];
        assert_eq!(signature.changed_paths, ["SHA256SUMS.gpg"]);
        assert_eq!(
            signature.message,
            format!("chore: sign SHA256SUMS for the pruning of alloy {version}")
        );
        assert_eq!(manifest.changed_paths, ["SHA256SUMS"]);
        assert_eq!(
            manifest.message,
            format!(
                "chore: prune alloy {version} from SHA256SUMS: older than the newest 5 \
                 versions, and no consumer pins it"
            )
        );
    }

    // Each pruned version's files wait for the grace period.
    let pending = tokio::runtime::Runtime::new().unwrap().block_on(async {
        Database::open_existing(None, world.data.path())
            .await
            .unwrap()
            .pending_removals()
            .await
            .unwrap()
    });
    // Each image with its checksum, signature and provenance record (which these versions,
    // published before records existed, do not have), and the compatibility copy with its own.
    assert_eq!(pending.len(), PRUNED.len() * 8);
    for version in PRUNED {
        let keys: Vec<&str> = pending
            .iter()
            .filter(|r| r.version.as_str() == version)
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(keys.len(), 8, "{version}: {keys:?}");
        assert!(keys.contains(&format!("alloy-{version}-amd64.raw").as_str()));
    }
    assert!(pending.iter().all(|r| r.why == RemovalReason::Pruned));

    // The report says what was pruned and what was kept.
    let report = world
        .github
        .comments(BUILD_REPO, 1)
        .into_iter()
        .map(|c| c.body)
        .find(|body| body.contains("is built, signed and published"))
        .expect("the tracking issue's report");
    assert!(
        report.contains(&format!(
            "\nPruned from `SHA256SUMS` (older than the newest 5, pinned by no consumer): {}. \
             Their files leave storage after the grace period.\n",
            PRUNED.join(", ")
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "Kept 1.14.2: pinned by `{GHOST}`, `{INFISICAL}`.\n"
        )),
        "{report}"
    );
}

#[test]
fn a_consumer_pin_that_cannot_be_read_prunes_nothing_and_says_why() {
    let world = world_keeping_five();
    let ghost = String::from_utf8(fs::read(fixture("real-world/ghost.bu")).unwrap()).unwrap();
    let unreadable = ghost.replace("hash: sha256-268db7a95a", "hash: sha256-zz8db7a95a");
    assert_ne!(unreadable, ghost);
    world
        .github
        .set_file(INFISICAL, "main", INFISICAL_PATH, unreadable.as_bytes());
    let server = world.start_server();
    let before = signed_versions_before(&world);
    server.deliver("release-1", "release", &world.release_payload());
    let job = wait_for_jobs(&server, 1)[0].clone();
    assert_eq!(job["state"], "succeeded", "{job}");
    let skipped = job["result"]["pruned"]["skipped"].as_str().unwrap();
    assert!(
        skipped.starts_with(&format!(
            "the pin of {INFISICAL} could not be read: {INFISICAL_PATH}: the verification hash on line"
        )),
        "{skipped}"
    );
    assert_eq!(job["result"]["pruned"]["removed"], Value::Null);
    let mut expected = before;
    expected.push(VERSION.to_owned());
    assert_eq!(versions(&signed_manifest(&world)), expected);
}

/// The versions the fixture's manifest lists.
fn signed_versions_before(world: &World) -> Vec<String> {
    let text =
        String::from_utf8(world.github.file(BUILD_REPO, "main", "SHA256SUMS").unwrap()).unwrap();
    versions(&text)
}
