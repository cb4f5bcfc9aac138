//! Detached signatures: making them and checking them.
//!
//! A release publishes `SHA256SUMS` next to `SHA256SUMS.gpg`, a detached
//! binary-mode signature that hosts check with
//! `gpg --verify SHA256SUMS.gpg SHA256SUMS`. Signed files can be hundreds of
//! megabytes, so both directions stream the data through the hash instead of
//! reading it into memory. Signatures are v4, binary mode (type 0x00), hashed
//! with SHA-512 (what GnuPG itself picked for our existing releases), and
//! carry both the issuer fingerprint and the issuer key ID so that GnuPG 2.2
//! finds the key.

use std::io::{self, Read};

use pgp::{
    armor::{BlockType, Dearmor},
    composed::{ArmorOptions, Deserializable, DetachedSignature, SignedPublicSubKey},
    crypto::hash::HashAlgorithm,
    packet::{self, Signature, SignatureType},
    types::{KeyDetails, Password, VerifyingKey},
};
use pgp_digest::DynDigest;

use super::{
    PublicKey, SigningError, SigningKey,
    components::{self, fingerprint_hex, key_id_hex},
    error::pgp_reason,
    key::Signer,
};

/// Why a signature is refused when the first two bytes of the hash it carries differ from
/// the data's (before any public-key operation).
const HASH_PREFIX_MISMATCH: &str = "the hash of the data does not begin as the signature says";

/// The hash algorithm of the signatures we make.
const HASH: HashAlgorithm = HashAlgorithm::Sha512;

impl SigningKey {
    /// Signs `data` and returns an ASCII-armored detached signature
    /// (`-----BEGIN PGP SIGNATURE-----`) in binary mode, hashed with SHA-512.
    ///
    /// The reader is streamed, never held in memory as a whole. GnuPG checks
    /// the result with `gpg --verify <signature> <data>`.
    pub fn sign_detached<R: Read>(&self, data: R) -> Result<String, SigningError> {
        let mut data = ErrorKeepingReader::new(data);
        let signed = match self.signer {
            Signer::Primary => DetachedSignature::sign_binary_data(
                super::rng(),
                &self.key.primary_key,
                &Password::empty(),
                HASH,
                &mut data,
            ),
            Signer::Subkey(index) => {
                let subkey =
                    self.key
                        .secret_subkeys
                        .get(index)
                        .ok_or_else(|| SigningError::Sign {
                            fingerprint: self.fingerprint(),
                            reason: "the selected signing subkey is missing".to_owned(),
                        })?;
                DetachedSignature::sign_binary_data(
                    super::rng(),
                    &subkey.key,
                    &Password::empty(),
                    HASH,
                    &mut data,
                )
            }
        };
        if let Some(source) = data.error.take() {
            return Err(SigningError::ReadData { source });
        }
        let signature = signed.map_err(|e| SigningError::Sign {
            fingerprint: self.signing_fingerprint(),
            reason: pgp_reason(&e),
        })?;
        signature
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| SigningError::Serialize {
                what: "signature",
                reason: pgp_reason(&e),
            })
    }
}

impl PublicKey {
    /// Checks a detached signature over `data`.
    ///
    /// `signature` may be armored or binary (GnuPG writes both). It is
    /// accepted if it was made by the primary key or by a signing subkey of
    /// this certificate, that component is validly bound, not revoked and
    /// allowed to sign, and the streamed `data` matches. A file holding several
    /// signature packets is refused ([`SigningError::SeveralSignatures`]).
    pub fn verify_detached<R: Read>(&self, data: R, signature: &[u8]) -> Result<(), SigningError> {
        let signatures = parse_signatures(signature)?;
        let signed = self.checked_signer(&signatures)?;
        let mut data = ErrorKeepingReader::new(data);
        let verified = match signed.component {
            Component::Primary => signed.signature.verify(&self.key.primary_key, &mut data),
            Component::Subkey(sub) => signed.signature.verify(&sub.key, &mut data),
        };
        if let Some(source) = data.error.take() {
            return Err(SigningError::ReadData { source });
        }
        verified.map_err(|e| SigningError::BadSignature {
            fingerprint: signed.fingerprint,
            reason: pgp_reason(&e),
        })
    }

