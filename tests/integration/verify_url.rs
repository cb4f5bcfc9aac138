//! `verify --url` as a host reads a source: from the server's own `/images/`, from a bucket
//! moto serves over HTTP, and (`--dir`) from a directory; every failure a host would refuse
//! is named, with exit status 1.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::build_info::VERSION_LINE;
use alloy_sysext_automation::signing::PublicKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::s3_server::S3Server;
use crate::serve_process::{SECRET, Server};

/// Two releases, 1.16.0 and 1.17.0, built and signed with the shared Ed25519 key.
fn two_releases() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 256 << 10);
    let out = work.path().join("out");
    for version in ["1.16.0", "1.17.0"] {
        build_signed(version, &zip, &out, &[]);
    }
    (work, out)
}

fn fingerprint(public: &Path) -> String {
    PublicKey::from_file(public).unwrap().fingerprint()
}

/// `verify` with `args` and `--json`: its exit status, its report, its stderr.
pub(crate) fn verify_json(args: &[&str], key: (&str, &Path)) -> (Option<i32>, Value, String) {
    let output: Output = cli()
        .arg("verify")
        .args(args)
        .arg(key.0)
        .arg(key.1)
        .arg("--json")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        output.status.code(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The sha256 of the zip [`two_releases`] builds from.
fn zip_sha256(work: &tempfile::TempDir) -> String {
    hex::encode(Sha256::digest(
        fs::read(work.path().join("alloy-linux-amd64.zip")).unwrap(),
    ))
}

/// What the provenance record of `version`'s image from [`two_releases`] (whose zip has the
/// sha256 `zip`) says when it passes.
pub(crate) fn record_detail(version: &str, zip: &str) -> String {
    format!(
        "alloy-{version}-amd64.raw was built from grafana/alloy v{version} alloy-linux-amd64.zip \
         (sha256 {zip}, given as a file, not checked against the release) by \
         alloy-sysext-automation {VERSION_LINE}, started by command line"
    )
}

/// The checks of one image that all passed, as the report lists them: its own, then its
/// provenance record's.
fn passed_image_checks(version: &str, signer: &str, zip: &str) -> Vec<Value> {
    let file = format!("alloy-{version}-amd64.raw");
    vec![
        json!({"file": file, "check": "sha256", "ok": true, "detail": "sha256 matches SHA256SUMS"}),
        json!({"file": format!("{file}.sha256"), "check": "sha256_file", "ok": true,
               "detail": "lists the sha256 that SHA256SUMS lists"}),
        json!({"file": format!("{file}.asc"), "check": "signature", "ok": true,
               "detail": format!("good signature by {signer} on {file}")}),
        json!({"file": format!("{file}.intoto.json.asc"), "check": "provenance_signature", "ok": true,
               "detail": format!("good signature by {signer} on {file}.intoto.json")}),
        json!({"file": format!("{file}.intoto.json"), "check": "provenance", "ok": true,
               "detail": record_detail(version, zip)}),
    ]
}

/// The upstream asset of `version`'s image, as the report's `provenance` lists it.
fn image_provenance(version: &str, zip: &str) -> Value {
    json!({"file": format!("alloy-{version}-amd64.raw"), "upstream": {
        "repository": "grafana/alloy", "tag": format!("v{version}"),
        "asset": "alloy-linux-amd64.zip", "sha256": zip, "checked_against": []}})
}

fn passed_manifest_checks(signer: &str) -> Vec<Value> {
    vec![
        json!({"file": "SHA256SUMS.gpg", "check": "manifest_signature", "ok": true,
               "detail": format!("good signature by {signer} on SHA256SUMS")}),
        json!({"file": "SHA256SUMS", "check": "manifest_format", "ok": true,
               "detail": "2 entries, versions: 1.16.0, 1.17.0"}),
    ]
}

/// The failed checks of a report.
fn failed(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["ok"] == false)
        .map(|check| {
            (
                check["file"].as_str().unwrap().to_owned(),
                check["check"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A binary keyring exported by gpg, and the keybox gpg keeps it in.
fn gpg_keyrings(gpg: &Gpg, public: &Path) -> (PathBuf, PathBuf) {
    run_ok(gpg.command().arg("--batch").arg("--import").arg(public));
    let exported = run_ok(gpg.command().args(["--batch", "--export"]));
    let keyring = gpg.home().join("keyring.gpg");
    fs::write(&keyring, exported.stdout).unwrap();
    (keyring, gpg.home().join("pubring.kbx"))
}

fn copy_all(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for name in dir_listing(from) {
        fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

#[test]
fn the_servers_images_verify_as_a_host_reads_them_and_each_failure_is_named() {
    let (work, out) = two_releases();
    let zip = zip_sha256(&work);
    let data = tempfile::tempdir().unwrap();
    let images = data.path().join("images");
    copy_all(&out, &images);
    let server = Server::start(data.path(), &[("WEBHOOK_SECRET", SECRET)]);
    let url = format!("http://127.0.0.1:{}/images/", server.port);
    let public = ed25519_keys().public();
    let signer = fingerprint(&public);
    let key = ("--public-key", public.as_path());

    // The newest image is what a host installs, and only it is checked.
    let (status, report, _) = verify_json(&["--url", &url], key);
    assert_eq!(status, Some(0), "{report:#}");
    let mut checks = passed_manifest_checks(&signer);
    checks.extend(passed_image_checks("1.17.0", &signer, &zip));
    assert_eq!(
        report,
        json!({
            "source": url,
            "match_pattern": "alloy-@v-amd64.raw",
            "signed_by": signer,
            "versions": ["1.16.0", "1.17.0"],
            "host_would_install": {"file": "alloy-1.17.0-amd64.raw", "version": "1.17.0"},
            "checks": checks,
            "provenance": [image_provenance("1.17.0", &zip)],
            "ok": true,
            "error": null,
        })
    );

    // The same in lines, with a keyring as hosts keep it.
    let gpg = Gpg::new();
    let (keyring, keybox) = gpg_keyrings(&gpg, &public);
    let output = run_ok(
        cli()
            .args(["verify", "--url", &url, "--version", "1.16.0", "--keyring"])
            .arg(&keyring),
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "source: {url}\n\
             a host with MatchPattern=alloy-@v-amd64.raw installs alloy-1.17.0-amd64.raw (version 1.17.0)\n\
             ok      SHA256SUMS.gpg: good signature by {signer} on SHA256SUMS\n\
             ok      SHA256SUMS: 2 entries, versions: 1.16.0, 1.17.0\n\
             ok      alloy-1.16.0-amd64.raw: sha256 matches SHA256SUMS\n\
             ok      alloy-1.16.0-amd64.raw.sha256: lists the sha256 that SHA256SUMS lists\n\
             ok      alloy-1.16.0-amd64.raw.asc: good signature by {signer} on alloy-1.16.0-amd64.raw\n\
             ok      alloy-1.16.0-amd64.raw.intoto.json.asc: good signature by {signer} on alloy-1.16.0-amd64.raw.intoto.json\n\
             ok      alloy-1.16.0-amd64.raw.intoto.json: {}\n",
            record_detail("1.16.0", &zip)
        )
    );
    // --all checks every listed file.
    let (status, report, _) = verify_json(&["--url", &url, "--all"], key);
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 12);
    assert_eq!(
        report["provenance"],
        json!([
            image_provenance("1.16.0", &zip),
            image_provenance("1.17.0", &zip)
        ])
    );

    // A keybox is not a keyring, and the error says how to export one.
    let output = cli()
        .args(["verify", "--url", &url, "--keyring"])
        .arg(&keybox)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("this is a GnuPG keybox (pubring.kbx)")
            && stderr.contains("`gpg --export KEYID > keyring.gpg`"),
        "{stderr}"
    );

    // A key the files were not signed with: the manifest is refused.
    let (status, report, stderr) =
        verify_json(&["--url", &url], ("--public-key", &rsa_keys().public()));
    assert_eq!(status, Some(1));
    assert_eq!(
        failed(&report),
        [("SHA256SUMS.gpg".to_owned(), "manifest_signature".to_owned())]
    );
    assert_eq!(report["ok"], false);
    assert!(
        stderr.contains("SHA256SUMS.gpg does not verify SHA256SUMS with this public key: the signature was made by key"),
        "{stderr}"
    );

    // The image a host would install changed by one byte: its hash and its .asc fail.
    let image = images.join("alloy-1.17.0-amd64.raw");
    let original = fs::read(&image).unwrap();
    flip_byte(&image, 5000);
    let (status, report, stderr) = verify_json(&["--url", &url], key);
    assert_eq!(status, Some(1));
    // The record names the image as it was built, so it fails too.
    assert_eq!(
        failed(&report),
        [
            ("alloy-1.17.0-amd64.raw".to_owned(), "sha256".to_owned()),
            (
                "alloy-1.17.0-amd64.raw.asc".to_owned(),
                "signature".to_owned()
            ),
            (
                "alloy-1.17.0-amd64.raw.intoto.json".to_owned(),
                "provenance".to_owned()
            ),
        ]
    );
    assert!(
        stderr.starts_with("error: 3 of 7 checks failed: alloy-1.17.0-amd64.raw: sha256 is "),
        "{stderr}"
    );
    // An older version is still good.
    let (status, _, _) = verify_json(&["--url", &url, "--version", "1.16.0"], key);
    assert_eq!(status, Some(0));
    fs::write(&image, &original).unwrap();

    // An .asc by the right key over other data (the manifest's signature).
    let asc = images.join("alloy-1.17.0-amd64.raw.asc");
    let original_asc = fs::read(&asc).unwrap();
    fs::copy(images.join("SHA256SUMS.gpg"), &asc).unwrap();
    let (status, report, stderr) = verify_json(&["--url", &url], key);
    assert_eq!(status, Some(1));
    assert_eq!(
        failed(&report),
        [(
            "alloy-1.17.0-amd64.raw.asc".to_owned(),
            "signature".to_owned()
        )]
    );
    assert!(
        stderr.contains(
            "alloy-1.17.0-amd64.raw.asc: does not verify alloy-1.17.0-amd64.raw: BAD signature"
        ),
        "{stderr}"
    );
    fs::write(&asc, original_asc).unwrap();

    // The provenance record with one byte changed: its signature no longer verifies, and
    // the asset it names is not reported.
    let record = images.join("alloy-1.17.0-amd64.raw.intoto.json");
    let original_record = fs::read_to_string(&record).unwrap();
    fs::write(&record, original_record.replace("v1.17.0", "v1.17.9")).unwrap();
    let (status, report, stderr) = verify_json(&["--url", &url], key);
    assert_eq!(status, Some(1));
    assert_eq!(
        failed(&report),
        [
            (
                "alloy-1.17.0-amd64.raw.intoto.json.asc".to_owned(),
                "provenance_signature".to_owned()
            ),
            (
                "alloy-1.17.0-amd64.raw.intoto.json".to_owned(),
                "provenance".to_owned()
            )
        ]
    );
    assert_eq!(report["provenance"], json!([]));
    assert!(
        stderr.contains(
            "alloy-1.17.0-amd64.raw.intoto.json.asc: does not verify alloy-1.17.0-amd64.raw.intoto.json: BAD signature"
        ),
        "{stderr}"
    );
    fs::write(&record, original_record).unwrap();

    // A listed image the server does not have.
    fs::remove_file(&image).unwrap();
    let (status, report, stderr) = verify_json(&["--url", &url], key);
    assert_eq!(status, Some(1));
    assert_eq!(
        report["checks"][2],
        json!({"file": "alloy-1.17.0-amd64.raw", "check": "sha256", "ok": false,
               "detail": "is missing: the server answered 404 Not Found"})
    );
    assert_eq!(
        stderr,
        "error: 1 of 3 checks failed: alloy-1.17.0-amd64.raw: is missing: the server answered 404 Not Found\n"
    );
    fs::write(&image, &original).unwrap();

    // The manifest changed after it was signed.
    let manifest = images.join("SHA256SUMS");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("1.16.0", "1.16.9")).unwrap();
    let (status, report, stderr) = verify_json(&["--url", &url], key);
    assert_eq!(status, Some(1));
    assert_eq!(
        failed(&report),
        [("SHA256SUMS.gpg".to_owned(), "manifest_signature".to_owned())]
    );
    assert_eq!(report["signed_by"], Value::Null);
    assert!(
        stderr.contains(
            "SHA256SUMS.gpg does not verify SHA256SUMS with this public key: BAD signature"
        ),
        "{stderr}"
    );
}

#[test]
fn a_bucket_served_over_http_verifies_and_a_changed_image_is_named() {
    let (work, out) = two_releases();
    let zip = zip_sha256(&work);
    let s3 = S3Server::start();
    s3.make_public();
    for name in dir_listing(&out) {
        s3.put_raw(&name, &fs::read(out.join(&name)).unwrap(), &[]);
    }
    let url = s3.public_url();
    let public = ed25519_keys().public();
    let signer = fingerprint(&public);
    let key = ("--public-key", public.as_path());
    let (status, report, _) = verify_json(&["--url", &url], key);
    assert_eq!(status, Some(0), "{report:#}");
    let mut checks = passed_manifest_checks(&signer);
    checks.extend(passed_image_checks("1.17.0", &signer, &zip));
    assert_eq!(report["checks"], json!(checks));
    assert_eq!(
        report["host_would_install"],
        json!({"file": "alloy-1.17.0-amd64.raw", "version": "1.17.0"})
    );

    let mut changed = fs::read(out.join("alloy-1.17.0-amd64.raw")).unwrap();
    changed[5000] ^= 1;
    s3.put_raw("alloy-1.17.0-amd64.raw", &changed, &[]);
    let (status, report, _) = verify_json(&["--url", &url], key);
    assert_eq!(status, Some(1));
    // The record names the image as it was built, so it fails too.
    assert_eq!(
        failed(&report),
        [
            ("alloy-1.17.0-amd64.raw".to_owned(), "sha256".to_owned()),
            (
                "alloy-1.17.0-amd64.raw.asc".to_owned(),
                "signature".to_owned()
            ),
            (
                "alloy-1.17.0-amd64.raw.intoto.json".to_owned(),
                "provenance".to_owned()
            ),
        ]
    );
}

#[test]
fn a_directory_fails_on_a_missing_file_a_bad_asc_and_an_unknown_key() {
    let (_work, out) = two_releases();
    let public = ed25519_keys().public();
    let dir = out.to_str().unwrap();
    let key = ("--public-key", public.as_path());
    // Every listed file by default.
    let (status, report, _) = verify_json(&["--dir", dir], key);
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 12);

    fs::remove_file(out.join("alloy-1.16.0-amd64.raw.sha256")).unwrap();
    fs::write(out.join("alloy-1.17.0-amd64.raw.asc"), "not a signature").unwrap();
    let (status, report, stderr) = verify_json(&["--dir", dir], key);
    assert_eq!(status, Some(1));
    assert_eq!(
        failed(&report),
        [
            (
                "alloy-1.16.0-amd64.raw.sha256".to_owned(),
                "sha256_file".to_owned()
            ),
            (
                "alloy-1.17.0-amd64.raw.asc".to_owned(),
                "signature".to_owned()
            ),
        ]
    );
    assert!(
        stderr.starts_with(
            "error: 2 of 12 checks failed: alloy-1.16.0-amd64.raw.sha256: is missing: not found; alloy-1.17.0-amd64.raw.asc: does not verify alloy-1.17.0-amd64.raw: "
        ),
        "{stderr}"
    );
    // --manifest-only does not look at them.
    let (status, _, _) = verify_json(&["--dir", dir, "--manifest-only"], key);
    assert_eq!(status, Some(0));

    // A manifest signed by another key made by keygen.
    let (status, report, stderr) =
        verify_json(&["--dir", dir], ("--public-key", &rsa_keys().public()));
    assert_eq!(status, Some(1));
    assert_eq!(
        failed(&report),
        [("SHA256SUMS.gpg".to_owned(), "manifest_signature".to_owned())]
    );
    assert!(
        stderr.contains(&format!(
            "the signature was made by key {}",
            fingerprint(&public)
        )),
        "{stderr}"
    );
}
