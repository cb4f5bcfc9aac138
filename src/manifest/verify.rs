//! Checking published files the way systemd-sysupdate checks a download source, on bytes
//! and readers: where they come from (a directory, a URL) is the caller's business.
//!
//! First the signature of `SHA256SUMS` ([`check_manifest`]); without a good one nothing
//! else can be trusted, so that is an error. Then, for each image chosen ([`select`]), its
//! sha256 against the manifest, its `.sha256` file and its `.asc` signature
//! ([`check_image`]), and its provenance record when there is one ([`check_provenance`]),
//! each a [`Check`] with its result, so that one failure does not hide the others.

use std::io;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use crate::manifest::match_pattern::MatchPattern;
use crate::manifest::{Manifest, ManifestEntry, ManifestError};
use crate::provenance::read::UpstreamAsset;
use crate::provenance::{read_record, record_file_name, record_signature_file_name};
use crate::signing::detached::SignedDataHash;
use crate::signing::{Keyring, SigningError};
use crate::version::{Version, systemd_version_cmp};

/// The images a host on amd64 downloads, as `ghost.bu`'s transfer definition matches them.
pub const DEFAULT_MATCH_PATTERN: &str = "alloy-@v-amd64.raw";

/// A manifest whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    pub manifest: Manifest,
    /// The fingerprint of the key that signed it.
    pub signed_by: String,
}

/// Why the manifest cannot be trusted, or what asked for is not in it.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path} is missing: {reason}")]
    Missing {
        /// The file's name (`SHA256SUMS`), under the source.
        file: String,
        path: String,
        reason: String,
    },
    #[error("{path} cannot be read: {reason}")]
    Unreadable {
        /// The file's name (`SHA256SUMS`), under the source.
        file: String,
        path: String,
        reason: String,
    },
    #[error(
        "{MANIFEST_SIGNATURE_FILE} does not verify {MANIFEST_FILE} with this public key: {source}"
    )]
    BadManifestSignature { source: SigningError },
    #[error("{MANIFEST_FILE} is not in the format systemd-sysupdate reads: {0}")]
    BadManifest(ManifestError),
    #[error(
        "{MANIFEST_FILE} lists no file that matches {pattern}, so a host would install nothing"
    )]
    NothingMatches { pattern: MatchPattern },
    #[error("{MANIFEST_FILE} does not list {file} (version {version} with {pattern})")]
    VersionNotListed {
        version: Version,
        file: String,
        pattern: MatchPattern,
    },
}

/// What a check was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// `SHA256SUMS.gpg` over `SHA256SUMS`.
    ManifestSignature,
    /// `SHA256SUMS` in the format hosts read.
    ManifestFormat,
    /// An image's sha256 against its line in `SHA256SUMS`.
    Sha256,
    /// An image's `.sha256` file against its line in `SHA256SUMS`.
    Sha256File,
    /// An image's `.asc` signature over the image.
    Signature,
    /// What a host with the match pattern installs: a listed release of ours.
    HostWouldInstall,
    /// An image's provenance record (`.intoto.json`): a record of this tool, about this
    /// image (or, for images published before records existed, that there is none).
    Provenance,
    /// The record's `.asc` signature over the record.
    ProvenanceSignature,
    /// A DDI's dm-verity tree, recomputed from its data, and its root hash's signature,
    /// checked with the verity certificate hosts trust.
    Verity,
}

/// One check of one file, and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The file the check read (`alloy-1.17.1-amd64.raw.asc`).
    pub file: String,
    pub check: CheckKind,
    pub ok: bool,
    /// What was found: why it passed, or why not.
    pub detail: String,
}

