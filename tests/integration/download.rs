//! `build` without `--zip`: the asset comes from the (fake) GitHub API, checked.

use std::fs;
use std::path::Path;

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::provenance::{AssetCheck, read_record};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::fake_github::{Asset, FakeGitHub};

fn zip_bytes(arch: Arch) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), arch, 256 << 10);
    fs::read(zip).unwrap()
}

fn digest(bytes: &[u8]) -> Option<String> {
    Some(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
}

fn build_from(github: &FakeGitHub, out: &std::path::Path, arch: Arch) -> std::process::Command {
    let mut command = cli();
    command
        .args([
            "build",
            "--version",
            "1.17.1",
            "--no-sign",
            "--arch",
            arch.upstream_name(),
            "--out",
        ])
        .arg(out)
        .env("GITHUB_API_URL", &github.url);
    command
}

#[test]
fn downloads_the_asset_and_builds_the_same_image_as_from_a_local_zip() {
    let github = FakeGitHub::start();
    let zip = zip_bytes(Arch::Arm64);
    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![
            Asset {
                name: "alloy-linux-amd64.zip".into(),
                data: b"not this one".to_vec(),
                digest: digest(b"not this one"),
            },
            Asset {
                name: "alloy-linux-arm64.zip".into(),
                data: zip.clone(),
                digest: digest(&zip),
            },
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let output = run_ok(&mut build_from(&github, &out, Arch::Arm64));
    assert_eq!(github.downloads(), ["alloy-linux-arm64.zip"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("matches the release's asset digest"),
        "{stderr}"
    );

    let local_zip = work.path().join("local.zip");
    fs::write(&local_zip, &zip).unwrap();
    let local_out = work.path().join("local");
    run_ok(
        cli()
            .args([
                "build",
                "--version",
                "1.17.1",
                "--no-sign",
                "--arch",
                "arm64",
                "--zip",
            ])
            .arg(&local_zip)
            .arg("--out")
            .arg(&local_out),
    );
    assert!(
        fs::read(out.join("alloy-1.17.1-arm64.raw")).unwrap()
            == fs::read(local_out.join("alloy-1.17.1-arm64.raw")).unwrap()
    );
    // The downloaded zip was a temporary file.
    assert_eq!(dir_listing(&out), dir_listing(&local_out));
    // Both records name the asset and its sha256; only the download was checked.
    let record = |dir: &Path| {
        read_record(&fs::read(dir.join("alloy-1.17.1-arm64.raw.intoto.json")).unwrap())
            .unwrap()
            .upstream_asset()
            .unwrap()
    };
    let downloaded = record(&out);
    assert_eq!(downloaded.asset, "alloy-linux-arm64.zip");
    assert_eq!(downloaded.sha256, hex::encode(Sha256::digest(&zip)));
    assert_eq!(downloaded.checked_against, [AssetCheck::AssetDigest]);
    let given = record(&local_out);
    assert_eq!(given.sha256, downloaded.sha256);
    assert!(given.checked_against.is_empty());
}

#[test]
fn refuses_a_zip_that_does_not_match_its_digest() {
    let github = FakeGitHub::start();
    let zip = zip_bytes(Arch::Amd64);
    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![Asset {
            name: "alloy-linux-amd64.zip".into(),
            data: zip,
            digest: digest(b"something else"),
        }],
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let stderr = run_fail(&mut build_from(&github, &out, Arch::Amd64));
    assert!(
        stderr.contains("tampered") && stderr.contains("asset digest"),
        "{stderr}"
    );
    assert!(dir_listing(&out).is_empty(), "{:?}", dir_listing(&out));
}

#[test]
fn uses_the_release_sha256sums_when_there_is_no_digest() {
    let github = FakeGitHub::start();
    let zip = zip_bytes(Arch::Amd64);
    let sums = format!(
        "{}  alloy-linux-amd64.zip\n",
        hex::encode(Sha256::digest(&zip))
    );
    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![
            Asset {
                name: "alloy-linux-amd64.zip".into(),
                data: zip.clone(),
                digest: None,
            },
            Asset {
                name: "SHA256SUMS".into(),
                data: sums.into_bytes(),
                digest: None,
            },
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let output = run_ok(&mut build_from(
        &github,
        &work.path().join("out"),
        Arch::Amd64,
    ));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the release's SHA256SUMS"));
    let record = fs::read(work.path().join("out/alloy-1.17.1-amd64.raw.intoto.json")).unwrap();
    let upstream = read_record(&record).unwrap().upstream_asset().unwrap();
    assert_eq!(upstream.checked_against, [AssetCheck::ReleaseSha256Sums]);

    // Neither a digest nor a SHA256SUMS entry: nothing to check against, so no build.
    let github = FakeGitHub::start();
    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![Asset {
            name: "alloy-linux-amd64.zip".into(),
            data: zip,
            digest: None,
        }],
    );
    let out = work.path().join("unchecked");
    let stderr = run_fail(&mut build_from(&github, &out, Arch::Amd64));
    assert!(
        stderr.contains("integrity cannot be checked") && stderr.contains("--zip"),
        "{stderr}"
    );
    assert!(dir_listing(&out).is_empty());
    assert!(github.downloads().is_empty());
}

#[test]
fn names_a_missing_release_or_asset() {
    let github = FakeGitHub::start();
    let work = tempfile::tempdir().unwrap();
    let stderr = run_fail(&mut build_from(
        &github,
        &work.path().join("a"),
        Arch::Amd64,
    ));
    assert!(
        stderr.contains("no release v1.17.1 in grafana/alloy"),
        "{stderr}"
    );

    github.add_release(
        "grafana/alloy",
        "v1.17.1",
        vec![Asset {
            name: "alloy-linux-s390x.zip".into(),
            data: vec![1],
            digest: digest(&[1]),
        }],
    );
    let stderr = run_fail(&mut build_from(
        &github,
        &work.path().join("b"),
        Arch::Amd64,
    ));
    assert!(
        stderr.contains("no asset alloy-linux-amd64.zip")
            && stderr.contains("alloy-linux-s390x.zip"),
        "{stderr}"
    );
}
