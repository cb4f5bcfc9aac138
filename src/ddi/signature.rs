//! The verity signature partition: the JSON object
//! `{"rootHash":…,"certificateFingerprint":…,"signature":…}` (compact, keys in this order,
//! NUL-padded to the partition's size), whose `signature` is the base64 of a detached PKCS#7
//! SignedData over the root hash's lowercase hex text.
//!
//! The SignedData is what `systemd-repart` makes with OpenSSL's
//! `PKCS7_sign(…, PKCS7_DETACHED | PKCS7_NOATTR | PKCS7_BINARY)`: version 1, the signer's
//! certificate embedded, one SignerInfo named by issuer and serial number, SHA-256, no
//! signed attributes, and the signature algorithm `rsaEncryption` or `ecdsa-with-SHA256`
//! (the kernel's PKCS#7 parser refuses `sha256WithRSAEncryption` there). It is assembled
//! from the `cms` crate's types, since its builder always adds signed attributes.

use base64::Engine;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use serde::{Deserialize, Serialize};
use x509_cert::der::asn1::{Null, OctetString, SetOfVec};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Any, Decode, Encode};
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::ddi::certificate::{VerityCertificate, VeritySigner};
use crate::ddi::layout::SIGNATURE_PARTITION_SIZE;
use crate::ddi::verity::RootHash;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// A signature partition that cannot be made, read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("encoding the PKCS#7 signature: {0}")]
    Encode(String),
    #[error("the signature partition's JSON is {size} bytes, more than the partition's {limit}")]
    TooLarge { size: usize, limit: u64 },
    #[error("the signature partition has data after the NUL that ends its JSON")]
    TrailingData,
    #[error("the signature partition is not the JSON object systemd reads: {0}")]
    Json(String),
    #[error("the signature partition's rootHash {0:?} is not 64 lowercase hex digits")]
    RootHash(String),
    #[error("the signature partition's signature is not base64: {0}")]
    Base64(String),
    #[error("the signature is not a PKCS#7 SignedData as the kernel reads it: {0}")]
    Pkcs7(String),
    #[error(
        "the signature partition names certificate {named}, not the certificate {expected} it is checked with"
    )]
    OtherCertificate { named: String, expected: String },
    #[error("the signature does not verify with the certificate {fingerprint}")]
    Invalid { fingerprint: String },
}

/// The content of the signature partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignaturePartition {
    /// The root hash, lowercase hex.
    pub root_hash: String,
    /// sha256 of the signing certificate's DER, lowercase hex.
    pub certificate_fingerprint: String,
    /// base64 of the DER PKCS#7 signature of `root_hash`'s text.
    pub signature: String,
}

impl SignaturePartition {
    /// Signs `root_hash` with `signer`.
    pub fn sign(
        root_hash: RootHash,
        signer: &VeritySigner,
    ) -> Result<SignaturePartition, SignatureError> {
        let text = root_hash.to_hex();
        let pkcs7 = pkcs7_signature(text.as_bytes(), signer)
            .map_err(|e| SignatureError::Encode(e.to_string()))?;
        Ok(SignaturePartition {
            root_hash: text,
            certificate_fingerprint: signer.certificate().fingerprint(),
            signature: base64::engine::general_purpose::STANDARD.encode(pkcs7),
        })
    }

