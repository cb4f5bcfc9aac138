//! The GitHub App the scenario tests run as: its id, key and name, registered with the fake
//! GitHub, and the environment that makes `serve` act as it.

use std::fs;
use std::path::{Path, PathBuf};

use alloy_sysext_automation::arch::Arch;
use sha2::{Digest, Sha256};

use crate::common::{ed25519_keys, fake_binary, fixture, write_zip};
use crate::fake_github::{Asset, FakeGitHub};
use crate::serve_process::SECRET;

pub const APP_ID: u64 = 4242;
pub const APP_SLUG: &str = "alloy-sysext-test";

/// The App's private key (PKCS#1 PEM, as GitHub hands it out).
pub fn app_key_path() -> PathBuf {
    fixture("app/test-app-key.pem")
}

/// Registers the App with `github` and installs it for each `(installation id, account)`.
pub fn install_app(github: &FakeGitHub, installations: &[(u64, &str)]) {
    let public = fs::read_to_string(fixture("app/test-app-key.pub.pem")).unwrap();
    github.register_app(APP_ID, &public, APP_SLUG);
    for (id, account) in installations {
        github.add_installation(*id, account);
    }
}

/// The environment for `serve` acting as the App against `github`, signing with the shared
/// Ed25519 key, with the settings file `config`.
pub fn app_env(github: &FakeGitHub, config: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("WEBHOOK_SECRET", SECRET.to_owned()),
        ("APP_ID", APP_ID.to_string()),
        ("PRIVATE_KEY_PATH", app_key_path().display().to_string()),
        ("GITHUB_API_URL", github.url.clone()),
        (
            "SIGNING_KEY_PATH",
            ed25519_keys().secret().display().to_string(),
        ),
        ("CONFIG_FILE", config.display().to_string()),
        ("JOB_RETRY_SECONDS", "1".to_owned()),
        ("LOG_LEVEL", "info,alloy_sysext_automation=debug".to_owned()),
    ]
}

/// Publishes Alloy `version` upstream (`grafana/alloy`, tag `v<version>`) with a stand-in
/// amd64 zip and its digest.
pub fn add_upstream_alloy(github: &FakeGitHub, version: &str) {
    add_upstream_alloy_from_seed(github, version, 7);
}

/// As [`add_upstream_alloy`], with a stand-in binary made from `seed`: versions published
/// with different seeds get images that differ, so a host's file tells which one it has.
pub fn add_upstream_alloy_from_seed(github: &FakeGitHub, version: &str, seed: u64) {
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("alloy-linux-amd64.zip");
    let binary = fake_binary(Arch::Amd64, 256 << 10, seed);
    write_zip(&zip, &[("alloy-linux-amd64", &binary)]);
    let zip = fs::read(zip).unwrap();
    github.add_release(
        "grafana/alloy",
        &format!("v{version}"),
        vec![Asset {
            name: "alloy-linux-amd64.zip".into(),
            digest: Some(format!("sha256:{}", hex::encode(Sha256::digest(&zip)))),
            data: zip,
        }],
    );
}
