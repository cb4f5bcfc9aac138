//! What `rebuild-check` reads from a published directory or base URL, checked before
//! anything is downloaded from upstream: the signed `SHA256SUMS`, the image (kept in a
//! file, to be compared entry by entry) with its sha256 against the manifest, and its
//! provenance record with its signature, about this image by name and sha256.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use alloy_sysext_automation::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use alloy_sysext_automation::manifest::ManifestEntry;
use alloy_sysext_automation::manifest::verify::{
    Check, CheckKind, Companion, VerifiedManifest, VerifyError, check_manifest, check_provenance,
};
use alloy_sysext_automation::provenance::{
    Statement, read_record, record_file_name, record_signature_file_name,
};
use alloy_sysext_automation::signing::Keyring;
use sha2::{Digest, Sha256};

use crate::cli::verify::source::{ReadError, Source};

/// A published directory or base URL, and the keys its signatures are checked with.
pub struct Published<'a> {
    pub source: &'a Source,
    pub keys: &'a Keyring,
}

/// A record whose signature and subject passed: the record and its bytes.
pub struct CheckedRecord {
    pub statement: Statement,
    pub bytes: Vec<u8>,
}

impl Published<'_> {
    /// `SHA256SUMS`, its signature checked with the keys.
    pub async fn manifest(&self) -> Result<VerifiedManifest, VerifyError> {
        let manifest = self.source.required(MANIFEST_FILE).await?;
        let signature = self.source.required(MANIFEST_SIGNATURE_FILE).await?;
        check_manifest(&manifest, &signature, self.keys)
    }

    /// Reads the listed image `entry` into `dest`; the check of its sha256 against the
    /// manifest, and the sha256 when it matches.
    pub async fn image(&self, entry: &ManifestEntry, dest: &Path) -> (Check, Option<String>) {
        let failed = |detail: String| Check::failed(&entry.file, CheckKind::Sha256, detail);
        let file = match File::create(dest) {
            Ok(file) => file,
            Err(e) => {
                return (
                    failed(format!("cannot be kept in {}: {e}", dest.display())),
                    None,
                );
            }
        };
        let mut sink = HashingFile {
            file: BufWriter::new(file),
            sha256: Sha256::new(),
        };
        let read = self.source.stream(&entry.file, &mut sink).await;
        let written = sink.file.flush();
        let detail = match (read, written) {
            (Err(ReadError::Missing(reason)), _) => format!("is missing: {reason}"),
            (Err(ReadError::Failed(reason)), _) => format!("cannot be read: {reason}"),
            (Ok(()), Err(e)) => format!("cannot be kept in {}: {e}", dest.display()),
            (Ok(()), Ok(())) => {
                let actual = hex::encode(sink.sha256.finalize());
                if actual == entry.sha256 {
                    let detail = format!("sha256 {actual} matches {MANIFEST_FILE}");
                    return (
                        Check::passed(&entry.file, CheckKind::Sha256, detail),
                        Some(actual),
                    );
                }
                format!(
                    "sha256 is {actual}, but {MANIFEST_FILE} lists {}",
                    entry.sha256
                )
            }
        };
        (failed(detail), None)
    }

    /// The record of the image `entry` (with sha256 `image_sha256`) and its signature: the
    /// checks, as `verify` makes them, and the record when both passed. An image without a
    /// record cannot be rebuilt to compare, so that fails here.
    pub async fn record(
        &self,
        entry: &ManifestEntry,
        image_sha256: &str,
    ) -> (Vec<Check>, Option<CheckedRecord>) {
        let record_name = record_file_name(&entry.file);
        let record = self.companion(&record_name).await;
        if let Companion::Missing(reason) = &record {
            let detail = format!(
                "is missing ({reason}): without a provenance record {} cannot be rebuilt to compare (images published before records existed have none)",
                entry.file
            );
            return (
                vec![Check::failed(&record_name, CheckKind::Provenance, detail)],
                None,
            );
        }
        let signature = self
            .companion(&record_signature_file_name(&entry.file))
            .await;
        let checked = check_provenance(entry, image_sha256, &record, &signature, self.keys);
        let passed = checked.checks.iter().all(|check| check.ok);
        let statement = match (&record, passed) {
            (Companion::Found(bytes), true) => {
                read_record(bytes).ok().map(|statement| CheckedRecord {
                    statement,
                    bytes: bytes.clone(),
                })
            }
            _ => None,
        };
        (checked.checks, statement)
    }

    async fn companion(&self, file: &str) -> Companion {
        match self.source.small(file).await {
            Ok(bytes) => Companion::Found(bytes),
            Err(ReadError::Missing(reason)) => Companion::Missing(reason),
            Err(ReadError::Failed(reason)) => Companion::Unreadable(reason),
        }
    }
}

/// A file that hashes what is written to it.
struct HashingFile {
    file: BufWriter<File>,
    sha256: Sha256,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.sha256.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
