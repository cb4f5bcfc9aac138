//! `installation` (the App was installed, removed, suspended, …) and
//! `installation_repositories` (repositories were added to or removed from an
//! installation). GitHub sends both to every App, subscribed or not. The installation
//! itself is the [`Envelope`](super::Envelope)'s.

use serde::Deserialize;

use super::shared::{Repository, lenient_list};

/// The fields of an `installation` payload besides the [`Envelope`](super::Envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct InstallationPayload {
    /// The repositories the installation reaches, on `created`.
    #[serde(deserialize_with = "lenient_list")]
    pub repositories: Vec<Repository>,
}

/// The fields of an `installation_repositories` payload besides the
/// [`Envelope`](super::Envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct InstallationRepositoriesPayload {
    #[serde(deserialize_with = "lenient_list")]
    pub repositories_added: Vec<Repository>,
    #[serde(deserialize_with = "lenient_list")]
    pub repositories_removed: Vec<Repository>,
}
