//! The whole release pipeline through the real server, a stateful fake GitHub and a real
//! S3-compatible server: a release in, objects in the bucket, the manifest committed, the
//! release made, a pull request per consumer, and the tracking issue closed — once, however
//! often it is asked for and whatever fails on the way.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use alloy_sysext_automation::provenance::{AssetCheck, StartEvent, Statement, read_record};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::fake_github::{Failure, FakeGitHub, FakeIssue};
use crate::http::request_with_headers;
use crate::s3_server::S3Server;
use crate::serve_process::Server;
use crate::test_app::{
    APP_SLUG, add_upstream_alloy, add_upstream_alloy_from_seed, app_env, install_app,
};

pub(crate) const BUILD_REPO: &str = "noahwhite/alloy-sysext-build";
pub(crate) const GHOST: &str = "noahwhite/ghost-stack";
pub(crate) const GHOST_PATH: &str = "opentofu/modules/vultr/instance/userdata/ghost.bu";
pub(crate) const INFISICAL: &str = "officina-pub/infisical-stack";
pub(crate) const INFISICAL_PATH: &str = "opentofu/modules/server/userdata/infisical.bu.tftpl";
pub(crate) const VERSION: &str = "1.18.0";
const TRACKING_TITLE: &str = "Alloy 1.18.0 sysext build triggered";
/// The key that signed the real `SHA256SUMS.gpg` (tests/fixtures/README.md).
pub(crate) const RELEASE_KEY: &str = "0768FB9A0C99B895FE5CCC46EDF71D649F349EDE";

/// GitHub as the pipeline finds it: the App installed on the build repository and both
/// consumers, Alloy 1.18.0 upstream, the real manifest and Butane file, a tracking issue.
pub(crate) struct World {
    pub(crate) github: FakeGitHub,
    pub(crate) s3: S3Server,
    pub(crate) data: tempfile::TempDir,
    pub(crate) config: PathBuf,
    /// The PostgreSQL database its servers share, for a world on PostgreSQL; SQLite in
    /// `data` otherwise.
    pub(crate) database: Option<String>,
}

impl World {
    pub(crate) fn new() -> World {
        let github = FakeGitHub::start();
        install_app(&github, &[(77, "noahwhite"), (78, "officina-pub")]);
        github.add_repo(BUILD_REPO, "main");
        github.set_file(
            BUILD_REPO,
            "main",
            "SHA256SUMS",
            fs::read(fixture("real-world/SHA256SUMS")).unwrap(),
        );
        github.set_file(
            BUILD_REPO,
            "main",
            "SHA256SUMS.gpg",
            fs::read(fixture("real-world/SHA256SUMS.gpg")).unwrap(),
        );
        let ghost = fs::read(fixture("real-world/ghost.bu")).unwrap();
        github.add_repo(GHOST, "develop");
        github.set_file(GHOST, "develop", GHOST_PATH, &ghost);
        github.add_repo(INFISICAL, "main");
        github.set_file(INFISICAL, "main", INFISICAL_PATH, &ghost);
        github.add_issue(
            BUILD_REPO,
            "noahwhite",
            TRACKING_TITLE,
            "tracking",
            &["RTB"],
        );

        add_upstream_alloy(&github, VERSION);
        let s3 = S3Server::start();
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("settings.toml");
        // The real manifest's signature is by the project's release key; the server signs
        // with a test key, so the release key is listed as one it may replace. Every
        // version is kept: pruning the real manifest's fourteen has tests of its own.
        fs::write(
            &config,
            format!(
                "[publish]\nreplace_signatures_by = [\"{RELEASE_KEY}\"]\nkeep_versions = 0\n[schedule]\ncheck_upstream = \"off\"\n"
            ),
        )
        .unwrap();
        World {
            github,
            s3,
            data,
            config,
            database: None,
        }
    }

    /// [`World::new`] with its servers on a new PostgreSQL database, with short leases: a
    /// server started again after a kill is another replica, which waits for the killed
    /// one's job lease to lapse.
    pub(crate) fn on_postgres() -> World {
        World {
            database: Some(crate::postgres_server::shared().new_database()),
            ..World::new()
        }
    }

    pub(crate) fn start_server(&self) -> Server {
        self.start_server_with(&[])
    }

