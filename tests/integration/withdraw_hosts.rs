//! A withdrawn version as hosts see it: versions published through the server's own
//! `/images/`, the newest withdrawn with the `/withdraw` comment, and the real
//! `systemd-sysupdate` 257 (see [`crate::host`]) with both transfer definitions. A fresh
//! host installs the version before it, a host on an older version no longer sees it, a host
//! that installed it keeps it until the README's commands move it back or a newer version
//! comes. Every assertion is on the host's files and on what `systemd-sysupdate` shows.

use std::path::Path;

use crate::app_server::{ISSUE, comment_payload};
use crate::common::run_ok;
use crate::host::{Host, Transfer};
use crate::hosts::{Published, assert_nothing_to_update, assert_updated, host_for, installed_path};
use crate::pipeline::{BUILD_REPO, wait_for_jobs};

impl Published {
    /// Withdraws `version` with the `/withdraw` comment of a writer, and waits until that
    /// job has succeeded.
    fn withdraw(&mut self, version: &str) {
        self.github.set_permission(BUILD_REPO, "writer", "write");
        let body = comment_payload(
            790,
            "writer",
            &format!("/withdraw {version} crashes on start"),
        );
        assert_eq!(
            self.server
                .deliver("d-withdraw", "issue_comment", &body)
                .status,
            202
        );
        let job = wait_for_jobs(&self.server, self.jobs.len() + 1)[0].clone();
        assert_eq!(job["kind"], "withdraw", "{job}");
        assert_eq!(job["version"], version, "{job}");
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(self.github.reactions(BUILD_REPO, 790), ["eyes"]);
        let replies = self.github.comments(BUILD_REPO, ISSUE);
        let report = &replies.last().unwrap().body;
        assert!(
            report.starts_with(&format!(
                "⛔ Alloy {version} is withdrawn (job #{}",
                job["id"]
            )),
            "{report}"
        );
        self.jobs.push(job);
    }
}

/// 1.17.1 and then 1.18.0 published, each image its own.
fn published_1171_and_1180() -> Published {
    let mut published = Published::start();
    published.publish("1.18.0");
    assert_ne!(published.image("1.17.1"), published.image("1.18.0"));
    published
}

/// The README's commands that move a host off the withdrawn 1.18.0 and back to 1.17.1.
fn readme_move_back() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let opening = "```sh\n# Move a host off the withdrawn 1.18.0";
    let start = readme
        .find(opening)
        .expect("the README shows how to move a host off a withdrawn version");
    let block = &readme[start + "```sh\n".len()..];
    block[..block.find("```").unwrap()].to_owned()
}

/// Runs the README's commands on `host`, as root in a shell, stopping at the first that
/// fails.
fn move_back(host: &Host) {
    run_ok(&mut host.command("/bin/sh", &["-e", "-c", &readme_move_back()]));
}

/// The host has only `version` installed, points at it, and it is `version`'s published
/// image, byte for byte.
fn assert_runs_only(host: &Host, published: &Published, version: &str) {
    assert_eq!(host.installed(), [format!("alloy-{version}-amd64.raw")]);
    assert_eq!(
        host.current().as_deref(),
        Some(installed_path(version).as_str())
    );
    assert_eq!(
        host.read(&installed_path(version)),
        published.image(version)
    );
}

/// After 1.18.0 is withdrawn, a host that never had it installs 1.17.1, the version before
/// it, though 1.18.0's files are still in storage for the grace period.
fn a_fresh_host_installs_the_version_before_a_withdrawn_one(transfer: Transfer) {
    let mut published = published_1171_and_1180();
    published.withdraw("1.18.0");
    assert!(published.stored("alloy-1.18.0-amd64.raw").exists());

    let host = host_for(transfer, &published.base_url());
    let list = host.sysupdate("list");
    assert!(list.success, "{}", list.output());
    assert_eq!(list.listed(), ["1.17.1 ✓ candidate"], "{}", list.output());
    assert_updated(&host.sysupdate("update"));
    assert_runs_only(&host, &published, "1.17.1");
    let list = host.sysupdate("list");
    assert_eq!(list.listed(), ["1.17.1 ✓ ✓ current"], "{}", list.output());

    let before = host.state();
    assert_nothing_to_update(&host.sysupdate("update"));
    assert_eq!(host.state(), before);
}

#[test]
fn a_fresh_host_configured_by_ghost_bu_installs_the_version_before_a_withdrawn_one() {
    a_fresh_host_installs_the_version_before_a_withdrawn_one(Transfer::GhostBu);
}

#[test]
fn a_fresh_host_configured_by_the_readme_installs_the_version_before_a_withdrawn_one() {
    a_fresh_host_installs_the_version_before_a_withdrawn_one(Transfer::Readme);
}

/// A host on 1.17.1 sees 1.18.0 once it is published; after the withdrawal it no longer
/// lists it, and its update changes nothing.
fn a_host_on_the_older_version_no_longer_sees_a_withdrawn_one(transfer: Transfer) {
    let mut published = Published::start();
    let host = host_for(transfer, &published.base_url());
    assert_updated(&host.sysupdate("update"));
    published.publish("1.18.0");
    let list = host.sysupdate("list");
    assert_eq!(
        list.listed(),
        ["1.18.0 ✓ candidate", "1.17.1 ✓ ✓ current"],
        "{}",
        list.output()
    );
    let before = host.state();

    published.withdraw("1.18.0");
    let list = host.sysupdate("list");
    assert!(list.success, "{}", list.output());
    assert_eq!(list.listed(), ["1.17.1 ✓ ✓ current"], "{}", list.output());
    assert_nothing_to_update(&host.sysupdate("update"));
    assert_eq!(host.state(), before);
    assert_runs_only(&host, &published, "1.17.1");
}

