//! The GitHub App's own credential: a short-lived JWT signed with the App's private key,
//! which GitHub exchanges for installation tokens.
//!
//! See GitHub's "Generating a JSON Web Token (JWT) for a GitHub App": RS256, `iss` the App
//! id, `iat` and `exp` in Unix seconds, `exp` at most ten minutes after `iat`.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// How far back `iat` is set, in seconds: GitHub refuses a token issued "in the future", and
/// this server's clock may run ahead of GitHub's.
const ISSUED_BEFORE_SECS: u64 = 60;

/// How long a token is valid after `now`, in seconds. GitHub refuses an `exp` more than ten
/// minutes after `iat`; with `iat` a minute back, nine minutes keeps `exp - iat` at exactly
/// ten minutes, and a token is used within seconds of being made.
const EXPIRES_AFTER_SECS: u64 = 540;

/// A GitHub App's id and private key, ready to sign the App's JWTs.
///
/// `Debug` shows the App id only.
#[derive(Clone)]
pub struct AppKey {
    app_id: u64,
    key: EncodingKey,
}

/// Why a private key was not accepted.
///
/// The message never contains any of the text that was given as the key, so it is safe to
/// log and to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the GitHub App private key (PRIVATE_KEY, or the file PRIVATE_KEY_PATH names) is not an \
     RSA private key in PEM form ({reason}); use the .pem file GitHub generated for the App"
)]
pub struct AppKeyError {
    reason: &'static str,
}

impl AppKeyError {
    /// What is wrong with the key, in a few words (no key material).
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// The claims GitHub reads from an App JWT.
#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

impl AppKey {
    /// Reads the App's RSA private key from PEM text: PKCS#1 (`BEGIN RSA PRIVATE KEY`, what
    /// GitHub hands out) or PKCS#8 (`BEGIN PRIVATE KEY`, unencrypted).
    ///
    /// The key is tried out by signing a token here, so that a key that parses but cannot
    /// sign (a public key under a private key's label, a truncated key, an unsupported size)
    /// is refused at start-up rather than on the first request, and [`AppKey::jwt`] cannot
    /// fail.
    pub fn from_pem(app_id: u64, pem: &str) -> Result<AppKey, AppKeyError> {
        let refuse = |reason| Err(AppKeyError { reason });
        let pem = pem.trim();
        if pem.is_empty() {
            return refuse("it is empty");
        }
        // The label is looked at first to give a useful reason. jsonwebtoken's own errors are
        // never passed on, so that nothing it might quote from the input can be shown.
        match first_pem_label(pem) {
            None => return refuse("no PEM BEGIN line was found"),
            Some("RSA PRIVATE KEY" | "PRIVATE KEY") => {}
            Some("ENCRYPTED PRIVATE KEY") => {
                return refuse("it is encrypted with a passphrase; an unencrypted key is needed");
            }
            Some(label) if label.ends_with("PUBLIC KEY") || label == "CERTIFICATE" => {
                return refuse("it is a public key or certificate; the private key is needed");
            }
            Some(_) => return refuse("it is some other kind of key, not an RSA private key"),
        }
        let Ok(key) = EncodingKey::from_rsa_pem(pem.as_bytes()) else {
            return refuse("the PEM data is damaged, or the key inside is not RSA");
        };
        let app_key = AppKey { app_id, key };
        if app_key.sign(0).is_err() {
            return refuse(
                "the key cannot sign: it is damaged, or not a private key of 2048 to 8192 bits",
            );
        }
        Ok(app_key)
    }

    /// The App's id, as given to [`AppKey::from_pem`].
    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// A JWT for the App, signed with RS256: issued a minute before `now_unix` (Unix
    /// seconds) to allow for clock skew, expiring nine minutes after it, issued by the App id.
    pub fn jwt(&self, now_unix: u64) -> String {
        // Signing only depends on the key (checked by signing in `from_pem`) and on claims
        // that always serialize, so it cannot fail here.
        self.sign(now_unix)
            .expect("an App key that signed in from_pem signs again")
    }

    fn sign(&self, now_unix: u64) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            iat: now_unix.saturating_sub(ISSUED_BEFORE_SECS),
            exp: now_unix.saturating_add(EXPIRES_AFTER_SECS),
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppKey")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

/// The label of the first `-----BEGIN <label>-----` line, if there is one.
fn first_pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &pem[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    const PKCS1_PEM: &str = include_str!("../../tests/fixtures/app/test-app-key.pem");
    const PUBLIC_PEM: &str = include_str!("../../tests/fixtures/app/test-app-key.pub.pem");
    const NOW: u64 = 1_700_000_000;

    #[derive(Debug, Deserialize, PartialEq, Eq)]
    struct DecodedClaims {
        iat: u64,
        exp: u64,
        iss: String,
    }

    /// Checks the signature with the public key and returns the claims; times are not
    /// checked against the clock (the tests use a fixed `now`).
    fn decode(token: &str) -> DecodedClaims {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iat", "exp", "iss"]);
        let key = DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).unwrap();
        jsonwebtoken::decode::<DecodedClaims>(token, &key, &validation)
            .unwrap()
            .claims
    }

