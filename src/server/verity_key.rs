//! The key and certificate `serve` signs DDI root hashes with, when `image.formats`
//! includes `ddi`: from `VERITY_SIGNING_KEY_PATH` or `VERITY_SIGNING_KEY`, and
//! `VERITY_CERTIFICATE_PATH` or `VERITY_CERTIFICATE`, as `build` reads them. Unlike the
//! OpenPGP key, the server never makes one: hosts trust the certificate by hand.
//!
//! Hosts that require signed images refuse images signed with an expired certificate, so
//! the certificate's expiry ([`CertificateExpiry`]) is logged at start, shown on the status
//! page and exported in `/metrics`, with a warning from [`EXPIRY_WARNING_DAYS`] before.

use std::time::{Duration, SystemTime};

use crate::ddi::VeritySigner;
use crate::ddi::certificate::VerityCertificate;
use crate::ddi::key_source::VeritySignerSource;
use crate::settings::Settings;

/// How many days before the certificate expires the server warns.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

/// The verity signer `settings` need: `None` unless `image.formats` includes `ddi`; an
/// error naming what is missing when it does and the environment (read through `lookup`)
/// has no key or certificate, or one that does not load. The key never reaches the error.
pub fn server_verity_signer(
    settings: &Settings,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<VeritySigner>> {
    if !settings.image.publishes_ddi() {
        return Ok(None);
    }
    let signer = VeritySignerSource::resolve(None, None, lookup)
        .and_then(|source| source.load())
        .map_err(|error| {
            anyhow::anyhow!(
                "image.formats includes \"ddi\", whose images are signed with a verity key: {error}"
            )
        })?;
    Ok(Some(signer))
}

/// When the verity certificate expires, and whether that is soon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateExpiry {
    pub subject: String,
    /// sha256 of the certificate's DER, lowercase hex (as DDIs name it).
    pub fingerprint: String,
    pub not_after: SystemTime,
}

impl CertificateExpiry {
    pub fn of(certificate: &VerityCertificate) -> CertificateExpiry {
        CertificateExpiry {
            subject: certificate.subject(),
            fingerprint: certificate.fingerprint(),
            not_after: certificate.not_after(),
        }
    }

