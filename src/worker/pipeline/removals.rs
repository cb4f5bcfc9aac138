//! The files a version leaves in storage when its lines leave `SHA256SUMS` (a withdrawal or
//! a prune): scheduled to go after the grace period, when the server's sweep
//! (`crate::worker::storage_removals`) deletes them unless they are listed again.

use crate::arch::Arch;
use crate::artifacts::image_format::ImageFormat;
use crate::database::storage_removals::{NewRemoval, RemovalReason};
use crate::manifest::image_name::ImageFileName;
use crate::provenance::{record_file_name, record_signature_file_name};
use crate::settings::channels::Channel;
use crate::version::Version;

/// The files a version keeps in storage beside each image of `listed` (file names from a
/// `SHA256SUMS`), each with the listed image it belongs to: the image's `.sha256` and
/// `.asc`, its provenance record's signature and the record, then the image, and for an
/// amd64 squashfs image the copy under the compatibility name (`alloy-X.Y.Z.raw`, which the
/// manifest does not list) with its own `.sha256` and `.asc`. A DDI (`.ddi.raw`) is listed
/// on its own line and has its own `.sha256`, `.asc` and record. Checksums, signatures and records come
/// before their image, the order in which they are put.
pub fn stored_files(listed: &[String]) -> Vec<StoredFile> {
    let mut files = Vec::new();
    for file in listed {
        let mut add = |name: String, kind: StoredKind| {
            files.push(StoredFile {
                name,
                listed_file: file.clone(),
                kind,
            })
        };
        add(format!("{file}.sha256"), StoredKind::Listed);
        add(format!("{file}.asc"), StoredKind::Listed);
        add(record_signature_file_name(file), StoredKind::Provenance);
        add(record_file_name(file), StoredKind::Provenance);
        add(file.clone(), StoredKind::Listed);
        if let Some(parsed) = ImageFileName::parse(file)
            && parsed.arch == Some(Arch::Amd64)
            && parsed.format == ImageFormat::Squashfs
        {
            let compat = format!("{}-{}.raw", parsed.name, parsed.version);
            add(format!("{compat}.sha256"), StoredKind::Compat);
            add(format!("{compat}.asc"), StoredKind::Compat);
            add(compat, StoredKind::Compat);
        }
    }
    files
}

/// A file of a version in storage, beside a listed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its name, without a channel's prefix.
    pub name: String,
    /// The image in `SHA256SUMS` it belongs to.
    pub listed_file: String,
    pub kind: StoredKind,
}

/// What a stored file is to its image, and so whether every published version has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredKind {
    /// The image, its `.sha256` or its `.asc`: always there.
    Listed,
    /// Part of the compatibility copy, which a build makes only with `image.compat_name`.
    Compat,
    /// The provenance record or its signature, which versions published before records
    /// existed do not have.
    Provenance,
}

impl StoredKind {
    /// Whether a published version may lack the file.
    pub fn may_be_absent(self) -> bool {
        self != StoredKind::Listed
    }
}