    /// The PKCS#8 form of the test key, made in-process as `openssl pkcs8 -topk8 -nocrypt`
    /// makes it: the PKCS#1 DER wrapped in
    /// `SEQUENCE { INTEGER 0, SEQUENCE { OID rsaEncryption, NULL }, OCTET STRING pkcs1 }`.
    /// (When this was written, the result was byte-identical to openssl's output; building it
    /// here avoids both a fixture file and a dependency.)
    fn pkcs8_pem() -> String {
        fn der(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            let len = content.len();
            if len < 0x80 {
                out.push(len as u8);
            } else {
                let bytes: Vec<u8> = len
                    .to_be_bytes()
                    .into_iter()
                    .skip_while(|b| *b == 0)
                    .collect();
                out.push(0x80 | bytes.len() as u8);
                out.extend(bytes);
            }
            out.extend_from_slice(content);
            out
        }
        let body: String = PKCS1_PEM
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let pkcs1 = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let rsa_encryption_oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        let algorithm = [der(0x06, &rsa_encryption_oid), der(0x05, &[])].concat();
        let info = [der(0x02, &[0]), der(0x30, &algorithm), der(0x04, &pkcs1)].concat();
        let encoded = base64::engine::general_purpose::STANDARD.encode(der(0x30, &info));
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// The base64 body of a PEM text, without line breaks.
    fn pem_body(pem: &str) -> String {
        pem.lines()
            .filter(|line| !line.starts_with("-----"))
            .collect()
    }

    /// Asserts that no 12-character piece of `input` (nor of its PEM body joined up) appears
    /// in `message`.
    fn assert_no_key_text(input: &str, message: &str) {
        let window = 12;
        for text in [input.to_owned(), pem_body(input)] {
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.windows(window) {
                let piece: String = piece.iter().collect();
                assert!(
                    !message.contains(&piece),
                    "{message:?} contains {piece:?} of the input"
                );
            }
        }
        for line in input.lines().map(str::trim).filter(|l| l.len() >= 4) {
            assert!(!message.contains(line), "{message:?} contains {line:?}");
        }
    }

    fn refused(pem: &str) -> AppKeyError {
        AppKey::from_pem(1, pem).unwrap_err()
    }

    #[test]
    fn signs_rs256_with_the_expected_claims() {
        let key = AppKey::from_pem(123_456, PKCS1_PEM).unwrap();
        assert_eq!(key.app_id(), 123_456);
        let token = key.jwt(NOW);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(
            decode(&token),
            DecodedClaims {
                iat: NOW - 60,
                exp: NOW + 540,
                iss: "123456".into()
            }
        );
    }

    #[test]
    fn a_fresh_token_passes_a_clock_checked_validation() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = AppKey::from_pem(42, PKCS1_PEM).unwrap().jwt(now);
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.set_issuer(&["42"]);
        validation.set_required_spec_claims(&["iat", "exp", "iss"]);
        let key = DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).unwrap();
        let claims = jsonwebtoken::decode::<DecodedClaims>(&token, &key, &validation)
            .unwrap()
            .claims;
        // GitHub's limit: no more than ten minutes between iat and exp.
        assert!(claims.exp - claims.iat <= 600);
        assert!(claims.iat < now && now < claims.exp);
    }

