//! GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// True when `header` is a valid signature of `body` by any of `secrets`. Comparisons are
/// constant-time, so a forger learns nothing from timing.
pub fn signature_is_valid(secrets: &[Secret], body: &[u8], header: &str) -> bool {
    let mut check = SignatureCheck::new(secrets);
    check.update(body);
    check.matches(header)
}

/// True when `header` has the shape of GitHub's signature, `sha256=` and 64 hex digits:
/// one that does not can be refused before its body is read.
pub fn is_well_formed(header: &str) -> bool {
    header
        .trim()
        .strip_prefix("sha256=")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The HMACs of a body as it arrives, one per configured secret, all fed the same bytes in
/// one pass: a body is checked without being held whole, and without being read once per
/// secret.
#[derive(Clone)]
pub struct SignatureCheck {
    macs: Vec<Hmac<Sha256>>,
}

impl SignatureCheck {
    /// A check by each of `secrets` but the empty ones: anyone can sign with an empty key.
    pub fn new(secrets: &[Secret]) -> Self {
        SignatureCheck {
            macs: secrets
                .iter()
                .filter(|secret| !secret.expose().is_empty())
                .map(|secret| {
                    Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                        .expect("HMAC takes keys of any length")
                })
                .collect(),
        }
    }

    /// True when no secret can verify anything.
    pub fn has_no_secret(&self) -> bool {
        self.macs.is_empty()
    }

    /// Feeds the next bytes of the body to every secret's HMAC.
    pub fn update(&mut self, chunk: &[u8]) {
        for mac in &mut self.macs {
            mac.update(chunk);
        }
    }

    /// True when `header` is the signature of the bytes fed so far by any of the secrets;
    /// every secret is compared, in constant time.
    pub fn matches(self, header: &str) -> bool {
        let Some(hex_signature) = header.trim().strip_prefix("sha256=") else {
            return false;
        };
        let Ok(signature) = hex::decode(hex_signature) else {
            return false;
        };
        self.macs.into_iter().fold(false, |matched, mac| {
            mac.verify_slice(&signature).is_ok() | matched
        })
    }
}

/// The header value for `body` signed with `secret` (what GitHub sends).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_vector() {
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign("It's a Secret to Everybody", b"Hello, World!"), header);
        let secrets = [Secret::new("It's a Secret to Everybody".into())];
        assert!(signature_is_valid(&secrets, b"Hello, World!", header));
        assert!(!signature_is_valid(&secrets, b"Hello, World?", header));
    }

    #[test]
    fn any_configured_secret_will_do_and_nothing_else() {
        let secrets = [Secret::new("old".into()), Secret::new("new".into())];
        assert!(signature_is_valid(&secrets, b"{}", &sign("new", b"{}")));
        assert!(signature_is_valid(&secrets, b"{}", &sign("old", b"{}")));
        assert!(!signature_is_valid(&secrets, b"{}", &sign("other", b"{}")));
        assert!(!signature_is_valid(&[], b"{}", &sign("old", b"{}")));
        for header in ["", "sha256=", "sha1=abcd", "sha256=zz", "757107ea"] {
            assert!(!signature_is_valid(&secrets, b"{}", header), "{header:?}");
        }
    }

    #[test]
    fn only_sha256_and_64_hex_digits_are_well_formed() {
        assert!(is_well_formed(&sign("any", b"{}")));
        assert!(is_well_formed(
            &sign("any", b"{}")
                .to_uppercase()
                .replace("SHA256", "sha256")
        ));
        let too_long = format!("{}0", sign("any", b"{}"));
        for header in [
            "",
            "sha256=",
            "sha1=abcd",
            "sha256=zz",
            "757107ea",
            &too_long,
        ] {
            assert!(!is_well_formed(header), "{header:?}");
        }
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let secrets = [Secret::new(String::new()), Secret::new("real".into())];
        assert!(!signature_is_valid(&secrets, b"{}", &sign("", b"{}")));
        assert!(signature_is_valid(&secrets, b"{}", &sign("real", b"{}")));
        assert!(SignatureCheck::new(&[Secret::new(String::new())]).has_no_secret());
        assert!(!SignatureCheck::new(&secrets).has_no_secret());
    }

    #[test]
    fn a_body_fed_in_pieces_checks_as_the_whole() {
        let secrets = [Secret::new("old".into()), Secret::new("new".into())];
        let body = b"{\"zen\":\"Design for failure.\"}";
        let mut check = SignatureCheck::new(&secrets);
        for piece in body.chunks(5) {
            check.update(piece);
        }
        assert!(check.clone().matches(&sign("new", body)));
        assert!(check.clone().matches(&sign("old", body)));
        assert!(!check.matches(&sign("new", b"{}")));
    }
}
