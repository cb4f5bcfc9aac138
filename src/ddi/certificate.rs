//! The key and X.509 certificate that sign a DDI's root hash: loaded from PEM, checked to
//! belong together, and made new for `keygen --x509`.
//!
//! Keys are RSA (PKCS#1 v1.5 signatures with SHA-256, which every kernel with root-hash
//! signatures accepts) or ECDSA P-256 (kernel 5.13 or later on the kernel path), read from
//! PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM. The
//! certificate is self-signed with the profile `openssl req -x509` gives (subject key
//! identifier, authority key identifier, critical `CA:TRUE`, no key usage), which
//! `openssl cms -verify` and systemd's userspace check accept as they are.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use der::asn1::{SetOfVec, Utf8StringRef};
use der::oid::ObjectIdentifier;
use der::pem::LineEnding;
use der::referenced::OwnedToRef;
use der::{Decode, DecodePem, Encode, EncodePem};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use sha2::{Digest, Sha256};
use spki::{
    AlgorithmIdentifierOwned, DecodePublicKey as _, EncodePublicKey as _, SubjectPublicKeyInfoOwned,
};
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, SubjectKeyIdentifier};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::{der, spki};

use crate::secret::Secret;

/// `sha2` 0.10, whose digest traits `rsa` 0.9 signs with.
type Sha256For = sha2_010::Sha256;

/// The algorithm of a verity signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerityKeyAlgorithm {
    /// RSA 4096: the widest support (every kernel with root-hash signatures).
    Rsa4096,
    /// ECDSA on P-256: small and fast; Linux 5.13 or later for the kernel's check.
    EcdsaP256,
}

impl VerityKeyAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            VerityKeyAlgorithm::Rsa4096 => "rsa-4096",
            VerityKeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        }
    }
}

impl fmt::Display for VerityKeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VerityKeyAlgorithm {
    type Err = CertificateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rsa-4096" => Ok(VerityKeyAlgorithm::Rsa4096),
            "ecdsa-p256" => Ok(VerityKeyAlgorithm::EcdsaP256),
            other => Err(CertificateError::UnknownAlgorithm(
                other.chars().take(32).collect(),
            )),
        }
    }
}

/// Why a key or certificate cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("unknown key algorithm {0:?}: use rsa-4096 or ecdsa-p256")]
    UnknownAlgorithm(String),
    #[error("the verity signing key is not PEM: {0}")]
    KeyNotPem(String),
    #[error(
        "the verity signing key is encrypted (ENCRYPTED PRIVATE KEY); give it unencrypted, as systemd-repart reads it"
    )]
    KeyEncrypted,
    #[error(
        "the verity signing key is a PEM {0:?}: expected PRIVATE KEY (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY"
    )]
    KeyLabel(String),
    #[error("the verity signing key is not an RSA or ECDSA P-256 private key: {0}")]
    KeyUnsupported(String),
    #[error("the verity certificate is not a PEM CERTIFICATE: {0}")]
    CertificateNotPem(String),
    #[error(
        "the verity certificate's public key is not an RSA or ECDSA P-256 key ({0}); the kernel's root-hash check takes only these"
    )]
    CertificateKeyUnsupported(String),
    #[error(
        "the verity signing key does not belong to the certificate (subject {subject}, sha256 fingerprint {fingerprint}): give the key the certificate was made for"
    )]
    KeyMismatch {
        subject: String,
        fingerprint: String,
    },
    #[error("the certificate's common name {0:?} is empty or has control characters")]
    BadName(String),
    #[error("a validity of {0} days is out of range (1 to 36500)")]
    BadDays(u32),
    #[error("making the certificate: {0}")]
    Build(String),
    #[error("generating the key: {0}")]
    Generate(String),
}

/// A private key that signs root hashes. Its `Debug` shows only the algorithm.
#[derive(Clone)]
pub struct VerityKey(KeyMaterial);

#[derive(Clone)]
enum KeyMaterial {
    Rsa(Box<rsa::RsaPrivateKey>),
    EcdsaP256(p256::ecdsa::SigningKey),
}

impl fmt::Debug for VerityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerityKey({}, <redacted>)", self.description())
    }
}

