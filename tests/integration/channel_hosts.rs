//! A staged rollout as hosts see it: a server with `publish.channels = ["canary", "stable"]`
//! publishing through its own `/images/` (canary's files and signed `SHA256SUMS` under
//! `/images/canary/`, stable's at the root), versions built by `/build` comments and moved on
//! by `/promote` comments, and two real `systemd-sysupdate` 257 hosts (see [`crate::host`]):
//! one reading canary, one reading stable, with both transfer definitions. A new version
//! reaches the canary host only; after `/promote`, the stable host too, byte for byte the
//! same image. Every assertion is on the hosts' files, on what `systemd-sysupdate` shows,
//! on the published files and on the jobs' records.

use std::fs;

use serde_json::{Value, json};

use crate::app_server::{ISSUE, comment_payload, jobs};
use crate::common::{dir_listing, ed25519_keys};
use crate::host::{Host, Transfer};
use crate::hosts::{
    Published, assert_nothing_to_update, assert_updated, built_sha256, host_for, installed_path,
};
use crate::http::request_with_headers;
use crate::pipeline::{BUILD_REPO, wait_for_jobs};
use crate::verify_url::verify_json;

/// The channels of the scenario's server, first to last.
const CHANNELS: &str = "[publish]\nchannels = [\"canary\", \"stable\"]\n";

/// Every file a build publishes for `version`, without the channel's prefix.
fn files_of(version: &str) -> [String; 8] {
    [
        format!("alloy-{version}-amd64.raw"),
        format!("alloy-{version}-amd64.raw.asc"),
        format!("alloy-{version}-amd64.raw.intoto.json"),
        format!("alloy-{version}-amd64.raw.intoto.json.asc"),
        format!("alloy-{version}-amd64.raw.sha256"),
        format!("alloy-{version}.raw"),
        format!("alloy-{version}.raw.asc"),
        format!("alloy-{version}.raw.sha256"),
    ]
}

/// What a channel's place in storage holds when it lists `versions`: their files and the
/// signed manifest, sorted (`extra`: what else is there, such as the `canary` directory at
/// the root).
fn channel_listing(versions: &[&str], extra: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = versions.iter().flat_map(|v| files_of(v)).collect();
    names.extend(["SHA256SUMS".to_owned(), "SHA256SUMS.gpg".to_owned()]);
    names.extend(extra.iter().map(|name| (*name).to_owned()));
    names.sort();
    names
}

impl Published {
    /// A server with the two channels that has built 1.17.1, in canary only.
    fn staged() -> Published {
        let published = Published::start_with(CHANNELS);
        let build = &published.jobs[0];
        assert_eq!(build["kind"], "build", "{build}");
        assert_eq!(build["version"], "1.17.1", "{build}");
        assert_eq!(
            dir_listing(&published.stored("canary")),
            channel_listing(&["1.17.1"], &[])
        );
        assert_eq!(dir_listing(&published.stored("")), ["canary"]);
        published.assert_served("canary/SHA256SUMS", "text/plain; charset=utf-8");
        published.assert_served("canary/SHA256SUMS.gpg", "application/pgp-signature");
        published.assert_served("canary/alloy-1.17.1-amd64.raw", "application/octet-stream");
        published
    }

    /// The server serves the stored file `name` at `/images/name` as hosts need it: whole,
    /// with `content_type`, cached briefly if it is a manifest or its signature (replaced
    /// by every publish) and for good otherwise.
    fn assert_served(&self, name: &str, content_type: &str) {
        let path = format!("/images/{name}");
        let served = request_with_headers(self.server.port, "GET", &path, &[], b"").unwrap();
        assert_eq!(served.status, 200, "{path}: {}", served.body);
        let stored = fs::read(self.stored(name)).unwrap();
        assert_eq!(
            served.header("content-length"),
            Some(stored.len().to_string().as_str())
        );
        assert_eq!(served.body, String::from_utf8_lossy(&stored), "{path}");
        assert_eq!(served.header("content-type"), Some(content_type), "{path}");
        let cache_control = if name.contains("SHA256SUMS") {
            "public, max-age=300"
        } else {
            "public, max-age=31536000, immutable"
        };
        assert_eq!(
            served.header("cache-control"),
            Some(cache_control),
            "{path}"
        );
    }

