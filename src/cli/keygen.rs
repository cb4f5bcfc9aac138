//! `keygen`: a new signing key, in the files and formats the deployment needs.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use alloy_sysext_automation::signing::{KeyAlgorithm, SigningKey};
use anyhow::Context;
use base64::Engine;
use clap::Args;

/// The secret key, armored (mode 0600).
const SECRET_FILE: &str = "signing-key.asc";
/// The public key, armored: what hosts and `verify` need.
const PUBLIC_FILE: &str = "signing-key.pub.asc";
/// base64 of the armored secret key: the value for GPG_PRIVATE_KEY (mode 0600).
const BASE64_FILE: &str = "GPG_PRIVATE_KEY.b64";

/// Make a new OpenPGP signing key for images and SHA256SUMS.
///
/// Writes signing-key.asc (the secret key, mode 0600), signing-key.pub.asc (the public key
/// for hosts) and GPG_PRIVATE_KEY.b64 (the secret key as the GPG_PRIVATE_KEY variable wants
/// it, mode 0600). The key has no passphrase and no expiry; keep the secret files secret.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory for the key files (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Key algorithm: rsa4096 (like the existing key) or ed25519 (smaller, faster).
    #[arg(long, default_value = "rsa4096", value_parser = ["rsa4096", "ed25519"])]
    algorithm: String,

    /// User ID of the key.
    #[arg(
        long,
        default_value = "Alloy Sysext Signing Key <alloy-sysext@example.org>"
    )]
    uid: String,

    /// Replace key files that already exist in --out.
    #[arg(long)]
    force: bool,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    let algorithm: KeyAlgorithm = args.algorithm.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    if !args.force {
        for name in [SECRET_FILE, PUBLIC_FILE, BASE64_FILE] {
            let path = args.out.join(name);
            if path.exists() {
                anyhow::bail!(
                    "{} already exists; refusing to replace a key (use --force, or another --out)",
                    path.display()
                );
            }
        }
    }
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    eprintln!("generating a {algorithm} key for {:?}...", args.uid);
    let key = SigningKey::generate(algorithm, &args.uid)?;
    let secret = key.to_armored()?;
    let public = key.public_key().to_armored()?;
    let base64 = base64::engine::general_purpose::STANDARD.encode(secret.as_bytes());

    write_file(&args.out.join(SECRET_FILE), secret.as_bytes(), 0o600)?;
    write_file(
        &args.out.join(BASE64_FILE),
        format!("{base64}\n").as_bytes(),
        0o600,
    )?;
    write_file(&args.out.join(PUBLIC_FILE), public.as_bytes(), 0o644)?;

    let dir = args.out.display();
    println!("Made {algorithm} key {}", key.fingerprint());
    println!("  {dir}/{SECRET_FILE}  secret key (mode 0600)");
    println!("  {dir}/{BASE64_FILE}  the same, as the value of GPG_PRIVATE_KEY (mode 0600)");
    println!("  {dir}/{PUBLIC_FILE}  public key");
    println!();
    println!(
        "Sign with it: --signing-key {dir}/{SECRET_FILE}, or SIGNING_KEY_PATH={dir}/{SECRET_FILE},"
    );
    println!(
        "or GPG_PRIVATE_KEY=\"$(cat {dir}/{BASE64_FILE})\" (e.g. `fly secrets set GPG_PRIVATE_KEY=...`)."
    );
    println!();
    println!("Deploy the public key to hosts: systemd-sysupdate checks SHA256SUMS.gpg against the");
    println!("keyring /etc/systemd/import-pubring.gpg. Make the keyring with");
    println!(
        "  gpg --no-default-keyring --keyring ./import-pubring.gpg --import {dir}/{PUBLIC_FILE}"
    );
    println!(
        "and install it on each host as /etc/systemd/import-pubring.gpg (mode 0644), for example"
    );
    println!("as a Butane storage.files entry. Check a published directory with");
    println!("  alloy-sysext-automation verify --dir out/ --public-key {dir}/{PUBLIC_FILE}");
    Ok(())
}

/// Writes `contents` to a new file created with `mode`, so a secret is never readable by
/// others, not even for a moment.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