impl VerityKey {
    /// Makes a new key.
    pub fn generate(algorithm: VerityKeyAlgorithm) -> Result<VerityKey, CertificateError> {
        let mut rng = rand_08::rngs::OsRng;
        Ok(VerityKey(match algorithm {
            VerityKeyAlgorithm::Rsa4096 => KeyMaterial::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut rng, 4096)
                    .map_err(|e| CertificateError::Generate(e.to_string()))?,
            )),
            VerityKeyAlgorithm::EcdsaP256 => {
                KeyMaterial::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rng))
            }
        }))
    }

    /// Reads a PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted.
    pub fn from_pem(pem: &Secret) -> Result<VerityKey, CertificateError> {
        let text = pem.expose().trim();
        let label = der::pem::decode_label(text.as_bytes())
            .map_err(|e| CertificateError::KeyNotPem(e.to_string()))?;
        let material = match label {
            "PRIVATE KEY" => match rsa::RsaPrivateKey::from_pkcs8_pem(text) {
                Ok(key) => KeyMaterial::Rsa(Box::new(key)),
                Err(rsa_error) => p256::ecdsa::SigningKey::from_pkcs8_pem(text)
                    .map(KeyMaterial::EcdsaP256)
                    .map_err(|_| CertificateError::KeyUnsupported(rsa_error.to_string()))?,
            },
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .map(|key| KeyMaterial::Rsa(Box::new(key)))
                .map_err(|e| CertificateError::KeyUnsupported(e.to_string()))?,
            "EC PRIVATE KEY" => {
                let key = p256::SecretKey::from_sec1_pem(text)
                    .map_err(|e| CertificateError::KeyUnsupported(e.to_string()))?;
                KeyMaterial::EcdsaP256(key.into())
            }
            "ENCRYPTED PRIVATE KEY" => return Err(CertificateError::KeyEncrypted),
            other => return Err(CertificateError::KeyLabel(other.to_owned())),
        };
        if let KeyMaterial::Rsa(key) = &material {
            key.validate()
                .map_err(|e| CertificateError::KeyUnsupported(e.to_string()))?;
        }
        Ok(VerityKey(material))
    }

    /// The key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Result<Secret, CertificateError> {
        let pem = match &self.0 {
            KeyMaterial::Rsa(key) => {
                rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&**key, LineEnding::LF)
            }
            KeyMaterial::EcdsaP256(key) => key.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| CertificateError::Generate(e.to_string()))?;
        Ok(Secret::new(pem.to_string()))
    }

    /// The kind and size of the key: `RSA 4096`, `ECDSA P-256`.
    pub fn description(&self) -> String {
        match &self.0 {
            KeyMaterial::Rsa(key) => {
                format!("RSA {}", rsa::traits::PublicKeyParts::size(&**key) * 8)
            }
            KeyMaterial::EcdsaP256(_) => "ECDSA P-256".to_owned(),
        }
    }

    /// The public key, as a certificate holds it.
    pub fn public_key_info(&self) -> SubjectPublicKeyInfoOwned {
        let der = match &self.0 {
            KeyMaterial::Rsa(key) => key.to_public_key().to_public_key_der(),
            KeyMaterial::EcdsaP256(key) => key.verifying_key().to_public_key_der(),
        }
        .expect("a public key encodes");
        SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).expect("a public key decodes")
    }

    /// Signs `message` with SHA-256: deterministically, for RSA (PKCS#1 v1.5) and ECDSA
    /// (RFC 6979 nonces). Gives the signature and its algorithm as PKCS#7 names it.
    pub(crate) fn sign(&self, message: &[u8]) -> (Vec<u8>, AlgorithmIdentifierOwned) {
        match &self.0 {
            KeyMaterial::Rsa(key) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256For>::new((**key).clone());
                let signature: rsa::pkcs1v15::Signature = signer.sign(message);
                (signature.to_vec(), rsa_encryption())
            }
            KeyMaterial::EcdsaP256(key) => {
                let signature: p256::ecdsa::DerSignature = key.sign(message);
                (signature.to_vec(), ecdsa_with_sha256())
            }
        }
    }
}

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// `rsaEncryption` with NULL parameters: the RSA signature algorithm the kernel's PKCS#7
/// parser accepts (not `sha256WithRSAEncryption`).
fn rsa_encryption() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: RSA_ENCRYPTION,
        parameters: Some(der::asn1::Null.into()),
    }
}

