//! `repository_dispatch` (sent through the API with an event type and a `client_payload`)
//! and `workflow_dispatch` (a workflow started by hand, with its `inputs`): both ask for a
//! build of the `version` they carry.

use serde::Deserialize;

use super::shared::lenient;

/// The fields of a `repository_dispatch` payload besides the [`Envelope`](super::Envelope),
/// whose `action` holds the dispatch's event type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RepositoryDispatchPayload {
    #[serde(deserialize_with = "lenient")]
    pub client_payload: Option<DispatchInputs>,
}

/// The fields of a `workflow_dispatch` payload besides the [`Envelope`](super::Envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WorkflowDispatchPayload {
    #[serde(deserialize_with = "lenient")]
    pub inputs: Option<DispatchInputs>,
}

/// What a dispatch asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DispatchInputs {
    /// The version to build, as the sender wrote it.
    #[serde(deserialize_with = "lenient")]
    pub version: Option<String>,
}