    /// [`World::start_server`] with `extra` environment variables, which win.
    pub(crate) fn start_server_with(&self, extra: &[(&'static str, &str)]) -> Server {
        let mut env = app_env(&self.github, &self.config);
        env.retain(|(key, _)| !extra.iter().any(|(k, _)| k == key));
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env.extend(self.s3.env());
        if let Some(database) = &self.database {
            env.push(("DATABASE_URL", database.clone()));
            env.push(("JOB_LEASE_SECONDS", "3".to_owned()));
            env.push(("LEADER_LEASE_SECONDS", "3".to_owned()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Server::start(self.data.path(), &env)
    }

    pub(crate) fn release_payload(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "action": "published",
            "release": {"id": 9001, "tag_name": format!("v{VERSION}"), "draft": false, "prerelease": false, "author": {"login": "noahwhite"}},
            "repository": {"full_name": BUILD_REPO},
            "sender": {"login": "noahwhite", "type": "User"},
            "installation": {"id": 77},
        }))
        .unwrap()
    }

    /// The tracking issue of 1.18.0.
    pub(crate) fn tracking_issue(&self) -> FakeIssue {
        self.github
            .issues(BUILD_REPO)
            .into_iter()
            .find(|i| i.title == TRACKING_TITLE)
            .expect("the tracking issue")
    }

    /// Everything a run can change, to compare runs.
    pub(crate) fn state(&self) -> Value {
        let pulls = |repo: &str| {
            self.github
                .pulls(repo)
                .into_iter()
                .map(|p| json!({"number": p.number, "title": p.title, "body": p.body, "head": p.head, "state": p.state}))
                .collect::<Vec<_>>()
        };
        json!({
            "bucket": self.s3.keys(),
            "puts": self.s3.put_count(),
            "build_commits": self.github.commits(BUILD_REPO, "main").len(),
            "ghost_commits": self.github.commits(GHOST, "feature/update-alloy-sysext-to-1.18.0").len(),
            "infisical_commits": self.github.commits(INFISICAL, "feature/update-alloy-sysext-to-1.18.0").len(),
            "releases": self.github.releases(BUILD_REPO).len(),
            "ghost_pulls": pulls(GHOST),
            "infisical_pulls": pulls(INFISICAL),
        })
    }
}

/// What the finished release job `job` reports for consumer `repo`.
fn consumer_outcome(job: &Value, repo: &str) -> Value {
    let outcomes = job["result"]["consumers"].as_array().unwrap();
    outcomes
        .iter()
        .find(|c| c["repo"] == repo)
        .cloned()
        .unwrap_or_else(|| panic!("{repo} is reported: {outcomes:?}"))
}

/// Whether an update branch (`feature/…`) was made in `repo`.
fn has_update_branch(world: &World, repo: &str) -> bool {
    world
        .github
        .branches(repo)
        .iter()
        .any(|b| b.starts_with("feature/"))
}

pub(crate) fn wait_for_jobs(server: &Server, count: usize) -> Vec<Value> {
    let mut jobs = Vec::new();
    server.wait_for(
        &format!("{count} finished jobs"),
        Duration::from_secs(120),
        || {
            jobs = server.get("/api/jobs").json()["jobs"]
                .as_array()
                .unwrap()
                .clone();
            jobs.len() >= count
                && jobs
                    .iter()
                    .all(|j| j["state"] == "succeeded" || j["state"] == "failed")
        },
    );
    jobs
}

/// The manifest as hosts read it from the bucket, checked against its signature as
/// systemd-sysupdate checks it, and the same as the build repository's.
pub(crate) fn signed_manifest(world: &World) -> String {
    signed_manifest_in(world, "")
}

/// [`signed_manifest`] of the channel under `prefix` (`canary/`, or `""` for the root).
pub(crate) fn signed_manifest_in(world: &World, prefix: &str) -> String {
    let manifest_key = format!("{prefix}SHA256SUMS");
    let signature_key = format!("{prefix}SHA256SUMS.gpg");
    let (manifest, _) = world.s3.object(&manifest_key).unwrap();
    let (signature, _) = world.s3.object(&signature_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("SHA256SUMS"), &manifest).unwrap();
    fs::write(dir.path().join("SHA256SUMS.gpg"), &signature).unwrap();
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&ed25519_keys().public());
    assert!(gpg.sysupdate_verify(
        &keyring,
        &dir.path().join("SHA256SUMS.gpg"),
        &dir.path().join("SHA256SUMS")
    ));
    assert_eq!(
        world
            .github
            .file(BUILD_REPO, "main", &manifest_key)
            .unwrap(),
        manifest
    );
    assert_eq!(
        world
            .github
            .file(BUILD_REPO, "main", &signature_key)
            .unwrap(),
        signature
    );
    String::from_utf8(manifest).unwrap()
}

/// The provenance record of `image` in the bucket under `prefix`, its signature checked as
/// hosts check signatures; gives the record, its bytes and its signature's.
pub(crate) fn published_record(
    world: &World,
    prefix: &str,
    image: &str,
) -> (Statement, Vec<u8>, Vec<u8>) {
    let name = format!("{image}.intoto.json");
    let (record, headers) = world.s3.object(&format!("{prefix}{name}")).unwrap();
    assert!(
        headers["cache-control"].contains("immutable"),
        "{headers:?}"
    );
    let (signature, _) = world.s3.object(&format!("{prefix}{name}.asc")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(&name), &record).unwrap();
    fs::write(dir.path().join(format!("{name}.asc")), &signature).unwrap();
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&ed25519_keys().public());
    assert!(gpg.sysupdate_verify(
        &keyring,
        &dir.path().join(format!("{name}.asc")),
        &dir.path().join(&name)
    ));
    (read_record(&record).unwrap(), record, signature)
}

/// `job` has published 1.18.0: in the bucket (the image with its provenance record), in the
/// build repository, as a release, in a pull request per consumer, and in the report the
/// tracking issue is closed with.
pub(crate) fn assert_published(world: &World, job: &Value) {
    let keys = world.s3.keys();
    for key in [
        "alloy-1.18.0-amd64.raw",
        "alloy-1.18.0-amd64.raw.sha256",
        "alloy-1.18.0-amd64.raw.asc",
        "alloy-1.18.0-amd64.raw.intoto.json",
        "alloy-1.18.0-amd64.raw.intoto.json.asc",
        "alloy-1.18.0.raw",
        "SHA256SUMS",
        "SHA256SUMS.gpg",
    ] {
        assert!(
            keys.iter().any(|k| k == key),
            "{key} missing from the bucket: {keys:?}"
        );
    }
    let (image, headers) = world.s3.object("alloy-1.18.0-amd64.raw").unwrap();
    assert!(
        headers["cache-control"].contains("immutable"),
        "{headers:?}"
    );
    let sha256 = hex::encode(Sha256::digest(&image));
    let (manifest, headers) = world.s3.object("SHA256SUMS").unwrap();
    assert_eq!(headers["cache-control"], "public, max-age=300");
    let manifest_text = String::from_utf8(manifest.clone()).unwrap();
    assert!(
        manifest_text.contains(&format!("{sha256}  alloy-1.18.0-amd64.raw")),
        "{manifest_text}"
    );
    // The lines already published are kept.
    let original = fs::read_to_string(fixture("real-world/SHA256SUMS")).unwrap();
    for line in original.lines() {
        assert!(manifest_text.contains(line), "{line} was lost");
    }
    // Hosts accept the bucket's manifest signature, and the repository holds the same.
    assert_eq!(signed_manifest(world), manifest_text);
    // The record is about this image, built by the server from the upstream asset checked
    // against its digest.
    let (record, _, _) = published_record(world, "", "alloy-1.18.0-amd64.raw");
    assert_eq!(record.image().unwrap().digest.sha256, sha256);
    let upstream = record.upstream_asset().unwrap();
    assert_eq!(
        (
            upstream.repository.as_str(),
            upstream.tag.as_str(),
            upstream.asset.as_str()
        ),
        ("grafana/alloy", "v1.18.0", "alloy-linux-amd64.zip")
    );
    assert_eq!(upstream.checked_against, [AssetCheck::AssetDigest]);
    assert_eq!(
        record.predicate.run_details.builder.id,
        "urn:alloy-sysext-automation:builder:server"
    );

    let releases = world.github.releases(BUILD_REPO);
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].tag, "v1.18.0");
    assert_eq!(releases[0].name, "Alloy Sysext 1.18.0");
    // Upstream's notes are carried over, as text: their mentions and links stay inert.
    assert!(
        releases[0].body.contains("```\nrelease notes\n```"),
        "{}",
        releases[0].body
    );
    // The record is linked beside the image.
    let record_url =
        "https://ghost-sysext-images.separationofconcerns.dev/alloy-1.18.0-amd64.raw.intoto.json";
    assert!(
        releases[0].body.contains(&format!(
            "[`alloy-1.18.0-amd64.raw.intoto.json`]({record_url}) ([signature]({record_url}.asc))"
        )),
        "{}",
        releases[0].body
    );

    for (repo, base, path) in [
        (GHOST, "develop", GHOST_PATH),
        (INFISICAL, "main", INFISICAL_PATH),
    ] {
        let pulls = world.github.pulls(repo);
        assert_eq!(pulls.len(), 1, "{repo}: {pulls:?}");
        let pull = &pulls[0];
        assert_eq!(pull.title, "Update Grafana Alloy sysext to 1.18.0");
        assert_eq!(pull.head, "feature/update-alloy-sysext-to-1.18.0");
        assert_eq!(pull.base, base);
        assert_eq!(pull.assignees, ["noahwhite"]);
        assert!(
            pull.body.contains("1.14.2") && pull.body.contains(&sha256),
            "{}",
            pull.body
        );
        for section in ["## Summary", "## Test plan", "## Links"] {
            assert!(pull.body.contains(section), "{section}: {}", pull.body);
        }
        let commits = world.github.commits(repo, &pull.head);
        assert_eq!(
            commits[0].message, "chore: update Grafana Alloy sysext to 1.18.0",
            "{commits:?}"
        );
        assert_eq!(commits[0].author, format!("{APP_SLUG}[bot]"));
        assert_eq!(commits[0].changed_paths, [path]);
        let diff = world.github.pull_diff(repo, pull.number);
        assert_eq!(diff.len(), 1, "one file changes: {diff:?}");
        let (changed_path, removed, added) = &diff[0];
        assert_eq!(changed_path, path);
        assert_eq!(removed.len(), 4, "{removed:?}");
        assert_eq!(added.len(), 4, "{added:?}");
        assert_eq!(
            added
                .iter()
                .filter(|l| l.contains("alloy-1.18.0-amd64.raw"))
                .count(),
            3,
            "{added:?}"
        );
        assert!(
            added
                .iter()
                .any(|l| l.trim() == format!("hash: sha256-{sha256}")),
            "{added:?}"
        );
        assert!(
            removed.iter().any(|l| l.contains("268db7a95a807cfb")),
            "{removed:?}"
        );
    }
    let tracking = world.tracking_issue();
    assert_eq!(tracking.state, "closed");
    let outcome = tracking.comments.last().map(|c| c.body.as_str());
    let expected = outcome_report(world, job, image.len(), &sha256);
    assert_eq!(outcome, Some(expected.as_str()), "{:?}", tracking.comments);
}

