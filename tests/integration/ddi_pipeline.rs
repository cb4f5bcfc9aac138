//! A server with `image.formats = ["squashfs", "ddi"]`, through the real server, the
//! stateful fake GitHub and a real S3-compatible server: the signed dm-verity image of each
//! version is published beside the squashfs image (listed right after it in the signed
//! `SHA256SUMS`, with its `.sha256`, `.asc` and record), passes `veritysetup verify` and
//! `systemd-dissect`, is installed by a host's `systemd-sysupdate` with the README's DDI
//! transfer, passes `verify` and `rebuild-check`, which refuse it once a byte changes, and
//! leaves with it when the version is withdrawn. Without the verity key such a server does
//! not start.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use alloy_sysext_automation::manifest::{Manifest, ManifestEntry};
use alloy_sysext_automation::provenance::read_record;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::ddi::{VerityKeys, as_uuid, ecdsa_verity_keys, partition_bytes, signature_json};
use crate::host::Transfer;
use crate::hosts::{assert_updated, host_for};
use crate::pipeline::{
    BUILD_REPO, GHOST, World, build_repo_comment, published_record, signed_manifest, wait_for_jobs,
};
use crate::replicated_start::serve_until_exit;
use crate::serve_process::Server;
use crate::test_app::app_env;
use crate::withdraw::pending_removals;

const IMAGE: &str = "alloy-1.18.0-amd64.raw";
const DDI: &str = "alloy-1.18.0-amd64.ddi.raw";

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The pipeline's world, configured to publish DDIs too.
fn ddi_world() -> World {
    let world = World::new();
    let settings = fs::read_to_string(&world.config).unwrap();
    fs::write(
        &world.config,
        format!("{settings}[image]\nformats = [\"squashfs\", \"ddi\"]\n"),
    )
    .unwrap();
    world
}

/// The image policy of the README's drop-in for systemd-sysext.
fn signed_only_policy() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sysext/signed-only.conf");
    let dropin = fs::read_to_string(&path).unwrap();
    let command = dropin
        .lines()
        .filter_map(|line| line.strip_prefix("ExecStart="))
        .next_back()
        .expect("the drop-in sets ExecStart=");
    command
        .strip_prefix("systemd-sysext refresh --image-policy=")
        .unwrap_or_else(|| panic!("not a refresh with a policy: {command}"))
        .to_owned()
}

fn start_with_keys(world: &World, keys: &VerityKeys) -> Server {
    let (key, certificate) = (keys.key(), keys.certificate());
    world.start_server_with(&[
        ("VERITY_SIGNING_KEY_PATH", key.to_str().unwrap()),
        ("VERITY_CERTIFICATE_PATH", certificate.to_str().unwrap()),
    ])
}

/// Every object of the bucket written to `dir`, by key (the root channel's only).
fn download_bucket(world: &World, dir: &Path) {
    for key in world.s3.keys() {
        if !key.contains('/') {
            let (bytes, _) = world.s3.object(&key).unwrap();
            fs::write(dir.join(&key), bytes).unwrap();
        }
    }
}

fn verify_dir(dir: &Path, certificate: &Path) -> Output {
    cli()
        .arg("verify")
        .arg("--dir")
        .arg(dir)
        .arg("--public-key")
        .arg(ed25519_keys().public())
        .arg("--verity-certificate")
        .arg(certificate)
        // What a host that opts in to the DDI matches.
        .args([
            "--match-pattern",
            "alloy-@v-amd64.ddi.raw",
            "--version",
            "1.18.0",
        ])
        .arg("--json")
        .output()
        .unwrap()
}

fn rebuild_check(world: &World, dir: &Path, certificate: &Path) -> Output {
    cli()
        .arg("rebuild-check")
        .arg("--dir")
        .arg(dir)
        .args(["--version", "1.18.0", "--arch", "amd64", "--json"])
        .arg("--public-key")
        .arg(ed25519_keys().public())
        .arg("--verity-certificate")
        .arg(certificate)
        .env("GITHUB_API_URL", &world.github.url)
        .output()
        .unwrap()
}

/// The check of a `rebuild-check` report that compares the DDI with its rebuilt image.
fn ddi_comparison(report: &Value) -> &Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == DDI && c["check"] == "compare")
        .unwrap()
}

