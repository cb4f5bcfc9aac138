//! The key `serve` signs with: `GPG_PRIVATE_KEY` or `SIGNING_KEY_PATH` when set, else a key
//! the server made in `DATA_DIR` on its first start.

use std::path::{Path, PathBuf};

use crate::signing::key_source::{KeySource, KeySourceError};
use crate::signing::{KeyAlgorithm, SigningKey};

/// The secret key made on first start, in `DATA_DIR`.
pub const GENERATED_KEY_FILE: &str = "signing-key.asc";
/// Its public half, for hosts.
pub const GENERATED_PUBLIC_KEY_FILE: &str = "signing-key.pub.asc";

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    Configured(String),
    /// Made by the server; the path of its public key.
    Generated {
        public_key: PathBuf,
        new: bool,
    },
}

/// The configured key, or the one the server made in `data_dir`; `None` when there is
/// neither and the server would make one.
pub fn existing_server_key(
    data_dir: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<(SigningKey, KeyOrigin)>> {
    match KeySource::resolve(None, lookup) {
        Ok(source) => {
            let key = source.load()?;
            Ok(Some((key, KeyOrigin::Configured(source.to_string()))))
        }
        Err(KeySourceError::NoKey) => {
            let secret_path = data_dir.join(GENERATED_KEY_FILE);
            if !secret_path.exists() {
                return Ok(None);
            }
            let key = SigningKey::from_file(&secret_path).map_err(|e| {
                anyhow::anyhow!("loading the signing key {}: {e}", secret_path.display())
            })?;
            Ok(Some((
                key,
                KeyOrigin::Generated {
                    public_key: data_dir.join(GENERATED_PUBLIC_KEY_FILE),
                    new: false,
                },
            )))
        }
        Err(error) => Err(error.into()),
    }
}

/// Loads the configured key, or the one in `data_dir`, making it first if needed.
pub fn server_signing_key(
    data_dir: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(SigningKey, KeyOrigin)> {
    if let Some(existing) = existing_server_key(data_dir, lookup)? {
        return Ok(existing);
    }
    let secret_path = data_dir.join(GENERATED_KEY_FILE);
    let public_path = data_dir.join(GENERATED_PUBLIC_KEY_FILE);
    let key = SigningKey::generate(
        KeyAlgorithm::Ed25519,
        "Alloy sysext signing key (made by alloy-sysext-automation)",
    )?;
    crate::server::private_file::write_private(&secret_path, key.to_armored()?.as_bytes())?;
    std::fs::write(&public_path, key.public_key().to_armored()?)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", public_path.display()))?;
    Ok((
        key,
        KeyOrigin::Generated {
            public_key: public_path,
            new: true,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (first, origin) = server_signing_key(dir.path(), |_| None).unwrap();
        assert!(matches!(origin, KeyOrigin::Generated { new: true, .. }));
        let (again, origin) = server_signing_key(dir.path(), |_| None).unwrap();
        assert!(matches!(origin, KeyOrigin::Generated { new: false, .. }));
        assert_eq!(first.fingerprint(), again.fingerprint());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(GENERATED_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