/// The report the tracking issue gets when `job` (asked for by noahwhite) has published
/// the 1.18.0 image of `size` bytes with digest `sha256` and opened a pull request in each
/// consumer.
fn outcome_report(world: &World, job: &Value, size: usize, sha256: &str) -> String {
    let done = if job["result"]["published"] == "replaced" {
        "is rebuilt and republished, replacing the earlier images"
    } else {
        "is built, signed and published"
    };
    let image = "alloy-1.18.0-amd64.raw";
    let pull = |repo: &str| {
        let pulls = world.github.pulls(repo);
        assert_eq!(pulls.len(), 1, "{repo}: {pulls:?}");
        format!("https://github.com/{repo}/pull/{}", pulls[0].number)
    };
    format!(
        "✅ Alloy 1.18.0 {done} (job #{job_id}, asked by @noahwhite).\n\n\
         | image | size | sha256 |\n|---|---:|---|\n\
         | [`{image}`](https://ghost-sysext-images.separationofconcerns.dev/{image}) | {size} | `{sha256}` |\n\n\
         Release: https://github.com/{BUILD_REPO}/releases/tag/v1.18.0\n\
         \nConsumers:\n\
         - `{GHOST}`: opened — {ghost}\n\
         - `{INFISICAL}`: opened — {infisical}\n",
        job_id = job["id"],
        ghost = pull(GHOST),
        infisical = pull(INFISICAL),
    )
}

/// Runs the test `$name(world)` once on each database: `$name::sqlite` and
/// `$name::postgres`.
macro_rules! on_each_database {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(crate::pipeline::World::new())
            }

            #[test]
            fn postgres() {
                super::$name(crate::pipeline::World::on_postgres())
            }
        }
    )*};
}
pub(crate) use on_each_database;

on_each_database!(a_release_is_published_once_however_often_it_is_asked_for);

fn a_release_is_published_once_however_often_it_is_asked_for(world: World) {
    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    let server = world.start_server();
    assert_eq!(
        server
            .deliver("release-1", "release", &world.release_payload())
            .status,
        202
    );
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_published(&world, &jobs[0]);
    // The bucket's links name the default domain, which the start-up log says once.
    assert_eq!(
        server
            .log()
            .matches(
                "publish.base_url is not set: links to the images name the default bucket's domain"
            )
            .count(),
        1
    );
    // One commit for the manifest and one for its signature.
    let commits = world.github.commits(BUILD_REPO, "main");
    assert_eq!(commits.len(), commits_before + 2);
    assert_eq!(commits[0].changed_paths, ["SHA256SUMS.gpg"]);
    assert_eq!(commits[1].changed_paths, ["SHA256SUMS"]);
    let after_first = world.state();

    // The same delivery again, the same release replayed under another id, and /rebuild:
    // nothing new anywhere.
    assert_eq!(
        server
            .deliver("release-1", "release", &world.release_payload())
            .status,
        200
    );
    assert_eq!(
        server
            .deliver("release-1-replayed", "release", &world.release_payload())
            .status,
        202
    );
    world
        .github
        .set_permission(BUILD_REPO, "noahwhite", "admin");
    let comment = json!({
        "action": "created",
        "issue": {"number": 1},
        "comment": {"id": 777, "body": "/rebuild 1.18.0", "user": {"login": "noahwhite", "type": "User"}},
        "repository": {"full_name": BUILD_REPO},
        "sender": {"login": "noahwhite", "type": "User"},
        "installation": {"id": 77},
    });
    server.deliver("rebuild-1", "issue_comment", comment.to_string().as_bytes());
    let jobs = wait_for_jobs(&server, 2);
    assert_eq!(
        jobs.len(),
        2,
        "the replayed release queued no job: {jobs:?}"
    );
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["result"]["published"], "unchanged", "{}", jobs[0]);
    assert_eq!(world.state(), after_first);

    // The record names the release event that first published the image.
    let image = "alloy-1.18.0-amd64.raw";
    let (first, first_bytes, first_signature) = published_record(&world, "", image);
    let started_by = &first.predicate.run_details.metadata.started_by;
    assert_eq!(started_by.event, StartEvent::Release);
    assert_eq!(started_by.repository.as_deref(), Some(BUILD_REPO));
    assert_eq!(started_by.user.as_deref(), Some("noahwhite"));
    assert_eq!((started_by.issue, started_by.comment), (None, None));
    assert!(!started_by.rebuild);

    // The version leaves the build repository's SHA256SUMS (as after a withdrawal, its files
    // still in storage), and a /rebuild publishes the same image again: the published record
    // stays as it is, naming the release event.
    let original = fs::read(fixture("real-world/SHA256SUMS")).unwrap();
    world
        .github
        .set_file(BUILD_REPO, "main", "SHA256SUMS", original.clone());
    let (image_bytes, _) = world.s3.object(image).unwrap();
    server.deliver("rebuild-2", "issue_comment", &rebuild_comment(778));
    let jobs = wait_for_jobs(&server, 3);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["result"]["published"], "new", "{}", jobs[0]);
    let (kept, kept_bytes, kept_signature) = published_record(&world, "", image);
    assert_eq!(
        (kept_bytes, kept_signature),
        (first_bytes, first_signature.clone())
    );
    assert_eq!(world.s3.object(image).unwrap().0, image_bytes);
    let uploaded: Vec<&str> = jobs[0]["result"]["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["key"].as_str().unwrap())
        .collect();
    assert!(
        !uploaded.iter().any(|key| key.contains(".intoto.json")),
        "{uploaded:?}"
    );
    assert_eq!(kept, first);

    // A record storage lost is put again by a build of the same image, which publishes
    // nothing else: this job's record, naming its comment.
    world
        .s3
        .put_raw(&format!("{image}.intoto.json"), b"lost", &[]);
    server.deliver("rebuild-2a", "issue_comment", &rebuild_comment(781));
    let jobs = wait_for_jobs(&server, 4);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["result"]["published"], "unchanged", "{}", jobs[0]);
    let (repaired, _, _) = published_record(&world, "", image);
    assert_eq!(
        repaired.predicate.run_details.metadata.started_by.comment,
        Some(781)
    );
    assert_eq!(world.s3.object(image).unwrap().0, image_bytes);

    // A record beside a signature that is not the server's over it (another key's, or a
    // file whoever else can write to the bucket put there) is replaced, though it names the
    // image: here the image's own signature stands in for the record's.
    let (image_signature, _) = world.s3.object(&format!("{image}.asc")).unwrap();
    world
        .s3
        .put_raw(&format!("{image}.intoto.json.asc"), &image_signature, &[]);
    world
        .github
        .set_file(BUILD_REPO, "main", "SHA256SUMS", original);
    server.deliver("rebuild-2b", "issue_comment", &rebuild_comment(780));
    let jobs = wait_for_jobs(&server, 5);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    let (resigned, _, resigned_signature) = published_record(&world, "", image);
    assert_ne!(resigned_signature, image_signature);
    assert_eq!(
        resigned.predicate.run_details.metadata.started_by.comment,
        Some(780)
    );

    // Upstream's asset changes (other bytes under the same tag): /rebuild replaces the image,
    // and with it the record, which now names the comment and the new image.
    add_upstream_alloy_from_seed(&world.github, VERSION, 8);
    server.deliver("rebuild-3", "issue_comment", &rebuild_comment(779));
    let jobs = wait_for_jobs(&server, 6);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["result"]["published"], "replaced", "{}", jobs[0]);
    let (replaced, _, replaced_signature) = published_record(&world, "", image);
    let (new_image, _) = world.s3.object(image).unwrap();
    assert_ne!(new_image, image_bytes);
    assert_eq!(
        replaced.image().unwrap().digest.sha256,
        hex::encode(Sha256::digest(&new_image))
    );
    assert_ne!(replaced_signature, first_signature);
    let started_by = &replaced.predicate.run_details.metadata.started_by;
    assert_eq!(started_by.event, StartEvent::Comment);
    assert_eq!(started_by.user.as_deref(), Some("noahwhite"));
    assert_eq!(
        (started_by.issue, started_by.comment, started_by.rebuild),
        (Some(1), Some(779), true)
    );
}

