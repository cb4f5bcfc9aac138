//! `release`: a release was published, edited, deleted, … in a repository.

use serde::Deserialize;

use super::shared::{Account, lenient};

/// The fields of a `release` payload besides the [`Envelope`](super::Envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ReleasePayload {
    #[serde(deserialize_with = "lenient")]
    pub release: Option<Release>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Release {
    #[serde(deserialize_with = "lenient")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "lenient")]
    pub tag_name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub draft: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    pub prerelease: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    pub author: Option<Account>,
}