/// `(file, check, ok)` of each check of `report` about `file`.
fn checks_of(report: &Value, file: &str) -> Vec<(String, String, bool)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["file"].as_str().unwrap().starts_with(file))
        .map(|c| {
            (
                c["file"].as_str().unwrap().to_owned(),
                c["check"].as_str().unwrap().to_owned(),
                c["ok"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_server_without_the_verity_key_does_not_start_when_ddi_is_configured() {
    let world = ddi_world();
    let mut env: Vec<(&str, String)> = app_env(&world.github, &world.config);
    env.extend(world.s3.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, stderr) = serve_until_exit(&world.data.path().join("data"), &env);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        "error: image.formats includes \"ddi\", whose images are signed with a verity key: no verity signing key: pass --verity-key FILE, or set VERITY_SIGNING_KEY_PATH (a PEM file) or VERITY_SIGNING_KEY (the PEM text); make a key and certificate with `alloy-sysext-automation keygen --x509 --out keys/`"
    );
}

#[test]
fn the_ddi_is_published_beside_the_image_checked_by_hosts_tools_and_withdrawn_with_it() {
    let world = ddi_world();
    let keys = ecdsa_verity_keys();
    let server = start_with_keys(&world, keys);
    // The certificate's expiry is exported; keygen --x509 made it valid for ten years, so
    // the start-up log names it without a warning.
    let fingerprint = hex::encode(Sha256::digest(
        run_ok(
            Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(keys.certificate()),
        )
        .stdout,
    ));
    let not_after = run_ok(
        Command::new("date").arg("+%s").arg("-d").arg(
            String::from_utf8(
                run_ok(
                    Command::new("openssl")
                        .args(["x509", "-noout", "-enddate", "-in"])
                        .arg(keys.certificate()),
                )
                .stdout,
            )
            .unwrap()
            .trim()
            .trim_start_matches("notAfter="),
        ),
    );
    let not_after = String::from_utf8(not_after.stdout).unwrap();
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.lines().any(|line| line
            == format!(
                "alloy_sysext_verity_certificate_not_after_seconds{{fingerprint=\"{fingerprint}\"}} {}",
                not_after.trim()
            )),
        "{metrics}"
    );
    assert!(
        server
            .log()
            .contains("signing DDI root hashes with the configured verity key"),
        "{}",
        server.log()
    );
    assert!(!server.log().contains("the verity certificate"));
    server.deliver("release-1", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);

    // SHA256SUMS, signed as hosts check it: the published lines, then the image and its DDI.
    let (image, _) = world.s3.object(IMAGE).unwrap();
    let (ddi, headers) = world.s3.object(DDI).unwrap();
    assert!(
        headers["cache-control"].contains("immutable"),
        "{headers:?}"
    );
    let manifest = signed_manifest(&world);
    let mut expected =
        Manifest::parse(&fs::read_to_string(fixture("real-world/SHA256SUMS")).unwrap()).unwrap();
    for (file, bytes) in [(IMAGE, &image), (DDI, &ddi)] {
        expected
            .upsert(ManifestEntry {
                sha256: sha256(bytes),
                file: file.to_owned(),
            })
            .unwrap();
    }
    assert_eq!(manifest, expected.render());
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        [
            format!("{}  {IMAGE}", sha256(&image)),
            format!("{}  {DDI}", sha256(&ddi))
        ]
    );

    // Its .sha256 and .asc, as systemd-sysupdate checks them, and its own record.
    let (sha256_file, _) = world.s3.object(&format!("{DDI}.sha256")).unwrap();
    assert_eq!(
        String::from_utf8(sha256_file).unwrap(),
        format!("{}  {DDI}\n", sha256(&ddi))
    );
    let work = tempfile::tempdir().unwrap();
    let published = work.path().join("published");
    fs::create_dir(&published).unwrap();
    download_bucket(&world, &published);
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&ed25519_keys().public());
    assert!(gpg.sysupdate_verify(
        &keyring,
        &published.join(format!("{DDI}.asc")),
        &published.join(DDI)
    ));
    let (record, _, _) = published_record(&world, "", DDI);
    assert_eq!(record.image().unwrap().name, DDI);
    assert_eq!(record.image().unwrap().digest.sha256, sha256(&ddi));
    let (image_record, _, _) = published_record(&world, "", IMAGE);
    assert_eq!(record.predicate, image_record.predicate);

    // The data partition is the published image; veritysetup accepts it with its tree and
    // the signed root hash, and systemd-dissect sees a signed system extension.
    let ddi_path = published.join(DDI);
    let data = partition_bytes(&ddi_path, 0);
    assert!(data[..image.len()] == image[..]);
    let (_, signature) = signature_json(&ddi_path);
    let root_hash = signature["rootHash"].as_str().unwrap().to_owned();
    let data_file = work.path().join("data.img");
    let hash_file = work.path().join("hash.img");
    fs::write(&data_file, &data).unwrap();
    fs::write(&hash_file, partition_bytes(&ddi_path, 1)).unwrap();
    run_ok(
        Command::new("veritysetup")
            .arg("verify")
            .arg(&data_file)
            .arg(&hash_file)
            .arg(&root_hash),
    );
    let extensions = work.path().join("extensions");
    fs::create_dir(&extensions).unwrap();
    fs::write(extensions.join("alloy.raw"), &ddi).unwrap();
    let dissected = run_ok(
        Command::new("systemd-dissect")
            .arg("--json=short")
            .arg(extensions.join("alloy.raw"))
            .env("SYSTEMD_COLORS", "0"),
    );
    let dissected: Value = serde_json::from_slice(&dissected.stdout).unwrap();
    assert_eq!(dissected["useSystemExtension"], true);
    let root = &dissected["mounts"][0];
    assert_eq!(
        (
            root["designator"].as_str(),
            root["partition_uuid"].as_str(),
            root["verity"].as_str()
        ),
        (
            Some("root"),
            Some(as_uuid(&root_hash[..32]).as_str()),
            Some("signed")
        )
    );

    // A host that opts in with the README's DDI transfer installs it through
    // systemd-sysupdate, which checks the signed SHA256SUMS first, and makes it current
    // under the extension's name.
    world.s3.make_public();
    let host = host_for(Transfer::ReadmeDdi, &world.s3.public_url());
    assert_updated(&host.sysupdate("update"));
    assert_eq!(host.installed(), [DDI]);
    let installed = format!("/opt/extensions/alloy/{DDI}");
    assert_eq!(host.current().as_deref(), Some(installed.as_str()));
    assert!(host.read(&installed) == ddi);

    // The README's drop-in for systemd-sysext requires a signed verity root. The host's
    // systemd-dissect 257 checks an image against it as systemd-sysext does before a
    // merge: the installed DDI passes, the squashfs image does not.
    host.add_loop_devices();
    let policy = signed_only_policy();
    let validate = |image: &str| {
        host.command(
            "systemd-dissect",
            &["--validate", &format!("--image-policy={policy}"), image],
        )
        .output()
        .unwrap()
    };
    let current = validate("/etc/extensions/alloy.raw");
    assert!(
        current.status.success() && current.stdout == b"OK\n",
        "{current:?}"
    );
    host.write("/plain/alloy.raw", &image);
    let plain = validate("/plain/alloy.raw");
    assert!(
        !plain.status.success()
            && String::from_utf8_lossy(&plain.stderr).contains("does not match image policy"),
        "{plain:?}"
    );

    // The release lists both; consumers are pinned to the squashfs image only.
    let release = &world.github.releases(BUILD_REPO)[0];
    assert!(
        release.body.contains(&format!(
            "| [`{DDI}`](https://ghost-sysext-images.separationofconcerns.dev/{DDI}) | `{}` |",
            sha256(&ddi)
        )),
        "{}",
        release.body
    );
    let pull = &world.github.pulls(GHOST)[0];
    assert!(!pull.body.contains(".ddi.raw"), "{}", pull.body);
    assert!(pull.body.contains(&sha256(&image)), "{}", pull.body);

    // verify and rebuild-check pass on what was published.
    let certificate = keys.certificate();
    let verified = verify_dir(&published, &certificate);
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(
        checks_of(&report, DDI),
        [
            (DDI.to_owned(), "sha256".to_owned(), true),
            (format!("{DDI}.sha256"), "sha256_file".to_owned(), true),
            (format!("{DDI}.asc"), "signature".to_owned(), true),
            (
                format!("{DDI}.intoto.json.asc"),
                "provenance_signature".to_owned(),
                true
            ),
            (format!("{DDI}.intoto.json"), "provenance".to_owned(), true),
            (DDI.to_owned(), "verity".to_owned(), true),
        ]
    );
    let rebuilt = rebuild_check(&world, &published, &certificate);
    assert_eq!(
        rebuilt.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&rebuilt.stdout),
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let report: Value = serde_json::from_slice(&rebuilt.stdout).unwrap();
    let images: Vec<(&str, bool)> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["file"].as_str().unwrap(),
                i["identical"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(images, [(IMAGE, true), (DDI, true)]);
    let compare = ddi_comparison(&report);
    assert_eq!(
        compare["detail"],
        format!(
            "the data partition is the rebuilt image and the hash partition its dm-verity tree; its root hash {root_hash} is signed by CN=Alloy Sysext Verity Signing ({})",
            signature["certificateFingerprint"].as_str().unwrap()
        )
    );

    // One changed byte in the DDI's data, with its hashes, record and signatures made again
    // by whoever holds the OpenPGP key: the dm-verity checks still refuse it.
    let tampered = work.path().join("tampered");
    fs::create_dir(&tampered).unwrap();
    download_bucket(&world, &tampered);
    let tampered_ddi = tampered.join(DDI);
    let data_offset = crate::ddi::partitions(&tampered_ddi)[0]["start"]
        .as_u64()
        .unwrap() as usize
        * 512;
    flip_byte(&tampered_ddi, data_offset + 5000);
    resign(&tampered, DDI);
    let verified = verify_dir(&tampered, &certificate);
    assert_eq!(verified.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    let failed: Vec<(&str, &str, &str)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            (
                c["file"].as_str().unwrap(),
                c["check"].as_str().unwrap(),
                c["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [(
            DDI,
            "verity",
            "the hash partition is not the dm-verity tree of the data partition: it differs from byte 16 (the data or the tree was changed)"
        )]
    );
    let rebuilt = rebuild_check(&world, &tampered, &certificate);
    assert_eq!(rebuilt.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&rebuilt.stdout).unwrap();
    let compare = ddi_comparison(&report);
    assert_eq!(compare["ok"], false);
    assert!(
        compare["detail"]
            .as_str()
            .unwrap()
            .ends_with(": from byte 5000 of the partition"),
        "{compare}"
    );

    // Withdrawn: both lines leave the manifest, and both images' files leave storage
    // after the grace period.
    world
        .github
        .set_permission(BUILD_REPO, "noahwhite", "admin");
    server.deliver(
        "withdraw-1",
        "issue_comment",
        &build_repo_comment(901, "/withdraw 1.18.0"),
    );
    let jobs = wait_for_jobs(&server, 2);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(
        jobs[0]["result"]["withdrawal"]["files"],
        json!([IMAGE, DDI]),
        "{}",
        jobs[0]
    );
    assert_eq!(
        signed_manifest(&world),
        fs::read_to_string(fixture("real-world/SHA256SUMS")).unwrap()
    );
    let mut pending: Vec<String> = pending_removals(&world)
        .into_iter()
        .map(|r| r.key)
        .collect();
    pending.sort();
    let mut expected: Vec<String> = [
        "alloy-1.18.0-amd64.raw",
        "alloy-1.18.0-amd64.raw.sha256",
        "alloy-1.18.0-amd64.raw.asc",
        "alloy-1.18.0-amd64.raw.intoto.json",
        "alloy-1.18.0-amd64.raw.intoto.json.asc",
        "alloy-1.18.0.raw",
        "alloy-1.18.0.raw.sha256",
        "alloy-1.18.0.raw.asc",
        "alloy-1.18.0-amd64.ddi.raw",
        "alloy-1.18.0-amd64.ddi.raw.sha256",
        "alloy-1.18.0-amd64.ddi.raw.asc",
        "alloy-1.18.0-amd64.ddi.raw.intoto.json",
        "alloy-1.18.0-amd64.ddi.raw.intoto.json.asc",
    ]
    .map(str::to_owned)
    .to_vec();
    expected.sort();
    assert_eq!(pending, expected);
}

/// Makes `file`'s `.sha256`, `.asc` and line in `SHA256SUMS` (and its signature) in `dir`
/// match its bytes again, signed with the shared key: what someone holding the OpenPGP key,
/// but not the verity key, could publish.
fn resign(dir: &Path, file: &str) {
    use alloy_sysext_automation::signing::SigningKey;
    let key = SigningKey::from_file(&ed25519_keys().secret()).unwrap();
    let bytes = fs::read(dir.join(file)).unwrap();
    let digest = sha256(&bytes);
    fs::write(
        dir.join(format!("{file}.sha256")),
        format!("{digest}  {file}\n"),
    )
    .unwrap();
    fs::write(
        dir.join(format!("{file}.asc")),
        key.sign_detached(&bytes[..]).unwrap(),
    )
    .unwrap();
    let record_path = dir.join(format!("{file}.intoto.json"));
    let mut record = read_record(&fs::read(&record_path).unwrap()).unwrap();
    record.subject[0].digest.sha256 = digest.clone();
    let record_text = record.to_json();
    fs::write(&record_path, &record_text).unwrap();
    fs::write(
        dir.join(format!("{file}.intoto.json.asc")),
        key.sign_detached(record_text.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut manifest =
        Manifest::parse(&fs::read_to_string(dir.join("SHA256SUMS")).unwrap()).unwrap();
    manifest
        .upsert(ManifestEntry {
            sha256: digest,
            file: file.to_owned(),
        })
        .unwrap();
    let text = manifest.render();
    fs::write(dir.join("SHA256SUMS"), &text).unwrap();
    fs::write(
        dir.join("SHA256SUMS.gpg"),
        key.sign_detached(text.as_bytes()).unwrap(),
    )
    .unwrap();
}
