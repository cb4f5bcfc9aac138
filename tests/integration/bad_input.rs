//! Bad input: each case fails with a clear message and leaves the output directory exactly
//! as it was.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use alloy_sysext_automation::arch::Arch;

use crate::common::*;

/// An output directory that already holds a good build of 1.16.0, and its contents.
fn populated_out(work: &Path) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let (zip, _) = upstream_zip(work, Arch::Amd64, 256 << 10);
    let out = work.join("out");
    run_ok(
        cli()
            .args(["build", "--version", "1.16.0", "--zip"])
            .arg(&zip)
            .arg("--out")
            .arg(&out)
            .arg("--signing-key")
            .arg(ed25519_keys().secret()),
    );
    let snapshot = snapshot(&out);
    (out, snapshot)
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    dir_listing(dir)
        .into_iter()
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Runs `build` for 1.17.1 with `args` into a populated directory and checks that it fails
/// with a message containing each of `expected`, changing nothing.
fn assert_refused(work: &Path, configure: impl FnOnce(&mut Command, &Path), expected: &[&str]) {
    let (out, before) = populated_out(work);
    let mut command = cli();
    command.args(["build", "--out"]).arg(&out);
    configure(&mut command, work);
    let stderr = run_fail(&mut command);
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "the error does not mention {needle:?}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("panicked"),
        "the program panicked:\n{stderr}"
    );
    assert_eq!(snapshot(&out), before, "the output directory changed");
}

fn with_zip<'a>(entries: &'a [(&'a str, &'a [u8])]) -> impl FnOnce(&mut Command, &Path) + 'a {
    move |command, work| {
        let zip = work.join("bad.zip");
        write_zip(&zip, entries);
        command
            .args(["--version", "1.17.1", "--zip"])
            .arg(zip)
            .arg("--signing-key")
            .arg(ed25519_keys().secret());
    }
}

#[test]
fn zip_without_the_binary() {
    let work = tempfile::tempdir().unwrap();
    assert_refused(
        work.path(),
        with_zip(&[("README.md", b"hello")]),
        &["no entry named \"alloy-linux-amd64\"", "README.md"],
    );
}

#[test]
fn corrupt_zip() {
    let work = tempfile::tempdir().unwrap();
    assert_refused(
        work.path(),
        |command, work| {
            let zip = work.join("corrupt.zip");
            let (good, _) = upstream_zip(work, Arch::Amd64, 64 << 10);
            let mut bytes = fs::read(good).unwrap();
            bytes.truncate(bytes.len() / 2);
            fs::write(&zip, bytes).unwrap();
            command
                .args(["--version", "1.17.1", "--no-sign", "--zip"])
                .arg(zip);
        },
        &["corrupt.zip", "not a readable zip archive"],
    );
}

#[test]
fn zip_damaged_inside_the_entry() {
    let work = tempfile::tempdir().unwrap();
    assert_refused(
        work.path(),
        |command, work| {
            // The archive opens and lists fine; its data breaks off half-way through the
            // binary, while the image is already being compressed from it.
            let (zip, _) = upstream_zip(work, Arch::Amd64, 1 << 20);
            let mut bytes = fs::read(&zip).unwrap();
            let middle = bytes.len() / 2;
            for byte in &mut bytes[middle..middle + 64] {
                *byte = !*byte;
            }
            fs::write(&zip, bytes).unwrap();
            command
                .args(["--version", "1.17.1", "--no-sign", "--zip"])
                .arg(zip);
        },
        &[
            "alloy-linux-amd64.zip",
            "reading entry \"alloy-linux-amd64\" failed",
        ],
    );
}

#[test]
fn zip_with_path_traversal() {
    let work = tempfile::tempdir().unwrap();
    let binary = fake_binary(Arch::Amd64, 4096, 1);
    assert_refused(
        work.path(),
        with_zip(&[
            ("../alloy-linux-amd64", &binary),
            ("alloy-linux-amd64", &binary),
        ]),
        &["unsafe entry name", "../alloy-linux-amd64"],
    );
}

#[test]
fn oversized_entry() {
    let work = tempfile::tempdir().unwrap();
    assert_refused(
        work.path(),
        |command, work| {
            let (zip, _) = upstream_zip(work, Arch::Amd64, 200 << 10);
            command
                .args([
                    "--version",
                    "1.17.1",
                    "--no-sign",
                    "--max-binary-size",
                    "100K",
                    "--zip",
                ])
                .arg(zip);
        },
        &["larger than the 102400-byte limit", "--max-binary-size"],
    );
}

