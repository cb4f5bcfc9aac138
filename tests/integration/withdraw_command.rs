//! `withdraw --version X.Y.Z`: the command line beside a running server (its environment,
//! the same `DATA_DIR`), against the pipeline's world (the fake GitHub with the App, the real
//! manifest and Butane files, moto). It queues the withdrawal, the server runs it, and the
//! command prints what the job did; without a server the job waits in the queue.

use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;
use crate::pipeline::signed_manifest;
use crate::pipeline::{BUILD_REPO, World, wait_for_jobs};
use crate::test_app::app_env;
use crate::withdraw::published_world;

/// `withdraw` with the environment the server of `world` gets, run by the operator `ops`.
fn withdraw_command(world: &World, args: &[&str]) -> Command {
    let mut command = cli();
    command.arg("withdraw").args(args);
    command
        .env("DATA_DIR", world.data.path())
        .env("USER", "ops");
    for (name, value) in app_env(&world.github, &world.config)
        .into_iter()
        .chain(world.s3.env())
    {
        command.env(name, value);
    }
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The manifest `world` published, without the lines of `version`.
fn without(manifest: &str, version: &str) -> String {
    manifest
        .lines()
        .filter(|line| !line.contains(&format!("alloy-{version}")))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn withdraw_queues_the_withdrawal_for_the_server_and_prints_what_it_did() {
    let (world, server) = published_world();
    let before = signed_manifest(&world);

    let output = run_ok(&mut withdraw_command(
        &world,
        &["--version", "v1.18.0", "--reason", "crashes on start"],
    ));

    let job: Value = server.get("/api/jobs/2").json();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "withdraw", "{job}");
    assert_eq!(job["trigger"]["source"], "cli", "{job}");
    assert_eq!(job["trigger"]["user"], "ops", "{job}");
    let removed_after = job["result"]["withdrawal"]["files_removed_after"]
        .as_str()
        .unwrap_or_else(|| panic!("no removal time in {job}"));
    assert_eq!(
        stdout(&output),
        format!(
            "queued job #2: withdraw 1.18.0\n\
             \x20 manifest: ok\n\
             \x20 release: ok\n\
             \x20 consumers: ok\n\
             \x20 report: ok\n\
             1.18.0 is withdrawn: no host installs it from now on; hosts that installed it keep it\n\
             \x20 out of SHA256SUMS: alloy-1.18.0-amd64.raw\n\
             \x20 its files leave storage after {removed_after}\n\
             \x20 release marked withdrawn: https://github.com/noahwhite/alloy-sysext-build/releases/tag/v1.18.0\n\
             \x20 closed: https://github.com/noahwhite/ghost-stack/pull/1\n\
             \x20 closed: https://github.com/officina-pub/infisical-stack/pull/1\n\
             \x20 consumers that pin 1.18.0 are moved to 1.17.1\n\
             \x20 noahwhite/ghost-stack: pins another version\n\
             \x20 officina-pub/infisical-stack: opened https://github.com/officina-pub/infisical-stack/pull/2\n"
        )
    );
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");

    // Hosts read the manifest without 1.18.0, signed; the release says it was withdrawn
    // from the command line and why, the status page by whom.
    assert_eq!(signed_manifest(&world), without(&before, "1.18.0"));
    let release = &world.github.releases(BUILD_REPO)[0];
    assert_eq!(release.name, "Alloy Sysext 1.18.0 (withdrawn)");
    let marked = release.body.lines().nth(2).unwrap();
    assert!(
        marked.starts_with("> **Withdrawn** on ")
            && marked.ends_with(" from the command line: `crashes on start`"),
        "{}",
        release.body
    );
    let page = server.get("/").body;
    assert!(
        page.contains("<td>ops (command line)</td><td>crashes on start</td>"),
        "{page}"
    );
}

#[test]
fn withdraw_with_no_wait_queues_the_job_and_returns_and_the_server_runs_it_when_it_runs() {
    let (world, server) = published_world();
    let before = signed_manifest(&world);
    server.kill();

    // With no server to take it, a wait ends with the job still queued.
    let output = withdraw_command(&world, &["--version", "1.18.0", "--wait", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(stdout(&output), "queued job #2: withdraw 1.18.0\n");
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "error: job #2 is queued after 1 s; it stays queued and runs when the server runs (is \
         `serve` running on this DATA_DIR?)\n"
    );

    let output = run_ok(&mut withdraw_command(
        &world,
        &["--version", "1.17.1", "--wait", "0"],
    ));
    assert_eq!(
        stdout(&output),
        "queued job #3: withdraw 1.17.1\n\
         the server runs it next; `/status` and the status page show its outcome\n"
    );
    assert_eq!(signed_manifest(&world), before);

    // The server runs both when it starts.
    let server = world.start_server();
    let jobs = wait_for_jobs(&server, 3);
    for job in &jobs[..2] {
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["kind"], "withdraw", "{job}");
    }
    assert_eq!(
        signed_manifest(&world),
        without(&without(&before, "1.18.0"), "1.17.1")
    );
}

#[test]
fn withdrawing_a_version_not_listed_fails_with_the_jobs_error() {
    let (world, _server) = published_world();
    let before = signed_manifest(&world);
    let output = withdraw_command(&world, &["--version", "1.12.0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        stdout(&output),
        "queued job #2: withdraw 1.12.0\n  manifest: error\n"
    );
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "error: withdrawing 1.12.0 failed: alloy 1.12.0 is not listed in SHA256SUMS, so there \
         is nothing to withdraw (the newest it lists: 1.18.0, 1.17.1, 1.17.0, 1.16.3, 1.16.2)\n"
    );
    assert_eq!(signed_manifest(&world), before);
}

#[test]
fn withdraw_without_the_servers_data_dir_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("data");
    let stderr = run_fail(
        cli()
            .args(["withdraw", "--version", "1.18.0"])
            .env("DATA_DIR", &missing),
    );
    assert_eq!(
        stderr,
        format!(
            "error: DATA_DIR {} does not exist: withdraw queues a job for the server, so run it \
             where `serve` runs\n",
            missing.display()
        )
    );
    assert!(!missing.exists());

    // A directory `serve` never ran with.
    let stderr = run_fail(
        cli()
            .args(["withdraw", "--version", "1.18.0"])
            .env("DATA_DIR", dir.path()),
    );
    assert_eq!(
        stderr,
        format!(
            "error: DATA_DIR {} has no alloy-sysext.db: `serve` has not run with this DATA_DIR \
             (withdraw queues a job for the server, so run it where `serve` runs, with its \
             DATA_DIR and DATABASE_URL)\n",
            dir.path().display()
        )
    );
    assert_eq!(dir_listing(dir.path()), Vec::<String>::new());
}

#[test]
fn withdraw_refuses_a_version_that_is_not_one() {
    let stderr = run_fail(cli().args(["withdraw", "--version", "1.2"]));
    assert_eq!(
        stderr,
        "error: invalid value '1.2' for '--version <VERSION>': invalid version \"1.2\": it needs \
         exactly three numbers separated by dots; expected MAJOR.MINOR.PATCH such as 1.17.1\n\n\
         For more information, try '--help'.\n"
    );
}
