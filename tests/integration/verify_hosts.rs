//! `verify` refuses what hosts refuse or would install wrongly: a signature file with a
//! second signature, a newest image that is no release of ours, a manifest that gives a
//! host nothing to install; and it names the file it could not read, and why.

use std::fs;
use std::path::Path;

use alloy_sysext_automation::signing::SigningKey;
use pgp::composed::{Deserializable, DetachedSignature};
use pgp::ser::Serialize as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::serve_process::{SECRET, Server};
use crate::verify_url::verify_json;

fn signing_key() -> SigningKey {
    SigningKey::from_file(&ed25519_keys().secret()).unwrap()
}

/// Publishes `files` (names, each with its own content) into `dir` as a build does: each
/// with its `.sha256` and `.asc`, and `SHA256SUMS` listing them all, signed.
fn publish(dir: &Path, files: &[&str]) {
    let key = signing_key();
    let mut manifest = String::new();
    for file in files {
        let content = format!("the image {file}\n");
        let line = format!(
            "{}  {file}\n",
            hex::encode(Sha256::digest(content.as_bytes()))
        );
        fs::write(dir.join(file), &content).unwrap();
        fs::write(dir.join(format!("{file}.sha256")), &line).unwrap();
        let signature = key.sign_detached(content.as_bytes()).unwrap();
        fs::write(dir.join(format!("{file}.asc")), signature).unwrap();
        manifest.push_str(&line);
    }
    fs::write(dir.join("SHA256SUMS"), &manifest).unwrap();
    let signature = key.sign_detached(manifest.as_bytes()).unwrap();
    fs::write(dir.join("SHA256SUMS.gpg"), signature).unwrap();
}

/// `verify --dir` with `args`, `--json` and the shared Ed25519 key.
fn verify_dir(dir: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let dir = dir.to_str().unwrap();
    let args: Vec<&str> = ["--dir", dir]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    verify_json(&args, ("--public-key", ed25519_keys().public().as_path()))
}

/// The failed checks of a report.
fn failed(report: &Value) -> Vec<Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["ok"] == false)
        .cloned()
        .collect()
}

fn binary_signature(armored: &str) -> Vec<u8> {
    let (signature, _) = DetachedSignature::from_string(armored).unwrap();
    signature.to_bytes().unwrap()
}

#[test]
fn a_manifest_signature_followed_by_another_signature_is_refused_as_gpg_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["alloy-1.19.0-amd64.raw"]);
    let key = signing_key();
    let good = fs::read_to_string(dir.path().join("SHA256SUMS.gpg")).unwrap();
    let old = key.sign_detached(&b"an older SHA256SUMS\n"[..]).unwrap();
    let mut both = binary_signature(&good);
    both.extend(binary_signature(&old));
    fs::write(dir.path().join("SHA256SUMS.gpg"), &both).unwrap();

    // gpg on a host fails it.
    let gpg = Gpg::new();
    run_ok(
        gpg.command()
            .args(["--batch", "--import"])
            .arg(ed25519_keys().public()),
    );
    let output = gpg
        .command()
        .args(["--batch", "--verify"])
        .arg(dir.path().join("SHA256SUMS.gpg"))
        .arg(dir.path().join("SHA256SUMS"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));

    let fingerprint = key.fingerprint();
    let (status, report, stderr) = verify_dir(dir.path(), &["--manifest-only"]);
    assert_eq!(status, Some(1));
    let detail = format!(
        "SHA256SUMS.gpg does not verify SHA256SUMS with this public key: the signature file \
         holds 2 signatures (by {fingerprint}, {fingerprint}), not one; gpg --verify fails if \
         any of them does not verify, so only a single signature is accepted"
    );
    assert_eq!(
        failed(&report),
        [
            json!({"file": "SHA256SUMS.gpg", "check": "manifest_signature", "ok": false,
                "detail": detail})
        ]
    );
    assert_eq!(stderr, format!("error: {detail}\n"));
}

