//! Signatures as hosts check them: gpg with systemd-sysupdate's flags, for keys made by
//! `keygen` and by real GnuPG.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use alloy_sysext_automation::arch::Arch;

use crate::common::*;

/// Builds 1.17.1 with `configure` choosing the key, then checks every signature with gpg
/// and the keyring made from `public_key`, and that a changed byte is refused.
fn assert_hosts_accept(public_key: &Path, configure: impl FnOnce(&mut std::process::Command)) {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 512 << 10);
    let out = work.path().join("out");
    let mut command = cli();
    command
        .args(["build", "--version", "1.17.1", "--zip"])
        .arg(&zip)
        .arg("--out")
        .arg(&out);
    configure(&mut command);
    run_ok(&mut command);

    let gpg = Gpg::new();
    let keyring = gpg.keyring(public_key);
    for (signature, data) in [
        ("SHA256SUMS.gpg", "SHA256SUMS"),
        ("alloy-1.17.1-amd64.raw.asc", "alloy-1.17.1-amd64.raw"),
        ("alloy-1.17.1.raw.asc", "alloy-1.17.1.raw"),
        (
            "alloy-1.17.1-amd64.raw.intoto.json.asc",
            "alloy-1.17.1-amd64.raw.intoto.json",
        ),
    ] {
        assert!(
            gpg.sysupdate_verify(&keyring, &out.join(signature), &out.join(data)),
            "gpg refuses {signature}"
        );
    }
    flip_byte(&out.join("SHA256SUMS"), 10);
    assert!(!gpg.sysupdate_verify(
        &keyring,
        &out.join("SHA256SUMS.gpg"),
        &out.join("SHA256SUMS")
    ));
    flip_byte(&out.join("alloy-1.17.1-amd64.raw"), 100);
    assert!(!gpg.sysupdate_verify(
        &keyring,
        &out.join("alloy-1.17.1-amd64.raw.asc"),
        &out.join("alloy-1.17.1-amd64.raw")
    ));
    flip_byte(&out.join("alloy-1.17.1-amd64.raw.intoto.json"), 100);
    assert!(!gpg.sysupdate_verify(
        &keyring,
        &out.join("alloy-1.17.1-amd64.raw.intoto.json.asc"),
        &out.join("alloy-1.17.1-amd64.raw.intoto.json")
    ));
}

#[test]
fn keygen_rsa4096_signatures_pass_gpg() {
    let keys = rsa_keys();
    assert_hosts_accept(&keys.public(), |c| {
        c.arg("--signing-key").arg(keys.secret());
    });
}

#[test]
fn keygen_ed25519_signatures_pass_gpg_via_environment() {
    let keys = ed25519_keys();
    assert_hosts_accept(&keys.public(), |c| {
        c.env("GPG_PRIVATE_KEY", keys.base64());
    });
    assert_hosts_accept(&keys.public(), |c| {
        c.env("SIGNING_KEY_PATH", keys.secret());
    });
}

/// A key made and exported by real GnuPG, as the existing deployment did.
fn gnupg_key(gpg: &Gpg, algorithm: &str) -> (String, PathBuf) {
    let uid = format!("GnuPG {algorithm} <{algorithm}@example.org>");
    run_ok(gpg.command().args([
        "--batch",
        "--passphrase",
        "",
        "--quick-gen-key",
        &uid,
        algorithm,
        "sign",
        "never",
    ]));
    let secret = run_ok(
        gpg.command()
            .args(["--batch", "--export-secret-keys", "--armor", &uid]),
    );
    let base64 = run_ok(
        std::process::Command::new("base64")
            .arg("-w0")
            .stdin_bytes(&secret.stdout),
    );
    let public = run_ok(gpg.command().args(["--batch", "--export", "--armor", &uid]));
    let public_path = gpg.home().join(format!("{algorithm}.pub.asc"));
    fs::write(&public_path, &public.stdout).unwrap();
    (String::from_utf8(base64.stdout).unwrap(), public_path)
}

trait StdinBytes {
    fn stdin_bytes(&mut self, bytes: &[u8]) -> &mut Self;
}

impl StdinBytes for std::process::Command {
    fn stdin_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        let file = tempfile::tempfile().unwrap();
        use std::io::{Seek, Write};
        let mut file = file;
        file.write_all(bytes).unwrap();
        file.rewind().unwrap();
        self.stdin(file)
    }
}

#[test]
fn gnupg_rsa4096_key_from_gpg_private_key() {
    let gpg = Gpg::new();
    let (base64, public) = gnupg_key(&gpg, "rsa4096");
    assert_hosts_accept(&public, |c| {
        c.env("GPG_PRIVATE_KEY", base64.trim());
    });
}

#[test]
fn gnupg_ed25519_key_from_gpg_private_key() {
    let gpg = Gpg::new();
    let (base64, public) = gnupg_key(&gpg, "ed25519");
    assert_hosts_accept(&public, |c| {
        c.env("GPG_PRIVATE_KEY", base64.trim());
    });
}

#[test]
fn keygen_writes_secret_files_private_and_refuses_to_overwrite() {
    let keys = ed25519_keys();
    for (name, mode) in [
        ("signing-key.asc", 0o600),
        ("GPG_PRIVATE_KEY.b64", 0o600),
        ("signing-key.pub.asc", 0o644),
    ] {
        let actual = fs::metadata(keys.dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(actual, mode, "{name}");
    }
    let decoded = run_ok(
        std::process::Command::new("base64")
            .arg("-d")
            .arg(keys.dir.join("GPG_PRIVATE_KEY.b64")),
    );
    assert_eq!(decoded.stdout, fs::read(keys.secret()).unwrap());
    assert!(
        fs::read_to_string(keys.public())
            .unwrap()
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );

    let before = fs::read(keys.secret()).unwrap();
    let stderr = run_fail(
        cli()
            .args(["keygen", "--algorithm", "ed25519", "--out"])
            .arg(&keys.dir),
    );
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(fs::read(keys.secret()).unwrap(), before);
}

#[test]
fn keygen_explains_how_to_deploy_the_public_key() {
    let out = tempfile::tempdir().unwrap();
    let output = run_ok(
        cli()
            .args([
                "keygen",
                "--algorithm",
                "ed25519",
                "--uid",
                "Ops <ops@example.org>",
                "--out",
            ])
            .arg(out.path()),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("/etc/systemd/import-pubring.gpg"),
        "{stdout}"
    );
    assert!(stdout.contains("GPG_PRIVATE_KEY"), "{stdout}");

    // The printed recipe works: gpg lists the key with the chosen user ID.
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&out.path().join("signing-key.pub.asc"));
    let listed = run_ok(
        gpg.command()
            .args(["--batch", "--no-default-keyring", "--with-colons"])
            .arg(format!("--keyring={}", keyring.display()))
            .arg("--list-keys"),
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("Ops <ops@example.org>"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("pub:") && l.split(':').nth(3) == Some("22")),
        "not an EdDSA key: {listed}"
    );
}