impl Check {
    pub fn passed(file: impl Into<String>, check: CheckKind, detail: impl Into<String>) -> Self {
        Check {
            file: file.into(),
            check,
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(file: impl Into<String>, check: CheckKind, detail: impl Into<String>) -> Self {
        Check {
            file: file.into(),
            check,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// A listed image, by the version the match pattern reads in its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub file: String,
    /// The version as systemd-sysupdate reads it from the name
    /// ([`MatchPattern::host_version_of`]): not necessarily a [`Version`] of ours.
    pub version: String,
}

/// Which listed files to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The newest file that matches the pattern: what a host downloads.
    Newest,
    /// The file that matches the pattern with this version.
    Version(Version),
    /// Every listed file.
    All,
}

/// Checks `signature` over `manifest` with `keys`, then the manifest's format.
pub fn check_manifest(
    manifest: &[u8],
    signature: &[u8],
    keys: &Keyring,
) -> Result<VerifiedManifest, VerifyError> {
    let signed_by = keys
        .verify_detached(manifest, signature)
        .map_err(|source| VerifyError::BadManifestSignature { source })?;
    let text = std::str::from_utf8(manifest).map_err(|_| {
        VerifyError::BadManifest(ManifestError::MalformedLine {
            line: 1,
            reason: "the file is not UTF-8 text".into(),
        })
    })?;
    let manifest = Manifest::parse(text).map_err(VerifyError::BadManifest)?;
    Ok(VerifiedManifest {
        manifest,
        signed_by,
    })
}

/// The newest listed file that matches `pattern`, in systemd's version order: what a host
/// with this `MatchPattern=` installs.
pub fn host_would_install(manifest: &Manifest, pattern: &MatchPattern) -> Option<Candidate> {
    manifest
        .entries()
        .iter()
        .filter_map(|entry| {
            pattern
                .host_version_of(&entry.file)
                .map(|version| Candidate {
                    file: entry.file.clone(),
                    version: version.to_owned(),
                })
        })
        .max_by(|a, b| systemd_version_cmp(&a.version, &b.version))
}

/// A failed check when what a host with `pattern` installs is not a release of ours:
/// nothing listed matches, or the newest match's version is not a [`Version`] as written
/// (a pre-release, a `v` prefix), so hosts would install a file this tool never publishes.
pub fn check_host_would_install(manifest: &Manifest, pattern: &MatchPattern) -> Option<Check> {
    let Some(candidate) = host_would_install(manifest, pattern) else {
        return Some(Check::failed(
            MANIFEST_FILE,
            CheckKind::HostWouldInstall,
            format!("lists no file that matches {pattern}, so a host would install nothing"),
        ));
    };
    let reason = match candidate.version.parse::<Version>() {
        Ok(version) if version.as_str() == candidate.version => return None,
        Ok(version) => format!(
            "its version is written {:?}, not {version}",
            candidate.version
        ),
        Err(invalid) => invalid.reason().to_owned(),
    };
    Some(Check::failed(
        &candidate.file,
        CheckKind::HostWouldInstall,
        format!(
            "hosts would install {} (version {} as systemd reads it, the newest that matches \
             {pattern}), which is not a release this tool publishes: {reason}",
            candidate.file, candidate.version
        ),
    ))
}

/// The listed entries that `selection` picks, in manifest order.
pub fn select<'a>(
    manifest: &'a Manifest,
    pattern: &MatchPattern,
    selection: &Selection,
) -> Result<Vec<&'a ManifestEntry>, VerifyError> {
    let version = match selection {
        Selection::All => return Ok(manifest.entries().iter().collect()),
        Selection::Newest => {
            let newest = host_would_install(manifest, pattern).ok_or_else(|| {
                VerifyError::NothingMatches {
                    pattern: pattern.clone(),
                }
            })?;
            let entry = manifest
                .get(&newest.file)
                .expect("the newest match is a listed file");
            return Ok(vec![entry]);
        }
        Selection::Version(version) => version,
    };
    let file = pattern.file_for(version);
    match manifest.get(&file) {
        Some(entry) => Ok(vec![entry]),
        None => Err(VerifyError::VersionNotListed {
            version: version.clone(),
            file,
            pattern: pattern.clone(),
        }),
    }
}

/// The hashes of an image, computed as it goes by ([`io::Write`]), so that a download is
/// read once and never held in memory.
pub struct ImageDigest {
    sha256: Sha256,
    signed: SignedDataHash,
}

impl Default for ImageDigest {
    fn default() -> Self {
        ImageDigest {
            sha256: Sha256::new(),
            signed: SignedDataHash::for_our_signatures(),
        }
    }
}

impl ImageDigest {
    /// The sha256 of what was written so far, lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256.clone().finalize())
    }
}

impl io::Write for ImageDigest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sha256.update(buf);
        self.signed.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A companion file of an image (`.sha256`, `.asc`): its bytes, or why there are none.
#[derive(Debug, Clone)]
pub enum Companion {
    Found(Vec<u8>),
    /// Not there (a missing file, a 404), and why it is known to be missing.
    Missing(String),
    /// Not readable for another reason.
    Unreadable(String),
}

impl Companion {
    /// The detail of a check that could not read the file, if it could not.
    fn unread(&self) -> Option<String> {
        match self {
            Companion::Found(_) => None,
            Companion::Missing(reason) => Some(format!("is missing: {reason}")),
            Companion::Unreadable(reason) => Some(format!("cannot be read: {reason}")),
        }
    }
}

