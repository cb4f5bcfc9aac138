//! Why an image rebuilt from its record does not have the published image's bytes: the
//! first difference that can be named, looked for in this order: a recorded setting this
//! tool cannot build with, this tool's version (the same version gives the same bytes), the
//! binary the record names against the one in the upstream zip, then the first entry in the
//! two images that differs in content or metadata. When none does, the images still differ
//! (in how the same files are stored), and that is said with both digests.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::read::RecordError;
use super::statement::Statement;
use crate::build_info;
use crate::sysext::contents::{EntryDifference, first_entry_difference, image_contents};
use crate::sysext::inspect::InspectError;

/// The first thing found that tells the published image from the rebuilt one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Difference {
    #[error("the record holds {setting}, which alloy-sysext-automation {this} cannot reproduce: {reason}", this = build_info::VERSION_LINE)]
    Setting { setting: String, reason: String },
    #[error(
        "the record was made by alloy-sysext-automation {recorded}, this is alloy-sysext-automation {this}: only the same version promises the same bytes (a version that changes them says so in its changelog)"
    )]
    ToolVersion { recorded: String, this: String },
    #[error(
        "the binary differs: the record names sha256 {recorded} for {binary}, but the upstream zip holds one with sha256 {upstream}"
    )]
    Binary {
        binary: String,
        recorded: String,
        upstream: String,
    },
    #[error("the published image cannot be read as squashfs: {reason}")]
    UnreadableImage { reason: String },
    #[error("{} differs: {}", .0.shown_path(), .0.what)]
    Entry(EntryDifference),
    #[error(
        "the images differ, but no file does: the published image has sha256 {published}, the rebuilt one {rebuilt}"
    )]
    NoEntry { published: String, rebuilt: String },
}

impl Difference {
    /// One word for scripts: `setting`, `tool_version`, `binary`, `unreadable_image`,
    /// `file`, `image`.
    pub fn kind(&self) -> &'static str {
        match self {
            Difference::Setting { .. } => "setting",
            Difference::ToolVersion { .. } => "tool_version",
            Difference::Binary { .. } => "binary",
            Difference::UnreadableImage { .. } => "unreadable_image",
            Difference::Entry(_) => "file",
            Difference::NoEntry { .. } => "image",
        }
    }
}

impl Serialize for Difference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("Difference", 2)?;
        fields.serialize_field("kind", self.kind())?;
        fields.serialize_field("detail", &self.to_string())?;
        fields.end()
    }
}

/// The settings a record of this tool holds, by where they sit in it: a record that holds
/// another (written by a newer version of this tool) asks for something this one does not
/// do, and would be rebuilt without it.
const KNOWN_SETTINGS: &[(&str, &[&str])] = &[
    (
        "/predicate/buildDefinition/externalParameters",
        &["upstream", "version", "arch", "image"],
    ),
    (
        "/predicate/buildDefinition/externalParameters/upstream",
        &["repository", "tag", "asset", "binary"],
    ),
    (
        "/predicate/buildDefinition/externalParameters/image",
        &[
            "name",
            "compression",
            "compressionLevel",
            "blockSize",
            "sourceDateEpoch",
        ],
    ),
    ("/predicate/buildDefinition/internalParameters", &["layout"]),
];

/// A setting in the record `bytes` (read as `statement`) that this tool cannot build with:
/// one it does not know, or one whose value it cannot build (such as a compression it does
/// not have). `None` when the record can be rebuilt as it says.
pub fn unreproducible_setting(bytes: &[u8], statement: &Statement) -> Option<Difference> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    for (pointer, known) in KNOWN_SETTINGS {
        let Some(Value::Object(fields)) = value.pointer(pointer) else {
            continue;
        };
        if let Some((name, setting)) = fields
            .iter()
            .find(|(name, _)| !known.contains(&name.as_str()))
        {
            let place = pointer
                .trim_start_matches("/predicate/buildDefinition/")
                .replace('/', ".");
            return Some(Difference::Setting {
                setting: format!("{place}.{name} = {setting}"),
                reason: "this version does not know that setting (a newer version wrote it)"
                    .to_owned(),
            });
        }
    }
    match statement.squashfs_options() {
        Err(RecordError::BadSettings(reason)) => Some(Difference::Setting {
            setting: format!(
                "the image settings {}",
                serde_json::to_string(
                    &statement
                        .predicate
                        .build_definition
                        .external_parameters
                        .image
                )
                .unwrap_or_default()
            ),
            reason,
        }),
        _ => None,
    }
}

/// What a rebuild found, to be compared with the published image.
#[derive(Debug, Clone, Copy)]
pub struct Rebuilt<'a> {
    /// The rebuilt image.
    pub image: &'a Path,
    pub sha256: &'a str,
    /// The sha256 of the binary taken out of the upstream zip.
    pub binary_sha256: &'a str,
}

/// The first difference between the published image at `published` (with sha256
/// `published_sha256`, whose record is `record`) and the image rebuilt from that record,
/// after the settings ([`unreproducible_setting`]): this tool's version, the binary, then
/// the images' entries. An error only when the rebuilt image cannot be read.
pub fn first_difference(
    record: &Statement,
    published: &Path,
    published_sha256: &str,
    rebuilt: Rebuilt<'_>,
) -> Result<Difference, InspectError> {
    let recorded_version = record.builder_version();
    if recorded_version != build_info::VERSION_LINE {
        return Ok(Difference::ToolVersion {
            recorded: recorded_version,
            this: build_info::VERSION_LINE.to_owned(),
        });
    }
    if let Some(recorded) = record.binary_sha256()
        && recorded != rebuilt.binary_sha256
    {
        return Ok(Difference::Binary {
            binary: record
                .predicate
                .build_definition
                .external_parameters
                .upstream
                .binary
                .clone(),
            recorded: recorded.to_owned(),
            upstream: rebuilt.binary_sha256.to_owned(),
        });
    }
    let rebuilt_entries = image_contents(rebuilt.image)?;
    let published_entries = match image_contents(published) {
        Ok(entries) => entries,
        Err(
            InspectError::Unreadable { reason, .. }
            | InspectError::Mismatch {
                problems: reason, ..
            },
        ) => {
            return Ok(Difference::UnreadableImage { reason });
        }
    };
    Ok(
        match first_entry_difference(&published_entries, &rebuilt_entries) {
            Some(entry) => Difference::Entry(entry),
            None => Difference::NoEntry {
                published: published_sha256.to_owned(),
                rebuilt: rebuilt.sha256.to_owned(),
            },
        },
    )
}
