//! The images as hosts take them: what the pipeline publishes, installed by the real
//! `systemd-sysupdate` 257 (see [`crate::host`]) with the transfer definitions hosts use,
//! from the server's own `/images/` and from a public bucket. Every assertion is on the
//! host's files. The server the host tests of withdrawals and channels publish through
//! ([`Published`]) is here too.

use std::fs;
use std::time::Duration;

use alloy_sysext_automation::signing::SigningKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app_server::{
    comment_payload, github_with_app, start_app_server, start_app_server_with,
};
use crate::common::*;
use crate::fake_github::FakeGitHub;
use crate::host::{Host, Sysupdate, Transfer};
use crate::pipeline::{BUILD_REPO, World};
use crate::serve_process::{Server, free_port};
use crate::status_page::wait_for_job;
use crate::test_app::{add_upstream_alloy, add_upstream_alloy_from_seed};

/// Where an image is installed on a host.
pub(crate) fn installed_path(version: &str) -> String {
    format!("/opt/extensions/alloy/alloy-{version}-amd64.raw")
}

/// Asks the server to build `version` with a `/build` comment by a writer, and waits until
/// that job has succeeded. Returns the job.
pub(crate) fn build_by_comment(
    server: &Server,
    github: &FakeGitHub,
    comment_id: u64,
    version: &str,
) -> Value {
    github.set_permission(BUILD_REPO, "writer", "write");
    let body = comment_payload(comment_id, "writer", &format!("/build {version}"));
    let delivery = format!("d-build-{comment_id}");
    assert_eq!(
        server.deliver(&delivery, "issue_comment", &body).status,
        202
    );
    wait_for_job(server, version, "succeeded")
}