#[test]
fn faults_on_the_way_end_in_the_same_state_as_a_clean_run() {
    let world = World::new();
    // Storage fails for a while, the manifest commit meets a 409, and PR creation a 502.
    world.s3.fail_for(8);
    world.github.fail_next(
        "PUT",
        &format!("/repos/{BUILD_REPO}/contents/SHA256SUMS"),
        Failure::Status {
            status: 409,
            message: "SHA256SUMS does not match".into(),
        },
    );
    world.github.fail_next(
        "POST",
        &format!("/repos/{GHOST}/pulls"),
        Failure::ServerError(502),
    );
    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    let server = world.start_server();
    server.deliver("release-faults", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_published(&world, &jobs[0]);
    let commits = world.github.commits(BUILD_REPO, "main");
    assert_eq!(commits.len(), commits_before + 2, "no duplicate commit");
    // Each fault really happened.
    let statuses = |method: &str, path: &str| -> Vec<u16> {
        world
            .github
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .map(|r| r.status)
            .collect()
    };
    assert!(statuses("PUT", &format!("/repos/{BUILD_REPO}/contents/SHA256SUMS")).contains(&409));
    assert_eq!(
        statuses("POST", &format!("/repos/{GHOST}/pulls")),
        [502, 201]
    );
    assert!(
        world
            .s3
            .requests()
            .iter()
            .filter(|r| r.status == 503)
            .count()
            >= 8
    );
}

#[test]
fn a_kill_between_steps_resumes_to_the_same_state() {
    let world = World::new();
    // Slow the release step down so the process can be killed in it.
    world.github.fail_next(
        "GET",
        &format!("/repos/{BUILD_REPO}/releases/tags/"),
        Failure::Delay(Duration::from_secs(5)),
    );
    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    let server = world.start_server();
    server.deliver("release-kill", "release", &world.release_payload());
    server.wait_for("the release step", Duration::from_secs(60), || {
        server.get("/api/jobs/1").json()["step"] == "release"
    });
    let data_dir = server.kill();
    assert!(world.github.releases(BUILD_REPO).is_empty());
    assert_eq!(data_dir, world.data.path());
    let restarted = world.start_server();
    let jobs = wait_for_jobs(&restarted, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["attempts"], 2);
    assert_published(&world, &jobs[0]);
    assert_eq!(
        world.github.commits(BUILD_REPO, "main").len(),
        commits_before + 2
    );
}

#[test]
fn sigterm_mid_step_exits_promptly_and_the_job_resumes() {
    let world = World::new();
    // The release step hangs on GitHub for longer than a stop may take.
    world.github.fail_next(
        "GET",
        &format!("/repos/{BUILD_REPO}/releases/tags/"),
        Failure::Delay(Duration::from_secs(40)),
    );
    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    let mut server = world.start_server();
    server.deliver("release-sigterm", "release", &world.release_payload());
    server.wait_for("the release step", Duration::from_secs(60), || {
        server.get("/api/jobs/1").json()["step"] == "release"
    });
    let signalled = std::time::Instant::now();
    let exit = server.terminate();
    assert!(exit.success(), "exit {exit}; server log:\n{}", server.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "took {:?}; server log:\n{}",
        signalled.elapsed(),
        server.log()
    );
    assert!(world.github.releases(BUILD_REPO).is_empty());
    drop(server);
    // The job was left at the step and resumes from it.
    let restarted = world.start_server();
    let jobs = wait_for_jobs(&restarted, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_published(&world, &jobs[0]);
    assert_eq!(
        world.github.commits(BUILD_REPO, "main").len(),
        commits_before + 2
    );
}

/// An issue comment `body` (comment `id`) by the build repository's admin on its issue 1, as
/// GitHub delivers it.
pub(crate) fn build_repo_comment(id: u64, body: &str) -> Vec<u8> {
    json!({
        "action": "created",
        "issue": {"number": 1},
        "comment": {"id": id, "body": body, "user": {"login": "noahwhite", "type": "User"}},
        "repository": {"full_name": BUILD_REPO},
        "sender": {"login": "noahwhite", "type": "User"},
        "installation": {"id": 77},
    })
    .to_string()
    .into_bytes()
}

fn rebuild_comment(comment_id: u64) -> Vec<u8> {
    build_repo_comment(comment_id, "/rebuild 1.18.0")
}

#[test]
fn a_manifest_signed_by_a_key_the_server_does_not_hold_is_not_replaced() {
    let world = World::new();
    // No `replace_signatures_by`: the release key's signature must stay.
    fs::write(&world.config, "[schedule]\ncheck_upstream = \"off\"\n").unwrap();
    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    let signature_before = world.github.file(BUILD_REPO, "main", "SHA256SUMS.gpg");
    let server = world.start_server();
    server.deliver("release-other-key", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "failed", "{}", jobs[0]);
    assert_eq!(
        jobs[0]["step"], "upload",
        "stopped before anything is uploaded"
    );
    let error = jobs[0]["error"].as_str().unwrap();
    assert!(error.contains(RELEASE_KEY), "{error}");
    assert!(error.contains("publish.replace_signatures_by"), "{error}");
    // Hosts see what they saw: the committed manifest and its signature, and an empty
    // bucket.
    assert_eq!(
        world.github.commits(BUILD_REPO, "main").len(),
        commits_before
    );
    assert_eq!(
        world.github.file(BUILD_REPO, "main", "SHA256SUMS.gpg"),
        signature_before
    );
    let keys = world.s3.keys();
    assert!(
        !keys.iter().any(|k| k.starts_with("SHA256SUMS")),
        "{keys:?}"
    );
    assert!(world.github.releases(BUILD_REPO).is_empty());
    assert!(world.github.pulls(GHOST).is_empty());
    let log = server.log();
    assert!(!log.contains("BEGIN PGP PRIVATE KEY"), "{log}");
}

#[test]
fn a_published_version_with_another_hash_is_replaced_only_by_rebuild() {
    let world = World::new();
    let listed = format!(
        "{}{}  alloy-1.18.0-amd64.raw\n",
        fs::read_to_string(fixture("real-world/SHA256SUMS")).unwrap(),
        "e".repeat(64)
    );
    world
        .github
        .set_file(BUILD_REPO, "main", "SHA256SUMS", &listed);
    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    let server = world.start_server();
    server.deliver("release-conflict", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "failed");
    let error = jobs[0]["error"].as_str().unwrap();
    assert!(error.contains("is published with sha256 eeee"), "{error}");
    assert!(error.contains("/rebuild 1.18.0"), "{error}");
    assert!(world.s3.keys().is_empty(), "nothing was uploaded");
    assert_eq!(
        world.github.commits(BUILD_REPO, "main").len(),
        commits_before
    );
    assert!(world.github.releases(BUILD_REPO).is_empty());
    assert!(world.github.pulls(GHOST).is_empty());
    // The tracking issue says why (the report follows the job's end).
    server.wait_for(
        "the failure on the tracking issue",
        Duration::from_secs(30),
        || !world.tracking_issue().comments.is_empty(),
    );
    let tracking = world.tracking_issue();
    assert_eq!(tracking.state, "open");
    assert!(
        tracking.comments.iter().any(|c| c.body.contains("failed")),
        "{:?}",
        tracking.comments
    );

    world
        .github
        .set_permission(BUILD_REPO, "noahwhite", "admin");
    server.deliver("rebuild-conflict", "issue_comment", &rebuild_comment(901));
    let jobs = wait_for_jobs(&server, 2);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["result"]["published"], "replaced");
    let manifest =
        String::from_utf8(world.github.file(BUILD_REPO, "main", "SHA256SUMS").unwrap()).unwrap();
    assert!(!manifest.contains(&"e".repeat(64)), "{manifest}");
    assert_published(&world, &jobs[0]);
}

#[test]
fn enrolled_repositories_get_pull_requests_and_consumer_ci_is_reported_on_them() {
    let world = World::new();
    const ENROLLED: &str = "noahwhite/edge-hosts";
    world.github.add_repo(ENROLLED, "main");
    world.github.set_file(
        ENROLLED,
        "main",
        "hosts/edge.bu",
        fs::read(fixture("real-world/ghost.bu")).unwrap(),
    );
    world.github.set_file(
        ENROLLED,
        "main",
        ".github/alloy-sysext.toml",
        "path = \"hosts/edge.bu\"\nbase = \"main\"\nassignees = [\"noahwhite\", \"org-owner\"]\n",
    );
    // Only those who may push to the enrolled repository itself are assigned: an org owner
    // it names without their having a say there is not notified on its word.
    world.github.set_permission(ENROLLED, "noahwhite", "write");
    world
        .github
        .set_permission(BUILD_REPO, "org-owner", "admin");
    let server = world.start_server();
    install_on(&server, &[ENROLLED]);
    server.deliver("release-enrolled", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    let pulls = world.github.pulls(ENROLLED);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let diff = world.github.pull_diff(ENROLLED, pulls[0].number);
    assert_eq!(diff[0].0, "hosts/edge.bu");
    assert_eq!(diff[0].2.len(), 4);
    assert_eq!(pulls[0].assignees, ["noahwhite"]);
    // The configured consumers still got theirs.
    assert_eq!(world.github.pulls(GHOST).len(), 1);

    // The consumer's CI finishes on the update branch: its pull request hears of it.
    let ghost_pull = world.github.pulls(GHOST)[0].number;
    let run = json!({
        "action": "completed",
        "workflow_run": {
            "id": 555,
            "name": "Validate Butane",
            "head_branch": "feature/update-alloy-sysext-to-1.18.0",
            "head_sha": world.github.pulls(GHOST)[0].head_sha,
            "head_repository": {"full_name": GHOST},
            "conclusion": "failure",
            "html_url": "https://github.com/noahwhite/ghost-stack/actions/runs/555",
        },
        "repository": {"full_name": GHOST},
        "sender": {"login": "noahwhite", "type": "User"},
        "installation": {"id": 77},
    });
    server.deliver("ci-done", "workflow_run", run.to_string().as_bytes());
    server.wait_for("the CI report", Duration::from_secs(30), || {
        !world.github.comments(GHOST, ghost_pull).is_empty()
    });
    let comments = world.github.comments(GHOST, ghost_pull);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("Validate Butane"),
        "{}",
        comments[0].body
    );
    assert!(
        comments[0].body.contains("**failure**"),
        "{}",
        comments[0].body
    );
    assert!(
        comments[0].body.contains("actions/runs/555"),
        "{}",
        comments[0].body
    );
}

#[test]
fn a_consumer_on_a_newer_version_is_not_downgraded() {
    let world = World::new();
    let newer = fs::read_to_string(fixture("real-world/ghost.bu"))
        .unwrap()
        .replace("alloy-1.14.2-amd64.raw", "alloy-1.19.0-amd64.raw");
    world
        .github
        .set_file(INFISICAL, "main", INFISICAL_PATH, &newer);
    let server = world.start_server();
    server.deliver("release-old", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    let infisical = consumer_outcome(&jobs[0], INFISICAL);
    assert_eq!(infisical["outcome"], "pins a newer version", "{infisical}");
    assert!(world.github.pulls(INFISICAL).is_empty());
    assert!(!has_update_branch(&world, INFISICAL));
    assert_eq!(world.github.pulls(GHOST).len(), 1);
}

#[test]
fn a_consumer_that_cannot_be_updated_keeps_the_tracking_issue_open() {
    let world = World::new();
    // A Butane file without the Alloy sysext: nothing to pin, a permanent failure.
    world.github.set_file(
        INFISICAL,
        "main",
        INFISICAL_PATH,
        "variant: flatcar\nversion: 1.1.0\n",
    );
    let server = world.start_server();
    server.deliver("release-bad-consumer", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    // Publishing succeeded, and the other consumer got its pull request.
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert!(world.s3.keys().contains(&"SHA256SUMS".to_owned()));
    assert_eq!(world.github.releases(BUILD_REPO).len(), 1);
    assert_eq!(world.github.pulls(GHOST).len(), 1);
    let infisical = consumer_outcome(&jobs[0], INFISICAL);
    assert_eq!(infisical["outcome"], "failed", "{infisical}");
    assert!(world.github.pulls(INFISICAL).is_empty());

    let tracking = world.tracking_issue();
    assert_eq!(tracking.state, "open", "a consumer was left behind");
    let report = &tracking.comments.last().unwrap().body;
    assert!(report.starts_with("⚠️"), "{report}");
    assert!(report.contains("1 consumer update(s) failed"), "{report}");
    assert!(report.contains(INFISICAL), "{report}");
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("alloy_sysext_consumer_updates_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("alloy_sysext_consumer_updates_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
}

#[test]
fn the_yaml_check_refuses_shared_nodes_and_says_when_a_template_could_not_be_checked() {
    let world = World::new();
    let ghost = fs::read_to_string(fixture("real-world/ghost.bu")).unwrap();
    // An anchor inside the Alloy entry: refused, no branch, no pull request.
    let anchored = ghost.replace(
        "    - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\n",
        "    - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\n      mode: &mode 0644\n",
    );
    assert_ne!(anchored, ghost);
    world
        .github
        .set_file(INFISICAL, "main", INFISICAL_PATH, &anchored);
    // A template that is not YAML until OpenTofu renders it: edited, and the pull request
    // says that the YAML check could not run.
    let template = format!("{ghost}${{indent(4, yamlencode(extra_units))}}\n");
    world
        .github
        .set_file(GHOST, "develop", GHOST_PATH, &template);
    let server = world.start_server();
    server.deliver("release-yaml-check", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);

    let infisical = consumer_outcome(&jobs[0], INFISICAL);
    assert_eq!(infisical["outcome"], "failed", "{infisical}");
    let error = infisical["error"].as_str().unwrap();
    assert!(
        error.contains("line 37, within the Alloy pin (lines 36–401), defines an anchor"),
        "{error}"
    );
    assert!(world.github.pulls(INFISICAL).is_empty());
    assert!(!has_update_branch(&world, INFISICAL));

    let pulls = world.github.pulls(GHOST);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(
        pulls[0]
            .body
            .contains("The YAML check could not run: the file does not parse as YAML"),
        "{}",
        pulls[0].body
    );
    let images = jobs[0]["result"]["images"].as_array().unwrap();
    let amd64 = images.iter().find(|i| i["arch"] == "amd64").unwrap();
    let edited = world
        .github
        .file(GHOST, "feature/update-alloy-sysext-to-1.18.0", GHOST_PATH)
        .unwrap();
    assert_eq!(
        String::from_utf8(edited).unwrap(),
        template
            .replace("alloy-1.14.2-amd64.raw", "alloy-1.18.0-amd64.raw")
            .replace(
                "sha256-268db7a95a807cfb1c9544fce8a0845db8d7b74354c9ab0e5a1959e4093b7fa7",
                &format!("sha256-{}", amd64["sha256"].as_str().unwrap())
            )
    );
}

#[test]
fn a_branch_and_pull_request_left_by_a_failed_run_are_taken_over() {
    let world = World::new();
    let branch = "feature/update-alloy-sysext-to-1.18.0";
    // A failed run left the branch, with a commit of its own and without the edit, and an
    // open pull request on it.
    world.github.create_branch(GHOST, branch, "develop");
    world
        .github
        .set_file(GHOST, branch, "leftover.txt", "from a failed run\n");
    let left = world.github.add_pull(
        GHOST,
        "alloy-sysext-automation[bot]",
        branch,
        "develop",
        "Update Grafana Alloy sysext to 1.18.0",
        "from a failed run",
    );
    let server = world.start_server();
    server.deliver("release-leftovers", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);

    // The branch was reset from the base and carries the edit; the open pull request was
    // updated rather than a second one opened.
    assert_eq!(world.github.file(GHOST, branch, "leftover.txt"), None);
    let edited = String::from_utf8(world.github.file(GHOST, branch, GHOST_PATH).unwrap()).unwrap();
    assert!(edited.contains("alloy-1.18.0-amd64.raw"), "{edited}");
    let pulls = world.github.pulls(GHOST);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0].number, left);
    assert_eq!(pulls[0].state, "open");
    assert!(pulls[0].body.contains("1.18.0"), "{}", pulls[0].body);
}

#[test]
fn a_published_signature_that_cannot_be_read_is_not_replaced_either() {
    let world = World::new();
    world
        .github
        .set_file(BUILD_REPO, "main", "SHA256SUMS.gpg", "not a signature\n");
    let server = world.start_server();
    server.deliver("release-unreadable", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "failed", "{}", jobs[0]);
    assert_eq!(jobs[0]["step"], "upload");
    let error = jobs[0]["error"].as_str().unwrap();
    assert!(error.contains("cannot be read"), "{error}");
    assert!(error.contains("delete SHA256SUMS.gpg"), "{error}");
    assert_eq!(world.s3.keys(), Vec::<String>::new());
}

/// Tells GitHub, as an installation event would, that the App is installed on `extra` too,
/// and waits until the server has stored it.
fn install_on(server: &Server, extra: &[&str]) {
    let mut repositories: Vec<Value> = vec![
        json!({"full_name": GHOST}),
        json!({"full_name": BUILD_REPO}),
    ];
    repositories.extend(extra.iter().map(|repo| json!({"full_name": repo})));
    let installation = json!({
        "action": "created",
        "installation": {"id": 77, "account": {"login": "noahwhite"}},
        "repositories": repositories,
        "sender": {"login": "noahwhite", "type": "User"},
    });
    server.deliver(
        "installed",
        "installation",
        installation.to_string().as_bytes(),
    );
    server.wait_for(
        "the installation to be stored",
        Duration::from_secs(30),
        || server.get("/api/deliveries/installed").json()["state"] == "processed",
    );
}

#[test]
fn an_enrollment_file_that_fails_its_checks_is_refused_naming_the_key() {
    let world = World::new();
    const OUTSIDE: &str = "noahwhite/reaches-outside";
    const BAD_BRANCH: &str = "noahwhite/bad-branch";
    const BAD_ASSIGNEE: &str = "noahwhite/bad-assignee";
    const FULL_REF: &str = "noahwhite/full-ref";
    const COMMIT: &str = "noahwhite/commit-base";
    let commit = "0123456789abcdef".repeat(3)[..40].to_owned();
    for (repo, enrollment) in [
        (
            OUTSIDE,
            "path = \"../alloy-sysext-build/SHA256SUMS\"\nbase = \"main\"\n",
        ),
        (BAD_BRANCH, "path = \"hosts/edge.bu\"\nbase = \"main..x\"\n"),
        (
            BAD_ASSIGNEE,
            "path = \"hosts/edge.bu\"\nbase = \"main\"\nassignees = [\"ok\", \"not a login\"]\n",
        ),
        // Names GitHub may resolve to another ref than the branch (a tag, a commit).
        (
            FULL_REF,
            "path = \"hosts/edge.bu\"\nbase = \"refs/tags/v1\"\n",
        ),
        (
            COMMIT,
            &format!("path = \"hosts/edge.bu\"\nbase = \"{commit}\"\n"),
        ),
    ] {
        world.github.add_repo(repo, "main");
        world.github.set_file(
            repo,
            "main",
            "hosts/edge.bu",
            fs::read(fixture("real-world/ghost.bu")).unwrap(),
        );
        world
            .github
            .set_file(repo, "main", ".github/alloy-sysext.toml", enrollment);
    }
    let server = world.start_server();
    install_on(
        &server,
        &[OUTSIDE, BAD_BRANCH, BAD_ASSIGNEE, FULL_REF, COMMIT],
    );
    server.deliver("release-refused", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    for (repo, key, value) in [
        (OUTSIDE, "path", "../alloy-sysext-build/SHA256SUMS"),
        (BAD_BRANCH, "base", "main..x"),
        (BAD_ASSIGNEE, "assignees", "not a login"),
        (FULL_REF, "base", "refs/tags/v1"),
        (COMMIT, "base", commit.as_str()),
    ] {
        let outcome = consumer_outcome(&jobs[0], repo);
        assert_eq!(outcome["outcome"], "refused", "{outcome}");
        let error = outcome["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!(
                ".github/alloy-sysext.toml: {key} = {value:?} is not valid"
            )),
            "{error}"
        );
        // Nothing was made there.
        assert!(world.github.pulls(repo).is_empty(), "{repo}");
        assert_eq!(world.github.branches(repo), ["main"], "{repo}");
    }
    // The refusal is in the job's report, and does not hold the build back.
    let tracking = world.tracking_issue();
    assert_eq!(tracking.state, "closed");
    let report = &tracking.comments.last().unwrap().body;
    // Both the repository and the error come from outside: each is in a code span.
    assert!(
        report.contains(&format!("- `{OUTSIDE}`: refused — ")),
        "{report}"
    );
    assert!(
        report.contains(
            ".github/alloy-sysext.toml: path = \"../alloy-sysext-build/SHA256SUMS\" is not valid"
        ),
        "{report}"
    );
    assert_eq!(world.github.pulls(GHOST).len(), 1);
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("alloy_sysext_consumer_updates_total{outcome=\"refused\"} 5"),
        "{metrics}"
    );
    // No `..` reached GitHub.
    for request in world.github.requests() {
        assert!(
            !request.path.split('/').any(|s| s == ".." || s == "."),
            "{} {}",
            request.method,
            request.path
        );
    }
}