/// The storage removals of the images `listed` (files that left `channel`'s `SHA256SUMS`)
/// of `version`: each of their [`stored_files`], under the channel's prefix. Each is
/// guarded by its listed image: listed again in that channel, it stays.
pub fn removals_of(
    listed: &[String],
    version: &Version,
    why: RemovalReason,
    channel: &Channel,
) -> Vec<NewRemoval> {
    stored_files(listed)
        .into_iter()
        .map(|file| NewRemoval {
            key: channel.key(&file.name),
            manifest_key: channel.manifest_key(),
            listed_file: file.listed_file,
            version: version.clone(),
            why,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::channels::{Channels, default_channel_names};

    #[test]
    fn an_amd64_image_takes_its_compatibility_copy_along() {
        let version: Version = "1.2.3".parse().unwrap();
        let listed = [
            "alloy-1.2.3-amd64.raw".to_owned(),
            "alloy-1.2.3-arm64.raw".to_owned(),
        ];
        let root = Channels::new(&default_channel_names());
        let removals = removals_of(&listed, &version, RemovalReason::Pruned, root.first());
        let keys: Vec<(&str, &str)> = removals
            .iter()
            .map(|r| (r.key.as_str(), r.listed_file.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("alloy-1.2.3-amd64.raw.sha256", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3-amd64.raw.asc", "alloy-1.2.3-amd64.raw"),
                (
                    "alloy-1.2.3-amd64.raw.intoto.json.asc",
                    "alloy-1.2.3-amd64.raw"
                ),
                ("alloy-1.2.3-amd64.raw.intoto.json", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3.raw.sha256", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3.raw.asc", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3.raw", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3-arm64.raw.sha256", "alloy-1.2.3-arm64.raw"),
                ("alloy-1.2.3-arm64.raw.asc", "alloy-1.2.3-arm64.raw"),
                (
                    "alloy-1.2.3-arm64.raw.intoto.json.asc",
                    "alloy-1.2.3-arm64.raw"
                ),
                ("alloy-1.2.3-arm64.raw.intoto.json", "alloy-1.2.3-arm64.raw"),
                ("alloy-1.2.3-arm64.raw", "alloy-1.2.3-arm64.raw"),
            ]
        );
        // What a version published before records existed, or without the compatibility
        // copy, lacks.
        let absent: Vec<String> = stored_files(&listed)
            .into_iter()
            .filter(|file| file.kind.may_be_absent())
            .map(|file| file.name)
            .collect();
        assert_eq!(
            absent,
            [
                "alloy-1.2.3-amd64.raw.intoto.json.asc",
                "alloy-1.2.3-amd64.raw.intoto.json",
                "alloy-1.2.3.raw.sha256",
                "alloy-1.2.3.raw.asc",
                "alloy-1.2.3.raw",
                "alloy-1.2.3-arm64.raw.intoto.json.asc",
                "alloy-1.2.3-arm64.raw.intoto.json",
            ]
        );
        assert!(removals.iter().all(|r| r.why == RemovalReason::Pruned
            && r.manifest_key == "SHA256SUMS"
            && r.version == version));
    }

    #[test]
    fn a_ddi_leaves_with_its_own_files_and_no_compatibility_copy() {
        let listed = ["alloy-1.2.3-amd64.ddi.raw".to_owned()];
        let files: Vec<(String, StoredKind)> = stored_files(&listed)
            .into_iter()
            .map(|file| (file.name, file.kind))
            .collect();
        assert_eq!(
            files,
            [
                (
                    "alloy-1.2.3-amd64.ddi.raw.sha256".to_owned(),
                    StoredKind::Listed
                ),
                (
                    "alloy-1.2.3-amd64.ddi.raw.asc".to_owned(),
                    StoredKind::Listed
                ),
                (
                    "alloy-1.2.3-amd64.ddi.raw.intoto.json.asc".to_owned(),
                    StoredKind::Provenance
                ),
                (
                    "alloy-1.2.3-amd64.ddi.raw.intoto.json".to_owned(),
                    StoredKind::Provenance
                ),
                ("alloy-1.2.3-amd64.ddi.raw".to_owned(), StoredKind::Listed),
            ]
        );
    }

    #[test]
    fn a_channel_under_a_prefix_removes_its_own_copies() {
        let version: Version = "1.2.3".parse().unwrap();
        let channels = Channels::new(&["canary".parse().unwrap(), "stable".parse().unwrap()]);
        let removals = removals_of(
            &["alloy-1.2.3-arm64.raw".to_owned()],
            &version,
            RemovalReason::Withdrawn,
            channels.first(),
        );
        let keys: Vec<(&str, &str, &str)> = removals
            .iter()
            .map(|r| {
                (
                    r.key.as_str(),
                    r.manifest_key.as_str(),
                    r.listed_file.as_str(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                (
                    "canary/alloy-1.2.3-arm64.raw.sha256",
                    "canary/SHA256SUMS",
                    "alloy-1.2.3-arm64.raw"
                ),
                (
                    "canary/alloy-1.2.3-arm64.raw.asc",
                    "canary/SHA256SUMS",
                    "alloy-1.2.3-arm64.raw"
                ),
                (
                    "canary/alloy-1.2.3-arm64.raw.intoto.json.asc",
                    "canary/SHA256SUMS",
                    "alloy-1.2.3-arm64.raw"
                ),
                (
                    "canary/alloy-1.2.3-arm64.raw.intoto.json",
                    "canary/SHA256SUMS",
                    "alloy-1.2.3-arm64.raw"
                ),
                (
                    "canary/alloy-1.2.3-arm64.raw",
                    "canary/SHA256SUMS",
                    "alloy-1.2.3-arm64.raw"
                ),
            ]
        );
    }
}