/// The sha256 the job recorded for its amd64 image.
pub(crate) fn built_sha256(job: &Value) -> String {
    job["result"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|image| image["arch"] == "amd64")
        .unwrap_or_else(|| panic!("no amd64 image in {job}"))["sha256"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn assert_updated(run: &Sysupdate) {
    assert!(
        run.success,
        "systemd-sysupdate update failed:\n{}",
        run.output()
    );
}

fn assert_refused(run: &Sysupdate) {
    assert!(
        !run.success,
        "systemd-sysupdate update should have refused:\n{}",
        run.output()
    );
}

/// A host that trusts the server's signing key and reads from `base_url` with `transfer`.
pub(crate) fn host_for(transfer: Transfer, base_url: &str) -> Host {
    let host = Host::new();
    host.trust(&ed25519_keys().public());
    host.configure(transfer, base_url);
    host
}

/// `update` ran and found nothing to install.
pub(crate) fn assert_nothing_to_update(run: &Sysupdate) {
    assert_updated(run);
    assert!(
        run.stderr.lines().any(|line| line == "No update needed."),
        "{}",
        run.output()
    );
}

/// A server of a scenario on loopback, publishing to its own local storage (served at
/// `/images/`) what `/build` comments ask for, with the jobs it ran.
pub(crate) struct Published {
    pub(crate) github: FakeGitHub,
    pub(crate) data: tempfile::TempDir,
    pub(crate) server: Server,
    /// Every job, in the order they ran.
    pub(crate) jobs: Vec<Value>,
}

impl Published {
    /// A server on its own local storage that has published 1.17.1.
    pub(crate) fn start() -> Published {
        Published::start_with("")
    }

    /// [`Published::start`] with `settings` (whole TOML tables) in the server's settings.
    pub(crate) fn start_with(settings: &str) -> Published {
        let github = github_with_app();
        let data = tempfile::tempdir().unwrap();
        let server = start_app_server_with(&github, data.path(), free_port(), settings);
        let job = build_by_comment(&server, &github, 701, "1.17.1");
        Published {
            github,
            data,
            server,
            jobs: vec![job],
        }
    }

    /// Publishes `version` (upstream first, with a binary of its own, so that its image
    /// differs from every other version's), as a `/build` comment asks.
    pub(crate) fn publish(&mut self, version: &str) {
        let seed = 100 + self.jobs.len() as u64;
        add_upstream_alloy_from_seed(&self.github, version, seed);
        let comment_id = 701 + self.jobs.len() as u64 * 10;
        let job = build_by_comment(&self.server, &self.github, comment_id, version);
        self.jobs.push(job);
    }

    /// The base URL hosts read from.
    pub(crate) fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/images/", self.server.port)
    }

    /// The published amd64 image of `version` at the root of storage, as the job that built
    /// it recorded it: the bytes in storage, checked against the job's sha256.
    pub(crate) fn image(&self, version: &str) -> Vec<u8> {
        self.image_in("", version)
    }

    /// [`Published::image`] under `prefix` (a channel's, `canary/`; `""` for the root).
    pub(crate) fn image_in(&self, prefix: &str, version: &str) -> Vec<u8> {
        let job = self
            .jobs
            .iter()
            .find(|job| job["kind"] == "build" && job["version"] == version)
            .unwrap_or_else(|| panic!("{version} was not built"));
        let image = fs::read(self.stored(&format!("{prefix}alloy-{version}-amd64.raw")))
            .unwrap_or_else(|e| panic!("{prefix}alloy-{version}-amd64.raw: {e}"));
        assert_eq!(hex::encode(Sha256::digest(&image)), built_sha256(job));
        image
    }

    /// Where the published file `name` (with its channel's prefix, if any) is stored.
    pub(crate) fn stored(&self, name: &str) -> std::path::PathBuf {
        self.data.path().join("images").join(name)
    }
}

/// Releases 1.17.1 and then 1.18.0 through the server's local storage; a host with
/// `transfer` lists and installs each on its next update, byte for byte what the job built.
fn local_releases_reach_the_host(transfer: Transfer) {
    let github = github_with_app();
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let job = build_by_comment(&server, &github, 601, "1.17.1");

    let host = host_for(
        transfer,
        &format!("http://127.0.0.1:{}/images/", server.port),
    );
    let list = host.sysupdate("list");
    assert!(list.success, "{}", list.output());
    assert_eq!(list.listed(), ["1.17.1 ✓ candidate"], "{}", list.output());
    if transfer == Transfer::Readme {
        // The README's definition is the one systemd 257 takes as it is.
        // systemd warns about a transfer definition on lines naming its file, and about the
        // `.conf` suffix on one of its own.
        let warnings: Vec<&str> = list
            .stderr
            .lines()
            .filter(|line| line.starts_with("/etc/sysupdate.alloy.d/") || line.contains("As of v"))
            .collect();
        assert!(
            warnings.is_empty(),
            "warnings about the README's transfer definition:\n{}",
            list.stderr
        );
    }
    assert_updated(&host.sysupdate("update"));
    assert_eq!(host.installed(), ["alloy-1.17.1-amd64.raw"]);
    assert_eq!(
        host.current().as_deref(),
        Some(installed_path("1.17.1").as_str())
    );
    let installed = host.read(&installed_path("1.17.1"));
    assert_eq!(
        installed,
        fs::read(data.path().join("images/alloy-1.17.1-amd64.raw")).unwrap()
    );
    assert_eq!(hex::encode(Sha256::digest(&installed)), built_sha256(&job));

    // An update with nothing new changes nothing.
    let before = host.state();
    assert_updated(&host.sysupdate("update"));
    assert_eq!(host.state(), before);

    // The next release reaches the host on its next update; the one before stays.
    add_upstream_alloy(&github, "1.18.0");
    let next = build_by_comment(&server, &github, 602, "1.18.0");
    let list = host.sysupdate("list");
    assert_eq!(
        list.listed(),
        ["1.18.0 ✓ candidate", "1.17.1 ✓ ✓ current"],
        "{}",
        list.output()
    );
    assert_updated(&host.sysupdate("update"));
    assert_eq!(
        host.installed(),
        ["alloy-1.17.1-amd64.raw", "alloy-1.18.0-amd64.raw"]
    );
    assert_eq!(
        host.current().as_deref(),
        Some(installed_path("1.18.0").as_str())
    );
    assert_eq!(
        hex::encode(Sha256::digest(host.read(&installed_path("1.18.0")))),
        built_sha256(&next)
    );
    assert_eq!(host.read(&installed_path("1.17.1")), installed);
}

#[test]
fn local_releases_reach_a_host_configured_by_ghost_bu() {
    local_releases_reach_the_host(Transfer::GhostBu);
}

#[test]
fn local_releases_reach_a_host_configured_by_the_readme() {
    // The file the test installs is the one the README shows, whole.
    let readme =
        fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    assert!(
        readme.contains(&format!("```ini\n{}```", crate::host::readme_transfer())),
        "the README's host section does not show examples/sysupdate/alloy.transfer"
    );
    local_releases_reach_the_host(Transfer::Readme);
}

/// A changed image and a manifest signed by a key the host does not trust are refused, and
/// nothing on the host changes; once the files are right again, the update goes through.
fn a_host_refuses_a_changed_image_and_an_untrusted_signature(transfer: Transfer) {
    let github = github_with_app();
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    build_by_comment(&server, &github, 611, "1.17.1");
    let host = host_for(
        transfer,
        &format!("http://127.0.0.1:{}/images/", server.port),
    );
    assert_updated(&host.sysupdate("update"));
    let before = host.state();
    assert_eq!(before.1.as_deref(), Some(installed_path("1.17.1").as_str()));

    add_upstream_alloy(&github, "1.18.0");
    build_by_comment(&server, &github, 612, "1.18.0");
    let images = data.path().join("images");

    // One byte of the new image changed after it was published.
    let image = images.join("alloy-1.18.0-amd64.raw");
    let published = fs::read(&image).unwrap();
    flip_byte(&image, published.len() / 2);
    let run = host.sysupdate("update");
    assert_refused(&run);
    assert!(
        run.stderr
            .contains("did not check out, file has been tampered with"),
        "{}",
        run.output()
    );
    assert_eq!(host.state(), before, "{}", run.output());
    fs::write(&image, &published).unwrap();

    // The manifest signed by a key the host was never given.
    let signature = images.join("SHA256SUMS.gpg");
    let good_signature = fs::read(&signature).unwrap();
    let stranger = SigningKey::from_file(&rsa_keys().secret()).unwrap();
    let manifest = fs::read(images.join("SHA256SUMS")).unwrap();
    fs::write(&signature, stranger.sign_detached(&manifest[..]).unwrap()).unwrap();
    let run = host.sysupdate("update");
    assert_refused(&run);
    assert!(
        run.stderr.contains("Signature verification failed")
            || run.stderr.contains("No public key"),
        "{}",
        run.output()
    );
    assert_eq!(host.state(), before, "{}", run.output());

    // With the published files back as they were, the same host updates.
    fs::write(&signature, good_signature).unwrap();
    assert_updated(&host.sysupdate("update"));
    assert_eq!(
        host.current().as_deref(),
        Some(installed_path("1.18.0").as_str())
    );
    assert_eq!(host.read(&installed_path("1.18.0")), published);
}

#[test]
fn a_host_configured_by_ghost_bu_refuses_a_changed_image_and_an_untrusted_signature() {
    a_host_refuses_a_changed_image_and_an_untrusted_signature(Transfer::GhostBu);
}

#[test]
fn a_host_configured_by_the_readme_refuses_a_changed_image_and_an_untrusted_signature() {
    a_host_refuses_a_changed_image_and_an_untrusted_signature(Transfer::Readme);
}

/// A release of `version` in the build repository, as GitHub delivers it.
fn release_payload(release_id: u64, version: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "published",
        "release": {"id": release_id, "tag_name": format!("v{version}"), "draft": false, "prerelease": false, "author": {"login": "noahwhite"}},
        "repository": {"full_name": BUILD_REPO},
        "sender": {"login": "noahwhite", "type": "User"},
        "installation": {"id": 77},
    }))
    .unwrap()
}