#[test]
fn an_enrolled_repository_that_fails_every_write_fails_alone_without_holding_the_job() {
    let world = World::new();
    const ENROLLED: &str = "noahwhite/edge-hosts";
    const PATH: &str = "hosts/edge.bu";
    world.github.add_repo(ENROLLED, "main");
    world.github.set_file(
        ENROLLED,
        "main",
        PATH,
        fs::read(fixture("real-world/ghost.bu")).unwrap(),
    );
    world.github.set_file(
        ENROLLED,
        "main",
        ".github/alloy-sysext.toml",
        format!("path = {PATH:?}\nbase = \"main\"\n"),
    );
    // Every write of the file meets a file that changed meanwhile, as a repository that
    // moves its base (or names another ref) under each job would make it.
    for _ in 0..8 {
        world.github.fail_next(
            "PUT",
            &format!("/repos/{ENROLLED}/contents/"),
            Failure::Status {
                status: 409,
                message: format!("{PATH} does not match"),
            },
        );
    }
    let server = world.start_server();
    install_on(&server, &[ENROLLED]);
    server.deliver("release-stale", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    let enrolled = consumer_outcome(&jobs[0], ENROLLED);
    assert_eq!(enrolled["outcome"], "failed", "{enrolled}");
    assert!(enrolled.get("will_retry").is_none(), "{enrolled}");
    assert!(
        enrolled["error"]
            .as_str()
            .unwrap()
            .contains("changed while it was updated"),
        "{enrolled}"
    );
    // One attempt at the write: the job was not retried for it.
    let puts = world
        .github
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PUT" && r.path.starts_with(&format!("/repos/{ENROLLED}/contents/"))
        })
        .count();
    assert_eq!(puts, 1);
    // The others got theirs; the tracking issue says who was left behind.
    assert_eq!(world.github.pulls(GHOST).len(), 1);
    assert!(world.github.pulls(ENROLLED).is_empty());
    let tracking = world.tracking_issue();
    assert_eq!(tracking.state, "open");
    assert!(
        tracking.comments.last().unwrap().body.contains(ENROLLED),
        "{}",
        tracking.comments.last().unwrap().body
    );
    // The file was read at the commit the update branch starts from, not by the base's
    // name, which GitHub resolves anew (a tag of that name may win).
    let head = world.github.commits(ENROLLED, "main")[0].sha.clone();
    let reads: Vec<String> = world
        .github
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/contents/hosts/edge.bu"))
        .map(|r| r.query)
        .collect();
    assert!(!reads.is_empty());
    for query in reads {
        assert_eq!(query, format!("ref={head}"));
    }
}

