//! `SHA256SUMS` across several builds into one directory.

use std::fs;
use std::path::Path;

use alloy_sysext_automation::arch::Arch;

use crate::common::*;

fn manifest_files(out: &Path) -> Vec<(String, String)> {
    fs::read_to_string(out.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|line| {
            let (hash, file) = line.split_once("  ").expect("two spaces");
            (hash.to_owned(), file.to_owned())
        })
        .collect()
}

#[test]
fn versions_sort_like_systemd_and_rebuilds_replace_their_line() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 128 << 10);
    let out = work.path().join("out");
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&ed25519_keys().public());

    build_signed("1.10.0", &zip, &out, &[]);
    build_signed("1.9.0", &zip, &out, &[]);
    build_signed("1.9.3", &zip, &out, &["--no-compat-name"]);
    let files: Vec<String> = manifest_files(&out).into_iter().map(|(_, f)| f).collect();
    assert_eq!(
        files,
        [
            "alloy-1.9.0-amd64.raw",
            "alloy-1.9.3-amd64.raw",
            "alloy-1.10.0-amd64.raw"
        ]
    );
    assert!(gpg.sysupdate_verify(
        &keyring,
        &out.join("SHA256SUMS.gpg"),
        &out.join("SHA256SUMS")
    ));

    // The same inputs again: the line, and so the manifest, stay the same.
    let before = manifest_files(&out);
    let summary = build_signed("1.10.0", &zip, &out, &[]);
    assert!(summary.contains("unchanged"), "{summary}");
    assert_eq!(manifest_files(&out), before);

    // Other settings give another hash: only that version's line changes.
    let summary = build_signed("1.10.0", &zip, &out, &["--compression", "gzip"]);
    assert!(summary.contains("replaced"), "{summary}");
    let after = manifest_files(&out);
    assert_eq!(after.len(), 3);
    assert_eq!(after[..2], before[..2]);
    assert_eq!(after[2].1, "alloy-1.10.0-amd64.raw");
    assert_ne!(after[2].0, before[2].0);
    let sha = fs::read_to_string(out.join("alloy-1.10.0-amd64.raw.sha256")).unwrap();
    assert_eq!(sha, format!("{}  alloy-1.10.0-amd64.raw\n", after[2].0));
    assert!(gpg.sysupdate_verify(
        &keyring,
        &out.join("SHA256SUMS.gpg"),
        &out.join("SHA256SUMS")
    ));
}

#[test]
fn existing_lines_of_a_real_manifest_are_kept() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let real = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-world/SHA256SUMS"),
    )
    .unwrap();
    fs::write(out.join("SHA256SUMS"), &real).unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 128 << 10);
    build_signed("1.18.0", &zip, &out, &[]);
    let updated = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let image_sha = fs::read_to_string(out.join("alloy-1.18.0-amd64.raw.sha256")).unwrap();
    assert_eq!(updated, format!("{real}{image_sha}"));

    // An unsigned build drops the signature that would no longer match.
    build_signed("1.9.0", &zip, &out, &[]);
    assert!(out.join("SHA256SUMS.gpg").exists());
    run_ok(
        cli()
            .args(["build", "--version", "1.8.0", "--no-sign", "--zip"])
            .arg(&zip)
            .arg("--out")
            .arg(&out),
    );
    assert!(!out.join("SHA256SUMS.gpg").exists());
    let files: Vec<String> = manifest_files(&out).into_iter().map(|(_, f)| f).collect();
    assert_eq!(files[0], "alloy-1.8.0-amd64.raw");
    assert_eq!(files[1], "alloy-1.9.0-amd64.raw");
    assert_eq!(files.last().unwrap(), "alloy-1.18.0-amd64.raw");
}

#[test]
fn builds_into_one_directory_at_once_take_turns_and_keep_every_line() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 512 << 10);
    let out = work.path().join("out");
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&ed25519_keys().public());
    // Four builds started together: each reads, edits and writes SHA256SUMS, and without
    // taking turns one would write over another's line.
    let versions = ["1.1.0", "1.2.0", "1.3.0", "1.4.0"];
    let builds: Vec<_> = versions
        .iter()
        .map(|version| {
            cli()
                .args(["build", "--version", version, "--no-compat-name", "--zip"])
                .arg(&zip)
                .arg("--out")
                .arg(&out)
                .arg("--signing-key")
                .arg(ed25519_keys().secret())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for build in builds {
        let output = build.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let files: Vec<String> = manifest_files(&out).into_iter().map(|(_, f)| f).collect();
    let expected: Vec<String> = versions
        .iter()
        .map(|v| format!("alloy-{v}-amd64.raw"))
        .collect();
    assert_eq!(files, expected);
    assert!(gpg.sysupdate_verify(
        &keyring,
        &out.join("SHA256SUMS.gpg"),
        &out.join("SHA256SUMS")
    ));
}