/// Through a public bucket: a release reaches the host, and so does the next; a host that
/// updates while the next is being published (the new `SHA256SUMS` written, its signature
/// not yet) refuses and keeps what it has, and takes the release on its next run.
fn releases_through_a_public_bucket_reach_a_host(transfer: Transfer) {
    let world = World::new();
    world.s3.make_public();
    let server = world.start_server();
    assert_eq!(
        server
            .deliver("d-release-1", "release", &world.release_payload())
            .status,
        202
    );
    let job = wait_for_job(&server, "1.18.0", "succeeded");

    let host = host_for(transfer, &world.s3.public_url());
    assert_updated(&host.sysupdate("update"));
    assert_eq!(host.installed(), ["alloy-1.18.0-amd64.raw"]);
    assert_eq!(
        host.current().as_deref(),
        Some(installed_path("1.18.0").as_str())
    );
    let installed = host.read(&installed_path("1.18.0"));
    assert_eq!(
        installed,
        world.s3.object("alloy-1.18.0-amd64.raw").unwrap().0
    );
    assert_eq!(hex::encode(Sha256::digest(&installed)), built_sha256(&job));
    let before = host.state();

    // The next release, held between the manifest and its signature.
    add_upstream_alloy(&world.github, "1.19.0");
    let gate = world.s3.hold_next("PUT", "SHA256SUMS.gpg");
    assert_eq!(
        server
            .deliver("d-release-2", "release", &release_payload(9002, "1.19.0"))
            .status,
        202
    );
    gate.wait_reached(Duration::from_secs(120));
    let new_manifest = String::from_utf8(world.s3.object("SHA256SUMS").unwrap().0).unwrap();
    assert!(
        new_manifest.contains("alloy-1.19.0-amd64.raw"),
        "{new_manifest}"
    );
    let run = host.sysupdate("update");
    assert_refused(&run);
    assert!(
        run.stderr.contains("Signature verification failed"),
        "{}",
        run.output()
    );
    assert_eq!(host.state(), before, "{}", run.output());

    gate.open();
    let next = wait_for_job(&server, "1.19.0", "succeeded");
    assert_updated(&host.sysupdate("update"));
    assert_eq!(
        host.installed(),
        ["alloy-1.18.0-amd64.raw", "alloy-1.19.0-amd64.raw"]
    );
    assert_eq!(
        host.current().as_deref(),
        Some(installed_path("1.19.0").as_str())
    );
    assert_eq!(
        hex::encode(Sha256::digest(host.read(&installed_path("1.19.0")))),
        built_sha256(&next)
    );
}

#[test]
fn releases_through_a_public_bucket_reach_a_host_configured_by_ghost_bu() {
    releases_through_a_public_bucket_reach_a_host(Transfer::GhostBu);
}

#[test]
fn releases_through_a_public_bucket_reach_a_host_configured_by_the_readme() {
    releases_through_a_public_bucket_reach_a_host(Transfer::Readme);
}
