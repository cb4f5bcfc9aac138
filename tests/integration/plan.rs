//! `plan --version V`: a dry run of a whole job against the pipeline's world (the fake
//! GitHub with the App, the real manifest and Butane files, moto), with the server's
//! environment. It reports what the job would do and leaves GitHub, the bucket and the job
//! queue exactly as they were.

use std::process::Command;

use serde_json::{Value, json};
use sha2::Digest;

use crate::common::*;
use crate::pipeline::{
    BUILD_REPO, GHOST, GHOST_PATH, INFISICAL, INFISICAL_PATH, VERSION, World, wait_for_jobs,
};
use crate::test_app::app_env;

/// `plan` with the environment the server of `world` gets.
pub(crate) fn plan_command(world: &World, args: &[&str]) -> Command {
    let mut command = cli();
    command.arg("plan").args(args);
    command.env("DATA_DIR", world.data.path());
    for (name, value) in app_env(&world.github, &world.config)
        .into_iter()
        .chain(world.s3.env())
    {
        command.env(name, value);
    }
    command
}

/// Everything in the fake GitHub and the bucket a job could change, byte for byte.
pub(crate) fn everything(world: &World) -> Value {
    let repos = [
        (BUILD_REPO, "main"),
        (GHOST, "develop"),
        (INFISICAL, "main"),
    ];
    let github: Vec<Value> = repos
        .iter()
        .map(|(repo, base)| {
            let branches = world.github.branches(repo);
            let commits: Vec<String> = branches
                .iter()
                .map(|b| format!("{b}: {:?}", world.github.commits(repo, b)))
                .collect();
            json!({
                "branches": branches,
                "commits": commits,
                "manifest": world.github.file(repo, base, "SHA256SUMS"),
                "signature": world.github.file(repo, base, "SHA256SUMS.gpg"),
                "ghost": world.github.file(repo, base, GHOST_PATH),
                "infisical": world.github.file(repo, base, INFISICAL_PATH),
                "pulls": format!("{:?}", world.github.pulls(repo)),
                "releases": format!("{:?}", world.github.releases(repo)),
                "issues": format!("{:?}", world.github.issues(repo)),
            })
        })
        .collect();
    let bucket: Vec<Value> = world
        .s3
        .keys()
        .iter()
        .map(|key| {
            let (bytes, headers) = world.s3.object(key).unwrap();
            let mut headers: Vec<(String, String)> = headers
                .into_iter()
                .filter(|(name, _)| {
                    ["content-type", "cache-control", "content-length", "etag"]
                        .contains(&name.as_str())
                        || name.starts_with("x-amz-meta-")
                })
                .collect();
            headers.sort();
            json!({"key": key, "bytes": bytes, "headers": headers})
        })
        .collect();
    json!({"github": github, "bucket": bucket, "state": world.state()})
}