/// `ecdsa-with-SHA256`, without parameters.
fn ecdsa_with_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    }
}

/// The certificate hosts trust for verity signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct VerityCertificate {
    certificate: Certificate,
    der: Vec<u8>,
}

impl fmt::Debug for VerityCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VerityCertificate({}, sha256 {})",
            self.subject(),
            self.fingerprint()
        )
    }
}

impl VerityCertificate {
    /// Reads a PEM `CERTIFICATE`.
    pub fn from_pem(pem: &str) -> Result<VerityCertificate, CertificateError> {
        let certificate = Certificate::from_pem(pem.trim().as_bytes())
            .map_err(|e| CertificateError::CertificateNotPem(e.to_string()))?;
        let der = certificate
            .to_der()
            .map_err(|e| CertificateError::CertificateNotPem(e.to_string()))?;
        let certificate = VerityCertificate { certificate, der };
        certificate.verifying_key()?;
        Ok(certificate)
    }

    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<VerityCertificate, CertificateError> {
        let certificate = Certificate::from_der(der)
            .map_err(|e| CertificateError::CertificateNotPem(e.to_string()))?;
        let certificate = VerityCertificate {
            certificate,
            der: der.to_vec(),
        };
        certificate.verifying_key()?;
        Ok(certificate)
    }

    /// A new self-signed certificate for `key`, named `CN=<common_name>`, valid from now
    /// for `days` days.
    pub fn self_signed(
        key: &VerityKey,
        common_name: &str,
        days: u32,
    ) -> Result<VerityCertificate, CertificateError> {
        if common_name.trim().is_empty() || common_name.chars().any(char::is_control) {
            return Err(CertificateError::BadName(common_name.to_owned()));
        }
        if !(1..=36500).contains(&days) {
            return Err(CertificateError::BadDays(days));
        }
        let build = |e: &dyn fmt::Display| CertificateError::Build(e.to_string());
        let subject = common_name_only(common_name).map_err(|e| build(&e))?;
        let mut serial: [u8; 16] = rand::random();
        // Positive and in minimal form: the first byte is 0x01 to 0x7f.
        serial[0] = (serial[0] & 0x7f).max(1);
        let serial = SerialNumber::new(&serial).map_err(|e| build(&e))?;
        let now = SystemTime::now();
        let validity = Validity {
            not_before: x509_cert::time::Time::try_from(now).map_err(|e| build(&e))?,
            not_after: x509_cert::time::Time::try_from(
                now + Duration::from_secs(u64::from(days) * 86_400),
            )
            .map_err(|e| build(&e))?,
        };
        let spki = key.public_key_info();
        let key_id = SubjectKeyIdentifier::try_from(spki.owned_to_ref()).map_err(|e| build(&e))?;
        let authority = AuthorityKeyIdentifier {
            key_identifier: Some(key_id.0.clone()),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        let constraints = BasicConstraints {
            ca: true,
            path_len_constraint: None,
        };
        let profile = Profile::Manual { issuer: None };
        let certificate = match &key.0 {
            KeyMaterial::Rsa(rsa_key) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256For>::new((**rsa_key).clone());
                let mut builder =
                    CertificateBuilder::new(profile, serial, validity, subject, spki, &signer)
                        .map_err(|e| build(&e))?;
                builder.add_extension(&key_id).map_err(|e| build(&e))?;
                builder.add_extension(&authority).map_err(|e| build(&e))?;
                builder.add_extension(&constraints).map_err(|e| build(&e))?;
                builder
                    .build::<rsa::pkcs1v15::Signature>()
                    .map_err(|e| build(&e))?
            }
            KeyMaterial::EcdsaP256(signer) => {
                let mut builder =
                    CertificateBuilder::new(profile, serial, validity, subject, spki, signer)
                        .map_err(|e| build(&e))?;
                builder.add_extension(&key_id).map_err(|e| build(&e))?;
                builder.add_extension(&authority).map_err(|e| build(&e))?;
                builder.add_extension(&constraints).map_err(|e| build(&e))?;
                builder
                    .build::<p256::ecdsa::DerSignature>()
                    .map_err(|e| build(&e))?
            }
        };
        let der = certificate.to_der().map_err(|e| build(&e))?;
        Ok(VerityCertificate { certificate, der })
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        self.certificate
            .to_pem(LineEnding::LF)
            .expect("a parsed certificate encodes")
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// sha256 of the DER encoding, lowercase hex: the signature partition's
    /// `certificateFingerprint` (and `openssl x509 -outform DER | sha256sum`).
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }

