//! The in-toto Statement v1 (`https://in-toto.io/Statement/v1`): what a record is about
//! (its subject, an image by name and sha256) and which predicate it carries.

use serde::{Deserialize, Serialize};

use super::predicate::Provenance;

/// The `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The `predicateType` of a SLSA Provenance v1 predicate.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";

/// A provenance record, field by field in the order it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The image: this tool's records name exactly one.
    pub subject: Vec<Subject>,
    /// Always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Provenance,
}

/// A file the statement is about, by name and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The image's file name (`alloy-1.17.1-amd64.raw`).
    pub name: String,
    pub digest: DigestSet,
}

/// A file's digests: this tool writes and reads sha256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSet {
    pub sha256: String,
}

impl DigestSet {
    pub fn sha256(hex: impl Into<String>) -> Self {
        DigestSet { sha256: hex.into() }
    }
}