    /// Checks a detached signature over data that was hashed as it went by, so that
    /// checking a signature just made over a large file does not read the file again.
    ///
    /// Accepts what [`verify_detached`](Self::verify_detached) accepts, for binary-mode v4
    /// signatures made with the hash that `data` used (SHA-512, as ours are).
    pub fn verify_detached_hashed(
        &self,
        data: SignedDataHash,
        signature: &[u8],
    ) -> Result<(), SigningError> {
        let signatures = parse_signatures(signature)?;
        let signed = self.checked_signer(&signatures)?;
        let bad = |reason: String| SigningError::BadSignature {
            fingerprint: signed.fingerprint.clone(),
            reason,
        };
        let (Some(config), Some(signed_hash_value), Some(bytes)) = (
            signed.signature.config(),
            signed.signature.signed_hash_value(),
            signed.signature.signature(),
        ) else {
            return Err(bad("its format is unknown".to_owned()));
        };
        if config.version() != packet::SignatureVersion::V4
            || config.typ() != SignatureType::Binary
            || config.hash_alg != data.algorithm
        {
            return Err(bad(format!(
                "it is a {:?} {:?} signature hashed with {:?}; the data was hashed for a v4 binary signature with {:?}",
                config.version(),
                config.typ(),
                config.hash_alg,
                data.algorithm
            )));
        }
        // What rpgp's own check does after hashing the data: the signature's hashed
        // fields and trailer, then the public-key operation on the digest.
        let mut hasher = data.hasher;
        let finished = config
            .hash_signature_data(&mut hasher)
            .and_then(|len| config.trailer(len))
            .map_err(|e| bad(pgp_reason(&e)))?;
        hasher.update(&finished);
        let digest = hasher.finalize();
        if digest[..2] != signed_hash_value {
            return Err(bad(HASH_PREFIX_MISMATCH.to_owned()));
        }
        match signed.component {
            Component::Primary => self.key.primary_key.verify(config.hash_alg, &digest, bytes),
            Component::Subkey(sub) => sub.key.verify(config.hash_alg, &digest, bytes),
        }
        .map_err(|e| bad(pgp_reason(&e)))
    }