/// The checks of one listed image: its sha256 (from `digest`, what was read of it) against
/// `entry`, its `.sha256` file against `entry`, and its `.asc` over the image with `keys`.
pub fn check_image(
    entry: &ManifestEntry,
    digest: ImageDigest,
    sha256_file: &Companion,
    signature: &Companion,
    keys: &Keyring,
) -> Vec<Check> {
    let actual = hex::encode(digest.sha256.finalize());
    let hash = if actual == entry.sha256 {
        Check::passed(
            &entry.file,
            CheckKind::Sha256,
            format!("sha256 matches {MANIFEST_FILE}"),
        )
    } else {
        Check::failed(
            &entry.file,
            CheckKind::Sha256,
            format!(
                "sha256 is {actual}, but {MANIFEST_FILE} lists {}",
                entry.sha256
            ),
        )
    };

    let asc = format!("{}.asc", entry.file);
    let signature = match signature {
        Companion::Missing(_) | Companion::Unreadable(_) => Check::failed(
            &asc,
            CheckKind::Signature,
            signature.unread().unwrap_or_default(),
        ),
        Companion::Found(bytes) => match keys.verify_detached_hashed(digest.signed, bytes) {
            Ok(signer) => Check::passed(
                &asc,
                CheckKind::Signature,
                format!("good signature by {signer} on {}", entry.file),
            ),
            Err(e) => Check::failed(
                &asc,
                CheckKind::Signature,
                format!("does not verify {}: {e}", entry.file),
            ),
        },
    };
    vec![hash, check_sha256_file(entry, sha256_file), signature]
}

/// What the provenance record of an image showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceChecks {
    pub checks: Vec<Check>,
    /// The upstream asset the image came from, when the record and its signature passed.
    pub upstream: Option<UpstreamAsset>,
}

/// `text` from a record, with control characters (a terminal's escape sequences among them)
/// shown as `\u{FFFD}`: a record signed by a trusted key is still text from the network.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// The failed check of a manifest that could not be had or trusted: its format's when the
/// manifest is the file at fault, its signature's otherwise.
pub fn manifest_failure(error: &VerifyError) -> Check {
    let file = match error {
        VerifyError::Missing { file, .. } | VerifyError::Unreadable { file, .. } => file.as_str(),
        VerifyError::BadManifest(_) => MANIFEST_FILE,
        _ => MANIFEST_SIGNATURE_FILE,
    };
    let kind = if file == MANIFEST_FILE {
        CheckKind::ManifestFormat
    } else {
        CheckKind::ManifestSignature
    };
    Check::failed(file, kind, error.to_string())
}