    /// Seconds since 1970 of the expiry.
    pub fn not_after_unix(&self) -> i64 {
        match self.not_after.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// The expiry as `2036-05-01T12:00:00Z`.
    pub fn not_after_text(&self) -> String {
        chrono::DateTime::<chrono::Utc>::from(self.not_after)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// Whole days left at `now` (0 once it has expired).
    pub fn days_left(&self, now: SystemTime) -> u64 {
        self.not_after
            .duration_since(now)
            .map(|left| left.as_secs() / 86_400)
            .unwrap_or(0)
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.not_after <= now
    }

    /// Whether `now` is within [`EXPIRY_WARNING_DAYS`] of the expiry, or past it.
    pub fn warns(&self, now: SystemTime) -> bool {
        self.not_after <= now + Duration::from_secs(EXPIRY_WARNING_DAYS * 86_400)
    }

    /// What to do about it, for the log and the status page; `None` while it is far off.
    pub fn warning(&self, now: SystemTime) -> Option<String> {
        if self.expired(now) {
            Some(format!(
                "the verity certificate {} expired on {}: hosts that require signed images refuse the DDIs signed with it; make a new one with `keygen --x509`, deploy it to the hosts' /etc/verity.d/ beside the old one, then set it here",
                self.subject,
                self.not_after_text()
            ))
        } else if self.warns(now) {
            Some(format!(
                "the verity certificate {} expires on {} ({} days left): hosts that require signed images will refuse the DDIs signed with it after that; make a new one with `keygen --x509`, deploy it to the hosts' /etc/verity.d/ beside the old one, then set it here",
                self.subject,
                self.not_after_text(),
                self.days_left(now)
            ))
        } else {
            None
        }
    }
}

/// Logs the certificate's expiry at start: a warning when it is near or past.
pub fn log_at_start(expiry: &CertificateExpiry, now: SystemTime) {
    match expiry.warning(now) {
        Some(warning) => {
            tracing::warn!(fingerprint = %expiry.fingerprint, not_after = %expiry.not_after_text(), "{warning}")
        }
        None => {
            tracing::info!(subject = %expiry.subject, fingerprint = %expiry.fingerprint, not_after = %expiry.not_after_text(), days_left = expiry.days_left(now), "signing DDI root hashes with the configured verity key")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddi::certificate::{VerityKey, VerityKeyAlgorithm};

    fn expiry_at(not_after: SystemTime) -> CertificateExpiry {
        CertificateExpiry {
            subject: "CN=Test".into(),
            fingerprint: "ab".repeat(32),
            not_after,
        }
    }

    #[test]
    fn the_warning_starts_thirty_days_before_the_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let day = Duration::from_secs(86_400);
        let far = expiry_at(now + day * 31);
        assert_eq!((far.warns(now), far.days_left(now)), (false, 31));
        assert_eq!(far.warning(now), None);
        let near = expiry_at(now + day * 30);
        assert!(near.warns(now));
        assert_eq!(
            near.warning(now).unwrap(),
            "the verity certificate CN=Test expires on 2033-06-17T03:33:20Z (30 days left): hosts that require signed images will refuse the DDIs signed with it after that; make a new one with `keygen --x509`, deploy it to the hosts' /etc/verity.d/ beside the old one, then set it here"
        );
        let past = expiry_at(now - day);
        assert!(past.expired(now));
        assert_eq!(past.days_left(now), 0);
        assert!(
            past.warning(now)
                .unwrap()
                .contains("expired on 2033-05-17T03:33:20Z")
        );
        assert_eq!(expiry_at(now).not_after_unix(), 2_000_000_000);
    }

    #[test]
    fn ddi_without_a_key_refuses_to_start_and_never_shows_the_key() {
        let mut settings = Settings::default();
        assert!(server_verity_signer(&settings, |_| None).unwrap().is_none());
        settings
            .image
            .formats
            .push(crate::artifacts::image_format::ImageFormat::Ddi);
        let missing = server_verity_signer(&settings, |_| None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            missing,
            "image.formats includes \"ddi\", whose images are signed with a verity key: no verity signing key: pass --verity-key FILE, or set VERITY_SIGNING_KEY_PATH (a PEM file) or VERITY_SIGNING_KEY (the PEM text); make a key and certificate with `alloy-sysext-automation keygen --x509 --out keys/`"
        );
        let key = VerityKey::generate(VerityKeyAlgorithm::EcdsaP256).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let certificate = VerityCertificate::self_signed(&key, "Test", 365).unwrap();
        let env = |name: &str| match name {
            "VERITY_SIGNING_KEY" => Some(pem.expose().to_owned()),
            "VERITY_CERTIFICATE" => Some(certificate.to_pem()),
            _ => None,
        };
        let signer = server_verity_signer(&settings, env).unwrap().unwrap();
        assert_eq!(
            signer.certificate().fingerprint(),
            certificate.fingerprint()
        );
        // Another key's certificate: refused, without the key's text.
        let other = VerityKey::generate(VerityKeyAlgorithm::EcdsaP256).unwrap();
        let other_certificate = VerityCertificate::self_signed(&other, "Other", 365).unwrap();
        let mismatched = |name: &str| match name {
            "VERITY_SIGNING_KEY" => Some(pem.expose().to_owned()),
            "VERITY_CERTIFICATE" => Some(other_certificate.to_pem()),
            _ => None,
        };
        let error = server_verity_signer(&settings, mismatched)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("image.formats includes \"ddi\""),
            "{error}"
        );
        let key_body: String = pem.expose().lines().nth(1).unwrap().to_owned();
        assert!(!error.contains(&key_body), "{error}");
    }
}