    /// The one signature of `signatures`, once it is known to be made by this certificate,
    /// a data signature, not MD5, by a component that is validly bound and allowed to sign.
    fn checked_signer<'s>(
        &'s self,
        signatures: &'s [Signature],
    ) -> Result<CheckedSigner<'s>, SigningError> {
        let signature = match signatures {
            [only] => only,
            _ => {
                return Err(SigningError::SeveralSignatures {
                    count: signatures.len(),
                    issuers: describe_issuers(signatures),
                });
            }
        };
        let component = self
            .component_for(signature)
            .ok_or_else(|| SigningError::WrongKey {
                signer: describe_issuers(signatures),
                expected: self.describe_components(),
            })?;
        match signature.typ() {
            Some(SignatureType::Binary | SignatureType::Text) => {}
            other => {
                return Err(SigningError::InvalidSignature {
                    reason: format!(
                        "it is a {other:?} signature, not a signature over data (binary or text)"
                    ),
                });
            }
        }

        if signature.hash_alg() == Some(HashAlgorithm::Md5) {
            return Err(SigningError::InvalidSignature {
                reason: "it uses the MD5 hash, which GnuPG rejects as insecure".to_owned(),
            });
        }

        let primary = &self.key.primary_key;
        let fingerprint = component.fingerprint_of(primary);
        let binding = match component {
            Component::Primary => components::primary_binding(primary, &self.key.details),
            Component::Subkey(sub) => {
                components::subkey_binding(primary, &sub.key, &sub.signatures)
            }
        }
        .map_err(|reason| SigningError::UnusableSigner {
            fingerprint: fingerprint.clone(),
            reason,
        })?;
        if !binding.can_sign {
            return Err(SigningError::UnusableSigner {
                fingerprint,
                reason: "its key flags do not allow signing".to_owned(),
            });
        }

        Ok(CheckedSigner {
            signature,
            component,
            fingerprint,
        })
    }

    /// Whether one of the signatures in `signature` (armored or binary) was made by this
    /// certificate (its primary key or a subkey), whatever data it is over.
    pub fn issued(&self, signature: &[u8]) -> Result<bool, SigningError> {
        let signatures = parse_signatures(signature)?;
        Ok(signatures
            .iter()
            .any(|sig| self.component_for(sig).is_some()))
    }

    /// The component of this certificate that issued `signature`, if any.
    fn component_for<'a>(&'a self, signature: &Signature) -> Option<Component<'a>> {
        let issued_by = |key: &dyn KeyDetails| {
            signature
                .issuer_fingerprint()
                .iter()
                .any(|fp| **fp == key.fingerprint())
                || signature
                    .issuer_key_id()
                    .iter()
                    .any(|id| **id == key.legacy_key_id())
        };
        if issued_by(&self.key.primary_key) {
            return Some(Component::Primary);
        }
        self.key
            .public_subkeys
            .iter()
            .find(|sub| issued_by(&sub.key))
            .map(Component::Subkey)
    }

    /// All fingerprints of this certificate, for error messages.
    fn describe_components(&self) -> String {
        let mut text = fingerprint_hex(&self.key.primary_key.fingerprint());
        if !self.key.public_subkeys.is_empty() {
            let subkeys: Vec<String> = self
                .key
                .public_subkeys
                .iter()
                .map(|sub| fingerprint_hex(&sub.key.fingerprint()))
                .collect();
            text.push_str(&format!(" (subkeys {})", subkeys.join(", ")));
        }
        text
    }
}

/// A signature whose signer passed every check but the one over the data.
struct CheckedSigner<'a> {
    signature: &'a Signature,
    component: Component<'a>,
    fingerprint: String,
}

/// The hash of data to be checked against one of our signatures, computed as the data goes
/// by ([`std::io::Write`]); finished by [`PublicKey::verify_detached_hashed`].
pub struct SignedDataHash {
    algorithm: HashAlgorithm,
    hasher: Box<dyn DynDigest + Send>,
}

impl SignedDataHash {
    /// A hash for checking a signature made by [`SigningKey::sign_detached`].
    pub fn for_our_signatures() -> Self {
        SignedDataHash {
            algorithm: HASH,
            hasher: HASH.new_hasher().expect("rpgp always supports SHA-512"),
        }
    }
}

impl io::Write for SignedDataHash {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A component key of a certificate that made a signature.
#[derive(Clone, Copy)]
enum Component<'a> {
    Primary,
    Subkey(&'a SignedPublicSubKey),
}

impl Component<'_> {
    fn fingerprint_of(&self, primary: &packet::PublicKey) -> String {
        match self {
            Component::Primary => fingerprint_hex(&primary.fingerprint()),
            Component::Subkey(sub) => fingerprint_hex(&sub.key.fingerprint()),
        }
    }
}

/// Parses every signature packet in armored or binary input.
fn parse_signatures(signature: &[u8]) -> Result<Vec<Signature>, SigningError> {
    let invalid = |reason: String| SigningError::InvalidSignature { reason };
    if signature.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("the signature is empty".to_owned()));
    }
    // Binary OpenPGP data starts with a packet tag byte, which has its high
    // bit set; armor starts with text.
    let binary = signature.first().is_some_and(|byte| byte & 0x80 != 0);
    let dearmored;
    let packets = if binary {
        signature
    } else {
        dearmored = dearmor_checked(signature).map_err(invalid)?;
        &dearmored[..]
    };
    let signatures = DetachedSignature::from_bytes_many(packets)
        .map_err(|e| invalid(pgp_reason(&e)))?
        .map(|sig| sig.map(|sig| sig.signature))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(pgp_reason(&e)))?;
    if signatures.is_empty() {
        return Err(invalid("it contains no signature packet".to_owned()));
    }
    Ok(signatures)
}