#[test]
fn a_host_configured_by_ghost_bu_on_the_older_version_no_longer_sees_a_withdrawn_one() {
    a_host_on_the_older_version_no_longer_sees_a_withdrawn_one(Transfer::GhostBu);
}

#[test]
fn a_host_configured_by_the_readme_on_the_older_version_no_longer_sees_a_withdrawn_one() {
    a_host_on_the_older_version_no_longer_sees_a_withdrawn_one(Transfer::Readme);
}

/// Two hosts on 1.18.0: one that updated from 1.17.1 (both installed) and one that came
/// after 1.18.0 was out (only 1.18.0). After the withdrawal both keep 1.18.0 (an update
/// changes nothing: systemd-sysupdate does not go back by itself); the README's commands
/// move each to 1.17.1, and from there they update as any host does.
fn a_host_on_a_withdrawn_version_keeps_it_until_moved_back(transfer: Transfer) {
    let mut published = Published::start();
    let updated = host_for(transfer, &published.base_url());
    assert_updated(&updated.sysupdate("update"));
    published.publish("1.18.0");
    assert_updated(&updated.sysupdate("update"));
    let fresh = host_for(transfer, &published.base_url());
    assert_updated(&fresh.sysupdate("update"));
    assert_eq!(
        updated.installed(),
        ["alloy-1.17.1-amd64.raw", "alloy-1.18.0-amd64.raw"]
    );
    assert_eq!(fresh.installed(), ["alloy-1.18.0-amd64.raw"]);
    for host in [&updated, &fresh] {
        assert_eq!(
            host.current().as_deref(),
            Some(installed_path("1.18.0").as_str())
        );
    }

    published.withdraw("1.18.0");
    let list = updated.sysupdate("list");
    assert_eq!(
        list.listed(),
        ["1.18.0 ✓ current", "1.17.1 ✓ ✓ installed"],
        "{}",
        list.output()
    );
    let list = fresh.sysupdate("list");
    assert_eq!(
        list.listed(),
        ["1.18.0 ✓ current", "1.17.1 ✓ candidate"],
        "{}",
        list.output()
    );
    for host in [&updated, &fresh] {
        let before = host.state();
        assert_nothing_to_update(&host.sysupdate("update"));
        assert_eq!(host.state(), before);
        assert_eq!(
            host.read(&installed_path("1.18.0")),
            published.image("1.18.0")
        );
    }

    for host in [&updated, &fresh] {
        move_back(host);
        assert_runs_only(host, &published, "1.17.1");
        let list = host.sysupdate("list");
        assert_eq!(list.listed(), ["1.17.1 ✓ ✓ current"], "{}", list.output());
        let before = host.state();
        assert_nothing_to_update(&host.sysupdate("update"));
        assert_eq!(host.state(), before);
    }

    // Back on 1.17.1, they take the next version, though it is older than the withdrawn one.
    published.publish("1.17.2");
    for host in [&updated, &fresh] {
        assert_updated(&host.sysupdate("update"));
        assert_eq!(
            host.installed(),
            ["alloy-1.17.1-amd64.raw", "alloy-1.17.2-amd64.raw"]
        );
        assert_eq!(
            host.current().as_deref(),
            Some(installed_path("1.17.2").as_str())
        );
        assert_eq!(
            host.read(&installed_path("1.17.2")),
            published.image("1.17.2")
        );
    }
}

#[test]
fn a_host_configured_by_ghost_bu_on_a_withdrawn_version_keeps_it_until_moved_back() {
    a_host_on_a_withdrawn_version_keeps_it_until_moved_back(Transfer::GhostBu);
}

#[test]
fn a_host_configured_by_the_readme_on_a_withdrawn_version_keeps_it_until_moved_back() {
    a_host_on_a_withdrawn_version_keeps_it_until_moved_back(Transfer::Readme);
}

/// A host left on the withdrawn 1.18.0 does not take a fix numbered below it (1.17.2):
/// systemd-sysupdate installs only versions newer than the newest it has. It takes one
/// numbered above it (1.18.1) on its next update.
fn a_host_left_on_a_withdrawn_version_takes_only_a_newer_one(transfer: Transfer) {
    let mut published = published_1171_and_1180();
    let host = host_for(transfer, &published.base_url());
    assert_updated(&host.sysupdate("update"));
    assert_eq!(host.installed(), ["alloy-1.18.0-amd64.raw"]);
    published.withdraw("1.18.0");

    published.publish("1.17.2");
    let list = host.sysupdate("list");
    assert_eq!(
        list.listed(),
        [
            "1.18.0 ✓ current",
            "1.17.2 ✓ candidate",
            "1.17.1 ✓ available"
        ],
        "{}",
        list.output()
    );
    let before = host.state();
    assert_nothing_to_update(&host.sysupdate("update"));
    assert_eq!(host.state(), before);

    published.publish("1.18.1");
    assert_updated(&host.sysupdate("update"));
    assert_eq!(
        host.installed(),
        ["alloy-1.18.0-amd64.raw", "alloy-1.18.1-amd64.raw"]
    );
    assert_eq!(
        host.current().as_deref(),
        Some(installed_path("1.18.1").as_str())
    );
    assert_eq!(
        host.read(&installed_path("1.18.1")),
        published.image("1.18.1")
    );
}

#[test]
fn a_host_configured_by_ghost_bu_left_on_a_withdrawn_version_takes_only_a_newer_one() {
    a_host_left_on_a_withdrawn_version_takes_only_a_newer_one(Transfer::GhostBu);
}

#[test]
fn a_host_configured_by_the_readme_left_on_a_withdrawn_version_takes_only_a_newer_one() {
    a_host_left_on_a_withdrawn_version_takes_only_a_newer_one(Transfer::Readme);
}