/// The checks of the provenance record of the listed image `entry`, whose bytes have the
/// sha256 `image_sha256`: the record's `.asc` over it with `keys`, and the record itself (a
/// record of this tool whose subject is the image by name and digest). An image without a
/// record (published before records existed) passes with a check that says so.
pub fn check_provenance(
    entry: &ManifestEntry,
    image_sha256: &str,
    record: &Companion,
    signature: &Companion,
    keys: &Keyring,
) -> ProvenanceChecks {
    let record_name = record_file_name(&entry.file);
    let bytes = match record {
        Companion::Found(bytes) => bytes,
        // Its signature without it: the record was there, and someone took it away.
        Companion::Missing(_) if matches!(signature, Companion::Found(_)) => {
            return ProvenanceChecks {
                checks: vec![Check::failed(
                    &record_name,
                    CheckKind::Provenance,
                    format!(
                        "is missing, but its signature {} is there: the record was removed",
                        record_signature_file_name(&entry.file)
                    ),
                )],
                upstream: None,
            };
        }
        Companion::Missing(_) => {
            return ProvenanceChecks {
                checks: vec![Check::passed(
                    &record_name,
                    CheckKind::Provenance,
                    format!(
                        "no provenance record for {}: not checked (images published before records existed have none)",
                        entry.file
                    ),
                )],
                upstream: None,
            };
        }
        Companion::Unreadable(_) => {
            return ProvenanceChecks {
                checks: vec![Check::failed(
                    &record_name,
                    CheckKind::Provenance,
                    record.unread().unwrap_or_default(),
                )],
                upstream: None,
            };
        }
    };
    let signature_name = record_signature_file_name(&entry.file);
    let signature = match signature {
        Companion::Found(signature) => match keys.verify_detached(bytes.as_slice(), signature) {
            Ok(signer) => Check::passed(
                &signature_name,
                CheckKind::ProvenanceSignature,
                format!("good signature by {signer} on {record_name}"),
            ),
            Err(e) => Check::failed(
                &signature_name,
                CheckKind::ProvenanceSignature,
                format!("does not verify {record_name}: {e}"),
            ),
        },
        Companion::Missing(_) | Companion::Unreadable(_) => Check::failed(
            &signature_name,
            CheckKind::ProvenanceSignature,
            signature.unread().unwrap_or_default(),
        ),
    };
    let (content, upstream) = match read_record(bytes) {
        // What an unsigned record says is anyone's word: it is not repeated as checked.
        _ if !signature.ok => (
            Check::failed(
                &record_name,
                CheckKind::Provenance,
                "is not trusted: its signature does not verify, so what it says is not shown"
                    .to_owned(),
            ),
            None,
        ),
        Err(e) => (
            Check::failed(
                &record_name,
                CheckKind::Provenance,
                format!("is not a provenance record of this tool: {e}"),
            ),
            None,
        ),
        Ok(statement) => {
            let subject = statement.image().expect("a read record names one image");
            if subject.name != entry.file {
                let detail = format!("is about {}, not {}", subject.name, entry.file);
                (
                    Check::failed(&record_name, CheckKind::Provenance, detail),
                    None,
                )
            } else if subject.digest.sha256 != image_sha256 {
                let detail = format!(
                    "names sha256 {} for {}, but the image has {image_sha256}",
                    subject.digest.sha256, entry.file
                );
                (
                    Check::failed(&record_name, CheckKind::Provenance, detail),
                    None,
                )
            } else {
                let upstream = statement.upstream_asset();
                let from = upstream
                    .as_ref()
                    .map(UpstreamAsset::describe)
                    .unwrap_or_default();
                let detail = printable(&format!(
                    "{} was built from {from} by alloy-sysext-automation {}, started by {}",
                    entry.file,
                    statement.builder_version(),
                    statement
                        .predicate
                        .run_details
                        .metadata
                        .started_by
                        .describe()
                ));
                (
                    Check::passed(&record_name, CheckKind::Provenance, detail),
                    upstream,
                )
            }
        }
    };
    let upstream = upstream.filter(|_| signature.ok);
    ProvenanceChecks {
        checks: vec![signature, content],
        upstream,
    }
}

