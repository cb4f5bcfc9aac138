//! Checking a published directory the way systemd-sysupdate checks a download source.
//!
//! First the signature of `SHA256SUMS` with the public key, then the manifest's format, then
//! the sha256 of every listed file that is present (and its `.asc`, when there is one).

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::Path;

use crate::artifacts::digest::sha256_hex;
use crate::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use crate::manifest::image_name::ImageFileName;
use crate::manifest::{Manifest, ManifestEntry, ManifestError};
use crate::signing::{PublicKey, SigningError};

/// How deep to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyDepth {
    /// The manifest's signature and format only.
    ManifestOnly,
    /// Also the hash (and signature, if any) of every listed file present.
    Files,
}

/// What was checked, file by file.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub entries: Vec<ManifestEntry>,
    /// Listed files checked against their hash.
    pub checked: Vec<String>,
    /// Listed files not present in the directory.
    pub absent: Vec<String>,
    /// Listed files whose `.asc` was checked too.
    pub signatures_checked: Vec<String>,
}

impl VerifyReport {
    /// The versions listed, oldest first, without repeats.
    pub fn versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = Vec::new();
        for entry in &self.entries {
            let shown = match ImageFileName::parse(&entry.file) {
                Some(parsed) => parsed.version.to_string(),
                None => entry.file.clone(),
            };
            if !versions.contains(&shown) {
                versions.push(shown);
            }
        }
        versions
    }
}

/// A failed check, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path} is missing: {reason}")]
    Missing { path: String, reason: String },
    #[error(
        "{MANIFEST_SIGNATURE_FILE} does not verify {MANIFEST_FILE} with this public key: {source}"
    )]
    BadManifestSignature { source: SigningError },
    #[error("{MANIFEST_FILE} is not in the format systemd-sysupdate reads: {0}")]
    BadManifest(ManifestError),
    #[error("{file}: sha256 is {actual}, but {MANIFEST_FILE} lists {expected}")]
    HashMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}.asc does not verify {file}: {source}")]
    BadFileSignature { file: String, source: SigningError },
    #[error("reading {path}: {source}")]
    Io { path: String, source: io::Error },
}

fn read(path: &Path) -> Result<Vec<u8>, VerifyError> {
    fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => VerifyError::Missing {
            path: path.display().to_string(),
            reason: "not found".into(),
        },
        _ => VerifyError::Io {
            path: path.display().to_string(),
            source: e,
        },
    })
}

/// Verifies the published files in `dir` with `key`.
pub fn verify_dir(
    dir: &Path,
    key: &PublicKey,
    depth: VerifyDepth,
) -> Result<VerifyReport, VerifyError> {
    let manifest_bytes = read(&dir.join(MANIFEST_FILE))?;
    let signature = read(&dir.join(MANIFEST_SIGNATURE_FILE))?;
    key.verify_detached(&manifest_bytes[..], &signature)
        .map_err(|source| VerifyError::BadManifestSignature { source })?;
    let text = String::from_utf8(manifest_bytes).map_err(|_| {
        VerifyError::BadManifest(ManifestError::MalformedLine {
            line: 1,
            reason: "the file is not UTF-8 text".into(),
        })
    })?;
    let manifest = Manifest::parse(&text).map_err(VerifyError::BadManifest)?;

    let mut report = VerifyReport {
        entries: manifest.entries().to_vec(),
        checked: Vec::new(),
        absent: Vec::new(),
        signatures_checked: Vec::new(),
    };
    if depth == VerifyDepth::ManifestOnly {
        return Ok(report);
    }
    for entry in manifest.entries() {
        let path = dir.join(&entry.file);
        let io_error = |source| VerifyError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report.absent.push(entry.file.clone());
                continue;
            }
            Err(e) => return Err(io_error(e)),
        };
        let actual = sha256_hex(BufReader::new(file)).map_err(io_error)?;
        if actual != entry.sha256 {
            return Err(VerifyError::HashMismatch {
                file: entry.file.clone(),
                expected: entry.sha256.clone(),
                actual,
            });
        }
        report.checked.push(entry.file.clone());

        let signature_path = dir.join(format!("{}.asc", entry.file));
        let signature = match fs::read(&signature_path) {
            Ok(signature) => Some(signature),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(VerifyError::Io {
                    path: signature_path.display().to_string(),
                    source,
                });
            }
        };
        if let Some(signature) = signature {
            let file = File::open(&path).map_err(io_error)?;
            key.verify_detached(BufReader::new(file), &signature)
                .map_err(|source| VerifyError::BadFileSignature {
                    file: entry.file.clone(),
                    source,
                })?;
            report.signatures_checked.push(entry.file.clone());
        }
    }
    Ok(report)
}