#[test]
fn an_image_asc_followed_by_another_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["alloy-1.19.0-amd64.raw"]);
    let asc = dir.path().join("alloy-1.19.0-amd64.raw.asc");
    let good = fs::read_to_string(&asc).unwrap();
    let old = signing_key().sign_detached(&b"another image"[..]).unwrap();
    let mut both = binary_signature(&good);
    both.extend(binary_signature(&old));
    fs::write(&asc, &both).unwrap();
    let (status, report, _) = verify_dir(dir.path(), &[]);
    assert_eq!(status, Some(1));
    let failures = failed(&report);
    assert_eq!(failures.len(), 1, "{report:#}");
    assert_eq!(failures[0]["file"], "alloy-1.19.0-amd64.raw.asc");
    assert!(
        failures[0]["detail"].as_str().unwrap().starts_with(
            "does not verify alloy-1.19.0-amd64.raw: the signature file holds 2 signatures"
        ),
        "{report:#}"
    );
}

#[test]
fn a_newest_image_that_is_no_release_of_ours_fails_naming_it() {
    for (files, newest, version, reason) in [
        (
            &["alloy-1.19.0-amd64.raw", "alloy-1.20.0-rc1-amd64.raw"][..],
            "alloy-1.20.0-rc1-amd64.raw",
            "1.20.0-rc1",
            "pre-releases are not published (systemd would order 1.10.0-rc.1 after 1.10.0, \
             and hosts would never take the final release)",
        ),
        (
            &["alloy-v1.20.0-amd64.raw", "alloy-1.19.0-arm64.raw"][..],
            "alloy-v1.20.0-amd64.raw",
            "v1.20.0",
            "its version is written \"v1.20.0\", not 1.20.0",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        publish(dir.path(), files);
        let detail = format!(
            "hosts would install {newest} (version {version} as systemd reads it, the newest \
             that matches alloy-@v-amd64.raw), which is not a release this tool publishes: \
             {reason}"
        );
        let failure =
            json!({"file": newest, "check": "host_would_install", "ok": false, "detail": detail});
        // Every listed file is checked, and good, but hosts would install one this tool
        // never publishes.
        let (status, report, stderr) = verify_dir(dir.path(), &[]);
        assert_eq!(status, Some(1), "{report:#}");
        assert_eq!(
            report["host_would_install"],
            json!({"file": newest, "version": version})
        );
        assert_eq!(failed(&report), std::slice::from_ref(&failure));
        // Four checks per image: these were published without provenance records, which
        // passes as "no provenance record".
        assert_eq!(report["checks"].as_array().unwrap().len(), 11);
        assert_eq!(
            stderr,
            format!("error: 1 of 11 checks failed: {newest}: {detail}\n")
        );
        // Checking another version does not hide it.
        if files.contains(&"alloy-1.19.0-amd64.raw") {
            let (status, report, _) = verify_dir(dir.path(), &["--version", "1.19.0"]);
            assert_eq!(status, Some(1));
            assert_eq!(failed(&report), std::slice::from_ref(&failure));
            assert_eq!(report["checks"].as_array().unwrap().len(), 7);
        }
    }
}

#[test]
fn a_v_prefixed_name_is_older_than_any_release_for_systemd() {
    // systemd orders a version that starts with a letter before one that starts with a
    // digit, so a host takes 1.19.0 here, and so does verify.
    let dir = tempfile::tempdir().unwrap();
    publish(
        dir.path(),
        &["alloy-1.19.0-amd64.raw", "alloy-v1.20.0-amd64.raw"],
    );
    let (status, report, _) = verify_dir(dir.path(), &[]);
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(
        report["host_would_install"],
        json!({"file": "alloy-1.19.0-amd64.raw", "version": "1.19.0"})
    );
}

#[test]
fn a_manifest_that_gives_a_host_nothing_to_install_fails_in_every_mode_but_manifest_only() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["alloy-1.19.0-arm64.raw"]);
    let failure = json!({"file": "SHA256SUMS", "check": "host_would_install", "ok": false,
        "detail": "lists no file that matches alloy-@v-amd64.raw, so a host would install nothing"});
    for args in [&[][..], &["--all"][..]] {
        let (status, report, _) = verify_dir(dir.path(), args);
        assert_eq!(status, Some(1), "{args:?}");
        assert_eq!(report["host_would_install"], Value::Null);
        assert_eq!(failed(&report), std::slice::from_ref(&failure), "{args:?}");
    }
    let (status, _, _) = verify_dir(dir.path(), &["--manifest-only"]);
    assert_eq!(status, Some(0));
    // From a URL, where the newest match is checked by default.
    let data = tempfile::tempdir().unwrap();
    let images = data.path().join("images");
    fs::create_dir_all(&images).unwrap();
    publish(&images, &["alloy-1.19.0-arm64.raw"]);
    let server = Server::start(data.path(), &[("WEBHOOK_SECRET", SECRET)]);
    let url = format!("http://127.0.0.1:{}/images/", server.port);
    let public = ed25519_keys().public();
    let (status, report, stderr) =
        verify_json(&["--url", &url], ("--public-key", public.as_path()));
    assert_eq!(status, Some(1));
    assert_eq!(failed(&report), std::slice::from_ref(&failure));
    assert_eq!(report["checks"].as_array().unwrap().len(), 3);
    assert_eq!(
        stderr,
        "error: 1 of 3 checks failed: SHA256SUMS: lists no file that matches alloy-@v-amd64.raw, so a host would install nothing\n"
    );

    // A manifest that lists nothing.
    let empty = tempfile::tempdir().unwrap();
    publish(empty.path(), &[]);
    let (status, report, stderr) = verify_dir(empty.path(), &[]);
    assert_eq!(status, Some(1));
    assert_eq!(failed(&report), std::slice::from_ref(&failure));
    assert_eq!(
        stderr,
        "error: 1 of 3 checks failed: SHA256SUMS: lists no file that matches alloy-@v-amd64.raw, so a host would install nothing\n"
    );
}