    /// Promotes `version` from canary to stable with the `/promote` comment of a writer,
    /// and waits until that job has succeeded: it copied the version's files to the root
    /// and listed its image there, with the hash canary lists.
    fn promote(&mut self, version: &str) {
        self.github.set_permission(BUILD_REPO, "writer", "write");
        let comment_id = 900 + self.jobs.len() as u64;
        let body = comment_payload(comment_id, "writer", &format!("/promote {version}"));
        let delivery = format!("d-promote-{comment_id}");
        assert_eq!(
            self.server
                .deliver(&delivery, "issue_comment", &body)
                .status,
            202
        );
        let job = wait_for_jobs(&self.server, self.jobs.len() + 1)[0].clone();
        assert_eq!(job["kind"], "promote", "{job}");
        assert_eq!(job["version"], version, "{job}");
        assert_eq!(job["state"], "succeeded", "{job}");
        let build = self
            .jobs
            .iter()
            .find(|job| job["kind"] == "build" && job["version"] == version)
            .unwrap();
        assert_eq!(
            job["result"]["promotion"],
            json!({
                "from": "canary",
                "to": "stable",
                "files": [{
                    "file": format!("alloy-{version}-amd64.raw"),
                    "sha256": built_sha256(build),
                }],
                // Each image after its checksum, signature and provenance record.
                "copied": [
                    format!("alloy-{version}-amd64.raw.sha256"),
                    format!("alloy-{version}-amd64.raw.asc"),
                    format!("alloy-{version}-amd64.raw.intoto.json.asc"),
                    format!("alloy-{version}-amd64.raw.intoto.json"),
                    format!("alloy-{version}-amd64.raw"),
                    format!("alloy-{version}.raw.sha256"),
                    format!("alloy-{version}.raw.asc"),
                    format!("alloy-{version}.raw"),
                ],
            }),
            "{job}"
        );
        assert_eq!(self.github.reactions(BUILD_REPO, comment_id), ["eyes"]);
        let replies = self.github.comments(BUILD_REPO, ISSUE);
        let report = &replies.last().unwrap().body;
        assert_eq!(
            report.lines().next(),
            Some(format!(
                "⏩ Alloy {version} is promoted from `canary` to `stable` (job #{}, asked by @writer): hosts that follow that channel install it from now on.",
                job["id"]
            ).as_str()),
            "{report}"
        );
        self.assert_served("SHA256SUMS", "text/plain; charset=utf-8");
        self.assert_served(
            &format!("alloy-{version}-amd64.raw"),
            "application/octet-stream",
        );
        self.jobs.push(job);
    }

    /// The address of canary's files, for the canary host.
    fn canary_url(&self) -> String {
        format!("{}canary/", self.base_url())
    }
}

/// The host has `versions` installed (oldest first), points at the newest, and each is the
/// image published under `prefix`, byte for byte.
fn assert_runs(host: &Host, published: &Published, prefix: &str, versions: &[&str]) {
    let names: Vec<String> = versions
        .iter()
        .map(|version| format!("alloy-{version}-amd64.raw"))
        .collect();
    assert_eq!(host.installed(), names);
    let newest = versions.last().unwrap();
    assert_eq!(
        host.current().as_deref(),
        Some(installed_path(newest).as_str())
    );
    for version in versions {
        assert_eq!(
            host.read(&installed_path(version)),
            published.image_in(prefix, version),
            "{version}"
        );
    }
}

/// What `list` shows on `host`; the run must succeed.
fn listed(host: &Host) -> Vec<String> {
    let list = host.sysupdate("list");
    assert!(list.success, "{}", list.output());
    list.listed()
}