    /// The compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings serialize")
    }

    /// The partition's bytes: the JSON, then NULs to the partition's size.
    pub fn to_partition_bytes(&self) -> Result<Vec<u8>, SignatureError> {
        let mut bytes = self.to_json().into_bytes();
        if bytes.len() as u64 >= SIGNATURE_PARTITION_SIZE {
            return Err(SignatureError::TooLarge {
                size: bytes.len(),
                limit: SIGNATURE_PARTITION_SIZE,
            });
        }
        bytes.resize(SIGNATURE_PARTITION_SIZE as usize, 0);
        Ok(bytes)
    }

    /// Reads a partition's bytes as systemd does: JSON up to the first NUL, nothing but
    /// NULs after it.
    pub fn from_partition_bytes(bytes: &[u8]) -> Result<SignaturePartition, SignatureError> {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        if bytes[end..].iter().any(|&b| b != 0) {
            return Err(SignatureError::TrailingData);
        }
        let partition: SignaturePartition = serde_json::from_slice(&bytes[..end])
            .map_err(|e| SignatureError::Json(e.to_string()))?;
        partition.root_hash()?;
        Ok(partition)
    }

    /// The root hash the partition names.
    pub fn root_hash(&self) -> Result<RootHash, SignatureError> {
        let bad = || SignatureError::RootHash(self.root_hash.chars().take(80).collect());
        if self.root_hash.len() != 64 || self.root_hash.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad());
        }
        let bytes = hex::decode(&self.root_hash).map_err(|_| bad())?;
        Ok(RootHash(bytes.try_into().map_err(|_| bad())?))
    }

    /// The DER PKCS#7 signature.
    pub fn pkcs7(&self) -> Result<Vec<u8>, SignatureError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|e| SignatureError::Base64(e.to_string()))
    }

    /// Checks that the partition names `certificate` and that its signature is that
    /// certificate's key's signature of the root hash, as a host checks it.
    pub fn verify(&self, certificate: &VerityCertificate) -> Result<(), SignatureError> {
        if self.certificate_fingerprint != certificate.fingerprint() {
            return Err(SignatureError::OtherCertificate {
                named: self.certificate_fingerprint.chars().take(80).collect(),
                expected: certificate.fingerprint(),
            });
        }
        self.root_hash()?;
        let pkcs7 = self.pkcs7()?;
        let invalid = || SignatureError::Invalid {
            fingerprint: certificate.fingerprint(),
        };
        let pkcs7_error = |e: x509_cert::der::Error| SignatureError::Pkcs7(e.to_string());
        let content = ContentInfo::from_der(&pkcs7).map_err(pkcs7_error)?;
        if content.content_type != ID_SIGNED_DATA {
            return Err(SignatureError::Pkcs7(format!(
                "content type {}, not signedData",
                content.content_type
            )));
        }
        let signed: SignedData = content.content.decode_as().map_err(pkcs7_error)?;
        if signed.encap_content_info.econtent.is_some() {
            return Err(SignatureError::Pkcs7(
                "the signature is not detached".into(),
            ));
        }
        // What the kernel requires of the signature besides the signer's key: signed data
        // of type data, digested with sha256; and it finds the signer among the embedded
        // certificates first, so one with the trusted certificate's issuer and serial but
        // another key would make hosts refuse a signature this check passed.
        if signed.encap_content_info.econtent_type != ID_DATA {
            return Err(SignatureError::Pkcs7(format!(
                "signed content type {}, not data",
                signed.encap_content_info.econtent_type
            )));
        }
        if signed
            .digest_algorithms
            .iter()
            .any(|algorithm| algorithm.oid != ID_SHA256)
        {
            return Err(SignatureError::Pkcs7(
                "a digest algorithm other than sha256".into(),
            ));
        }
        let embedded = signed.certificates.iter().flat_map(|set| set.0.iter());
        for choice in embedded {
            match choice {
                CertificateChoices::Certificate(embedded)
                    if embedded == certificate.certificate() => {}
                _ => {
                    return Err(SignatureError::Pkcs7(
                        "it embeds a certificate other than the trusted one".into(),
                    ));
                }
            }
        }
        let signer_infos = signed.signer_infos.0.as_slice();
        let [signer_info] = signer_infos else {
            return Err(SignatureError::Pkcs7(format!(
                "{} signers, not one",
                signer_infos.len()
            )));
        };
        if signer_info.signed_attrs.is_some() {
            return Err(SignatureError::Pkcs7("it has signed attributes".into()));
        }
        if signer_info.digest_alg.oid != ID_SHA256 {
            return Err(SignatureError::Pkcs7(format!(
                "digest {}, not sha256",
                signer_info.digest_alg.oid
            )));
        }
        let tbs = &certificate.certificate().tbs_certificate;
        match &signer_info.sid {
            SignerIdentifier::IssuerAndSerialNumber(id)
                if id.issuer == tbs.issuer && id.serial_number == tbs.serial_number => {}
            _ => return Err(invalid()),
        }
        if certificate.verifies(
            self.root_hash.as_bytes(),
            &signer_info.signature_algorithm,
            signer_info.signature.as_bytes(),
        ) {
            Ok(())
        } else {
            Err(invalid())
        }
    }
}