#[test]
fn binary_for_the_wrong_architecture() {
    let work = tempfile::tempdir().unwrap();
    let arm = fake_binary(Arch::Arm64, 64 << 10, 3);
    assert_refused(
        work.path(),
        with_zip(&[("alloy-linux-amd64", &arm)]),
        &["ELF binary for arm64", "x86-64"],
    );
}

#[test]
fn not_an_elf_binary() {
    let work = tempfile::tempdir().unwrap();
    assert_refused(
        work.path(),
        with_zip(&[("alloy-linux-amd64", b"#!/bin/sh\necho not alloy\n")]),
        &["not an ELF executable"],
    );
}

#[test]
fn hostile_and_malformed_versions() {
    for version in [
        "1.2",
        "../../x",
        "1.0.0;rm",
        "1.0.0/../../etc",
        "",
        "1.10.0-rc.1",
    ] {
        let work = tempfile::tempdir().unwrap();
        assert_refused(
            work.path(),
            |command, work| {
                let (zip, _) = upstream_zip(work, Arch::Amd64, 64 << 10);
                command
                    .args(["--no-sign", "--version", version, "--zip"])
                    .arg(zip);
            },
            &["invalid version", "MAJOR.MINOR.PATCH"],
        );
    }
}

#[test]
fn unreadable_or_missing_keys() {
    let work = tempfile::tempdir().unwrap();
    let garbage = work.path().join("garbage.asc");
    fs::write(
        &garbage,
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnot a key\n",
    )
    .unwrap();
    type Configure = Box<dyn Fn(&mut Command)>;
    let cases: Vec<(Configure, Vec<&str>)> = vec![
        (
            Box::new(move |c: &mut Command| {
                c.arg("--signing-key").arg(&garbage);
            }),
            vec!["garbage.asc"],
        ),
        (
            Box::new(|c: &mut Command| {
                c.args(["--signing-key", "/nonexistent/key.asc"]);
            }),
            vec!["/nonexistent/key.asc"],
        ),
        (
            Box::new(|c: &mut Command| {
                c.env("GPG_PRIVATE_KEY", "this is not base64!");
            }),
            vec!["GPG_PRIVATE_KEY"],
        ),
        (
            Box::new(|c: &mut Command| {
                c.arg("--signing-key").arg(ed25519_keys().public());
            }),
            vec!["signing-key.pub.asc"],
        ),
        (
            Box::new(|_: &mut Command| {}),
            vec!["no signing key", "keygen", "--no-sign"],
        ),
    ];
    for (configure, expected) in cases {
        let case = tempfile::tempdir().unwrap();
        assert_refused(
            case.path(),
            |command, work| {
                let (zip, _) = upstream_zip(work, Arch::Amd64, 64 << 10);
                command.args(["--version", "1.17.1", "--zip"]).arg(zip);
                configure(command);
            },
            &expected,
        );
    }
}

#[test]
fn malformed_existing_manifest() {
    let work = tempfile::tempdir().unwrap();
    let (out, _) = populated_out(work.path());
    let mut manifest = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    manifest.push_str("this line is not a checksum\n");
    fs::write(out.join("SHA256SUMS"), &manifest).unwrap();
    let before = snapshot(&out);
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 64 << 10);
    let stderr = run_fail(
        cli()
            .args(["build", "--version", "1.17.1", "--no-sign", "--zip"])
            .arg(zip)
            .arg("--out")
            .arg(&out),
    );
    assert!(stderr.contains("SHA256SUMS line 2"), "{stderr}");
    assert_eq!(snapshot(&out), before);
}

#[test]
fn invalid_block_size_and_compression_level() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 64 << 10);
    let stderr = run_fail(
        cli()
            .args([
                "build",
                "--version",
                "1.17.1",
                "--no-sign",
                "--block-size",
                "100K",
                "--zip",
            ])
            .arg(&zip)
            .arg("--out")
            .arg(work.path().join("out")),
    );
    assert!(stderr.contains("power of two"), "{stderr}");
    let stderr = run_fail(
        cli()
            .args([
                "build",
                "--version",
                "1.17.1",
                "--no-sign",
                "--compression",
                "zstd",
                "--compression-level",
                "40",
                "--zip",
            ])
            .arg(&zip)
            .arg("--out")
            .arg(work.path().join("out")),
    );
    assert!(stderr.contains("out of range"), "{stderr}");
    assert!(!work.path().join("out").exists());
}
