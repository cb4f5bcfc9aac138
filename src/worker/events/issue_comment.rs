//! `issue_comment`: a comment on an issue or a pull request was created, edited or deleted.

use serde::Deserialize;

use super::shared::{Account, lenient};

/// The fields of an `issue_comment` payload besides the [`Envelope`](super::Envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IssueCommentPayload {
    #[serde(deserialize_with = "lenient")]
    pub issue: Option<Issue>,
    #[serde(deserialize_with = "lenient")]
    pub comment: Option<Comment>,
}

/// The issue or pull request commented on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Issue {
    #[serde(deserialize_with = "lenient")]
    pub number: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Comment {
    #[serde(deserialize_with = "lenient")]
    pub id: Option<u64>,
    #[serde(deserialize_with = "lenient")]
    pub body: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub user: Option<Account>,
}
