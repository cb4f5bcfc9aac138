//! The public keys published files are checked with, as `verify` and `rebuild-check` take
//! them: one armored public key, or a binary keyring as hosts keep it.

use std::path::PathBuf;

use alloy_sysext_automation::signing::{Keyring, PublicKey};
use anyhow::Context;
use clap::{ArgGroup, Args};

/// `--public-key FILE` or `--keyring FILE`, one of them required.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("key").required(true).args(["public_key", "keyring"])))]
pub struct PublicKeyArgs {
    /// The armored OpenPGP public key that signs the manifest (gpg --export --armor KEYID).
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,

    /// A binary OpenPGP keyring, as hosts keep in /etc/systemd/import-pubring.gpg
    /// (gpg --export KEYID > keyring.gpg). A GnuPG keybox (pubring.kbx) is not one.
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
}

impl PublicKeyArgs {
    /// Loads the key or keyring given.
    pub fn load(&self) -> anyhow::Result<Keyring> {
        match (&self.public_key, &self.keyring) {
            (Some(path), _) => Ok(Keyring::from(
                PublicKey::from_file(path)
                    .with_context(|| format!("loading the public key {}", path.display()))?,
            )),
            (None, Some(path)) => Keyring::from_file(path)
                .with_context(|| format!("loading the keyring {}", path.display())),
            (None, None) => unreachable!("clap requires one of the key options"),
        }
    }
}