/// Removes the ASCII armor of a signature, checking the armor checksum.
///
/// rpgp skips the checksum by default, as RFC 9580 recommends, and its
/// opt-in check is broken in 0.21 (it never hashes the data, so every
/// checksum mismatches). But GnuPG 2.2 on the hosts rejects a signature whose
/// checksum does not match ("CRC error"), so we check it here, to never
/// accept what the hosts would reject.
fn dearmor_checked(armored: &[u8]) -> Result<Vec<u8>, String> {
    let mut dearmor = Dearmor::new(armored);
    dearmor.read_header().map_err(|e| pgp_reason(&e))?;
    if dearmor.typ != Some(BlockType::Signature) {
        let found = dearmor
            .typ
            .map_or_else(|| "unknown".to_owned(), |typ| typ.to_string());
        return Err(format!(
            "expected a \"PGP SIGNATURE\" armor block, found \"{found}\""
        ));
    }
    let mut packets = Vec::new();
    dearmor
        .read_to_end(&mut packets)
        .map_err(|e| format!("bad armor: {e}"))?;
    let (_, _, checksum, mut rest) = dearmor.into_parts();
    // A second armored block after the first would be read by gpg and its signatures
    // checked too; only one is accepted here, so nothing may follow.
    let mut after = Vec::new();
    rest.read_to_end(&mut after)
        .map_err(|e| format!("bad armor: {e}"))?;
    if !after.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "something follows the armored signature (another armor block?); a signature \
             file must hold one signature"
                .to_owned(),
        );
    }
    if let Some(expected) = checksum {
        let actual = crc24(&packets);
        if u64::from(actual) != expected {
            return Err(format!(
                "the armor checksum does not match (CRC error: expected {expected:06X}, \
                 computed {actual:06X}); the signature file was changed or damaged"
            ));
        }
    }
    Ok(packets)
}

/// The CRC-24 of OpenPGP ASCII armor (RFC 9580, section 6.1.1).
fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    const POLY: u32 = 0x0186_4CFB;
    let mut crc = INIT;
    for &byte in data {
        crc ^= u32::from(byte) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// The keys a detached signature names as its issuers: full fingerprints where it carries
/// them, key IDs otherwise (uppercase hex, as `gpg` prints them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureIssuers {
    pub fingerprints: Vec<String>,
    pub key_ids: Vec<String>,
    described: String,
}

impl SignatureIssuers {
    /// Reads the issuers of the signatures in `signature` (armored or binary).
    pub fn of(signature: &[u8]) -> Result<Self, SigningError> {
        let signatures = parse_signatures(signature)?;
        let mut fingerprints = Vec::new();
        let mut key_ids = Vec::new();
        for sig in &signatures {
            fingerprints.extend(
                sig.issuer_fingerprint()
                    .iter()
                    .map(|fp| fingerprint_hex(fp)),
            );
            key_ids.extend(sig.issuer_key_id().iter().map(|id| key_id_hex(id)));
        }
        Ok(SignatureIssuers {
            fingerprints,
            key_ids,
            described: describe_issuers(&signatures),
        })
    }

    /// Whether `key` (a fingerprint or a key ID, in any case, spaces allowed) names one of
    /// the issuers. A fingerprint and a key ID name each other when the fingerprint ends with
    /// the key ID, as v4 key IDs are the fingerprint's last 16 hex digits.
    pub fn named_by(&self, key: &str) -> bool {
        let key: String = key
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if key.is_empty() {
            return false;
        }
        self.fingerprints
            .iter()
            .any(|fp| *fp == key || (key.len() == 16 && fp.ends_with(key.as_str())))
            || self
                .key_ids
                .iter()
                .any(|id| *id == key || (key.len() == 40 && key.ends_with(id.as_str())))
    }
}

impl std::fmt::Display for SignatureIssuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.described)
    }
}

