//! A build's record: made from what decided the build ([`BuildRequest`], its
//! [`BuildOrigin`](super::BuildOrigin)) and what it found (the zip's, the binary's and the
//! image's digests), and written as JSON, the same bytes for the same build.

use sha2::{Digest, Sha256};

use super::predicate::{
    Annotations, BuildDefinition, BuildMetadata, Builder, BuilderVersion, EntryKind,
    ExternalParameters, ImageSettings, InternalParameters, LayoutEntry, Provenance,
    ResourceDescriptor, RunDetails, UpstreamRelease,
};
use super::statement::{DigestSet, PREDICATE_TYPE, STATEMENT_TYPE, Statement, Subject};
use super::{BUILD_TYPE, RECORD_SUFFIX};
use crate::artifacts::BuildRequest;
use crate::build_info;
use crate::sysext::ImageLayout;
use crate::sysext::layout::EntryContent;
use crate::upstream::zip_entry::ExtractedEntry;

/// `alloy-1.17.1-amd64.raw.intoto.json`: the record of the image `image_file`.
pub fn record_file_name(image_file: &str) -> String {
    format!("{image_file}{RECORD_SUFFIX}")
}

/// `alloy-1.17.1-amd64.raw.intoto.json.asc`: the record's signature.
pub fn record_signature_file_name(image_file: &str) -> String {
    format!("{}.asc", record_file_name(image_file))
}

/// The digests a build found.
#[derive(Debug, Clone, Copy)]
pub struct BuiltDigests<'a> {
    /// The image's sha256.
    pub image_sha256: &'a str,
    /// The zip's sha256, as the build read it.
    pub zip_sha256: &'a str,
    /// The binary taken out of the zip.
    pub binary: &'a ExtractedEntry,
}

/// The record of the image `request` built, with `layout` inside.
pub fn record_of(
    request: &BuildRequest,
    layout: &ImageLayout,
    built: BuiltDigests<'_>,
) -> Statement {
    let origin = &request.origin;
    let squashfs = &request.squashfs;
    Statement {
        statement_type: STATEMENT_TYPE.to_owned(),
        subject: vec![Subject {
            name: request.image_file_name(),
            digest: DigestSet::sha256(built.image_sha256),
        }],
        predicate_type: PREDICATE_TYPE.to_owned(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.to_owned(),
                external_parameters: ExternalParameters {
                    upstream: UpstreamRelease {
                        repository: origin.repository.clone(),
                        tag: origin.tag.clone(),
                        asset: origin.asset.clone(),
                        binary: request.binary_entry.clone(),
                    },
                    version: request.version.clone(),
                    arch: request.arch,
                    image: ImageSettings {
                        name: request.image_name.clone(),
                        compression: squashfs.compression.algorithm().to_owned(),
                        compression_level: squashfs.compression.level(),
                        block_size: squashfs.block_size,
                        source_date_epoch: squashfs.mtime,
                    },
                },
                internal_parameters: InternalParameters {
                    layout: layout_entries(layout, &built.binary.sha256),
                },
                resolved_dependencies: vec![
                    ResourceDescriptor {
                        name: origin.asset.clone(),
                        digest: DigestSet::sha256(built.zip_sha256),
                        annotations: Annotations {
                            checked_against: Some(
                                origin
                                    .checked
                                    .as_ref()
                                    .map(|checked| checked.checked_against.clone())
                                    .unwrap_or_default(),
                            ),
                            ..Annotations::default()
                        },
                    },
                    ResourceDescriptor {
                        name: request.binary_entry.clone(),
                        digest: DigestSet::sha256(&built.binary.sha256),
                        annotations: Annotations {
                            extracted_from: Some(origin.asset.clone()),
                            size: Some(built.binary.size),
                            ..Annotations::default()
                        },
                    },
                ],
            },
            run_details: RunDetails {
                builder: Builder {
                    id: origin.builder.id().to_owned(),
                    version: BuilderVersion {
                        tool: build_info::VERSION.to_owned(),
                        source_revision: build_info::SOURCE_REVISION.to_owned(),
                    },
                },
                metadata: BuildMetadata {
                    started_by: origin.started_by.clone(),
                },
            },
        },
    }
}

/// The entries of `layout`, each file with the sha256 of its content (the binary's is
/// `binary_sha256`).
fn layout_entries(layout: &ImageLayout, binary_sha256: &str) -> Vec<LayoutEntry> {
    layout
        .entries
        .iter()
        .map(|entry| {
            let (kind, sha256) = match &entry.content {
                EntryContent::Directory => (EntryKind::Directory, None),
                EntryContent::Text(text) => (
                    EntryKind::File,
                    Some(hex::encode(Sha256::digest(text.as_bytes()))),
                ),
                EntryContent::Binary(_) => (EntryKind::File, Some(binary_sha256.to_owned())),
            };
            LayoutEntry {
                path: entry.path.clone(),
                kind,
                mode: format!("{:04o}", entry.mode),
                sha256,
            }
        })
        .collect()
}

/// The record of the DDI `ddi_file` (sha256 `ddi_sha256`) made from the squashfs image
/// that `image_record` is the record of: the same build, with the DDI as its subject. The
/// DDI is a function of that image and the verity key, so the image's build is the DDI's.
pub fn ddi_record_of(image_record: &Statement, ddi_file: &str, ddi_sha256: &str) -> Statement {
    Statement {
        subject: vec![Subject {
            name: ddi_file.to_owned(),
            digest: DigestSet::sha256(ddi_sha256),
        }],
        ..image_record.clone()
    }
}

impl Statement {
    /// The record as it is written: pretty-printed JSON, fields in their fixed order, with a
    /// final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a record always serializes");
        text.push('\n');
        text
    }
}
