//! `verify`, on the real published manifest and on fresh builds.

use std::fs;
use std::path::{Path, PathBuf};

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::signing::SigningKey;
use sha2::{Digest, Sha256};

use crate::common::*;

fn real_world(name: &str) -> PathBuf {
    fixture(&format!("real-world/{name}"))
}

fn real_world_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["SHA256SUMS", "SHA256SUMS.gpg"] {
        fs::copy(real_world(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn verify(dir: &Path, key: &Path, manifest_only: bool) -> std::process::Command {
    let mut command = cli();
    command
        .arg("verify")
        .arg("--dir")
        .arg(dir)
        .arg("--public-key")
        .arg(key);
    if manifest_only {
        command.arg("--manifest-only");
    }
    command
}

#[test]
fn accepts_the_real_world_manifest() {
    let dir = real_world_dir();
    let output = run_ok(&mut verify(
        dir.path(),
        &real_world("alloy-sysext.pub.asc"),
        true,
    ));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("good signature"), "{stdout}");
    assert!(stdout.contains("13 entries"), "{stdout}");
    assert!(stdout.contains("1.13.1, 1.13.2, 1.14.0"), "{stdout}");
    assert!(stdout.contains("1.16.3, 1.17.0, 1.17.1"), "{stdout}");

    // Without --manifest-only each listed image that is not here fails its check.
    let output = verify(dir.path(), &real_world("alloy-sysext.pub.asc"), false)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.matches(": is missing: not found").count(),
        13,
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED  alloy-1.13.1-amd64.raw: is missing: not found\n"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: 13 of 15 checks failed: "),
        "{stderr}"
    );
}

#[test]
fn rejects_the_real_world_manifest_with_one_byte_changed() {
    let manifest_len = fs::metadata(real_world("SHA256SUMS")).unwrap().len() as usize;
    for offset in [0, 70, manifest_len - 2] {
        let dir = real_world_dir();
        flip_byte(&dir.path().join("SHA256SUMS"), offset);
        let stderr = run_fail(&mut verify(
            dir.path(),
            &real_world("alloy-sysext.pub.asc"),
            true,
        ));
        assert!(
            stderr.contains("SHA256SUMS.gpg does not verify SHA256SUMS"),
            "{stderr}"
        );
    }
    // One byte inside the signature's base64 body.
    let dir = real_world_dir();
    let signature = fs::read_to_string(real_world("SHA256SUMS.gpg")).unwrap();
    let offset = signature.find("iQIz").unwrap() + 40;
    flip_byte(&dir.path().join("SHA256SUMS.gpg"), offset);
    let stderr = run_fail(&mut verify(
        dir.path(),
        &real_world("alloy-sysext.pub.asc"),
        true,
    ));
    assert!(stderr.contains("SHA256SUMS.gpg"), "{stderr}");
}

#[test]
fn rejects_a_manifest_signed_by_another_key() {
    let dir = real_world_dir();
    let stderr = run_fail(&mut verify(dir.path(), &ed25519_keys().public(), true));
    assert!(stderr.contains("does not verify"), "{stderr}");
}

#[test]
fn checks_every_listed_image_of_a_build() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 256 << 10);
    let out = work.path().join("out");
    for version in ["1.16.0", "1.17.0"] {
        run_ok(
            cli()
                .args(["build", "--version", version, "--zip"])
                .arg(&zip)
                .arg("--out")
                .arg(&out)
                .arg("--signing-key")
                .arg(rsa_keys().secret()),
        );
    }
    let output = run_ok(&mut verify(&out, &rsa_keys().public(), false));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("versions: 1.16.0, 1.17.0"), "{stdout}");
    let fingerprint = key_fingerprint(&rsa_keys().public());
    for version in ["1.16.0", "1.17.0"] {
        for (file, detail) in [
            (
                format!("alloy-{version}-amd64.raw"),
                "sha256 matches SHA256SUMS".to_owned(),
            ),
            (
                format!("alloy-{version}-amd64.raw.sha256"),
                "lists the sha256 that SHA256SUMS lists".to_owned(),
            ),
            (
                format!("alloy-{version}-amd64.raw.asc"),
                format!("good signature by {fingerprint} on alloy-{version}-amd64.raw"),
            ),
        ] {
            let line = format!("ok      {file}: {detail}\n");
            assert!(stdout.contains(&line), "{line} in {stdout}");
        }
    }

    flip_byte(&out.join("alloy-1.16.0-amd64.raw"), 5000);
    let stderr = run_fail(&mut verify(&out, &rsa_keys().public(), false));
    assert!(
        stderr.contains("alloy-1.16.0-amd64.raw: sha256 is"),
        "{stderr}"
    );
    // The manifest alone is still fine.
    run_ok(&mut verify(&out, &rsa_keys().public(), true));
}

