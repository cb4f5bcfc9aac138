//! The provenance record of an image: an in-toto Statement v1 whose predicate is a SLSA
//! Provenance v1, published beside the image as `<image>.intoto.json` with a detached
//! OpenPGP signature (`<image>.intoto.json.asc`) by the key that signs the image.
//!
//! Every image file listed in `SHA256SUMS` has its own record: a DDI's
//! (`alloy-V-ARCH.ddi.raw.intoto.json`) holds the same build as its squashfs image's, with
//! the DDI as its subject, since the DDI is made from that image.
//!
//! It says what the image is made of and how: the upstream repository, release tag and
//! asset, the asset's sha256 and what it was checked against, the binary's sha256, every
//! setting that changes the image's bytes, this tool's version and source revision, and what
//! started the build. It holds no timestamp: the same build gives the same record, and a
//! published record stays as long as its image does.
//!
//! - [`statement`]: the in-toto Statement and its subject;
//! - [`predicate`]: the SLSA Provenance predicate, with this tool's parameters;
//! - [`origin`]: what the caller knows and the build does not (where the zip came from, how
//!   it was checked, who asked);
//! - [`record`]: a build's record, made and written;
//! - [`read`]: a record read back and checked, and the settings to rebuild it with;
//! - [`difference`]: why an image rebuilt from its record is not the published one.

pub mod difference;
pub mod origin;
pub mod predicate;
pub mod read;
pub mod record;
pub mod statement;

pub use origin::{AssetCheck, BuildOrigin, BuilderKind, CheckedAsset, StartEvent, StartedBy};
pub use read::{RecordError, read_record};
pub use record::{ddi_record_of, record_file_name, record_of, record_signature_file_name};
pub use statement::Statement;

/// What a record's name ends in, after the image's name.
pub const RECORD_SUFFIX: &str = ".intoto.json";

/// The `buildType` of this tool's records: a sysext image built from an upstream release's
/// zip, with the parameters [`predicate::ExternalParameters`] holds.
pub const BUILD_TYPE: &str = "urn:alloy-sysext-automation:build-type:sysext-image:v1";

#[cfg(test)]
mod tests;
