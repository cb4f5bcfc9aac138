//! OpenPGP keys: generating, loading and exporting them.
//!
//! The release pipeline gets its secret key from the `GPG_PRIVATE_KEY`
//! environment variable (base64 of `gpg --export-secret-keys --armor`), or
//! generates a fresh one for tests; hosts get the public half as an armored
//! file. This file turns those inputs into [`SigningKey`] and [`PublicKey`]
//! and back, and decides up front which component key will sign, so that a
//! key that cannot sign (passphrase-protected, revoked, encryption-only...)
//! fails when it is loaded rather than halfway through a release.

use std::{fmt, io::Read, path::Path, str::FromStr};

use base64::Engine as _;
use pgp::{
    composed::{
        ArmorOptions, Deserializable, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
        SignedSecretKey,
    },
    crypto::{hash::HashAlgorithm, sym::SymmetricKeyAlgorithm},
    types::{
        CompressionAlgorithm, KeyDetails, KeyVersion, S2kParams, SecretParams, StringToKey,
        Timestamp,
    },
};

use super::{
    SigningError,
    components::{self, fingerprint_hex},
    error::pgp_reason,
};

/// What a secret key input should be, for error messages.
const SECRET_KEY_HINT: &str = "expected the output of `gpg --export-secret-keys --armor KEYID`";
/// What a public key input should be, for error messages.
const PUBLIC_KEY_HINT: &str = "expected the output of `gpg --export --armor KEYID`";

/// The kinds of key [`SigningKey::generate`] can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a 4096-bit modulus.
    Rsa4096,
    /// Ed25519 in the legacy EdDSA form (v4 key, public-key algorithm 22),
    /// the form GnuPG 2.2 can verify.
    Ed25519,
}

impl FromStr for KeyAlgorithm {
    type Err = SigningError;

    /// Parses `"rsa4096"` or `"ed25519"` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rsa4096" => Ok(Self::Rsa4096),
            "ed25519" => Ok(Self::Ed25519),
            _ => Err(SigningError::UnknownAlgorithm(s.to_owned())),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    /// Writes the name [`FromStr`] accepts: `rsa4096` or `ed25519`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rsa4096 => "rsa4096",
            Self::Ed25519 => "ed25519",
        })
    }
}

/// Which component of a secret key makes data signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signer {
    /// The primary key.
    Primary,
    /// `SignedSecretKey::secret_subkeys[index]`.
    Subkey(usize),
}

/// An unprotected OpenPGP v4 secret key (primary key, user IDs, subkeys),
/// ready to make detached signatures.
///
/// Its `Debug` output shows fingerprints only, never key material.
#[derive(Clone)]
pub struct SigningKey {
    pub(super) key: SignedSecretKey,
    pub(super) signer: Signer,
}

/// An OpenPGP certificate (public key with its subkeys and self-signatures),
/// used to verify detached signatures.
#[derive(Clone)]
pub struct PublicKey {
    pub(super) key: SignedPublicKey,
}