    #[test]
    fn a_tampered_token_does_not_verify() {
        let token = AppKey::from_pem(7, PKCS1_PEM).unwrap().jwt(NOW);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged = serde_json::json!({ "iat": NOW - 60, "exp": NOW + 540, "iss": "8" });
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        let key = DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).unwrap();
        assert!(
            jsonwebtoken::decode::<DecodedClaims>(&parts.join("."), &key, &validation).is_err()
        );
    }

    #[test]
    fn early_and_late_clocks_saturate() {
        let key = AppKey::from_pem(1, PKCS1_PEM).unwrap();
        let early = decode(&key.jwt(10));
        assert_eq!((early.iat, early.exp), (0, 550));
        let late = decode(&key.jwt(u64::MAX - 5));
        assert_eq!((late.iat, late.exp), (u64::MAX - 65, u64::MAX));
    }

    #[test]
    fn the_issuer_is_the_app_id_in_decimal() {
        let key = AppKey::from_pem(u64::MAX, PKCS1_PEM).unwrap();
        assert_eq!(decode(&key.jwt(NOW)).iss, u64::MAX.to_string());
    }

    #[test]
    fn accepts_pkcs8() {
        let pkcs8 = pkcs8_pem();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let token = AppKey::from_pem(99, &pkcs8).unwrap().jwt(NOW);
        assert_eq!(decode(&token).iss, "99");
        // The same key in both forms: PKCS#1 v1.5 signatures are deterministic.
        assert_eq!(token, AppKey::from_pem(99, PKCS1_PEM).unwrap().jwt(NOW));
    }

    #[test]
    fn accepts_surrounding_whitespace_and_crlf() {
        let padded = format!("\n  {}\n\n", PKCS1_PEM.trim());
        assert!(AppKey::from_pem(1, &padded).is_ok());
        let crlf = PKCS1_PEM.replace('\n', "\r\n");
        assert!(AppKey::from_pem(1, &crlf).is_ok());
    }

    #[test]
    fn debug_shows_the_app_id_only() {
        let key = AppKey::from_pem(123, PKCS1_PEM).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "AppKey { app_id: 123, .. }");
        assert_no_key_text(PKCS1_PEM, &format!("{key:#?}"));
    }

    #[test]
    fn refuses_garbage_without_quoting_it() {
        let garbage = "zq8Xv3KpLmN0wR7tYb2HjF5sD9gA1cE4uI6oP";
        let error = refused(garbage);
        assert_eq!(error.reason(), "no PEM BEGIN line was found");
        assert_no_key_text(garbage, &error.to_string());
    }

    #[test]
    fn refuses_an_empty_key() {
        for empty in ["", "  \n\t\n"] {
            let error = refused(empty);
            assert_eq!(error.reason(), "it is empty");
            assert!(error.to_string().contains("PRIVATE_KEY"), "{error}");
        }
    }

    #[test]
    fn refuses_the_public_key_without_quoting_it() {
        let error = refused(PUBLIC_PEM);
        assert!(error.reason().contains("public key"), "{error}");
        assert_no_key_text(PUBLIC_PEM, &error.to_string());
        assert_no_key_text(PUBLIC_PEM, &format!("{error:?}"));
    }

    #[test]
    fn refuses_a_public_key_under_a_private_label() {
        // It parses as PEM, but signing with it fails: only the trial signature catches it.
        let relabelled = PUBLIC_PEM
            .replace("BEGIN PUBLIC KEY", "BEGIN PRIVATE KEY")
            .replace("END PUBLIC KEY", "END PRIVATE KEY");
        let error = refused(&relabelled);
        assert_no_key_text(&relabelled, &error.to_string());
        let as_pkcs1 = PUBLIC_PEM
            .replace("BEGIN PUBLIC KEY", "BEGIN RSA PRIVATE KEY")
            .replace("END PUBLIC KEY", "END RSA PRIVATE KEY");
        let error = refused(&as_pkcs1);
        assert_no_key_text(&as_pkcs1, &error.to_string());
    }

    #[test]
    fn refuses_damaged_keys_without_quoting_them() {
        let lines: Vec<&str> = PKCS1_PEM.lines().collect();
        // Half the body is gone.
        let truncated = [&lines[..lines.len() / 2], &lines[lines.len() - 1..]]
            .concat()
            .join("\n");
        // The body is not base64.
        let not_base64 = PKCS1_PEM.replacen('A', "!", 3);
        // The body is base64 of something that is not DER.
        let not_der = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode([0x42u8; 300])
        );
        // No END line.
        let unterminated = lines[..lines.len() - 1].join("\n");
        for damaged in [truncated, not_base64, not_der, unterminated] {
            let error = refused(&damaged);
            assert_no_key_text(&damaged, &error.to_string());
        }
    }

    #[test]
    fn refuses_other_kinds_of_keys() {
        let body = pem_body(PKCS1_PEM);
        for (label, reason) in [
            ("ENCRYPTED PRIVATE KEY", "encrypted"),
            ("EC PRIVATE KEY", "other kind"),
            ("OPENSSH PRIVATE KEY", "other kind"),
            ("PGP PRIVATE KEY BLOCK", "other kind"),
            ("RSA PUBLIC KEY", "public key"),
            ("CERTIFICATE", "certificate"),
        ] {
            let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
            let error = refused(&pem);
            assert!(error.reason().contains(reason), "{label}: {error}");
            assert_no_key_text(&pem, &error.to_string());
        }
    }

    #[test]
    fn the_pem_label_is_found() {
        assert_eq!(first_pem_label(PKCS1_PEM), Some("RSA PRIVATE KEY"));
        assert_eq!(first_pem_label(PUBLIC_PEM), Some("PUBLIC KEY"));
        assert_eq!(first_pem_label("-----BEGIN X"), None);
        assert_eq!(first_pem_label("nothing"), None);
    }
}
