//! `verify`, on the real published manifest and on fresh builds.

use std::fs;
use std::path::{Path, PathBuf};

use alloy_sysext_automation::arch::Arch;

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