#[test]
fn a_manifest_that_cannot_be_read_is_named_with_why() {
    // Not there on a server: SHA256SUMS, not its signature, is missing.
    let data = tempfile::tempdir().unwrap();
    let images = data.path().join("images");
    fs::create_dir_all(&images).unwrap();
    publish(&images, &["alloy-1.19.0-amd64.raw"]);
    fs::remove_file(images.join("SHA256SUMS")).unwrap();
    let server = Server::start(data.path(), &[("WEBHOOK_SECRET", SECRET)]);
    let url = format!("http://127.0.0.1:{}/images/", server.port);
    let public = ed25519_keys().public();
    let (status, report, _) = verify_json(&["--url", &url], ("--public-key", public.as_path()));
    assert_eq!(status, Some(1));
    let detail = format!("{url}SHA256SUMS is missing: the server answered 404 Not Found");
    assert_eq!(
        report["checks"],
        json!([{"file": "SHA256SUMS", "check": "manifest_format", "ok": false, "detail": detail}])
    );

    // There but unreadable: it cannot be read, which is not missing.
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["alloy-1.19.0-amd64.raw"]);
    fs::remove_file(dir.path().join("SHA256SUMS")).unwrap();
    fs::create_dir(dir.path().join("SHA256SUMS")).unwrap();
    let (status, report, _) = verify_dir(dir.path(), &[]);
    assert_eq!(status, Some(1));
    let path = dir.path().join("SHA256SUMS").display().to_string();
    assert_eq!(
        report["checks"],
        json!([{"file": "SHA256SUMS", "check": "manifest_format", "ok": false,
            "detail": format!("{path} cannot be read: reading {path}: Is a directory (os error 21)")}])
    );
}