/// The issuers named in `signatures`, for error messages.
fn describe_issuers(signatures: &[Signature]) -> String {
    let issuers: Vec<String> = signatures
        .iter()
        .map(|sig| {
            if let Some(fp) = sig.issuer_fingerprint().first() {
                fingerprint_hex(fp)
            } else if let Some(id) = sig.issuer_key_id().first() {
                format!("with key ID {}", key_id_hex(id))
            } else {
                "unknown (the signature names no issuer)".to_owned()
            }
        })
        .collect();
    issuers.join(", ")
}

/// Passes reads through, remembering the first I/O error so that a failing
/// disk is reported as such rather than as a signature problem (rpgp folds
/// reader errors into its own error type).
struct ErrorKeepingReader<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R> ErrorKeepingReader<R> {
    fn new(inner: R) -> Self {
        Self { inner, error: None }
    }
}

impl<R: Read> Read for ErrorKeepingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use pgp::{
        composed::{KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder},
        ser::Serialize as _,
    };

    use super::*;
    use crate::signing::{KeyAlgorithm, test_keys::shared};

    const ALGORITHMS: [KeyAlgorithm; 2] = [KeyAlgorithm::Rsa4096, KeyAlgorithm::Ed25519];
    const DATA: &[u8] = b"ffdc107b18618da6  alloy-1.13.1-amd64.raw\n";

    fn to_binary(armored: &str) -> Vec<u8> {
        let (signature, _) = DetachedSignature::from_string(armored).expect("parsing");
        signature.to_bytes().expect("serialising")
    }

    #[test]
    fn signatures_round_trip() {
        for algorithm in ALGORITHMS {
            let key = shared(algorithm);
            let signature = key.sign_detached(DATA).expect("signing");
            assert!(
                signature.starts_with("-----BEGIN PGP SIGNATURE-----"),
                "{signature}"
            );
            let public = key.public_key();
            public
                .verify_detached(DATA, signature.as_bytes())
                .expect("armored signature verifies");
            public
                .verify_detached(DATA, &to_binary(&signature))
                .expect("binary signature verifies");
        }
    }

    fn hashed(data: &[u8]) -> SignedDataHash {
        let mut hash = SignedDataHash::for_our_signatures();
        io::Write::write_all(&mut hash, data).expect("hashing memory");
        hash
    }

    #[test]
    fn signatures_check_against_data_hashed_as_it_went_by() {
        for algorithm in ALGORITHMS {
            let key = shared(algorithm);
            let signature = key.sign_detached(DATA).expect("signing");
            let public = key.public_key();
            public
                .verify_detached_hashed(hashed(DATA), signature.as_bytes())
                .expect("armored signature verifies");
            public
                .verify_detached_hashed(hashed(DATA), &to_binary(&signature))
                .expect("binary signature verifies");

            let err = public
                .verify_detached_hashed(hashed(b"other data"), signature.as_bytes())
                .expect_err("tampered data");
            assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");
            // One byte missing at the end is other data too.
            let err = public
                .verify_detached_hashed(hashed(&DATA[..DATA.len() - 1]), signature.as_bytes())
                .expect_err("truncated data");
            assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");
        }
        let other = shared(KeyAlgorithm::Rsa4096).public_key();
        let signature = shared(KeyAlgorithm::Ed25519)
            .sign_detached(DATA)
            .expect("signing");
        let err = other
            .verify_detached_hashed(hashed(DATA), signature.as_bytes())
            .expect_err("wrong key");
        assert!(matches!(err, SigningError::WrongKey { .. }), "{err}");
    }

    #[test]
    fn a_file_with_a_second_signature_is_refused_as_gpg_would_fail_it() {
        let key = shared(KeyAlgorithm::Ed25519);
        let public = key.public_key();
        let good = key.sign_detached(DATA).expect("signing");
        let old = key
            .sign_detached(&b"an older manifest\n"[..])
            .expect("signing");
        let fingerprint = key.fingerprint();
        let several = format!(
            "the signature file holds 2 signatures (by {fingerprint}, {fingerprint}), not one; \
             gpg --verify fails if any of them does not verify, so only a single signature is \
             accepted"
        );
        let mut binary = to_binary(&good);
        binary.extend(to_binary(&old));
        let err = public.verify_detached(DATA, &binary).unwrap_err();
        assert_eq!(err.to_string(), several);
        let err = public
            .verify_detached_hashed(hashed(DATA), &binary)
            .unwrap_err();
        assert_eq!(err.to_string(), several);

        // Two armored blocks, one after the other.
        let armored = format!("{good}\n{old}");
        let err = public
            .verify_detached(DATA, armored.as_bytes())
            .unwrap_err();
        assert!(
            matches!(&err, SigningError::InvalidSignature { reason }
                if reason.starts_with("something follows the armored signature")),
            "{err}"
        );
        // Whitespace after the one block is fine.
        public
            .verify_detached(DATA, format!("{good}\n\n").as_bytes())
            .expect("one armored signature verifies");
    }

    #[test]
    fn hashed_check_refuses_a_signature_made_with_another_hash() {
        let key = shared(KeyAlgorithm::Ed25519);
        let sha256 = DetachedSignature::sign_binary_data(
            crate::signing::rng(),
            &key.key.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            DATA,
        )
        .expect("signing with SHA-256");
        let bytes = sha256.to_bytes().expect("serialising");
        key.public_key()
            .verify_detached(DATA, &bytes)
            .expect("the streaming check hashes with the signature's own hash");
        let err = key
            .public_key()
            .verify_detached_hashed(hashed(DATA), &bytes)
            .expect_err("hashed with SHA-512 in advance");
        assert!(err.to_string().contains("Sha256"), "{err}");
    }

    #[test]
    fn issuers_are_read_and_named_by_fingerprint_or_key_id() {
        let key = shared(KeyAlgorithm::Ed25519);
        let other = shared(KeyAlgorithm::Rsa4096);
        let signature = key.sign_detached(DATA).expect("signing");
        assert!(key.public_key().issued(signature.as_bytes()).unwrap());
        assert!(key.public_key().issued(&to_binary(&signature)).unwrap());
        assert!(!other.public_key().issued(signature.as_bytes()).unwrap());

        let issuers = SignatureIssuers::of(signature.as_bytes()).unwrap();
        let fingerprint = key.signing_fingerprint();
        assert_eq!(issuers.fingerprints, vec![fingerprint.clone()]);
        assert_eq!(issuers.key_ids, vec![fingerprint[24..].to_owned()]);
        assert!(issuers.named_by(&fingerprint));
        assert!(issuers.named_by(&fingerprint.to_lowercase()));
        assert!(issuers.named_by(&fingerprint[24..]));
        let spaced: Vec<String> = fingerprint
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert!(issuers.named_by(&spaced.join(" ")));
        assert!(!issuers.named_by(&other.fingerprint()));
        assert!(!issuers.named_by(""));
        assert!(issuers.to_string().contains(&fingerprint));

        let fingerprint_only = SignatureIssuers {
            fingerprints: vec![fingerprint.clone()],
            key_ids: Vec::new(),
            described: String::new(),
        };
        assert!(fingerprint_only.named_by(&fingerprint[24..]));
        assert!(!fingerprint_only.named_by(&fingerprint[..16]));

        assert!(SignatureIssuers::of(b"not a signature").is_err());
        assert!(key.public_key().issued(b"not a signature").is_err());
    }

    #[test]
    fn signatures_are_v4_binary_sha512_with_issuer() {
        let key = shared(KeyAlgorithm::Ed25519);
        let signature = key.sign_detached(DATA).expect("signing");
        let (signature, _) = DetachedSignature::from_string(&signature).expect("parsing");
        let signature = signature.signature;
        assert_eq!(signature.version(), packet::SignatureVersion::V4);
        assert_eq!(signature.typ(), Some(SignatureType::Binary));
        assert_eq!(signature.hash_alg(), Some(HashAlgorithm::Sha512));
        let issuer: Vec<String> = signature
            .issuer_fingerprint()
            .iter()
            .map(|fp| fingerprint_hex(fp))
            .collect();
        assert_eq!(issuer, vec![key.fingerprint()]);
        assert_eq!(signature.issuer_key_id().len(), 1);
    }

    #[test]
    fn empty_data_can_be_signed() {
        let key = shared(KeyAlgorithm::Ed25519);
        let signature = key.sign_detached(&b""[..]).expect("signing");
        key.public_key()
            .verify_detached(&b""[..], signature.as_bytes())
            .expect("verifies");
        let err = key
            .public_key()
            .verify_detached(&b"\n"[..], signature.as_bytes())
            .expect_err("one added byte");
        assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn tampered_data_is_rejected() {
        for algorithm in ALGORITHMS {
            let key = shared(algorithm);
            let signature = key.sign_detached(DATA).expect("signing");
            for index in [0, DATA.len() / 2, DATA.len() - 1] {
                let mut tampered = DATA.to_vec();
                tampered[index] ^= 0x01;
                let err = key
                    .public_key()
                    .verify_detached(&tampered[..], signature.as_bytes())
                    .expect_err("tampered data");
                assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");
                assert!(err.to_string().contains(&key.fingerprint()), "{err}");
            }
        }
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let key = shared(KeyAlgorithm::Ed25519);
        let signature = to_binary(&key.sign_detached(DATA).expect("signing"));
        // The last byte belongs to the EdDSA signature value itself.
        let mut tampered = signature.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        let err = key
            .public_key()
            .verify_detached(DATA, &tampered)
            .expect_err("tampered signature");
        assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn a_tampered_signature_value_fails_the_hashed_check_at_the_key() {
        for algorithm in ALGORITHMS {
            let key = shared(algorithm);
            let signature = to_binary(&key.sign_detached(DATA).expect("signing"));
            key.public_key()
                .verify_detached_hashed(hashed(DATA), &signature)
                .expect("untouched");
            // The last byte belongs to the signature value (the EdDSA or RSA number): the
            // data's hash and its first two bytes still match, so only the public-key
            // operation can refuse it.
            let mut tampered = signature.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 0x01;
            let err = key
                .public_key()
                .verify_detached_hashed(hashed(DATA), &tampered)
                .expect_err("tampered signature value");
            assert!(
                matches!(err, SigningError::BadSignature { .. }),
                "{algorithm:?}: {err}"
            );
            assert!(
                !err.to_string().contains(HASH_PREFIX_MISMATCH),
                "{algorithm:?}: refused before the key check: {err}"
            );
        }
    }

    #[test]
    fn wrong_key_is_rejected_naming_both_keys() {
        let signer = shared(KeyAlgorithm::Ed25519);
        let other = SigningKey::generate(KeyAlgorithm::Ed25519, "Other <other@example.org>")
            .expect("generating");
        let signature = signer.sign_detached(DATA).expect("signing");
        let err = other
            .public_key()
            .verify_detached(DATA, signature.as_bytes())
            .expect_err("wrong key");
        assert!(matches!(err, SigningError::WrongKey { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&signer.fingerprint()), "{message}");
        assert!(message.contains(&other.fingerprint()), "{message}");

        // Different algorithms, too.
        let rsa = shared(KeyAlgorithm::Rsa4096);
        let err = rsa
            .public_key()
            .verify_detached(DATA, signature.as_bytes())
            .expect_err("wrong key");
        assert!(matches!(err, SigningError::WrongKey { .. }), "{err}");
    }

    #[test]
    fn garbage_signatures_are_rejected() {
        let public = shared(KeyAlgorithm::Ed25519).public_key();
        let armored_key = public.to_armored().expect("armoring");
        let inputs: [&[u8]; 4] = [
            b"",
            b"not a signature",
            b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
            armored_key.as_bytes(),
        ];
        for input in inputs {
            let err = public
                .verify_detached(DATA, input)
                .expect_err("garbage signature");
            assert!(
                matches!(err, SigningError::InvalidSignature { .. }),
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn signing_subkey_signs_and_verifies() {
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(false)
            .primary_user_id("Subkey <subkey@example.org>".to_owned())
            .subkey(
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::Ed25519Legacy)
                    .can_sign(true)
                    .build()
                    .expect("subkey parameters"),
            );
        let generated: SignedSecretKey = params
            .build()
            .expect("key parameters")
            .generate(crate::signing::rng())
            .expect("key generation");
        let key = SigningKey::from_armored(
            &generated
                .to_armored_string(ArmorOptions::default())
                .expect("armoring"),
        )
        .expect("loading");
        assert_ne!(key.signing_fingerprint(), key.fingerprint());

        let signature = key.sign_detached(DATA).expect("signing");
        let (parsed, _) = DetachedSignature::from_string(&signature).expect("parsing");
        let issuer: Vec<String> = parsed
            .signature
            .issuer_fingerprint()
            .iter()
            .map(|fp| fingerprint_hex(fp))
            .collect();
        assert_eq!(issuer, vec![key.signing_fingerprint()]);

        key.public_key()
            .verify_detached(DATA, signature.as_bytes())
            .expect("subkey signature verifies");
        key.public_key()
            .verify_detached_hashed(hashed(DATA), signature.as_bytes())
            .expect("subkey signature verifies against the hashed data");
        let err = key
            .public_key()
            .verify_detached(&b"other data"[..], signature.as_bytes())
            .expect_err("tampered data");
        assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");

        // The primary key's flags forbid signing: a signature it made anyway
        // is not accepted.
        let by_primary = DetachedSignature::sign_binary_data(
            crate::signing::rng(),
            &key.key.primary_key,
            &Password::empty(),
            HASH,
            DATA,
        )
        .expect("signing with the primary key");
        let err = key
            .public_key()
            .verify_detached(DATA, &by_primary.to_bytes().expect("serialising"))
            .expect_err("primary may not sign");
        assert!(matches!(err, SigningError::UnusableSigner { .. }), "{err}");
    }

    #[test]
    fn armor_checksum_is_checked_like_gnupg() {
        assert_eq!(crc24(b""), 0x00B7_04CE);
        let key = shared(KeyAlgorithm::Ed25519);
        let public = key.public_key();
        let signature = key.sign_detached(DATA).expect("signing");
        let checksum_line = signature
            .lines()
            .find(|line| line.starts_with('=') && line.len() == 5)
            .expect("rpgp writes an armor checksum");

        // A damaged checksum is rejected, as GnuPG 2.2 does ("CRC error").
        let damaged_line = if checksum_line == "=AAAA" {
            "=AAAB"
        } else {
            "=AAAA"
        };
        let damaged = signature.replace(checksum_line, damaged_line);
        let err = public
            .verify_detached(DATA, damaged.as_bytes())
            .expect_err("bad checksum");
        assert!(
            matches!(err, SigningError::InvalidSignature { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("CRC error"), "{err}");

        // The checksum is optional.
        let without = signature.replace(&format!("{checksum_line}\n"), "");
        assert_ne!(without, signature);
        public
            .verify_detached(DATA, without.as_bytes())
            .expect("no checksum is fine");
    }

    /// A reader that yields some bytes, then fails.
    struct FailingReader(usize);

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn read_errors_are_reported_as_such() {
        let key = shared(KeyAlgorithm::Ed25519);
        let err = key
            .sign_detached(FailingReader(100_000))
            .expect_err("read error while signing");
        assert!(matches!(err, SigningError::ReadData { .. }), "{err}");
        assert!(err.to_string().contains("disk on fire"), "{err}");

        let signature = key.sign_detached(DATA).expect("signing");
        let err = key
            .public_key()
            .verify_detached(FailingReader(10), signature.as_bytes())
            .expect_err("read error while verifying");
        assert!(matches!(err, SigningError::ReadData { .. }), "{err}");
    }
}