#[test]
fn names_a_missing_manifest_signature() {
    let dir = real_world_dir();
    fs::remove_file(dir.path().join("SHA256SUMS.gpg")).unwrap();
    let stderr = run_fail(&mut verify(
        dir.path(),
        &real_world("alloy-sysext.pub.asc"),
        true,
    ));
    assert!(stderr.contains("SHA256SUMS.gpg is missing"), "{stderr}");
}

#[test]
fn checks_an_images_provenance_record_and_names_a_tampered_one() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 256 << 10);
    let out = work.path().join("out");
    build_signed("1.17.0", &zip, &out, &[]);
    let public = ed25519_keys().public();
    let signer = key_fingerprint(&public);
    let image = "alloy-1.17.0-amd64.raw";
    let image_sha256 = hex::encode(Sha256::digest(fs::read(out.join(image)).unwrap()));
    let zip_sha256 = hex::encode(Sha256::digest(fs::read(&zip).unwrap()));
    let record = out.join(format!("{image}.intoto.json"));
    let record_asc = out.join(format!("{image}.intoto.json.asc"));
    let original = fs::read_to_string(&record).unwrap();
    let original_asc = fs::read(&record_asc).unwrap();

    // A good record: its signature, and the upstream asset it names, printed.
    let output = run_ok(&mut verify(&out, &public, false));
    let stdout = String::from_utf8(output.stdout).unwrap();
    for line in [
        format!(
            "ok      {image}.intoto.json.asc: good signature by {signer} on {image}.intoto.json\n"
        ),
        format!(
            "ok      {image}.intoto.json: {}\n",
            crate::verify_url::record_detail("1.17.0", &zip_sha256)
        ),
    ] {
        assert!(stdout.contains(&line), "{line} in {stdout}");
    }

    // The record of another image, re-signed by a key the hosts do not trust: the signature
    // is named, and what the record says is not repeated.
    let other = original.replace(&image_sha256, &"0".repeat(64));
    assert_ne!(other, original);
    fs::write(&record, &other).unwrap();
    let stranger = SigningKey::from_file(&rsa_keys().secret()).unwrap();
    fs::write(
        &record_asc,
        stranger.sign_detached(other.as_bytes()).unwrap(),
    )
    .unwrap();
    let stderr = run_fail(&mut verify(&out, &public, false));
    assert!(
        stderr.starts_with(&format!(
            "error: 2 of 7 checks failed: {image}.intoto.json.asc: does not verify \
             {image}.intoto.json: the signature was made by key {}",
            stranger.fingerprint()
        )),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!(
            "; {image}.intoto.json: is not trusted: its signature does not verify, so what it \
             says is not shown\n"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&"0".repeat(64)), "{stderr}");

    // One byte changed without signing again: the signature fails, and the upstream asset
    // it names is not reported.
    fs::write(&record_asc, &original_asc).unwrap();
    fs::write(
        &record,
        original.replace("\"sourceDateEpoch\": 0", "\"sourceDateEpoch\": 1"),
    )
    .unwrap();
    let output = cli()
        .arg("verify")
        .arg("--dir")
        .arg(&out)
        .arg("--public-key")
        .arg(&public)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let failed: Vec<(&str, &str)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| (c["file"].as_str().unwrap(), c["check"].as_str().unwrap()))
        .collect();
    let asc_name = format!("{image}.intoto.json.asc");
    let record_name = format!("{image}.intoto.json");
    assert_eq!(
        failed,
        [
            (asc_name.as_str(), "provenance_signature"),
            (record_name.as_str(), "provenance")
        ]
    );
    assert_eq!(report["provenance"], serde_json::json!([]));
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("does not verify alloy-1.17.0-amd64.raw.intoto.json: BAD signature"),
        "{report:#}"
    );

    // A record without its signature fails; an image without a record (as one published
    // before records existed) passes, saying so.
    fs::write(&record, &original).unwrap();
    fs::remove_file(&record_asc).unwrap();
    let stderr = run_fail(&mut verify(&out, &public, false));
    assert_eq!(
        stderr,
        format!(
            "error: 2 of 7 checks failed: {image}.intoto.json.asc: is missing: not found; \
             {image}.intoto.json: is not trusted: its signature does not verify, so what it says \
             is not shown\n"
        )
    );
    fs::remove_file(&record).unwrap();
    let output = run_ok(&mut verify(&out, &public, false));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.ends_with(&format!(
            "ok      {image}.intoto.json: no provenance record for {image}: not checked \
             (images published before records existed have none)\n"
        )),
        "{stdout}"
    );
}
