//! The keys a detached signature is checked with: one armored public key, or a binary
//! OpenPGP keyring (concatenated public keys, as `gpg --export` writes it and as hosts keep
//! in `/etc/systemd/import-pubring.gpg`).
//!
//! A signature is accepted when one key of the keyring issued it and it verifies with that
//! key, as `gpg --verify` with a keyring accepts it.

use std::io::Read;
use std::path::Path;

use super::detached::{SignatureIssuers, SignedDataHash};
use super::key::{all_public_keys, read_key_file};
use super::{PublicKey, SigningError};

/// Where a GnuPG keybox (`pubring.kbx`) has its magic: after its first blob's length (4
/// bytes), type, version and flags (4 bytes).
const KEYBOX_MAGIC_OFFSET: usize = 8;
const KEYBOX_MAGIC: &[u8] = b"KBXf";

/// One or more public keys that signatures are checked with.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<PublicKey>,
}

impl From<PublicKey> for Keyring {
    fn from(key: PublicKey) -> Self {
        Keyring { keys: vec![key] }
    }
}

impl Keyring {
    /// Loads a keyring file: binary (or armored) public keys, one after the other. A GnuPG
    /// keybox is refused with the command that exports a keyring from it.
    pub fn from_file(path: &Path) -> Result<Self, SigningError> {
        let bytes = read_key_file(path)?;
        Self::from_bytes(&bytes).map_err(|source| match source {
            SigningError::Parse { .. } => SigningError::KeyFile {
                path: path.to_owned(),
                source: Box::new(source),
            },
            SigningError::KeyboxGiven { .. } => SigningError::KeyboxGiven {
                path: path.to_owned(),
            },
            _ => SigningError::EmptyKeyring {
                path: path.to_owned(),
            },
        })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, SigningError> {
        if is_keybox(bytes) {
            return Err(SigningError::KeyboxGiven {
                path: Default::default(),
            });
        }
        let keys = all_public_keys(bytes)?;
        if keys.is_empty() {
            return Err(SigningError::EmptyKeyring {
                path: Default::default(),
            });
        }
        Ok(Keyring { keys })
    }

    /// The primary fingerprints of the keys, in file order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(PublicKey::fingerprint).collect()
    }

    /// Checks a detached signature over `data` with the key that issued it; returns that
    /// key's fingerprint.
    pub fn verify_detached<R: Read>(
        &self,
        data: R,
        signature: &[u8],
    ) -> Result<String, SigningError> {
        let key = self.issuer(signature)?;
        key.verify_detached(data, signature)?;
        Ok(key.fingerprint())
    }

    /// Checks a detached signature over data hashed as it went by (see
    /// [`PublicKey::verify_detached_hashed`]); returns the issuing key's fingerprint.
    pub fn verify_detached_hashed(
        &self,
        data: SignedDataHash,
        signature: &[u8],
    ) -> Result<String, SigningError> {
        let key = self.issuer(signature)?;
        key.verify_detached_hashed(data, signature)?;
        Ok(key.fingerprint())
    }

    fn issuer(&self, signature: &[u8]) -> Result<&PublicKey, SigningError> {
        for key in &self.keys {
            if key.issued(signature)? {
                return Ok(key);
            }
        }
        Err(SigningError::WrongKey {
            signer: SignatureIssuers::of(signature)?.to_string(),
            expected: self.fingerprints().join(", "),
        })
    }
}

/// Whether `bytes` start like a GnuPG keybox file.
fn is_keybox(bytes: &[u8]) -> bool {
    bytes.get(KEYBOX_MAGIC_OFFSET..KEYBOX_MAGIC_OFFSET + KEYBOX_MAGIC.len()) == Some(KEYBOX_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::KeyAlgorithm;
    use crate::signing::test_keys::shared;

    #[test]
    fn checks_with_the_key_that_issued_the_signature() {
        let ed = shared(KeyAlgorithm::Ed25519);
        let rsa = shared(KeyAlgorithm::Rsa4096);
        let mut binary = Vec::new();
        for key in [&rsa, &ed] {
            let armored = key.public_key().to_armored().unwrap();
            let keys = all_public_keys(armored.as_bytes()).unwrap();
            pgp::ser::Serialize::to_writer(&keys[0].key, &mut binary).unwrap();
        }
        let keyring = Keyring::from_bytes(&binary).unwrap();
        assert_eq!(
            keyring.fingerprints(),
            [rsa.fingerprint(), ed.fingerprint()]
        );
        let signature = ed.sign_detached(&b"data"[..]).unwrap();
        assert_eq!(
            keyring
                .verify_detached(&b"data"[..], signature.as_bytes())
                .unwrap(),
            ed.fingerprint()
        );
        let only_rsa = Keyring::from(rsa.public_key());
        let err = only_rsa
            .verify_detached(&b"data"[..], signature.as_bytes())
            .unwrap_err();
        assert!(matches!(err, SigningError::WrongKey { .. }), "{err}");
    }

    #[test]
    fn refuses_a_keybox() {
        let mut keybox = vec![0, 0, 0, 32, 1, 1, 0, 0];
        keybox.extend_from_slice(b"KBXf");
        keybox.resize(32, 0);
        assert!(matches!(
            Keyring::from_bytes(&keybox),
            Err(SigningError::KeyboxGiven { .. })
        ));
    }
}