    /// The subject, as RFC 4514 text (`CN=...`).
    pub fn subject(&self) -> String {
        self.certificate.tbs_certificate.subject.to_string()
    }

    /// When the certificate expires: hosts that require signed images refuse images signed
    /// with it after that.
    pub fn not_after(&self) -> SystemTime {
        self.certificate
            .tbs_certificate
            .validity
            .not_after
            .to_system_time()
    }

    pub(crate) fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    fn public_key_der(&self) -> Vec<u8> {
        self.certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .expect("a parsed key encodes")
    }

    fn verifying_key(&self) -> Result<VerifyingKey, CertificateError> {
        let der = self.public_key_der();
        if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(&der) {
            return Ok(VerifyingKey::Rsa(key));
        }
        p256::ecdsa::VerifyingKey::from_public_key_der(&der)
            .map(VerifyingKey::EcdsaP256)
            .map_err(|_| {
                CertificateError::CertificateKeyUnsupported(
                    self.certificate
                        .tbs_certificate
                        .subject_public_key_info
                        .algorithm
                        .oid
                        .to_string(),
                )
            })
    }

    /// Whether `signature`, made with `algorithm`, is this certificate's key's signature
    /// of `message` (SHA-256).
    pub(crate) fn verifies(
        &self,
        message: &[u8],
        algorithm: &AlgorithmIdentifierOwned,
        signature: &[u8],
    ) -> bool {
        match self.verifying_key() {
            Ok(VerifyingKey::Rsa(key)) if algorithm.oid == rsa_encryption().oid => {
                let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256For>::new(key);
                rsa::pkcs1v15::Signature::try_from(signature)
                    .is_ok_and(|signature| verifier.verify(message, &signature).is_ok())
            }
            Ok(VerifyingKey::EcdsaP256(key)) if algorithm.oid == ecdsa_with_sha256().oid => {
                p256::ecdsa::DerSignature::try_from(signature)
                    .is_ok_and(|signature| key.verify(message, &signature).is_ok())
            }
            _ => false,
        }
    }
}

enum VerifyingKey {
    Rsa(rsa::RsaPublicKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
}

/// `CN=<name>` as one UTF8String attribute, as `openssl req -subj` writes it.
fn common_name_only(name: &str) -> der::Result<Name> {
    let value = Utf8StringRef::new(name)?;
    let attribute = AttributeTypeAndValue {
        oid: COMMON_NAME,
        value: value.into(),
    };
    Ok(RdnSequence(vec![RelativeDistinguishedName(
        SetOfVec::try_from(vec![attribute])?,
    )]))
}

/// A key with the certificate it belongs to: what signs an image.
#[derive(Debug, Clone)]
pub struct VeritySigner {
    key: VerityKey,
    certificate: VerityCertificate,
}

impl VeritySigner {
    /// Pairs `key` with `certificate`, refusing a key the certificate was not made for.
    pub fn new(
        key: VerityKey,
        certificate: VerityCertificate,
    ) -> Result<VeritySigner, CertificateError> {
        if key.public_key_info().to_der().ok() != Some(certificate.public_key_der()) {
            return Err(CertificateError::KeyMismatch {
                subject: certificate.subject(),
                fingerprint: certificate.fingerprint(),
            });
        }
        Ok(VeritySigner { key, certificate })
    }

    pub fn key(&self) -> &VerityKey {
        &self.key
    }

