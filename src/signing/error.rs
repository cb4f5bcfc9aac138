//! The error type of the signing module.
//!
//! It exists as its own file because both key handling and signature
//! handling report through it, and because its messages are what an operator
//! reads when a release fails to sign: each says what failed and, where there
//! is one, what to do about it. No variant ever carries secret key material;
//! errors coming from rpgp are reduced to their display text, which names
//! packets and algorithms but not key bytes.

use std::path::PathBuf;

/// Everything that can go wrong while loading keys, signing, or verifying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// A key algorithm name was not recognised.
    #[error("unknown key algorithm {0:?}: expected \"rsa4096\" or \"ed25519\"")]
    UnknownAlgorithm(String),

    /// rpgp could not generate a key.
    #[error("could not generate a new {algorithm} key: {reason}")]
    KeyGeneration {
        /// The algorithm that was requested (as its `Display` name).
        algorithm: String,
        /// rpgp's explanation.
        reason: String,
    },

    /// A key file could not be read.
    #[error("could not read key file {}: {source}", path.display())]
    ReadKeyFile {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A key file could be read but not parsed.
    #[error("key file {}: {source}", path.display())]
    KeyFile {
        /// The file that was asked for.
        path: PathBuf,
        /// What was wrong with its contents.
        #[source]
        source: Box<SigningError>,
    },

    /// `GPG_PRIVATE_KEY` (or another base64-wrapped key) is not valid base64.
    #[error(
        "the private key is not valid base64 ({reason}); GPG_PRIVATE_KEY must hold the output of \
         `gpg --export-secret-keys --armor KEYID | base64 -w0`"
    )]
    InvalidBase64 {
        /// Where decoding failed (a position, never the offending bytes).
        reason: String,
    },

    /// A public key was given where a secret key is needed.
    #[error(
        "expected an OpenPGP secret key, but this is a public key (\"PGP PUBLIC KEY BLOCK\"); \
         export the secret key with `gpg --export-secret-keys --armor KEYID`"
    )]
    PublicKeyGivenForSecret,

    /// A secret key was given where a public key is expected.
    #[error(
        "expected an OpenPGP public key, but this is a secret key (\"PGP PRIVATE KEY BLOCK\"); \
         export the public half with `gpg --export --armor KEYID` and never publish the secret key"
    )]
    SecretKeyGivenForPublic,

    /// The input is not the kind of OpenPGP data that was expected.
    #[error("could not parse the {what}: {reason}; {hint}")]
    Parse {
        /// What was being parsed, e.g. "secret key".
        what: &'static str,
        /// Why it failed.
        reason: String,
        /// Which input was expected.
        hint: &'static str,
    },

    /// A GnuPG keybox (`pubring.kbx`) was given where an OpenPGP keyring is expected.
    #[error(
        "key file {}: this is a GnuPG keybox (pubring.kbx), which only GnuPG reads; export the \
         key as an OpenPGP keyring with `gpg --export KEYID > keyring.gpg` and give that file",
        path.display()
    )]
    KeyboxGiven {
        /// The file that was given.
        path: PathBuf,
    },

    /// A keyring holds no public key.
    #[error("key file {}: the keyring holds no public key", path.display())]
    EmptyKeyring {
        /// The file that was given.
        path: PathBuf,
    },

    /// The input holds more than one key where exactly one is expected.
    #[error(
        "the {what} holds {count} keys, expected exactly one; export a single key by its \
         fingerprint"
    )]
    MultipleKeys {
        /// What was being parsed.
        what: &'static str,
        /// How many keys were found.
        count: usize,
    },

    /// The secret key needed for signing is locked with a passphrase.
    #[error(
        "the secret key {fingerprint} is protected by a passphrase, which is not supported; \
         export it without a passphrase (e.g. `gpg --passwd KEYID` to set an empty one in a \
         throw-away GNUPGHOME, then `gpg --export-secret-keys --armor KEYID`)"
    )]
    PassphraseProtected {
        /// Fingerprint of the locked (sub)key.
        fingerprint: String,
    },

    /// The key holds only a GnuPG stub instead of secret key material.
    #[error(
        "the secret key {fingerprint} has no secret key material in this export (a GnuPG stub: \
         the key is offline or on a smartcard); export a key whose signing key is present"
    )]
    SecretMaterialMissing {
        /// Fingerprint of the stubbed (sub)key.
        fingerprint: String,
    },

    /// No component of the key may make data signatures.
    #[error("key {fingerprint} cannot make data signatures: {reason}")]
    NoSigningKey {
        /// Fingerprint of the primary key.
        fingerprint: String,
        /// Why none of its component keys qualifies.
        reason: String,
    },

    /// Reading the data to sign or verify failed.
    #[error("could not read the data: {source}")]
    ReadData {
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// rpgp failed while making a signature.
    #[error("signing with key {fingerprint} failed: {reason}")]
    Sign {
        /// Fingerprint of the (sub)key that was signing.
        fingerprint: String,
        /// rpgp's explanation.
        reason: String,
    },

    /// The signature is by the expected key but does not match the data.
    #[error(
        "BAD signature: the data does not match the signature made by key {fingerprint} \
         (the data or the signature was changed, or they do not belong together): {reason}"
    )]
    BadSignature {
        /// Fingerprint of the (sub)key that made the signature.
        fingerprint: String,
        /// rpgp's explanation.
        reason: String,
    },

    /// The signature was made by a key other than the one we verify with.
    #[error(
        "the signature was made by key {signer}, not by the expected key {expected}; \
         verify with the matching public key"
    )]
    WrongKey {
        /// Issuer key ID(s) and/or fingerprint(s) found in the signature.
        signer: String,
        /// Fingerprints of the primary key and its subkeys that were acceptable.
        expected: String,
    },

    /// The signature is by a component key that may not make data signatures.
    #[error(
        "the signature was made by key {fingerprint}, which is not valid for signing: {reason}"
    )]
    UnusableSigner {
        /// Fingerprint of the (sub)key that made the signature.
        fingerprint: String,
        /// Why it is not acceptable (not bound, revoked, not signing-capable...).
        reason: String,
    },

    /// The file holds more than one signature packet. `gpg --verify` on a host checks
    /// every one and fails if any does not verify (an old signature over other data, one by
    /// an unknown key), so checking only one could accept what hosts refuse; a published
    /// signature is always a single packet.
    #[error(
        "the signature file holds {count} signatures (by {issuers}), not one; gpg --verify \
         fails if any of them does not verify, so only a single signature is accepted"
    )]
    SeveralSignatures {
        /// How many signature packets the file holds.
        count: usize,
        /// Their issuers, in file order.
        issuers: String,
    },

    /// The signature data is malformed or of an unsupported kind.
    #[error("invalid signature: {reason}")]
    InvalidSignature {
        /// What is wrong with it.
        reason: String,
    },

    /// Serialising a key or signature failed.
    #[error("could not write the {what}: {reason}")]
    Serialize {
        /// What was being written.
        what: &'static str,
        /// rpgp's explanation.
        reason: String,
    },
}

/// Turns an rpgp error into a one-line reason for our messages.
///
/// rpgp's texts are precise but sometimes cryptic or multi-line (failed
/// assertions print both sides); the common cases get plain words.
pub(super) fn pgp_reason(error: &pgp::errors::Error) -> String {
    let text = error.to_string();
    if text.contains("signed hash value") {
        return "the hash of the data differs from the signed hash".to_owned();
    }
    if text.contains("armor header") {
        return "the input is neither ASCII-armored nor binary OpenPGP data".to_owned();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
