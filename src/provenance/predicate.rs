//! The SLSA Provenance v1 predicate (`https://slsa.dev/provenance/v1`) as this tool writes
//! it: the build definition (its parameters and the upstream files it read) and the run
//! details (this tool, its version and source revision, and what started the build).
//!
//! Every object is a struct with its fields in a fixed order and no map, so the same build
//! always serializes to the same bytes. Unknown fields are ignored when reading, as the
//! in-toto parsing rules ask.

use serde::{Deserialize, Serialize};

use super::origin::{AssetCheck, StartedBy};
use super::statement::DigestSet;
use crate::arch::Arch;
use crate::version::Version;

/// The predicate: how the image was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

/// Everything the image's bytes depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// [`super::BUILD_TYPE`].
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    /// The upstream asset, then the binary taken out of it.
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// What the build was asked for: the upstream release and asset, and the image's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    pub upstream: UpstreamRelease,
    pub version: Version,
    #[serde(with = "arch_text")]
    pub arch: Arch,
    pub image: ImageSettings,
}

/// The upstream release the zip is an asset of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRelease {
    /// `owner/name` on GitHub.
    pub repository: String,
    pub tag: String,
    /// The zip's asset name.
    pub asset: String,
    /// The entry in the zip that holds the binary.
    pub binary: String,
}

/// The settings that decide the image's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSettings {
    /// The extension's name: image file names and the paths inside.
    pub name: String,
    /// `xz`, `zstd` or `gzip`.
    pub compression: String,
    pub compression_level: u32,
    /// Squashfs block size in bytes.
    pub block_size: u32,
    /// The mtime of every entry but the root directory (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u32,
}

/// What this tool decides by itself: the tree inside the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    /// Every entry under the root, directories first, all owned by root:root.
    pub layout: Vec<LayoutEntry>,
}

/// One path in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutEntry {
    pub path: String,
    /// `directory` or `file`.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Permission bits in octal (`0755`).
    pub mode: String,
    /// A file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Directory,
    File,
}

/// A file the build read (in-toto's ResourceDescriptor, with the fields this tool uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    pub name: String,
    pub digest: DigestSet,
    #[serde(default)]
    pub annotations: Annotations,
}

/// What this tool says about a file it read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    /// The upstream asset: the published digests its sha256 matched when it was downloaded.
    /// Empty for a zip given as a file, which this tool did not download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_against: Option<Vec<AssetCheck>>,
    /// The binary: the asset it was taken out of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted_from: Option<String>,
    /// The binary: its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Who built the image, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: BuildMetadata,
}

/// This tool, as the server or as someone's command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    /// [`super::BuilderKind::id`].
    pub id: String,
    pub version: BuilderVersion,
}

/// `builder.version`: this tool's version and the source revision it was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderVersion {
    #[serde(rename = "alloy-sysext-automation")]
    pub tool: String,
    #[serde(rename = "sourceRevision")]
    pub source_revision: String,
}

/// About this build (SLSA's `startedOn`/`finishedOn` are left out: a record holds no time,
/// so the same build gives the same record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildMetadata {
    /// What started the build (an extension field, named as SLSA asks: `<vendor>_<name>`).
    #[serde(rename = "alloysysext_startedBy")]
    pub started_by: StartedBy,
}

/// An architecture by its upstream name (`amd64`).
mod arch_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::arch::Arch;

    pub fn serialize<S: Serializer>(arch: &Arch, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(arch.upstream_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arch, D::Error> {
        let text = String::deserialize(deserializer)?;
        Arch::ALL
            .into_iter()
            .find(|arch| arch.upstream_name() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown architecture {text:?}")))
    }
}