impl SigningKey {
    /// Generates a new key: a signing- and certification-capable v4 primary
    /// key with one self-signed user ID, no subkeys, no expiry and no
    /// passphrase.
    ///
    /// RSA 4096 generation takes seconds in release builds and can take
    /// minutes in unoptimised ones.
    pub fn generate(algorithm: KeyAlgorithm, user_id: &str) -> Result<Self, SigningError> {
        let generation_error = |reason: String| SigningError::KeyGeneration {
            algorithm: algorithm.to_string(),
            reason,
        };
        if user_id.trim().is_empty() {
            return Err(generation_error("the user ID must not be empty".to_owned()));
        }
        let key_type = match algorithm {
            KeyAlgorithm::Rsa4096 => KeyType::Rsa(4096),
            KeyAlgorithm::Ed25519 => KeyType::Ed25519Legacy,
        };
        let params = SecretKeyParamsBuilder::default()
            .version(KeyVersion::V4)
            .key_type(key_type)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.to_owned())
            .preferred_hash_algorithms(
                vec![
                    HashAlgorithm::Sha512,
                    HashAlgorithm::Sha384,
                    HashAlgorithm::Sha256,
                ]
                .into(),
            )
            .preferred_symmetric_algorithms(
                vec![
                    SymmetricKeyAlgorithm::AES256,
                    SymmetricKeyAlgorithm::AES192,
                    SymmetricKeyAlgorithm::AES128,
                ]
                .into(),
            )
            .preferred_compression_algorithms(
                vec![CompressionAlgorithm::ZLIB, CompressionAlgorithm::ZIP].into(),
            )
            .build()
            .map_err(|e| generation_error(e.to_string()))?;
        let key = params
            .generate(super::rng())
            .map_err(|e| generation_error(pgp_reason(&e)))?;
        Self::from_signed(key)
    }

    /// Loads an armored secret key (`-----BEGIN PGP PRIVATE KEY BLOCK-----`),
    /// as written by `gpg --export-secret-keys --armor KEYID`. Subkeys are
    /// kept; see [`SigningKey::signing_fingerprint`] for which one signs.
    ///
    /// Binary (unarmored) exports are accepted too.
    pub fn from_armored(text: &str) -> Result<Self, SigningError> {
        Self::from_bytes(text.as_bytes())
    }

    /// Loads the `GPG_PRIVATE_KEY` format: base64 of an armored (or binary)
    /// secret key export, i.e. `gpg --export-secret-keys --armor KEYID |
    /// base64 -w0`. Whitespace and line breaks anywhere in the base64 are
    /// ignored, and so is missing padding. If the value is itself already an
    /// armored key (starts with `-----BEGIN PGP`), it is used as is.
    pub fn from_base64_armored(b64: &str) -> Result<Self, SigningError> {
        if b64.trim_start().starts_with("-----BEGIN PGP") {
            return Self::from_armored(b64);
        }
        let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let decoded = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
            .decode(compact.as_bytes())
            .map_err(|e| SigningError::InvalidBase64 {
                reason: describe_base64_error(&e),
            })?;
        Self::from_bytes(&decoded)
    }

    /// Loads an armored (or binary) secret key file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, SigningError> {
        let bytes = read_key_file(path)?;
        Self::from_bytes(&bytes).map_err(|source| SigningError::KeyFile {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Writes the whole secret key, armored, in the format
    /// [`SigningKey::from_armored`] reads and `gpg --import` accepts.
    pub fn to_armored(&self) -> Result<String, SigningError> {
        self.key
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| SigningError::Serialize {
                what: "secret key",
                reason: pgp_reason(&e),
            })
    }

    /// The public half (certificate), including any subkeys.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.to_public_key(),
        }
    }

    /// The primary key's fingerprint in uppercase hex, as gpg prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint_hex(&self.key.primary_key.fingerprint())
    }

    /// The fingerprint of the component key that makes the signatures: the
    /// newest valid signing subkey if there is one, else the primary key
    /// (the same choice GnuPG makes).
    pub fn signing_fingerprint(&self) -> String {
        match self.signer {
            Signer::Primary => self.fingerprint(),
            Signer::Subkey(index) => self
                .key
                .secret_subkeys
                .get(index)
                .map(|sub| fingerprint_hex(&sub.key.fingerprint()))
                .unwrap_or_else(|| self.fingerprint()),
        }
    }

    /// The primary user ID (or the first one), if the key has one that is
    /// valid UTF-8.
    pub fn user_id(&self) -> Option<String> {
        primary_user_id(&self.key.details)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, SigningError> {
        let keys = match SignedSecretKey::from_reader_many(bytes) {
            Ok((keys, _headers)) => keys.collect::<Result<Vec<_>, _>>(),
            Err(e) => Err(e),
        };
        let keys = match keys {
            Ok(keys) => keys,
            Err(e) => {
                if parse_public(bytes).is_ok() {
                    return Err(SigningError::PublicKeyGivenForSecret);
                }
                return Err(SigningError::Parse {
                    what: "secret key",
                    reason: pgp_reason(&e),
                    hint: SECRET_KEY_HINT,
                });
            }
        };
        let key = exactly_one(keys, "secret key", SECRET_KEY_HINT)?;
        Self::from_signed(key)
    }

    fn from_signed(key: SignedSecretKey) -> Result<Self, SigningError> {
        let signer = select_signer(&key)?;
        Ok(Self { key, signer })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .field("signing_fingerprint", &self.signing_fingerprint())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Loads an armored public key (`-----BEGIN PGP PUBLIC KEY BLOCK-----`),
    /// as written by `gpg --export --armor KEYID`; subkeys are kept.
    ///
    /// Binary (unarmored) exports are accepted too.
    pub fn from_armored(text: &str) -> Result<Self, SigningError> {
        Self::from_bytes(text.as_bytes())
    }

    /// Loads an armored (or binary) public key file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, SigningError> {
        let bytes = read_key_file(path)?;
        Self::from_bytes(&bytes).map_err(|source| SigningError::KeyFile {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Writes the certificate armored, in the format `gpg --import` accepts.
    pub fn to_armored(&self) -> Result<String, SigningError> {
        self.key
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| SigningError::Serialize {
                what: "public key",
                reason: pgp_reason(&e),
            })
    }

    /// The primary key's fingerprint in uppercase hex, as gpg prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint_hex(&self.key.primary_key.fingerprint())
    }

    /// The primary user ID (or the first one), if the key has one that is
    /// valid UTF-8.
    pub fn user_id(&self) -> Option<String> {
        primary_user_id(&self.key.details)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, SigningError> {
        match parse_public(bytes) {
            Ok(keys) => Ok(Self {
                key: exactly_one(keys, "public key", PUBLIC_KEY_HINT)?,
            }),
            Err(reason) => {
                // Only the kind of input is reported: parsing it as a
                // secret key must not leak anything about its contents.
                let is_secret = SignedSecretKey::from_reader_many(bytes)
                    .is_ok_and(|(mut keys, _)| keys.next().is_some_and(|k| k.is_ok()));
                if is_secret {
                    return Err(SigningError::SecretKeyGivenForPublic);
                }
                Err(SigningError::Parse {
                    what: "public key",
                    reason,
                    hint: PUBLIC_KEY_HINT,
                })
            }
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Parses all public keys in armored or binary input.
fn parse_public(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    let (keys, _headers) = SignedPublicKey::from_reader_many(bytes).map_err(|e| pgp_reason(&e))?;
    keys.collect::<Result<Vec<_>, _>>()
        .map_err(|e| pgp_reason(&e))
}

/// Takes the single key out of `keys`; `what` and `hint` describe the input.
fn exactly_one<T>(
    mut keys: Vec<T>,
    what: &'static str,
    hint: &'static str,
) -> Result<T, SigningError> {
    if keys.len() > 1 {
        return Err(SigningError::MultipleKeys {
            what,
            count: keys.len(),
        });
    }
    keys.pop().ok_or(SigningError::Parse {
        what,
        reason: "the input contains no key".to_owned(),
        hint,
    })
}

/// Explains a base64 error by position only: the offending byte could be
/// part of a key, so it is not repeated.
fn describe_base64_error(error: &base64::DecodeError) -> String {
    match error {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("invalid character at offset {offset}")
        }
        base64::DecodeError::InvalidLastSymbol { offset, .. } => {
            format!("invalid last character at offset {offset}")
        }
        base64::DecodeError::InvalidLength(length) => {
            format!("invalid length {length} (truncated?)")
        }
        base64::DecodeError::InvalidPadding => "invalid padding".to_owned(),
    }
}

/// Every public key in armored or binary input (a keyring as `gpg --export` writes it),
/// for [`super::keyring::Keyring`].
pub(super) fn all_public_keys(bytes: &[u8]) -> Result<Vec<PublicKey>, SigningError> {
    let keys = parse_public(bytes).map_err(|reason| SigningError::Parse {
        what: "keyring",
        reason,
        hint: KEYRING_HINT,
    })?;
    Ok(keys.into_iter().map(|key| PublicKey { key }).collect())
}

/// What a keyring file should hold.
pub(super) const KEYRING_HINT: &str =
    "expected an OpenPGP keyring as written by `gpg --export KEYID > keyring.gpg`";

pub(super) fn read_key_file(path: &Path) -> Result<Vec<u8>, SigningError> {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    read().map_err(|source| SigningError::ReadKeyFile {
        path: path.to_owned(),
        source,
    })
}

fn primary_user_id(details: &pgp::composed::SignedKeyDetails) -> Option<String> {
    details
        .users
        .iter()
        .find(|user| user.is_primary())
        .or_else(|| details.users.first())
        .and_then(|user| user.id.as_str())
        .map(str::to_owned)
}

/// Whether a component key's secret material can be used without a passphrase.
enum SecretState {
    Plain,
    Locked,
    Stub,
}

fn secret_state(params: &SecretParams) -> SecretState {
    match params {
        SecretParams::Plain(_) => SecretState::Plain,
        SecretParams::Encrypted(encrypted) => match encrypted.string_to_key_params() {
            // GnuPG's "gnu-dummy" (101) S2K marks a key whose secret part was
            // left out of the export (offline primary key, smartcard).
            S2kParams::Cfb { s2k, .. } | S2kParams::MalleableCfb { s2k, .. }
                if matches!(s2k, StringToKey::Private { typ: 101, .. }) =>
            {
                SecretState::Stub
            }
            _ => SecretState::Locked,
        },
    }
}

/// Chooses the component key that signs, as GnuPG does: the newest valid,
/// unexpired signing subkey, else the primary key if it may sign.
fn select_signer(key: &SignedSecretKey) -> Result<Signer, SigningError> {
    let now = Timestamp::now();
    let primary = key.primary_key.public_key();
    let mut problems = Vec::new();
    // The first component that could sign but whose secret part is unusable.
    let mut unusable: Option<(String, SecretState)> = None;

    let mut newest_subkey: Option<(usize, u32)> = None;
    for (index, sub) in key.secret_subkeys.iter().enumerate() {
        let fingerprint = fingerprint_hex(&sub.key.fingerprint());
        let binding =
            match components::subkey_binding(primary, sub.key.public_key(), &sub.signatures) {
                Ok(binding) => binding,
                Err(reason) => {
                    problems.push(format!("subkey {fingerprint}: {reason}"));
                    continue;
                }
            };
        if let Some(reason) = binding.signing_problem(now) {
            problems.push(format!("subkey {fingerprint}: {reason}"));
            continue;
        }
        match secret_state(sub.key.secret_params()) {
            SecretState::Plain => {
                let created = sub.key.created_at().as_secs();
                if newest_subkey.is_none_or(|(_, newest)| created >= newest) {
                    newest_subkey = Some((index, created));
                }
            }
            state => {
                unusable.get_or_insert((fingerprint, state));
            }
        }
    }
    if let Some((index, _)) = newest_subkey {
        return Ok(Signer::Subkey(index));
    }

    let fingerprint = fingerprint_hex(&key.primary_key.fingerprint());
    match components::primary_binding(primary, &key.details) {
        Err(reason) => problems.push(format!("primary key: {reason}")),
        Ok(binding) => match binding.signing_problem(now) {
            Some(reason) => problems.push(format!("primary key: {reason}")),
            None => match secret_state(key.primary_key.secret_params()) {
                SecretState::Plain => return Ok(Signer::Primary),
                state => {
                    unusable.get_or_insert((fingerprint.clone(), state));
                }
            },
        },
    }

    match unusable {
        Some((fingerprint, SecretState::Stub)) => {
            Err(SigningError::SecretMaterialMissing { fingerprint })
        }
        Some((fingerprint, _)) => Err(SigningError::PassphraseProtected { fingerprint }),
        None => Err(SigningError::NoSigningKey {
            fingerprint,
            reason: if problems.is_empty() {
                "it has no signing-capable key".to_owned()
            } else {
                problems.join("; ")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use pgp::{
        composed::{KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder},
        ser::Serialize as _,
    };

    use super::*;
    use crate::signing::test_keys::shared;

    const ALGORITHMS: [KeyAlgorithm; 2] = [KeyAlgorithm::Rsa4096, KeyAlgorithm::Ed25519];

    /// Builds an Ed25519 key directly with rpgp, for shapes `generate` does
    /// not make.
    fn custom_key(
        primary_can_sign: bool,
        passphrase: Option<&str>,
        signing_subkey: bool,
    ) -> SignedSecretKey {
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(primary_can_sign)
            .passphrase(passphrase.map(str::to_owned))
            .primary_user_id("Custom <custom@example.org>".to_owned());
        if signing_subkey {
            params.subkey(
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::Ed25519Legacy)
                    .can_sign(true)
                    .passphrase(passphrase.map(str::to_owned))
                    .build()
                    .expect("subkey parameters"),
            );
        }
        params
            .build()
            .expect("key parameters")
            .generate(crate::signing::rng())
            .expect("key generation")
    }

    fn armored(key: &SignedSecretKey) -> String {
        key.to_armored_string(ArmorOptions::default())
            .expect("armoring")
    }

    #[test]
    fn algorithm_names_round_trip() {
        for algorithm in ALGORITHMS {
            assert_eq!(
                algorithm.to_string().parse::<KeyAlgorithm>().ok(),
                Some(algorithm)
            );
        }
        assert_eq!(
            "RSA4096".parse::<KeyAlgorithm>().ok(),
            Some(KeyAlgorithm::Rsa4096)
        );
        let err = "dsa"
            .parse::<KeyAlgorithm>()
            .expect_err("dsa is not offered");
        assert!(matches!(err, SigningError::UnknownAlgorithm(ref name) if name == "dsa"));
        assert!(err.to_string().contains("rsa4096"), "{err}");
    }

    #[test]
    fn generated_keys_have_expected_shape() {
        for algorithm in ALGORITHMS {
            let key = shared(algorithm);
            assert_eq!(
                key.user_id().as_deref(),
                Some("Unit Test <unit@example.org>")
            );
            assert_eq!(key.fingerprint().len(), 40);
            assert!(
                key.fingerprint()
                    .chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            );
            assert_eq!(key.signing_fingerprint(), key.fingerprint());
            assert_eq!(key.public_key().fingerprint(), key.fingerprint());
            assert_eq!(key.key.primary_key.version(), KeyVersion::V4);
            let expected = match algorithm {
                KeyAlgorithm::Rsa4096 => pgp::crypto::public_key::PublicKeyAlgorithm::RSA,
                KeyAlgorithm::Ed25519 => pgp::crypto::public_key::PublicKeyAlgorithm::EdDSALegacy,
            };
            assert_eq!(key.key.primary_key.algorithm(), expected);
        }
    }

    #[test]
    fn empty_user_id_is_rejected() {
        let err = SigningKey::generate(KeyAlgorithm::Ed25519, "  ").expect_err("empty uid");
        assert!(matches!(err, SigningError::KeyGeneration { .. }), "{err}");
    }

    #[test]
    fn armored_secret_key_round_trips() {
        for algorithm in ALGORITHMS {
            let key = shared(algorithm);
            let text = key.to_armored().expect("armoring");
            assert!(
                text.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"),
                "{text}"
            );
            let loaded = SigningKey::from_armored(&text).expect("loading");
            assert_eq!(loaded.fingerprint(), key.fingerprint());
            assert_eq!(loaded.user_id(), key.user_id());
        }
    }

    #[test]
    fn armored_public_key_round_trips() {
        let key = shared(KeyAlgorithm::Ed25519);
        let text = key.public_key().to_armored().expect("armoring");
        assert!(
            text.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
            "{text}"
        );
        assert!(!text.contains("PRIVATE"));
        let loaded = PublicKey::from_armored(&text).expect("loading");
        assert_eq!(loaded.fingerprint(), key.fingerprint());
        assert_eq!(loaded.user_id(), key.user_id());
    }

    #[test]
    fn base64_armored_round_trips_with_whitespace() {
        let key = shared(KeyAlgorithm::Ed25519);
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(key.to_armored().expect("armoring"));

        let one_line = SigningKey::from_base64_armored(&encoded).expect("one line");
        assert_eq!(one_line.fingerprint(), key.fingerprint());

        // As `base64` without `-w0` writes it, plus stray whitespace and CRLFs.
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(76)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect();
        let messy = format!("\n  {}\r\n\t", wrapped.join("\r\n"));
        let loaded = SigningKey::from_base64_armored(&messy).expect("wrapped");
        assert_eq!(loaded.fingerprint(), key.fingerprint());

        let unpadded = encoded.trim_end_matches('=');
        let loaded = SigningKey::from_base64_armored(unpadded).expect("unpadded");
        assert_eq!(loaded.fingerprint(), key.fingerprint());
    }

    #[test]
    fn base64_of_binary_export_and_plain_armor_are_accepted() {
        let key = shared(KeyAlgorithm::Ed25519);
        let binary = key.key.to_bytes().expect("serialising");
        let encoded = base64::engine::general_purpose::STANDARD.encode(binary);
        let loaded = SigningKey::from_base64_armored(&encoded).expect("binary");
        assert_eq!(loaded.fingerprint(), key.fingerprint());

        let armored = key.to_armored().expect("armoring");
        let loaded = SigningKey::from_base64_armored(&armored).expect("not base64");
        assert_eq!(loaded.fingerprint(), key.fingerprint());
    }

    #[test]
    fn invalid_base64_is_reported_without_the_input() {
        let err = SigningKey::from_base64_armored("c2VjcmV0!!c2VjcmV0").expect_err("bad base64");
        assert!(matches!(err, SigningError::InvalidBase64 { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("GPG_PRIVATE_KEY"), "{message}");
        assert!(message.contains("offset 8"), "{message}");
        assert!(!message.contains("c2VjcmV0"), "{message}");
    }

    #[test]
    fn garbage_is_rejected() {
        for input in [
            "",
            "hello world",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxx\n",
        ] {
            let err = SigningKey::from_armored(input).expect_err("garbage secret key");
            assert!(
                matches!(err, SigningError::Parse { .. }),
                "{input:?}: {err}"
            );
            let err = PublicKey::from_armored(input).expect_err("garbage public key");
            assert!(
                matches!(err, SigningError::Parse { .. }),
                "{input:?}: {err}"
            );
        }
        // Valid base64, but not a key inside.
        let encoded = base64::engine::general_purpose::STANDARD.encode("hello world\n");
        let err = SigningKey::from_base64_armored(&encoded).expect_err("not a key");
        assert!(matches!(err, SigningError::Parse { .. }), "{err}");
        assert!(
            err.to_string().contains("gpg --export-secret-keys"),
            "{err}"
        );
    }

    #[test]
    fn public_and_secret_keys_are_not_confused() {
        let key = shared(KeyAlgorithm::Ed25519);
        let public = key.public_key().to_armored().expect("armoring");
        let err = SigningKey::from_armored(&public).expect_err("public as secret");
        assert!(
            matches!(err, SigningError::PublicKeyGivenForSecret),
            "{err}"
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(&public);
        let err = SigningKey::from_base64_armored(&encoded).expect_err("public as secret");
        assert!(
            matches!(err, SigningError::PublicKeyGivenForSecret),
            "{err}"
        );

        let secret = key.to_armored().expect("armoring");
        let err = PublicKey::from_armored(&secret).expect_err("secret as public");
        assert!(
            matches!(err, SigningError::SecretKeyGivenForPublic),
            "{err}"
        );
    }

    #[test]
    fn several_keys_in_one_input_are_rejected() {
        let first = custom_key(true, None, false);
        let second = custom_key(true, None, false);
        let mut bytes = first.to_bytes().expect("serialising");
        bytes.extend(second.to_bytes().expect("serialising"));
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let err = SigningKey::from_base64_armored(&encoded).expect_err("two keys");
        assert!(
            matches!(err, SigningError::MultipleKeys { count: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn passphrase_protected_key_is_a_clear_error() {
        let locked = custom_key(true, Some("correct horse"), false);
        let err = SigningKey::from_armored(&armored(&locked)).expect_err("locked key");
        assert!(
            matches!(err, SigningError::PassphraseProtected { .. }),
            "{err}"
        );
        let message = err.to_string();
        assert!(message.contains("without a passphrase"), "{message}");
        assert!(
            message.contains(&fingerprint_hex(&locked.fingerprint())),
            "{message}"
        );
    }

    #[test]
    fn certify_only_key_cannot_sign() {
        let key = custom_key(false, None, false);
        let err = SigningKey::from_armored(&armored(&key)).expect_err("certify-only key");
        assert!(matches!(err, SigningError::NoSigningKey { .. }), "{err}");
        assert!(err.to_string().contains("key flags"), "{err}");
    }

    #[test]
    fn signing_subkey_is_preferred() {
        let key = custom_key(false, None, true);
        let loaded = SigningKey::from_armored(&armored(&key)).expect("loading");
        assert_eq!(loaded.fingerprint(), fingerprint_hex(&key.fingerprint()));
        assert_eq!(
            loaded.signing_fingerprint(),
            fingerprint_hex(&key.secret_subkeys[0].key.fingerprint())
        );
    }

    #[test]
    fn key_files_are_read_and_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = shared(KeyAlgorithm::Ed25519);
        let secret_path = dir.path().join("secret.asc");
        let public_path = dir.path().join("public.asc");
        std::fs::write(&secret_path, key.to_armored().expect("armoring")).expect("writing");
        std::fs::write(
            &public_path,
            key.public_key().to_armored().expect("armoring"),
        )
        .expect("writing");

        let loaded = SigningKey::from_file(&secret_path).expect("secret key file");
        assert_eq!(loaded.fingerprint(), key.fingerprint());
        let loaded = PublicKey::from_file(&public_path).expect("public key file");
        assert_eq!(loaded.fingerprint(), key.fingerprint());

        let missing = dir.path().join("missing.asc");
        let err = SigningKey::from_file(&missing).expect_err("missing file");
        assert!(matches!(err, SigningError::ReadKeyFile { .. }), "{err}");
        assert!(err.to_string().contains("missing.asc"), "{err}");

        let err = SigningKey::from_file(&public_path).expect_err("wrong kind of file");
        assert!(err.to_string().contains("public.asc"), "{err}");
        assert!(
            matches!(&err, SigningError::KeyFile { source, .. }
                if matches!(**source, SigningError::PublicKeyGivenForSecret)),
            "{err}"
        );
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = shared(KeyAlgorithm::Ed25519);
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.fingerprint()), "{debug}");
        assert!(debug.len() < 200, "{debug}");
    }
}
