//! Issues: tracking issues found by title and label, comments, closing.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::escape_component;

/// An issue, as far as the pipeline needs it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub html_url: String,
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

/// The open issue titled `title` with `label`, if any (pull requests are not issues here).
pub async fn find_open_issue(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    label: &str,
    title: &str,
) -> Result<Option<Issue>, ApiError> {
    let label = escape_component(label);
    for page in 1..=10 {
        let issues: Vec<Issue> = api
            .get_json(
                &format!("/repos/{repo}/issues?state=open&labels={label}&per_page=100&page={page}"),
                auth,
            )
            .await?;
        let count = issues.len();
        if let Some(found) = issues
            .into_iter()
            .find(|i| i.pull_request.is_none() && i.title == title)
        {
            return Ok(Some(found));
        }
        if count < 100 {
            break;
        }
    }
    Ok(None)
}

/// Opens an issue.
pub async fn open_issue(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    title: &str,
    body: &str,
    labels: &[&str],
) -> Result<Issue, ApiError> {
    api.send_json(
        Method::POST,
        &format!("/repos/{repo}/issues"),
        auth,
        &json!({"title": title, "body": body, "labels": labels}),
    )
    .await
}

/// Comments on issue or pull request `number`.
pub async fn comment(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    number: u64,
    body: &str,
) -> Result<(), ApiError> {
    let _: serde_json::Value = api
        .send_json(
            Method::POST,
            &format!("/repos/{repo}/issues/{number}/comments"),
            auth,
            &json!({ "body": body }),
        )
        .await?;
    Ok(())
}

/// Closes issue `number` as completed.
pub async fn close_issue(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    number: u64,
) -> Result<(), ApiError> {
    let _: serde_json::Value = api
        .send_json(
            Method::PATCH,
            &format!("/repos/{repo}/issues/{number}"),
            auth,
            &json!({"state": "closed", "state_reason": "completed"}),
        )
        .await?;
    Ok(())
}