/// 1.17.1 is in both channels and on both hosts; 1.18.0 reaches the canary host only, and
/// the stable host once `/promote 1.18.0` has run.
fn a_new_version_reaches_the_canary_host_then_both_after_promote(transfer: Transfer) {
    let mut published = Published::staged();
    published.promote("1.17.1");
    assert_eq!(
        dir_listing(&published.stored("")),
        channel_listing(&["1.17.1"], &["canary"])
    );
    assert_eq!(
        published.image("1.17.1"),
        published.image_in("canary/", "1.17.1")
    );

    let canary = host_for(transfer, &published.canary_url());
    let stable = host_for(transfer, &published.base_url());
    for host in [&canary, &stable] {
        assert_eq!(listed(host), ["1.17.1 ✓ candidate"]);
        assert_updated(&host.sysupdate("update"));
    }
    assert_runs(&canary, &published, "canary/", &["1.17.1"]);
    assert_runs(&stable, &published, "", &["1.17.1"]);

    // 1.18.0 is built: canary lists it, the root does not have it.
    published.publish("1.18.0");
    assert_ne!(
        published.image_in("canary/", "1.18.0"),
        published.image_in("canary/", "1.17.1")
    );
    assert_eq!(
        dir_listing(&published.stored("canary")),
        channel_listing(&["1.17.1", "1.18.0"], &[])
    );
    assert_eq!(
        dir_listing(&published.stored("")),
        channel_listing(&["1.17.1"], &["canary"])
    );

    assert_eq!(
        listed(&canary),
        ["1.18.0 ✓ candidate", "1.17.1 ✓ ✓ current"]
    );
    assert_updated(&canary.sysupdate("update"));
    assert_runs(&canary, &published, "canary/", &["1.17.1", "1.18.0"]);

    assert_eq!(listed(&stable), ["1.17.1 ✓ ✓ current"]);
    let before = stable.state();
    assert_nothing_to_update(&stable.sysupdate("update"));
    assert_eq!(stable.state(), before);

    // Promoted, 1.18.0 reaches the stable host; the canary host has it already.
    published.promote("1.18.0");
    assert_eq!(
        dir_listing(&published.stored("")),
        channel_listing(&["1.17.1", "1.18.0"], &["canary"])
    );
    assert_eq!(
        listed(&stable),
        ["1.18.0 ✓ candidate", "1.17.1 ✓ ✓ current"]
    );
    assert_updated(&stable.sysupdate("update"));
    assert_runs(&stable, &published, "", &["1.17.1", "1.18.0"]);
    assert_eq!(
        stable.read(&installed_path("1.18.0")),
        canary.read(&installed_path("1.18.0"))
    );

    for host in [&canary, &stable] {
        assert_eq!(listed(host), ["1.18.0 ✓ ✓ current", "1.17.1 ✓ ✓ installed"]);
    }
    let before = canary.state();
    assert_nothing_to_update(&canary.sysupdate("update"));
    assert_eq!(canary.state(), before);

    // Each channel's files check out as a host would check them, sidecars included.
    for url in [published.canary_url(), published.base_url()] {
        let key = ed25519_keys().public();
        let (status, report, stderr) =
            verify_json(&["--url", &url, "--all"], ("--public-key", &key));
        assert_eq!(status, Some(0), "{report:#}\n{stderr}");
        let checks: Vec<(String, String, bool)> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|check| {
                (
                    check["file"].as_str().unwrap().to_owned(),
                    check["check"].as_str().unwrap().to_owned(),
                    check["ok"].as_bool().unwrap(),
                )
            })
            .collect();
        let passed = |file: &str, check: &str| (file.to_owned(), check.to_owned(), true);
        let mut expected = vec![
            passed("SHA256SUMS.gpg", "manifest_signature"),
            passed("SHA256SUMS", "manifest_format"),
        ];
        for image in ["alloy-1.17.1-amd64.raw", "alloy-1.18.0-amd64.raw"] {
            expected.extend([
                passed(image, "sha256"),
                passed(&format!("{image}.sha256"), "sha256_file"),
                passed(&format!("{image}.asc"), "signature"),
                passed(&format!("{image}.intoto.json.asc"), "provenance_signature"),
                passed(&format!("{image}.intoto.json"), "provenance"),
            ]);
        }
        assert_eq!(checks, expected, "{url}: {report:#}");
        // The promoted record is the one the build wrote, naming the asset it came from.
        let provenance = report["provenance"].as_array().unwrap();
        assert_eq!(provenance.len(), 2, "{report:#}");
        for (entry, version) in provenance.iter().zip(["1.17.1", "1.18.0"]) {
            assert_eq!(entry["file"], format!("alloy-{version}-amd64.raw"));
            assert_eq!(entry["upstream"]["tag"], format!("v{version}"));
            assert_eq!(entry["upstream"]["checked_against"], json!(["assetDigest"]));
        }
    }

    // The server's records: each build and promotion, in order, succeeded.
    let records: Vec<(Value, Value, Value)> = jobs(&published.server)
        .iter()
        .rev()
        .map(|job| {
            (
                job["kind"].clone(),
                job["version"].clone(),
                job["state"].clone(),
            )
        })
        .collect();
    let succeeded = |kind: &str, version: &str| (json!(kind), json!(version), json!("succeeded"));
    assert_eq!(
        records,
        [
            succeeded("build", "1.17.1"),
            succeeded("promote", "1.17.1"),
            succeeded("build", "1.18.0"),
            succeeded("promote", "1.18.0"),
        ]
    );
}

#[test]
fn a_new_version_reaches_the_canary_host_configured_by_ghost_bu_then_both_after_promote() {
    a_new_version_reaches_the_canary_host_then_both_after_promote(Transfer::GhostBu);
}

#[test]
fn a_new_version_reaches_the_canary_host_configured_by_the_readme_then_both_after_promote() {
    a_new_version_reaches_the_canary_host_then_both_after_promote(Transfer::Readme);
}
