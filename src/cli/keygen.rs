//! `keygen`: a new signing key, in the files and formats the deployment needs: OpenPGP for
//! images and `SHA256SUMS`, or (`--x509`) a key and certificate for the dm-verity signature
//! of DDI images.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use alloy_sysext_automation::ddi::{VerityCertificate, VerityKey, VerityKeyAlgorithm};
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
/// The verity signing key, PKCS#8 PEM (mode 0600).
const VERITY_KEY_FILE: &str = "verity.key";
/// Its self-signed certificate, PEM: what hosts trust in /etc/verity.d/.
const VERITY_CERTIFICATE_FILE: &str = "verity.crt";

/// Make a new signing key: OpenPGP for images and SHA256SUMS, or with --x509 a key and
/// certificate that sign the root hash of DDI images.
///
/// Without --x509: writes signing-key.asc (the secret key, mode 0600), signing-key.pub.asc
/// (the public key for hosts) and GPG_PRIVATE_KEY.b64 (the secret key as the
/// GPG_PRIVATE_KEY variable wants it, mode 0600). The key has no passphrase and no expiry.
///
/// With --x509: writes verity.key (the private key, unencrypted PKCS#8 PEM, mode 0600) and
/// verity.crt (its self-signed X.509 certificate, valid for --days, which hosts install in
/// /etc/verity.d/). `build --format ddi` signs with them.
///
/// Keep the secret files secret.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory for the key files (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Make an X.509 key and certificate for signing DDI root hashes (dm-verity) instead of
    /// an OpenPGP key.
    #[arg(long)]
    x509: bool,

    /// Key algorithm. OpenPGP: rsa4096 (default, like the existing key) or ed25519 (smaller,
    /// faster). With --x509: rsa-4096 (default; every kernel that checks root-hash
    /// signatures takes it) or ecdsa-p256 (smaller; Linux 5.13 or later for the kernel's
    /// check).
    #[arg(long, value_parser = ["rsa4096", "ed25519", "rsa-4096", "ecdsa-p256"])]
    algorithm: Option<String>,

    /// User ID of the OpenPGP key.
    #[arg(
        long,
        default_value = "Alloy Sysext Signing Key <alloy-sysext@example.org>",
        conflicts_with = "x509"
    )]
    uid: String,

    /// Common name (CN) of the certificate, with --x509.
    #[arg(long, default_value = "Alloy Sysext Verity Signing", requires = "x509")]
    name: String,

    /// Days the certificate is valid, with --x509. Make and deploy a new one before it
    /// expires.
    #[arg(long, default_value_t = 3650, value_name = "DAYS", requires = "x509")]
    days: u32,

    /// Replace key files that already exist in --out.
    #[arg(long)]
    force: bool,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    if args.x509 {
        return run_x509(args);
    }
    let algorithm: KeyAlgorithm = match args.algorithm.as_deref() {
        None => KeyAlgorithm::Rsa4096,
        Some(name @ ("rsa-4096" | "ecdsa-p256")) => anyhow::bail!(
            "--algorithm {name} is for --x509 keys; an OpenPGP key is rsa4096 or ed25519"
        ),
        Some(name) => name.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    prepare_out(&args, &[SECRET_FILE, PUBLIC_FILE, BASE64_FILE])?;

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

/// Makes the X.509 key and certificate.
fn run_x509(args: KeygenArgs) -> anyhow::Result<()> {
    let algorithm = match args.algorithm.as_deref() {
        None => VerityKeyAlgorithm::Rsa4096,
        Some(name @ ("rsa4096" | "ed25519")) => anyhow::bail!(
            "--algorithm {name} is for OpenPGP keys; an --x509 key is rsa-4096 or ecdsa-p256"
        ),
        Some(name) => name.parse()?,
    };
    prepare_out(&args, &[VERITY_KEY_FILE, VERITY_CERTIFICATE_FILE])?;

    eprintln!(
        "generating a {algorithm} key and certificate for CN={:?}...",
        args.name
    );
    let key = VerityKey::generate(algorithm)?;
    let certificate = VerityCertificate::self_signed(&key, &args.name, args.days)?;
    let pem = key.to_pkcs8_pem()?;
    write_file(
        &args.out.join(VERITY_KEY_FILE),
        pem.expose().as_bytes(),
        0o600,
    )?;
    write_file(
        &args.out.join(VERITY_CERTIFICATE_FILE),
        certificate.to_pem().as_bytes(),
        0o644,
    )?;

    let dir = args.out.display();
    let expires = time::OffsetDateTime::from(certificate.not_after()).date();
    println!(
        "Made {} key and certificate {}, valid until {expires}",
        key.description(),
        certificate.subject()
    );
    println!("  sha256 fingerprint {}", certificate.fingerprint());
    println!("  {dir}/{VERITY_KEY_FILE}  private key (PKCS#8 PEM, mode 0600)");
    println!("  {dir}/{VERITY_CERTIFICATE_FILE}  certificate");
    println!();
    println!(
        "Sign DDI images with them: build --format squashfs,ddi --verity-key {dir}/{VERITY_KEY_FILE} --verity-certificate {dir}/{VERITY_CERTIFICATE_FILE},"
    );
    println!(
        "or VERITY_SIGNING_KEY_PATH and VERITY_CERTIFICATE_PATH, or the PEM text in VERITY_SIGNING_KEY and"
    );
    println!(
        "VERITY_CERTIFICATE (e.g. `fly secrets set VERITY_SIGNING_KEY=\"$(cat {dir}/{VERITY_KEY_FILE})\"`)."
    );
    println!();
    println!(
        "Hosts that check the signature trust the certificate as /etc/verity.d/alloy-sysext.crt"
    );
    println!("(mode 0644; the .crt suffix matters), for example as a Butane storage.files entry.");
    println!("Make and deploy a new certificate before {expires}.");
    Ok(())
}

/// Refuses to replace any of `files` in --out (unless --force) and creates --out.
fn prepare_out(args: &KeygenArgs, files: &[&str]) -> anyhow::Result<()> {
    if !args.force {
        for name in files {
            let path = args.out.join(name);
            if path.exists() {
                anyhow::bail!(
                    "{} already exists; refusing to replace a key (use --force, or another --out)",
                    path.display()
                );
            }
        }
    }
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))
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
