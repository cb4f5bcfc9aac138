//! `verify`: what systemd-sysupdate checks on a host, run on a directory.

use std::path::PathBuf;

use alloy_sysext_automation::manifest::verify::{VerifyDepth, verify_dir};
use alloy_sysext_automation::signing::PublicKey;
use anyhow::Context;
use clap::Args;

/// Check a directory of published files the way systemd-sysupdate does on a host.
///
/// Verifies SHA256SUMS.gpg against SHA256SUMS with the public key, checks the manifest's
/// format, then the sha256 of every listed file present in the directory (and its .asc
/// signature, when there is one). Prints the versions found; exits non-zero on the first
/// failure, naming it.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The directory holding SHA256SUMS and SHA256SUMS.gpg.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,

    /// The armored OpenPGP public key that signs the manifest.
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,

    /// Check only the manifest's signature and format, not the files it lists.
    #[arg(long)]
    manifest_only: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let key = PublicKey::from_file(&args.public_key)
        .with_context(|| format!("loading the public key {}", args.public_key.display()))?;
    let depth = if args.manifest_only {
        VerifyDepth::ManifestOnly
    } else {
        VerifyDepth::Files
    };
    let report = verify_dir(&args.dir, &key, depth)
        .with_context(|| format!("verifying {}", args.dir.display()))?;
    println!(
        "SHA256SUMS.gpg: good signature by {} on SHA256SUMS",
        key.fingerprint()
    );
    println!(
        "SHA256SUMS: {} entries, versions: {}",
        report.entries.len(),
        report.versions().join(", ")
    );
    if depth == VerifyDepth::Files {
        for file in &report.checked {
            let signature = if report.signatures_checked.contains(file) {
                ", signature ok"
            } else {
                ""
            };
            println!("  ok       {file} (sha256 matches{signature})");
        }
        for file in &report.absent {
            println!("  absent   {file} (listed, not in the directory)");
        }
    }
    Ok(())
}