/// The `.sha256` file must be the one `sha256sum` line of `entry`.
pub fn check_sha256_file(entry: &ManifestEntry, file: &Companion) -> Check {
    let name = format!("{}.sha256", entry.file);
    let bytes = match file {
        Companion::Found(bytes) => bytes,
        Companion::Missing(_) | Companion::Unreadable(_) => {
            return Check::failed(
                &name,
                CheckKind::Sha256File,
                file.unread().unwrap_or_default(),
            );
        }
    };
    let listed = std::str::from_utf8(bytes)
        .map_err(|_| "it is not UTF-8 text".to_owned())
        .and_then(|text| Manifest::parse(text).map_err(|e| e.to_string()));
    let detail = match listed.as_ref().map(|m| m.entries()) {
        Err(reason) => format!("is not a sha256sum line: {reason}"),
        Ok([only]) if only == entry => {
            return Check::passed(
                &name,
                CheckKind::Sha256File,
                format!("lists the sha256 that {MANIFEST_FILE} lists"),
            );
        }
        Ok([only]) => format!(
            "lists {} for {}, but {MANIFEST_FILE} lists {} for {}",
            only.sha256, only.file, entry.sha256, entry.file
        ),
        Ok(entries) => format!(
            "holds {} lines, expected exactly one for {}",
            entries.len(),
            entry.file
        ),
    };
    Check::failed(&name, CheckKind::Sha256File, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &[&str]) -> Manifest {
        let text: String = files
            .iter()
            .map(|file| format!("{}  {file}\n", "0".repeat(64)))
            .collect();
        Manifest::parse(&text).unwrap()
    }

    #[test]
    fn the_newest_match_is_what_a_host_installs() {
        let m = manifest(&[
            "alloy-1.9.0-amd64.raw",
            "alloy-1.10.0-amd64.raw",
            "alloy-1.11.0-arm64.raw",
            "alloy-1.12.0.raw",
        ]);
        let pattern: MatchPattern = DEFAULT_MATCH_PATTERN.parse().unwrap();
        assert_eq!(
            host_would_install(&m, &pattern),
            Some(Candidate {
                file: "alloy-1.10.0-amd64.raw".into(),
                version: "1.10.0".into()
            })
        );
        let files = |selection| -> Vec<String> {
            select(&m, &pattern, &selection)
                .unwrap()
                .iter()
                .map(|e| e.file.clone())
                .collect()
        };
        assert_eq!(files(Selection::Newest), ["alloy-1.10.0-amd64.raw"]);
        assert_eq!(
            files(Selection::Version("1.9.0".parse().unwrap())),
            ["alloy-1.9.0-amd64.raw"]
        );
        assert_eq!(files(Selection::All).len(), 4);
        assert!(matches!(
            select(&m, &pattern, &Selection::Version("1.11.0".parse().unwrap())),
            Err(VerifyError::VersionNotListed { .. })
        ));
        let arm: MatchPattern = "alloy-@v-riscv64.raw".parse().unwrap();
        assert!(matches!(
            select(&m, &arm, &Selection::Newest),
            Err(VerifyError::NothingMatches { .. })
        ));
    }

    #[test]
    fn a_host_pick_that_is_no_release_of_ours_fails() {
        let pattern: MatchPattern = DEFAULT_MATCH_PATTERN.parse().unwrap();
        let m = manifest(&["alloy-1.19.0-amd64.raw", "alloy-1.20.0-rc1-amd64.raw"]);
        assert_eq!(
            host_would_install(&m, &pattern),
            Some(Candidate {
                file: "alloy-1.20.0-rc1-amd64.raw".into(),
                version: "1.20.0-rc1".into()
            })
        );
        let check = check_host_would_install(&m, &pattern).unwrap();
        assert_eq!(check.file, "alloy-1.20.0-rc1-amd64.raw");
        assert!(!check.ok);
        let files: Vec<&str> = select(&m, &pattern, &Selection::Newest)
            .unwrap()
            .iter()
            .map(|e| e.file.as_str())
            .collect();
        assert_eq!(files, ["alloy-1.20.0-rc1-amd64.raw"]);
        assert_eq!(
            check_host_would_install(&manifest(&["alloy-1.19.0-amd64.raw"]), &pattern),
            None
        );
        let nothing =
            check_host_would_install(&manifest(&["alloy-1.19.0-arm64.raw"]), &pattern).unwrap();
        assert_eq!(
            nothing,
            Check::failed(
                MANIFEST_FILE,
                CheckKind::HostWouldInstall,
                "lists no file that matches alloy-@v-amd64.raw, so a host would install nothing"
            )
        );
    }

    #[test]
    fn a_sha256_file_must_name_the_listed_hash_and_file() {
        let entry = ManifestEntry {
            sha256: "a".repeat(64),
            file: "alloy-1.0.0-amd64.raw".into(),
        };
        let found = |text: String| Companion::Found(text.into_bytes());
        let good = check_sha256_file(
            &entry,
            &found(format!("{}  alloy-1.0.0-amd64.raw\n", "a".repeat(64))),
        );
        assert!(good.ok, "{good:?}");
        for bad in [
            format!("{}  alloy-1.0.0-amd64.raw\n", "b".repeat(64)),
            format!("{}  alloy-1.0.1-amd64.raw\n", "a".repeat(64)),
            "garbage\n".to_owned(),
            String::new(),
        ] {
            let check = check_sha256_file(&entry, &found(bad.clone()));
            assert!(!check.ok, "{bad:?}");
            assert_eq!(check.file, "alloy-1.0.0-amd64.raw.sha256");
        }
    }

    #[test]
    fn a_record_taken_away_from_beside_its_signature_fails() {
        let entry = ManifestEntry {
            sha256: "a".repeat(64),
            file: "alloy-1.2.3-amd64.raw".into(),
        };
        let keys = Keyring::from(
            crate::signing::SigningKey::generate(crate::signing::KeyAlgorithm::Ed25519, "t")
                .unwrap()
                .public_key(),
        );
        let missing = Companion::Missing("404".into());
        let checks = check_provenance(
            &entry,
            &entry.sha256,
            &missing,
            &Companion::Found(b"signature".to_vec()),
            &keys,
        );
        assert_eq!(checks.checks.len(), 1);
        assert!(!checks.checks[0].ok);
        assert_eq!(
            checks.checks[0].detail,
            "is missing, but its signature alloy-1.2.3-amd64.raw.intoto.json.asc is there: the record was removed"
        );
        // Neither there: an image from before records, which passes.
        let checks = check_provenance(&entry, &entry.sha256, &missing, &missing, &keys);
        assert!(checks.checks[0].ok);
    }

    #[test]
    fn text_from_a_record_is_shown_without_control_characters() {
        assert_eq!(
            printable("grafana/alloy\u{1b}[2K\rok v1\n"),
            "grafana/alloy\u{FFFD}[2K\u{FFFD}ok v1\u{FFFD}"
        );
    }
}