#[test]
fn an_enrollment_file_that_cannot_be_read_is_reported_as_failed() {
    let world = World::new();
    const UNREADABLE: &str = "noahwhite/unreadable";
    world.github.add_repo(UNREADABLE, "main");
    world.github.set_file(
        UNREADABLE,
        "main",
        ".github/alloy-sysext.toml",
        "path = \"hosts/edge.bu\"\nbase = \"main\"\n",
    );
    world.github.fail_next(
        "GET",
        &format!("/repos/{UNREADABLE}/contents/.github/alloy-sysext.toml"),
        Failure::Status {
            status: 422,
            message: "Validation Failed".into(),
        },
    );
    let server = world.start_server();
    install_on(&server, &[UNREADABLE]);
    server.deliver(
        "release-unreadable-enrollment",
        "release",
        &world.release_payload(),
    );
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    let unreadable = consumer_outcome(&jobs[0], UNREADABLE);
    assert_eq!(unreadable["outcome"], "failed", "{unreadable}");
    let error = unreadable["error"].as_str().unwrap();
    assert!(
        error.starts_with("reading .github/alloy-sysext.toml: "),
        "{error}"
    );
    assert!(error.contains("422"), "{error}");
    // The job does not look complete: the tracking issue stays open and names it.
    let tracking = world.tracking_issue();
    assert_eq!(tracking.state, "open");
    let report = &tracking.comments.last().unwrap().body;
    assert!(report.contains(&format!("`{UNREADABLE}`")), "{report}");
    assert_eq!(world.github.pulls(GHOST).len(), 1);
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("alloy_sysext_consumer_updates_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn names_with_url_characters_reach_github_escaped_and_tokens_reach_one_repository() {
    let world = World::new();
    const ODD: &str = "noahwhite/odd-names";
    const PATH: &str = "hosts/edge #1?%.bu";
    const BASE: &str = "release#1%x";
    world.github.add_repo(ODD, "main");
    world.github.create_branch(ODD, BASE, "main");
    world.github.set_file(
        ODD,
        BASE,
        PATH,
        fs::read(fixture("real-world/ghost.bu")).unwrap(),
    );
    world.github.set_file(
        ODD,
        "main",
        ".github/alloy-sysext.toml",
        format!("path = {PATH:?}\nbase = {BASE:?}\nassignees = [\"noahwhite\"]\n"),
    );
    let server = world.start_server();
    install_on(&server, &[ODD]);
    server.deliver("release-odd", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);

    let pulls = world.github.pulls(ODD);
    assert_eq!(pulls.len(), 1, "{:?}", jobs[0]["result"]["consumers"]);
    assert_eq!(pulls[0].base, BASE);
    assert_eq!(pulls[0].head, "feature/update-alloy-sysext-to-1.18.0");
    let edited = world
        .github
        .file(ODD, "feature/update-alloy-sysext-to-1.18.0", PATH)
        .expect("the file is committed under its own name");
    assert!(
        String::from_utf8(edited)
            .unwrap()
            .contains("alloy-1.18.0-amd64.raw"),
        "the edit is there"
    );
    let diff = world.github.pull_diff(ODD, pulls[0].number);
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert_eq!(diff[0].0, PATH);

    // Every token the server asked for names one repository and what it may do there.
    let scopes = world.github.token_scopes();
    assert!(!scopes.is_empty());
    for scope in &scopes {
        let repositories = scope.repositories.as_ref().expect("a scoped token");
        assert_eq!(repositories.len(), 1, "{scope:?}");
        let permissions = scope.permissions.as_ref().expect("scoped permissions");
        assert!(
            permissions.len() <= 2,
            "one permission and metadata: {scope:?}"
        );
    }
    let writes_to = |name: &str, permission: &str| {
        scopes.iter().any(|scope| {
            scope.repositories.as_deref() == Some(&[name.to_owned()][..])
                && scope
                    .permissions
                    .as_ref()
                    .unwrap()
                    .get(permission)
                    .map(String::as_str)
                    == Some("write")
        })
    };
    assert!(writes_to("odd-names", "contents"));
    assert!(writes_to("odd-names", "pull_requests"));
    assert!(writes_to("alloy-sysext-build", "contents"));
    assert!(writes_to("alloy-sysext-build", "issues"));
    // A token the server got for a consumer reaches that consumer only: not the build
    // repository, not the other consumers of the same installation.
    let consumer_tokens = world.github.tokens_scoped_to("odd-names");
    assert!(!consumer_tokens.is_empty());
    for token in &consumer_tokens {
        let authorization = format!("token {token}");
        for path in [
            format!("/repos/{BUILD_REPO}/contents/SHA256SUMS"),
            format!("/repos/{GHOST}/contents/{GHOST_PATH}"),
            format!("/repos/{BUILD_REPO}/issues"),
        ] {
            let response = request_with_headers(
                world.github.port(),
                "GET",
                &path,
                &[("Authorization", &authorization)],
                b"",
            )
            .unwrap();
            assert_eq!(response.status, 404, "{path}: {}", response.body);
        }
    }
    // Upstream is outside the installation: it is read with a read-only token of the build
    // repository, never one of its own.
    assert!(
        !scopes
            .iter()
            .any(|scope| scope.repositories.as_deref() == Some(&["alloy".to_owned()][..]))
    );
}

#[test]
fn data_dir_is_the_owners_alone_but_the_published_images() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    // Opened up by hand, as an older version or an operator may have left it.
    fs::set_permissions(world.data.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&world.config, fs::Permissions::from_mode(0o644)).unwrap();
    // Local storage under DATA_DIR/images, and a signing key made in DATA_DIR.
    let env: Vec<(&str, String)> = app_env(&world.github, &world.config)
        .into_iter()
        .filter(|(name, _)| *name != "SIGNING_KEY_PATH")
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(world.data.path(), &env);
    server.deliver("release-local", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);

    let mode =
        |path: &std::path::Path| fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777;
    let root = world.data.path();
    assert_eq!(mode(root), 0o700);
    for name in [
        "alloy-sysext.db",
        "alloy-sysext.db-wal",
        "alloy-sysext.db-shm",
        "signing-key.asc",
        "images/alloy-1.18.0-amd64.raw",
        "images/SHA256SUMS",
    ] {
        assert!(root.join(name).exists(), "{name} is in DATA_DIR");
    }
    let mut checked = 0;
    let mut directories = vec![root.to_owned()];
    while let Some(directory) = directories.pop() {
        for entry in fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            let published = path.starts_with(root.join("images"));
            let kind = fs::symlink_metadata(&path).unwrap().file_type();
            let expected = match (kind.is_dir(), published) {
                // The operator's settings and the test's log of the server: not the server's
                // files, so not its to change.
                _ if path == world.config || path == root.join("test-server.log") => 0o644,
                (true, true) => 0o755,
                (true, false) => 0o700,
                (false, true) => 0o644,
                (false, false) => 0o600,
            };
            assert_eq!(mode(&path), expected, "{}", path.display());
            checked += 1;
            if kind.is_dir() {
                directories.push(path);
            }
        }
    }
    assert!(checked >= 8, "{checked} entries");
    drop(server);
}
