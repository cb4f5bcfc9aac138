//! A record read back: its types checked before anything else (a file of another kind is
//! named as such), then its fields, then that it is whole (one subject named as its
//! parameters name the image, or that image's DDI, the upstream asset and the binary among its dependencies,
//! digests of 64 hex digits). What it says can then be shown, compared with an image, or
//! used to build the image again.

use std::path::PathBuf;

use serde::Serialize;

use super::BUILD_TYPE;
use super::origin::{AssetCheck, BuildOrigin, BuilderKind, CheckedAsset};
use super::predicate::ResourceDescriptor;
use super::statement::{PREDICATE_TYPE, STATEMENT_TYPE, Statement, Subject};
use crate::artifacts::BuildRequest;
use crate::artifacts::image_format::ImageFormat;
use crate::sysext::{Compression, SquashfsOptions};

/// Why bytes are not a record of this tool.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("it is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("its _type is {found}, not {STATEMENT_TYPE}: it is not an in-toto Statement v1")]
    WrongType { found: String },
    #[error(
        "its predicateType is {found}, not {PREDICATE_TYPE}: it is not a SLSA Provenance v1 record"
    )]
    WrongPredicateType { found: String },
    #[error("its buildType is {found}, not {BUILD_TYPE}: it is not a record of this tool")]
    WrongBuildType { found: String },
    #[error("it does not hold the fields this tool's records hold: {0}")]
    Malformed(serde_json::Error),
    #[error("it names {0} subjects; a record of this tool names exactly one image")]
    SubjectCount(usize),
    #[error(
        "its subject is {found}, but its parameters name the image {expected} (extension name, version and architecture)"
    )]
    SubjectName { found: String, expected: String },
    #[error("{what} has sha256 {value:?}, which is not 64 lowercase hex digits")]
    BadDigest { what: String, value: String },
    #[error("its resolvedDependencies do not name {0}, which its parameters name")]
    MissingDependency(String),
    #[error("its image settings cannot be built: {0}")]
    BadSettings(String),
}

/// Reads `bytes` as a record of this tool: an in-toto Statement v1 with a SLSA Provenance v1
/// predicate of [`BUILD_TYPE`], whole.
pub fn read_record(bytes: &[u8]) -> Result<Statement, RecordError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(RecordError::NotJson)?;
    let text_at = |pointer: &str| match value.pointer(pointer) {
        Some(serde_json::Value::String(text)) => format!("{text:?}"),
        Some(other) => other.to_string(),
        None => "missing".to_owned(),
    };
    if value.get("_type").and_then(|v| v.as_str()) != Some(STATEMENT_TYPE) {
        return Err(RecordError::WrongType {
            found: text_at("/_type"),
        });
    }
    if value.get("predicateType").and_then(|v| v.as_str()) != Some(PREDICATE_TYPE) {
        return Err(RecordError::WrongPredicateType {
            found: text_at("/predicateType"),
        });
    }
    let build_type = "/predicate/buildDefinition/buildType";
    if value.pointer(build_type).and_then(|v| v.as_str()) != Some(BUILD_TYPE) {
        return Err(RecordError::WrongBuildType {
            found: text_at(build_type),
        });
    }
    let statement: Statement = serde_json::from_value(value).map_err(RecordError::Malformed)?;
    statement.check_whole()?;
    Ok(statement)
}

/// The upstream asset an image was built from, as its record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamAsset {
    pub repository: String,
    pub tag: String,
    pub asset: String,
    pub sha256: String,
    /// The published digests it matched when downloaded; empty for a zip given as a file.
    pub checked_against: Vec<AssetCheck>,
}

impl UpstreamAsset {
    /// `grafana/alloy v1.17.1 alloy-linux-amd64.zip (sha256 …, checked against …)`.
    pub fn describe(&self) -> String {
        let checked = if self.checked_against.is_empty() {
            "given as a file, not checked against the release".to_owned()
        } else {
            let against: Vec<&str> = self.checked_against.iter().map(|c| c.describe()).collect();
            format!("checked against {}", against.join(" and "))
        };
        format!(
            "{} {} {} (sha256 {}, {checked})",
            self.repository, self.tag, self.asset, self.sha256
        )
    }
}

impl Statement {
    /// The image the record is about (read records name exactly one).
    pub fn image(&self) -> Option<&Subject> {
        match self.subject.as_slice() {
            [image] => Some(image),
            _ => None,
        }
    }

    /// The format of the image the record is about: its subject's name says.
    pub fn image_format(&self) -> ImageFormat {
        match self.image() {
            Some(image) if image.name.ends_with(ImageFormat::Ddi.file_suffix()) => ImageFormat::Ddi,
            _ => ImageFormat::Squashfs,
        }
    }