    pub fn certificate(&self) -> &VerityCertificate {
        &self.certificate
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::ddi::test_support::{ecdsa, other_ecdsa, rsa, run_ok};

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_der_as_openssl_writes_it() {
        for signer in [rsa(), ecdsa()] {
            let der = run_ok(
                Command::new("openssl")
                    .args(["x509", "-outform", "DER", "-in"])
                    .arg(signer.certificate_path()),
            )
            .stdout;
            assert_eq!(der, signer.signer.certificate().der());
            assert_eq!(
                signer.signer.certificate().fingerprint(),
                hex::encode(Sha256::digest(&der))
            );
        }
    }

    #[test]
    fn certificates_have_the_openssl_req_x509_profile() {
        let certificate = rsa().signer.certificate();
        let tbs = &certificate.certificate().tbs_certificate;
        assert_eq!(tbs.version, x509_cert::Version::V3);
        assert_eq!(tbs.issuer, tbs.subject);
        assert_eq!(certificate.subject(), "CN=Test RSA");
        let extensions: Vec<(String, bool)> = tbs
            .extensions
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.extn_id.to_string(), e.critical))
            .collect();
        assert_eq!(
            extensions,
            [
                ("2.5.29.14".to_owned(), false), // subject key identifier
                ("2.5.29.35".to_owned(), false), // authority key identifier
                ("2.5.29.19".to_owned(), true),  // basic constraints
            ]
        );
        let text = String::from_utf8(
            run_ok(
                Command::new("openssl")
                    .args(["x509", "-noout", "-ext", "basicConstraints", "-in"])
                    .arg(rsa().certificate_path()),
            )
            .stdout,
        )
        .unwrap();
        assert_eq!(text, "X509v3 Basic Constraints: critical\n    CA:TRUE\n");
        let days = certificate
            .not_after()
            .duration_since(SystemTime::now())
            .unwrap()
            .as_secs()
            .div_ceil(86_400);
        assert_eq!(days, 30);
    }

    #[test]
    fn a_key_is_refused_with_a_certificate_it_does_not_belong_to() {
        let err = VeritySigner::new(
            ecdsa().signer.key().clone(),
            other_ecdsa().signer.certificate().clone(),
        )
        .unwrap_err();
        assert!(matches!(err, CertificateError::KeyMismatch { .. }), "{err}");
        assert!(
            VeritySigner::new(
                rsa().signer.key().clone(),
                ecdsa().signer.certificate().clone()
            )
            .is_err()
        );
    }

    #[test]
    fn keys_load_from_pkcs8_pkcs1_and_sec1_pem_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        for (generate, traditional_label) in [
            (
                vec![
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ],
                "RSA PRIVATE KEY",
            ),
            (
                vec![
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ],
                "EC PRIVATE KEY",
            ),
        ] {
            run_ok(
                Command::new("openssl")
                    .args(&generate)
                    .arg("-out")
                    .arg(&key_path),
            );
            let pkcs8 = std::fs::read_to_string(&key_path).unwrap();
            let traditional = String::from_utf8(
                run_ok(
                    Command::new("openssl")
                        .args(["pkey", "-traditional", "-in"])
                        .arg(&key_path),
                )
                .stdout,
            )
            .unwrap();
            assert!(traditional.starts_with(&format!("-----BEGIN {traditional_label}-----")));
            let certificate = String::from_utf8(
                run_ok(
                    Command::new("openssl")
                        .args(["req", "-x509", "-subj", "/CN=openssl", "-days", "2", "-key"])
                        .arg(&key_path),
                )
                .stdout,
            )
            .unwrap();
            let certificate = VerityCertificate::from_pem(&certificate).unwrap();
            for pem in [pkcs8, traditional] {
                let key = VerityKey::from_pem(&Secret::new(pem.clone())).unwrap();
                let shown = format!("{key:?}");
                assert!(
                    shown.starts_with("VerityKey(") && !shown.contains("BEGIN"),
                    "{shown}"
                );
                VeritySigner::new(key, certificate.clone()).unwrap();
            }
        }
        let err = VerityKey::from_pem(&Secret::new(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                .into(),
        ))
        .unwrap_err();
        assert!(matches!(err, CertificateError::KeyEncrypted), "{err}");
        let err =
            VerityKey::from_pem(&Secret::new(rsa().signer.certificate().to_pem())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the verity signing key is a PEM \"CERTIFICATE\": expected PRIVATE KEY (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY"
        );
    }

    #[test]
    fn generated_keys_write_pkcs8_that_reads_back() {
        let pem = ecdsa().signer.key().to_pkcs8_pem().unwrap();
        assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let key = VerityKey::from_pem(&pem).unwrap();
        VeritySigner::new(key, ecdsa().signer.certificate().clone()).unwrap();
        assert_eq!(rsa().signer.key().description(), "RSA 4096");
    }
}