/// The detached PKCS#7 SignedData of `content`, without signed attributes, with the
/// signer's certificate.
fn pkcs7_signature(
    content: &[u8],
    signer: &VeritySigner,
) -> Result<Vec<u8>, x509_cert::der::Error> {
    let sha256 = AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: Some(Null.into()),
    };
    let certificate = signer.certificate().certificate();
    let (signature, signature_algorithm) = signer.key().sign(content);
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: certificate.tbs_certificate.issuer.clone(),
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256.clone(),
        signed_attrs: None,
        signature_algorithm,
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256])?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(SetOfVec::try_from(vec![
            CertificateChoices::Certificate(certificate.clone()),
        ])?)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info])?),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    }
    .to_der()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddi::test_support::{ecdsa, other_ecdsa};

    /// A signature of a fixed root hash by `ecdsa()`, with its SignedData changed by `edit`
    /// and encoded again, as a hostile file can.
    fn edited(edit: impl FnOnce(&mut SignedData)) -> SignaturePartition {
        let mut partition = SignaturePartition::sign(RootHash([7; 32]), &ecdsa().signer).unwrap();
        let content = ContentInfo::from_der(&partition.pkcs7().unwrap()).unwrap();
        let mut signed: SignedData = content.content.decode_as().unwrap();
        edit(&mut signed);
        let der = ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&signed).unwrap(),
        }
        .to_der()
        .unwrap();
        partition.signature = base64::engine::general_purpose::STANDARD.encode(der);
        partition
    }

    fn refusal(partition: &SignaturePartition) -> String {
        partition
            .verify(ecdsa().signer.certificate())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_signature_the_kernel_would_refuse_is_refused_here_too() {
        // Re-encoded unchanged, it verifies.
        edited(|_| {}).verify(ecdsa().signer.certificate()).unwrap();

        let other_type = edited(|signed| {
            signed.encap_content_info.econtent_type = ID_SIGNED_DATA;
        });
        assert!(
            refusal(&other_type).contains("signed content type 1.2.840.113549.1.7.2, not data"),
            "{}",
            refusal(&other_type)
        );

        let other_digest = edited(|signed| {
            signed.digest_algorithms = SetOfVec::try_from(vec![AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3"),
                parameters: None,
            }])
            .unwrap();
        });
        assert!(
            refusal(&other_digest).contains("a digest algorithm other than sha256"),
            "{}",
            refusal(&other_digest)
        );

        // Another certificate with the trusted one's issuer and serial: the kernel would
        // take it as the signer's and fail.
        let impostor = edited(|signed| {
            let mut certificate = other_ecdsa().signer.certificate().certificate().clone();
            let trusted = &ecdsa().signer.certificate().certificate().tbs_certificate;
            certificate.tbs_certificate.issuer = trusted.issuer.clone();
            certificate.tbs_certificate.serial_number = trusted.serial_number.clone();
            signed.certificates = Some(CertificateSet(
                SetOfVec::try_from(vec![CertificateChoices::Certificate(certificate)]).unwrap(),
            ));
        });
        assert!(
            refusal(&impostor).contains("embeds a certificate other than the trusted one"),
            "{}",
            refusal(&impostor)
        );

        // Without embedded certificates (as systemd-repart signs), the trusted one is used;
        // named as another certificate, the signature is not that one's key's.
        let stripped = edited(|signed| signed.certificates = None);
        stripped.verify(ecdsa().signer.certificate()).unwrap();
        let mut renamed = stripped;
        renamed.certificate_fingerprint = other_ecdsa().signer.certificate().fingerprint();
        let err = renamed
            .verify(other_ecdsa().signer.certificate())
            .unwrap_err();
        assert!(matches!(err, SignatureError::Invalid { .. }), "{err}");
    }
}