    /// The dependency named `name`.
    fn dependency(&self, name: &str) -> Option<&ResourceDescriptor> {
        self.predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .find(|dependency| dependency.name == name)
    }

    /// The upstream asset the image was built from.
    pub fn upstream_asset(&self) -> Option<UpstreamAsset> {
        let upstream = &self.predicate.build_definition.external_parameters.upstream;
        let asset = self.dependency(&upstream.asset)?;
        Some(UpstreamAsset {
            repository: upstream.repository.clone(),
            tag: upstream.tag.clone(),
            asset: upstream.asset.clone(),
            sha256: asset.digest.sha256.clone(),
            checked_against: asset
                .annotations
                .checked_against
                .clone()
                .unwrap_or_default(),
        })
    }

    /// The binary's sha256.
    pub fn binary_sha256(&self) -> Option<&str> {
        let upstream = &self.predicate.build_definition.external_parameters.upstream;
        self.dependency(&upstream.binary)
            .map(|binary| binary.digest.sha256.as_str())
    }

    /// `0.1.0 (revision …)`: the version of this tool that made the record.
    pub fn builder_version(&self) -> String {
        let version = &self.predicate.run_details.builder.version;
        format!("{} (revision {})", version.tool, version.source_revision)
    }

    /// The request that builds the record's image again from `zip` (the upstream asset, on
    /// disk), with the recorded settings: the same tool version gives the same bytes. No
    /// compatibility copy is made, since only the image is compared.
    pub fn build_request(&self, zip: PathBuf) -> Result<BuildRequest, RecordError> {
        let parameters = &self.predicate.build_definition.external_parameters;
        let image = &parameters.image;
        let squashfs = self.squashfs_options()?;
        let asset = self
            .upstream_asset()
            .ok_or_else(|| RecordError::MissingDependency(parameters.upstream.asset.clone()))?;
        let mut request = BuildRequest::new(parameters.version.clone(), parameters.arch, zip);
        request.binary_entry = parameters.upstream.binary.clone();
        request.image_name = image.name.clone();
        request.squashfs = squashfs;
        request.compat_name = false;
        request.origin = BuildOrigin {
            repository: asset.repository.clone(),
            tag: asset.tag.clone(),
            asset: asset.asset.clone(),
            checked: Some(CheckedAsset {
                asset: asset.asset,
                sha256: asset.sha256,
                checked_against: asset.checked_against,
            }),
            builder: BuilderKind::CommandLine,
            started_by: super::StartedBy::command_line(),
        };
        Ok(request)
    }

    /// The recorded squashfs settings, as this tool builds with them (on every core: the
    /// bytes do not depend on it); an error names a setting it cannot build with.
    pub fn squashfs_options(&self) -> Result<SquashfsOptions, RecordError> {
        let image = &self.predicate.build_definition.external_parameters.image;
        let compression = Compression::new(&image.compression, Some(image.compression_level))
            .map_err(|e| RecordError::BadSettings(e.to_string()))?;
        let squashfs = SquashfsOptions {
            compression,
            block_size: image.block_size,
            mtime: image.source_date_epoch,
            threads: 0,
        };
        squashfs
            .validate()
            .map_err(|e| RecordError::BadSettings(e.to_string()))?;
        Ok(squashfs)
    }

    /// Checks what [`read_record`] promises beyond the fields' types.
    fn check_whole(&self) -> Result<(), RecordError> {
        let image = self
            .image()
            .ok_or(RecordError::SubjectCount(self.subject.len()))?;
        let parameters = &self.predicate.build_definition.external_parameters;
        let squashfs = format!(
            "{}-{}-{}.raw",
            parameters.image.name,
            parameters.version,
            parameters.arch.upstream_name()
        );
        // A DDI's record holds its squashfs image's build, with the DDI as its subject.
        if image.name != squashfs && image.name != crate::ddi::ddi_file_name(&squashfs) {
            return Err(RecordError::SubjectName {
                found: image.name.clone(),
                expected: squashfs,
            });
        }
        check_digest(&format!("the subject {}", image.name), &image.digest.sha256)?;
        for name in [&parameters.upstream.asset, &parameters.upstream.binary] {
            let dependency = self
                .dependency(name)
                .ok_or_else(|| RecordError::MissingDependency(name.clone()))?;
            check_digest(name, &dependency.digest.sha256)?;
        }
        Ok(())
    }
}

fn check_digest(what: &str, value: &str) -> Result<(), RecordError> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(RecordError::BadDigest {
            what: what.to_owned(),
            value: value.chars().take(80).collect(),
        })
    }
}
