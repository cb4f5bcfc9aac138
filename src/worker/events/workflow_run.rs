//! `workflow_run`: a GitHub Actions run was requested, started or completed.

use serde::Deserialize;

use super::shared::{Repository, lenient};

/// The fields of a `workflow_run` payload besides the [`Envelope`](super::Envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WorkflowRunPayload {
    #[serde(deserialize_with = "lenient")]
    pub workflow_run: Option<WorkflowRun>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WorkflowRun {
    #[serde(deserialize_with = "lenient")]
    pub id: Option<i64>,
    /// 1 for the first run, one more for each re-run.
    #[serde(deserialize_with = "lenient")]
    pub run_attempt: Option<i64>,
    /// The workflow's name.
    #[serde(deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub head_branch: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub head_sha: Option<String>,
    /// The repository the head commit came from.
    #[serde(deserialize_with = "lenient")]
    pub head_repository: Option<Repository>,
    #[serde(deserialize_with = "lenient")]
    pub conclusion: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub html_url: Option<String>,
}