/// The requests `plan` made that are not reads (an installation token is asked for with a
/// POST, and changes nothing).
fn writes_since(world: &World, seen: usize) -> Vec<String> {
    world.github.requests()[seen..]
        .iter()
        .filter(|r| r.method != "GET" && !r.path.ends_with("/access_tokens"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The ghost.bu diff of the pin change from 1.14.2 to 1.18.0 with the image `sha256`.
pub(crate) fn ghost_diff(path: &str, sha256: &str) -> Vec<String> {
    let host = "https://ghost-sysext-images.separationofconcerns.dev";
    let ghost = std::fs::read_to_string(fixture("real-world/ghost.bu")).unwrap();
    let lines: Vec<&str> = ghost.lines().collect();
    let context = |range: std::ops::RangeInclusive<usize>| -> Vec<String> {
        range.map(|n| format!(" {}", lines[n - 1])).collect()
    };
    let mut diff = vec![
        format!("--- a/{path}"),
        format!("+++ b/{path}"),
        "@@ -33,12 +33,12 @@".to_owned(),
    ];
    diff.extend(context(33..=35));
    diff.push("-    - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw".into());
    diff.push("+    - path: /opt/extensions/alloy/alloy-1.18.0-amd64.raw".into());
    diff.extend(context(37..=38));
    diff.push(format!("-        source: {host}/alloy-1.14.2-amd64.raw"));
    diff.push(format!("+        source: {host}/alloy-1.18.0-amd64.raw"));
    diff.extend(context(40..=40));
    diff.push(
        "-          hash: sha256-268db7a95a807cfb1c9544fce8a0845db8d7b74354c9ab0e5a1959e4093b7fa7"
            .into(),
    );
    diff.push(format!("+          hash: sha256-{sha256}"));
    diff.extend(context(42..=44));
    diff.push("@@ -397,7 +397,7 @@".into());
    diff.extend(context(397..=399));
    diff.push("-    - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw".into());
    diff.push("+    - target: /opt/extensions/alloy/alloy-1.18.0-amd64.raw".into());
    diff.extend(context(401..=403));
    diff
}

#[test]
fn a_plan_reports_the_whole_job_and_changes_nothing() {
    let world = World::new();
    let server = world.start_server();
    let before = everything(&world);
    let seen = world.github.requests().len();
    let out = tempfile::tempdir().unwrap();
    let out_arg = out.path().display().to_string();
    let output = run_ok(&mut plan_command(
        &world,
        &["--version", VERSION, "--json", "--out", &out_arg],
    ));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(writes_since(&world, seen), Vec::<String>::new());
    assert_eq!(
        everything(&world),
        before,
        "plan changed GitHub or the bucket"
    );
    let jobs = server.get("/api/jobs").json();
    assert_eq!(jobs["jobs"], json!([]), "plan queued a job");

    assert_eq!(plan["version"], VERSION);
    assert_eq!(plan["publication"], "new");
    assert_eq!(plan["stops"], Value::Null);
    let image = &plan["images"][0];
    let sha256 = image["sha256"].as_str().unwrap().to_owned();
    assert_eq!(image["file"], "alloy-1.18.0-amd64.raw");
    let built = std::fs::read(out.path().join("out/alloy-1.18.0-amd64.raw")).unwrap();
    assert_eq!(image["size"], built.len());
    assert_eq!(hex::encode(sha2::Sha256::digest(&built)), sha256);

    let uploads: Vec<(String, bool)> = plan["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["key"].as_str().unwrap().to_owned(),
                u["in_storage"].as_bool().unwrap(),
            )
        })
        .collect();
    let uploads: Vec<(&str, bool)> = uploads.iter().map(|(k, s)| (k.as_str(), *s)).collect();
    assert_eq!(
        uploads,
        [
            ("alloy-1.18.0-amd64.raw.asc", false),
            ("alloy-1.18.0-amd64.raw.sha256", false),
            ("alloy-1.18.0.raw.asc", false),
            ("alloy-1.18.0.raw.sha256", false),
            ("alloy-1.18.0-amd64.raw.intoto.json.asc", false),
            ("alloy-1.18.0-amd64.raw.intoto.json", false),
            ("alloy-1.18.0-amd64.raw", false),
            ("alloy-1.18.0.raw", false),
        ]
    );

    assert_eq!(plan["manifest"]["removed"], json!([]));
    assert_eq!(
        plan["manifest"]["added"],
        json!([format!("{sha256}  alloy-1.18.0-amd64.raw")])
    );

    assert_eq!(
        plan["release"],
        json!({"repo": BUILD_REPO, "tag": "v1.18.0", "name": "Alloy Sysext 1.18.0", "target": "main", "exists": null})
    );

    let consumers = plan["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 2, "{consumers:?}");
    for (consumer, (repo, base, path)) in consumers.iter().zip([
        (GHOST, "develop", GHOST_PATH),
        (INFISICAL, "main", INFISICAL_PATH),
    ]) {
        assert_eq!(consumer["repo"], repo);
        assert_eq!(consumer["path"], path);
        assert_eq!(consumer["base"], base);
        assert_eq!(consumer["branch"], "feature/update-alloy-sysext-to-1.18.0");
        assert_eq!(
            consumer["action"],
            json!({"action": "open", "from": "1.14.2"})
        );
        let diff: Vec<&str> = consumer["diff"].as_str().unwrap().lines().collect();
        assert_eq!(diff, ghost_diff(path, &sha256));
    }

    // The text report says the same.
    let output = run_ok(&mut plan_command(
        &world,
        &["--version", VERSION, "--out", &out_arg],
    ));
    let text = String::from_utf8(output.stdout).unwrap();
    let manifest_section = format!("Manifest: SHA256SUMS in {BUILD_REPO} on main:\n");
    assert!(text.contains(&manifest_section), "{text}");
    assert!(
        text.contains(&format!("  +{sha256}  alloy-1.18.0-amd64.raw\n")),
        "{text}"
    );
    assert!(
        text.contains("  would create v1.18.0 \"Alloy Sysext 1.18.0\" in noahwhite/alloy-sysext-build on main\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  {GHOST} (configured) {GHOST_PATH}\n    branch feature/update-alloy-sysext-to-1.18.0 onto develop\n    would open a pull request: 1.14.2 → 1.18.0\n    --- a/{GHOST_PATH}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("    +          hash: sha256-{sha256}\n")),
        "{text}"
    );
    assert_eq!(
        everything(&world),
        before,
        "plan changed GitHub or the bucket"
    );
}

#[test]
fn after_the_job_the_plan_finds_everything_done() {
    let world = World::new();
    let server = world.start_server();
    assert_eq!(
        server
            .deliver("release-1", "release", &world.release_payload())
            .status,
        202
    );
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{jobs:?}");
    let before = everything(&world);
    let seen = world.github.requests().len();
    let output = run_ok(&mut plan_command(&world, &["--version", VERSION, "--json"]));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(writes_since(&world, seen), Vec::<String>::new());
    let after = everything(&world);
    for part in ["github", "bucket", "state"] {
        assert_eq!(after[part], before[part], "plan changed {part}");
    }
    assert_eq!(
        server.get("/api/jobs").json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    assert_eq!(plan["publication"], "unchanged");
    assert_eq!(plan["uploads"], json!([]));
    assert_eq!(plan["manifest"]["removed"], json!([]));
    assert_eq!(plan["manifest"]["added"], json!([]));
    assert_eq!(plan["manifest"]["diff"], "");
    let release = world.github.releases(BUILD_REPO);
    assert_eq!(
        plan["release"]["exists"],
        format!("https://github.com/{BUILD_REPO}/releases/tag/v1.18.0"),
        "{release:?}"
    );
    for (consumer, repo) in plan["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .zip([GHOST, INFISICAL])
    {
        let pulls = world.github.pulls(repo);
        assert_eq!(
            consumer["action"],
            json!({"action": "skip", "reason": {"reason": "pull_request_open", "from": "1.14.2", "pull_request": format!("https://github.com/{repo}/pull/{}", pulls[0].number)}}),
        );
    }
}
