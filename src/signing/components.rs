//! Which component keys of an OpenPGP certificate may make data signatures.
//!
//! A certificate is a primary key plus subkeys, tied together by
//! self-signatures. Whether a component may sign data is not a property of
//! the key packet but of its newest valid binding: the key flags, revocations
//! and expiry it carries, and, for a signing subkey, the embedded back
//! signature proving the subkey agrees to belong to the primary. GnuPG applies
//! these rules both when choosing a key to sign with and when checking a
//! signature, so signing and verifying here share this one implementation.

use pgp::{
    composed::SignedKeyDetails,
    packet::{self, Signature, SignatureType, SubpacketData},
    types::{Fingerprint, KeyDetails, KeyId, Tag, Timestamp},
};

/// Uppercase hex of a fingerprint, as `gpg --list-keys` prints it.
pub(super) fn fingerprint_hex(fingerprint: &Fingerprint) -> String {
    upper_hex(fingerprint.as_bytes())
}

/// Uppercase hex of a key ID, as gpg prints it in `using RSA key ...`.
pub(super) fn key_id_hex(key_id: &KeyId) -> String {
    upper_hex(key_id.as_ref())
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// What the newest valid binding says about a component key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Binding {
    /// The binding allows data signatures (key flag "S", or no key flags at
    /// all on a signing-capable algorithm, as in keys older than RFC 4880).
    pub can_sign: bool,
    /// Seconds since the epoch at which the key expires, if it does.
    pub expires_at: Option<u64>,
}

impl Binding {
    /// True if the key has expired by `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at
            .is_some_and(|at| at <= u64::from(now.as_secs()))
    }

    /// Explains why this binding does not allow signing now, if it does not.
    pub fn signing_problem(&self, now: Timestamp) -> Option<String> {
        if !self.can_sign {
            Some("its key flags do not allow signing".to_owned())
        } else if self.is_expired(now) {
            Some(format!(
                "it expired at {} (seconds since the epoch)",
                self.expires_at.unwrap_or_default()
            ))
        } else {
            None
        }
    }
}

/// Evaluates the primary key's self-signatures.
///
/// Returns the binding from its newest valid self-signature (a certification
/// of one of its user IDs, or a direct-key signature), or the reason the
/// primary key is unusable (revoked, or no valid self-signature at all).
pub(super) fn primary_binding(
    primary: &packet::PublicKey,
    details: &SignedKeyDetails,
) -> Result<Binding, String> {
    if details
        .revocation_signatures
        .iter()
        .any(|sig| sig.verify_key(primary).is_ok())
    {
        return Err("the key has been revoked".to_owned());
    }

    let direct = details
        .direct_signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::Key))
        .filter(|sig| sig.verify_key(primary).is_ok());
    let certifications = details.users.iter().flat_map(|user| {
        user.signatures
            .iter()
            .filter(|sig| sig.typ() != Some(SignatureType::CertRevocation))
            .filter(move |sig| {
                sig.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
            })
    });

    let newest = direct
        .chain(certifications)
        .max_by_key(|sig| sig.created().map(Timestamp::as_secs).unwrap_or_default())
        .ok_or_else(|| "the key has no valid self-signature".to_owned())?;

    Ok(binding_from(
        newest,
        primary.algorithm().can_sign(),
        primary.created_at(),
    ))
}

/// Evaluates a subkey's binding signatures (made by `primary`).
///
/// Returns the binding from its newest valid subkey binding signature, or the
/// reason the subkey is unusable for signing: revoked, not bound, or flagged
/// for signing without the required embedded back signature.
pub(super) fn subkey_binding(
    primary: &packet::PublicKey,
    subkey: &packet::PublicSubkey,
    signatures: &[Signature],
) -> Result<Binding, String> {
    let valid = |sig: &&Signature| sig.verify_subkey_binding(primary, subkey).is_ok();

    if signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation))
        .any(|sig| valid(&sig))
    {
        return Err("the subkey has been revoked".to_owned());
    }

    let newest = signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
        .filter(valid)
        .max_by_key(|sig| sig.created().map(Timestamp::as_secs).unwrap_or_default())
        .ok_or_else(|| "the subkey has no valid binding signature".to_owned())?;

    let binding = binding_from(newest, false, subkey.created_at());
    if binding.can_sign {
        let back_signed = newest
            .embedded_signature()
            .is_some_and(|back| back.verify_primary_key_binding(subkey, primary).is_ok());
        if !back_signed {
            return Err(
                "the subkey is flagged for signing but lacks a valid back signature \
                 (cross-certification)"
                    .to_owned(),
            );
        }
    }
    Ok(binding)
}

/// Reads key flags and expiry from a (verified) binding signature.
///
/// `sign_without_flags` is what to assume when the signature carries no key
/// flags subpacket at all.
fn binding_from(sig: &Signature, sign_without_flags: bool, created: Timestamp) -> Binding {
    let has_flags = sig.config().is_some_and(|config| {
        config
            .hashed_subpackets()
            .any(|sp| matches!(sp.data, SubpacketData::KeyFlags(_)))
    });
    let can_sign = if has_flags {
        sig.key_flags().sign()
    } else {
        sign_without_flags
    };
    let expires_at = sig
        .key_expiration_time()
        .map(|d| d.as_secs())
        .filter(|&secs| secs != 0)
        .map(|secs| u64::from(created.as_secs()) + u64::from(secs));
    Binding {
        can_sign,
        expires_at,
    }
}
