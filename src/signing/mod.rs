//! OpenPGP signing of release artifacts.
//!
//! Hosts (Flatcar, systemd-sysupdate with GnuPG 2.2) check every published
//! `SHA256SUMS` manifest against a detached signature, using a keyring made
//! from our public key. This module produces those signatures and checks
//! them again before publishing, without shelling out to `gpg`:
//!
//! - [`key`]: loading, generating and exporting OpenPGP keys ([`SigningKey`],
//!   [`PublicKey`], [`KeyAlgorithm`]), including choosing which component
//!   key (primary or subkey) is allowed to make data signatures.
//! - [`detached`]: making and checking detached signatures over streamed data.
//! - [`error`]: the single error type [`SigningError`] shared by both.
//! - [`keyring`]: the keys a signature is checked with ([`Keyring`]): one armored public
//!   key, or a binary keyring of several as `gpg --export` writes it.
//! - [`key_source`]: where the key comes from (a file, or `GPG_PRIVATE_KEY`).
//!
//! Everything here produces v4 keys and v4 signatures, which is what GnuPG 2.2
//! understands; Ed25519 keys use the legacy EdDSA form (public-key algorithm 22).

mod components;
pub mod detached;
pub mod error;
pub mod key;
pub mod key_source;
pub mod keyring;

pub use error::SigningError;
pub use key::{KeyAlgorithm, PublicKey, SigningKey};
pub use keyring::Keyring;

/// A cryptographically secure random number generator of the `rand` 0.8
/// family, which is the one rpgp 0.21 is written against (our own `rand`
/// dependency is 0.9, whose traits rpgp does not accept).
fn rng() -> rand_08::rngs::ThreadRng {
    rand_08::thread_rng()
}

/// Keys shared by the unit tests: RSA 4096 generation is slow in debug
/// builds, so each algorithm is generated once per test binary.
#[cfg(test)]
pub(crate) mod test_keys {
    use std::sync::OnceLock;

    use super::{KeyAlgorithm, SigningKey};

    /// The shared key of `algorithm`, user ID "Unit Test <unit@example.org>".
    pub(crate) fn shared(algorithm: KeyAlgorithm) -> &'static SigningKey {
        static RSA: OnceLock<SigningKey> = OnceLock::new();
        static ED25519: OnceLock<SigningKey> = OnceLock::new();
        let cell = match algorithm {
            KeyAlgorithm::Rsa4096 => &RSA,
            KeyAlgorithm::Ed25519 => &ED25519,
        };
        cell.get_or_init(|| {
            SigningKey::generate(algorithm, "Unit Test <unit@example.org>")
                .expect("generating a test key")
        })
    }
}
