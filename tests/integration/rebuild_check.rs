//! `rebuild-check`: an image the pipeline published, or `build` wrote, rebuilt from the
//! upstream asset its signed record names (served by the fake GitHub, with its digest) and
//! compared: identical when nothing changed, and otherwise the first difference named; a
//! record naming another upstream repository, or an asset that no longer matches, refused.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::build_info::VERSION_LINE;
use alloy_sysext_automation::signing::SigningKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::fake_github::{Asset, FakeGitHub};
use crate::pipeline::{World, wait_for_jobs};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha256_of(path: &Path) -> String {
    sha256(&fs::read(path).unwrap())
}

/// `rebuild-check` with `args`, the shared Ed25519 public key and `github` as the GitHub API.
fn rebuild_check(github: &FakeGitHub, args: &[&str]) -> Output {
    cli()
        .arg("rebuild-check")
        .args(args)
        .arg("--public-key")
        .arg(ed25519_keys().public())
        .env("GITHUB_API_URL", &github.url)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The last `count` lines `output` printed.
fn last_lines(output: &Output, count: usize) -> Vec<String> {
    let text = stdout(output);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[lines.len().saturating_sub(count)..].to_vec()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Signs `path` again with the shared Ed25519 key, into `<path>.asc`, as a publisher
/// holding the key can.
fn sign_again(path: &Path) {
    let key = SigningKey::from_file(&ed25519_keys().secret()).unwrap();
    let signature = key.sign_detached(fs::File::open(path).unwrap()).unwrap();
    fs::write(format!("{}.asc", path.display()), signature).unwrap();
}

/// Edits the record at `path` with `edit` and signs it again.
fn edit_record(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut record: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    edit(&mut record);
    fs::write(path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    sign_again(path);
}

/// The upstream zip of `arch` with a stand-in binary from `seed`: its bytes and the binary.
fn zip_of(arch: Arch, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("alloy.zip");
    let binary = fake_binary(arch, 256 << 10, seed);
    write_zip(&zip, &[(&format!("alloy-linux-{arch}"), &binary)]);
    (fs::read(zip).unwrap(), binary)
}

fn asset(name: &str, data: &[u8]) -> Asset {
    Asset {
        name: name.to_owned(),
        data: data.to_vec(),
        digest: Some(format!("sha256:{}", sha256(data))),
    }
}

/// A signed `build` of `version` for `arch` from `zip` into `out`, with `extra` arguments.
fn build_from(version: &str, arch: Arch, zip: &[u8], out: &Path, extra: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join(format!("alloy-linux-{arch}.zip"));
    fs::write(&path, zip).unwrap();
    let mut args = vec!["--arch", arch.upstream_name(), "--no-compat-name"];
    args.extend_from_slice(extra);
    build_signed(version, &path, out, &args);
}

/// The lines `rebuild-check` prints for the image `file` whose record passes and whose
/// asset downloads, from its sha256 check to the download: `record` is what `verify` says
/// of the record, `settings` the settings line.
fn lines_to_download(file: &str, image: &str, record: &str, settings: &str, zip: &str) -> String {
    let signer = key_fingerprint(&ed25519_keys().public());
    let (version, arch) = {
        let stem = file.trim_start_matches("alloy-").trim_end_matches(".raw");
        stem.rsplit_once('-').unwrap()
    };
    format!(
        "ok        {file}: sha256 {image} matches SHA256SUMS\n\
         ok        {file}.intoto.json.asc: good signature by {signer} on {file}.intoto.json\n\
         ok        {file}.intoto.json: {record}\n\
         ok        {file}.intoto.json: names grafana/alloy, the trusted upstream repository\n\
         ok        {file}.intoto.json: this version builds with its settings: {settings}\n\
         ok        alloy-linux-{arch}.zip: downloaded from grafana/alloy v{version}: sha256 {zip} matches the record and the release's asset digest\n"
    )
}

const DEFAULT_SETTINGS: &str = "extension alloy, xz level 6, 131072-byte blocks, mtime 0";

/// What `verify` says of the record of `file`, built by `build --zip` from a zip with
/// sha256 `zip`.
fn given_zip_record(file: &str, version: &str, arch: &str, zip: &str) -> String {
    format!(
        "{file} was built from grafana/alloy v{version} alloy-linux-{arch}.zip (sha256 {zip}, \
         given as a file, not checked against the release) by alloy-sysext-automation \
         {VERSION_LINE}, started by command line"
    )
}

#[test]
fn the_pipelines_image_rebuilds_identical_and_one_of_another_binary_is_named() {
    let world = World::new();
    let server = world.start_server();
    server.deliver("release-rebuild", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    drop(server);
    world.s3.make_public();
    let url = world.s3.public_url();
    let signer = key_fingerprint(&ed25519_keys().public());
    let file = "alloy-1.18.0-amd64.raw";
    let (image, _) = world.s3.object(file).unwrap();
    let image_sha256 = sha256(&image);
    let (manifest, _) = world.s3.object("SHA256SUMS").unwrap();
    let entries = String::from_utf8(manifest).unwrap().lines().count();
    let upstream = world.github.releases("grafana/alloy");
    assert_eq!(upstream.len(), 1);
    let (genuine_zip, genuine_binary) = zip_of(Arch::Amd64, 7);
    let zip_sha256 = sha256(&genuine_zip);
    let downloads_before = world.github.downloads().len();

    // Another machine, another directory: the same bytes.
    let output = rebuild_check(&world.github, &["--url", &url]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let record = format!(
        "{file} was built from grafana/alloy v1.18.0 alloy-linux-amd64.zip (sha256 {zip_sha256}, \
         checked against the release's asset digest) by alloy-sysext-automation {VERSION_LINE}, \
         started by release event by noahwhite in noahwhite/alloy-sysext-build"
    );
    assert_eq!(
        stdout(&output),
        format!(
            "source: {url}\n\
             ok        SHA256SUMS.gpg: good signature by {signer} on SHA256SUMS\n\
             ok        SHA256SUMS: {entries} entries; version 1.18.0 (the newest listed): {file}\n\
             {}\
             ok        {file}: rebuilt by alloy-sysext-automation {VERSION_LINE} from grafana/alloy v1.18.0 alloy-linux-amd64.zip: sha256 {image_sha256}\n\
             identical {file}: the rebuilt image has the published image's sha256 {image_sha256}\n",
            lines_to_download(file, &image_sha256, &record, DEFAULT_SETTINGS, &zip_sha256)
        )
    );
    assert_eq!(stderr(&output), "");
    assert_eq!(
        world.github.downloads()[downloads_before..],
        ["alloy-linux-amd64.zip"]
    );

    // The image replaced by one of another binary, published as the key holder can: its
    // SHA256SUMS and signatures made again, its record naming the genuine upstream zip.
    let work = tempfile::tempdir().unwrap();
    let (other_zip, other_binary) = zip_of(Arch::Amd64, 8);
    let swapped = work.path().join("swapped");
    build_from("1.18.0", Arch::Amd64, &other_zip, &swapped, &[]);
    let record_path = swapped.join(format!("{file}.intoto.json"));
    edit_record(&record_path, |record| {
        let zip = &mut record["predicate"]["buildDefinition"]["resolvedDependencies"][0];
        zip["digest"]["sha256"] = json!(zip_sha256);
        zip["annotations"]["checkedAgainst"] = json!(["assetDigest"]);
    });
    let publish = |dir: &Path| {
        for name in [
            file.to_owned(),
            format!("{file}.sha256"),
            format!("{file}.asc"),
            format!("{file}.intoto.json"),
            format!("{file}.intoto.json.asc"),
            "SHA256SUMS".to_owned(),
            "SHA256SUMS.gpg".to_owned(),
        ] {
            world
                .s3
                .put_raw(&name, &fs::read(dir.join(&name)).unwrap(), &[]);
        }
    };
    publish(&swapped);
    let swapped_sha256 = sha256_of(&swapped.join(file));
    let record = format!(
        "{file} was built from grafana/alloy v1.18.0 alloy-linux-amd64.zip (sha256 {zip_sha256}, \
         checked against the release's asset digest) by alloy-sysext-automation {VERSION_LINE}, \
         started by command line"
    );
    let output = rebuild_check(&world.github, &["--url", &url]);
    assert_eq!(output.status.code(), Some(1));
    let difference = format!(
        "the rebuilt image has sha256 {image_sha256}, the published one {swapped_sha256}: the binary differs: \
         the record names sha256 {} for alloy-linux-amd64, but the upstream zip holds one with sha256 {}",
        sha256(&other_binary),
        sha256(&genuine_binary)
    );
    assert_eq!(
        stdout(&output),
        format!(
            "source: {url}\n\
             ok        SHA256SUMS.gpg: good signature by {signer} on SHA256SUMS\n\
             ok        SHA256SUMS: 1 entry; version 1.18.0 (the newest listed): {file}\n\
             {}\
             ok        {file}: rebuilt by alloy-sysext-automation {VERSION_LINE} from grafana/alloy v1.18.0 alloy-linux-amd64.zip: sha256 {image_sha256}\n\
             DIFFERENT {file}: {difference}\n",
            lines_to_download(
                file,
                &swapped_sha256,
                &record,
                DEFAULT_SETTINGS,
                &zip_sha256
            )
        )
    );
    assert_eq!(stderr(&output), format!("error: {file}: {difference}\n"));

    // A record that names the genuine binary as well: the file that holds another is named.
    edit_record(&record_path, |record| {
        record["predicate"]["buildDefinition"]["resolvedDependencies"][1]["digest"]["sha256"] =
            json!(sha256(&genuine_binary));
    });
    publish(&swapped);
    let output = rebuild_check(&world.github, &["--url", &url, "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let size = 256 << 10;
    let detail = format!(
        "/usr/local/bin/alloy differs: its content is {size} bytes with sha256 {} in the published \
         image, {size} bytes with sha256 {} in the rebuilt one",
        sha256(&other_binary),
        sha256(&genuine_binary)
    );
    assert_eq!(
        report["images"],
        json!([{
            "file": file,
            "published_sha256": swapped_sha256,
            "upstream": {"repository": "grafana/alloy", "tag": "v1.18.0",
                         "asset": "alloy-linux-amd64.zip", "sha256": zip_sha256,
                         "checked_against": ["assetDigest"]},
            "built_by": VERSION_LINE,
            "rebuilt_sha256": image_sha256,
            "identical": false,
            "difference": {"kind": "file", "detail": detail},
        }])
    );
    let last = report["checks"].as_array().unwrap().last().unwrap().clone();
    let compared = format!(
        "the rebuilt image has sha256 {image_sha256}, the published one {swapped_sha256}: {detail}"
    );
    assert_eq!(
        last,
        json!({"file": file, "check": "compare", "ok": false, "detail": compared})
    );
    assert_eq!(report["ok"], false);
    assert_eq!(report["error"], json!(format!("{file}: {compared}")));
}

/// A directory `build` wrote: 1.17.0 for amd64, 1.17.1 for amd64 and arm64, each from the
/// zip upstream publishes (seed 7), and the fake GitHub serving those releases.
fn built_dir() -> (tempfile::TempDir, PathBuf, FakeGitHub) {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let github = FakeGitHub::start();
    for (version, arches) in [
        ("1.17.0", &[Arch::Amd64][..]),
        ("1.17.1", &[Arch::Amd64, Arch::Arm64][..]),
    ] {
        let mut assets = Vec::new();
        for arch in arches {
            let (zip, _) = zip_of(*arch, 7);
            build_from(version, *arch, &zip, &out, &[]);
            assets.push(asset(&format!("alloy-linux-{arch}.zip"), &zip));
        }
        github.add_release("grafana/alloy", &format!("v{version}"), assets);
    }
    (work, out, github)
}

#[test]
fn a_directory_rebuilds_the_newest_version_for_each_architecture_or_what_is_asked() {
    let (_work, out, github) = built_dir();
    let dir = out.to_str().unwrap();
    let signer = key_fingerprint(&ed25519_keys().public());
    let image_sha = |file: &str| sha256_of(&out.join(file));
    let zip_sha = |arch: Arch| sha256(&zip_of(arch, 7).0);
    let image_lines = |version: &str, arch: Arch| {
        let file = format!("alloy-{version}-{arch}.raw");
        let image = image_sha(&file);
        let zip = zip_sha(arch);
        format!(
            "{}\
             ok        {file}: rebuilt by alloy-sysext-automation {VERSION_LINE} from grafana/alloy v{version} alloy-linux-{arch}.zip: sha256 {image}\n\
             identical {file}: the rebuilt image has the published image's sha256 {image}\n",
            lines_to_download(
                &file,
                &image,
                &given_zip_record(&file, version, arch.upstream_name(), &zip),
                DEFAULT_SETTINGS,
                &zip
            )
        )
    };

    let output = rebuild_check(&github, &["--dir", dir]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "source: {dir}\n\
             ok        SHA256SUMS.gpg: good signature by {signer} on SHA256SUMS\n\
             ok        SHA256SUMS: 3 entries; version 1.17.1 (the newest listed): alloy-1.17.1-amd64.raw, alloy-1.17.1-arm64.raw\n\
             {}{}",
            image_lines("1.17.1", Arch::Amd64),
            image_lines("1.17.1", Arch::Arm64)
        )
    );
    assert_eq!(
        github.downloads(),
        ["alloy-linux-amd64.zip", "alloy-linux-arm64.zip"]
    );

    let output = rebuild_check(&github, &["--dir", dir, "--version", "1.17.0"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "source: {dir}\n\
             ok        SHA256SUMS.gpg: good signature by {signer} on SHA256SUMS\n\
             ok        SHA256SUMS: 3 entries; version 1.17.0 (as asked): alloy-1.17.0-amd64.raw\n\
             {}",
            image_lines("1.17.0", Arch::Amd64)
        )
    );

    // One architecture, as JSON.
    let output = rebuild_check(&github, &["--dir", dir, "--arch", "arm64", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let file = "alloy-1.17.1-arm64.raw";
    let image = image_sha(file);
    let zip = zip_sha(Arch::Arm64);
    assert_eq!(
        report,
        json!({
            "source": dir,
            "upstream_repo": "grafana/alloy",
            "rebuilt_by": VERSION_LINE,
            "signed_by": signer,
            "version": "1.17.1",
            "checks": [
                {"file": "SHA256SUMS.gpg", "check": "manifest_signature", "ok": true,
                 "detail": format!("good signature by {signer} on SHA256SUMS")},
                {"file": "SHA256SUMS", "check": "manifest_format", "ok": true,
                 "detail": format!("3 entries; version 1.17.1 (the newest listed): {file}")},
                {"file": file, "check": "sha256", "ok": true,
                 "detail": format!("sha256 {image} matches SHA256SUMS")},
                {"file": format!("{file}.intoto.json.asc"), "check": "provenance_signature", "ok": true,
                 "detail": format!("good signature by {signer} on {file}.intoto.json")},
                {"file": format!("{file}.intoto.json"), "check": "provenance", "ok": true,
                 "detail": given_zip_record(file, "1.17.1", "arm64", &zip)},
                {"file": format!("{file}.intoto.json"), "check": "upstream_repository", "ok": true,
                 "detail": "names grafana/alloy, the trusted upstream repository"},
                {"file": format!("{file}.intoto.json"), "check": "settings", "ok": true,
                 "detail": format!("this version builds with its settings: {DEFAULT_SETTINGS}")},
                {"file": "alloy-linux-arm64.zip", "check": "upstream_asset", "ok": true,
                 "detail": format!("downloaded from grafana/alloy v1.17.1: sha256 {zip} matches the record and the release's asset digest")},
                {"file": file, "check": "rebuild", "ok": true,
                 "detail": format!("rebuilt by alloy-sysext-automation {VERSION_LINE} from grafana/alloy v1.17.1 alloy-linux-arm64.zip: sha256 {image}")},
                {"file": file, "check": "compare", "ok": true,
                 "detail": format!("the rebuilt image has the published image's sha256 {image}")},
            ],
            "images": [{
                "file": file,
                "published_sha256": image,
                "upstream": {"repository": "grafana/alloy", "tag": "v1.17.1",
                             "asset": "alloy-linux-arm64.zip", "sha256": zip, "checked_against": []},
                "built_by": VERSION_LINE,
                "rebuilt_sha256": image,
                "identical": true,
                "difference": null,
            }],
            "ok": true,
            "error": null,
        })
    );

    // A version or architecture not listed.
    let output = rebuild_check(
        &github,
        &["--dir", dir, "--version", "1.17.0", "--arch", "arm64"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: SHA256SUMS: lists no image of version 1.17.0 for arm64\n"
    );

    // An image without a record (as those published before records existed) cannot be
    // rebuilt to compare.
    fs::remove_file(out.join("alloy-1.17.0-amd64.raw.intoto.json")).unwrap();
    let downloads = github.downloads().len();
    let output = rebuild_check(&github, &["--dir", dir, "--version", "1.17.0"]);
    assert_eq!(output.status.code(), Some(1));
    let detail = "is missing (not found): without a provenance record alloy-1.17.0-amd64.raw \
                  cannot be rebuilt to compare (images published before records existed have none)";
    assert_eq!(
        stderr(&output),
        format!("error: alloy-1.17.0-amd64.raw.intoto.json: {detail}\n")
    );
    assert!(
        stdout(&output).ends_with(&format!(
            "FAILED    alloy-1.17.0-amd64.raw.intoto.json: {detail}\n"
        )),
        "{}",
        stdout(&output)
    );
    assert_eq!(github.downloads().len(), downloads);
}

#[test]
fn a_record_naming_another_upstream_repository_is_refused_before_any_download() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let (zip, _) = zip_of(Arch::Amd64, 7);
    let zip_path = work.path().join("alloy-linux-amd64.zip");
    fs::write(&zip_path, &zip).unwrap();
    build_signed(
        "1.17.1",
        &zip_path,
        &out,
        &["--no-compat-name", "--upstream-repo", "evil/alloy"],
    );
    let github = FakeGitHub::start();
    github.add_release(
        "evil/alloy",
        "v1.17.1",
        vec![asset("alloy-linux-amd64.zip", &zip)],
    );
    let dir = out.to_str().unwrap();
    let file = "alloy-1.17.1-amd64.raw";
    let output = rebuild_check(&github, &["--dir", dir]);
    assert_eq!(output.status.code(), Some(1));
    let refused = "the record names the upstream repository evil/alloy, but only grafana/alloy \
                   is trusted (--upstream-repo): nothing was downloaded";
    let stdout = stdout(&output);
    assert_eq!(
        stdout.lines().last().unwrap(),
        format!("FAILED    {file}.intoto.json: {refused}")
    );
    assert_eq!(stdout.lines().count(), 7, "{stdout}");
    assert_eq!(
        stderr(&output),
        format!("error: {file}.intoto.json: {refused}\n")
    );
    // Nothing at all was asked of GitHub.
    assert!(github.downloads().is_empty());
    assert_eq!(github.requests().len(), 0);

    // Trusted when asked to: the asset is checked against GitHub's digest, and the image
    // rebuilds identical.
    let output = rebuild_check(&github, &["--dir", dir, "--upstream-repo", "evil/alloy"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let image = sha256_of(&out.join(file));
    assert_eq!(
        last_lines(&output, 3),
        [
            format!(
                "ok        alloy-linux-amd64.zip: downloaded from evil/alloy v1.17.1: sha256 {} matches the record and the release's asset digest",
                sha256(&zip)
            ),
            format!(
                "ok        {file}: rebuilt by alloy-sysext-automation {VERSION_LINE} from evil/alloy v1.17.1 alloy-linux-amd64.zip: sha256 {image}"
            ),
            format!("identical {file}: the rebuilt image has the published image's sha256 {image}"),
        ]
    );
    assert_eq!(github.downloads(), ["alloy-linux-amd64.zip"]);
}

#[test]
fn an_asset_that_no_longer_matches_the_record_or_its_digest_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let (zip, _) = zip_of(Arch::Amd64, 7);
    build_from("1.17.1", Arch::Amd64, &zip, &out, &[]);
    let dir = out.to_str().unwrap();
    let recorded = sha256(&zip);
    let (other, _) = zip_of(Arch::Amd64, 8);
    let other_sha256 = sha256(&other);
    let refused = |github: &FakeGitHub| {
        let output = rebuild_check(github, &["--dir", dir]);
        assert_eq!(output.status.code(), Some(1));
        let error = stderr(&output);
        assert_eq!(
            last_lines(&output, 1),
            [format!(
                "FAILED    {}",
                error.trim_start_matches("error: ").trim_end()
            )]
        );
        error
    };

    // Upstream's asset was replaced, digest and all: refused on the digest, unread.
    let github = FakeGitHub::start();
    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![asset("alloy-linux-amd64.zip", &other)],
    );
    assert_eq!(
        refused(&github),
        format!(
            "error: alloy-linux-amd64.zip: GitHub gives the digest sha256:{other_sha256} for \
             alloy-linux-amd64.zip of grafana/alloy v1.17.1, but the record names sha256 {recorded}: \
             the release's asset is not the one the image was built from; nothing was downloaded\n"
        )
    );
    assert!(github.downloads().is_empty());

    // The digest is the recorded one, but the bytes served are not.
    let github = FakeGitHub::start();
    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![Asset {
            digest: Some(format!("sha256:{recorded}")),
            ..asset("alloy-linux-amd64.zip", &other)
        }],
    );
    assert_eq!(
        refused(&github),
        format!(
            "error: alloy-linux-amd64.zip: alloy-linux-amd64.zip has sha256 {other_sha256}, but \
             the release's asset digest says {recorded}: the download is corrupt or was tampered \
             with; nothing was built\n"
        )
    );
    assert_eq!(github.downloads(), ["alloy-linux-amd64.zip"]);

    // No digest, and a release SHA256SUMS that lists the bytes served: they match the
    // release, not the record.
    let github = FakeGitHub::start();
    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![
            Asset {
                digest: None,
                ..asset("alloy-linux-amd64.zip", &other)
            },
            Asset {
                digest: None,
                ..asset(
                    "SHA256SUMS",
                    format!("{other_sha256}  alloy-linux-amd64.zip\n").as_bytes(),
                )
            },
        ],
    );
    assert_eq!(
        refused(&github),
        format!(
            "error: alloy-linux-amd64.zip: alloy-linux-amd64.zip downloaded from grafana/alloy \
             v1.17.1 has sha256 {other_sha256}, but the record names sha256 {recorded}: it is not \
             the asset the image was built from\n"
        )
    );
    assert_eq!(github.downloads(), ["SHA256SUMS", "alloy-linux-amd64.zip"]);
}

#[test]
fn a_setting_a_tool_version_or_only_the_storage_that_differs_is_named() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = zip_of(Arch::Amd64, 7);
    let github = FakeGitHub::start();
    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![asset("alloy-linux-amd64.zip", &zip)],
    );
    let file = "alloy-1.17.1-amd64.raw";
    let built = |name: &str, extra: &[&str]| {
        let out = work.path().join(name);
        build_from("1.17.1", Arch::Amd64, &zip, &out, extra);
        let record = out.join(format!("{file}.intoto.json"));
        (out, record)
    };
    let image_settings = "/predicate/buildDefinition/externalParameters/image";

    // A setting this version does not know, or cannot build with: named, nothing downloaded.
    let (out, record) = built("unknown", &[]);
    edit_record(&record, |record| {
        record.pointer_mut(image_settings).unwrap()["xzFilters"] = json!(["x86"]);
    });
    let output = rebuild_check(&github, &["--dir", out.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let detail = format!(
        "the record holds externalParameters.image.xzFilters = [\"x86\"], which \
         alloy-sysext-automation {VERSION_LINE} cannot reproduce: this version does not know \
         that setting (a newer version wrote it)"
    );
    assert_eq!(
        report["images"][0]["difference"],
        json!({"kind": "setting", "detail": detail})
    );
    assert_eq!(
        report["checks"].as_array().unwrap().last().unwrap(),
        &json!({"file": format!("{file}.intoto.json"), "check": "settings", "ok": false, "detail": detail})
    );
    assert_eq!(
        stderr(&output),
        format!("error: {file}.intoto.json: {detail}\n")
    );
    edit_record(&record, |record| {
        let image = record.pointer_mut(image_settings).unwrap();
        image.as_object_mut().unwrap().remove("xzFilters");
        image["compression"] = json!("lz4");
    });
    let output = rebuild_check(&github, &["--dir", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        last_lines(&output, 1),
        [format!(
            "FAILED    {file}.intoto.json: the record holds the image settings \
             {{\"name\":\"alloy\",\"compression\":\"lz4\",\"compressionLevel\":6,\"blockSize\":131072,\"sourceDateEpoch\":0}}, \
             which alloy-sysext-automation {VERSION_LINE} cannot reproduce: unknown compression \"lz4\": use xz, zstd or gzip"
        )]
    );
    assert!(github.downloads().is_empty());

    // Made by another version with these settings, but not these bytes (zstd, recorded as
    // xz): the version difference is named first.
    let (out, record) = built("older", &["--compression", "zstd"]);
    edit_record(&record, |record| {
        let image = record.pointer_mut(image_settings).unwrap();
        image["compression"] = json!("xz");
        image["compressionLevel"] = json!(6);
        record["predicate"]["runDetails"]["builder"]["version"] = json!({
            "alloy-sysext-automation": "0.0.9",
            "sourceRevision": "0123456789abcdef0123456789abcdef01234567",
        });
    });
    let output = rebuild_check(&github, &["--dir", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let rebuilt = sha256_of(&built("default", &[]).0.join(file));
    let published = sha256_of(&out.join(file));
    assert_eq!(
        last_lines(&output, 1),
        [format!(
            "DIFFERENT {file}: the rebuilt image has sha256 {rebuilt}, the published one {published}: \
             the record was made by alloy-sysext-automation 0.0.9 (revision \
             0123456789abcdef0123456789abcdef01234567), this is alloy-sysext-automation \
             {VERSION_LINE}: only the same version promises the same bytes (a version that \
             changes them says so in its changelog)"
        )]
    );

    // The same files stored in other blocks: no file differs, and that is said.
    let (out, record) = built("blocks", &["--block-size", "64K"]);
    edit_record(&record, |record| {
        record.pointer_mut(image_settings).unwrap()["blockSize"] = json!(131072);
    });
    let output = rebuild_check(&github, &["--dir", out.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let published = sha256_of(&out.join(file));
    assert_eq!(
        report["images"][0]["difference"],
        json!({"kind": "image", "detail": format!(
            "the images differ, but no file does: the published image has sha256 {published}, \
             the rebuilt one {rebuilt}"
        )})
    );
}
