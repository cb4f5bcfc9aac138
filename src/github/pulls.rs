//! Pull requests: found by head branch, opened, updated, closed, assigned.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::{escape_component, escape_repo};

/// A pull request, as far as the pipeline needs it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// The head branch and commit; GitHub always sends it.
    #[serde(default)]
    pub head: Option<PullHead>,
    /// Who opened it.
    #[serde(default)]
    pub user: Option<PullAuthor>,
}

/// The author of a pull request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PullAuthor {
    pub login: String,
}

/// The head of a pull request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PullHead {
    /// The commit the pull request's branch is at.
    pub sha: String,
}

/// The open pull request from `branch` of `repo` itself, if any.
pub async fn open_pull_for_branch(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    branch: &str,
) -> Result<Option<PullRequest>, ApiError> {
    // `head` needs `owner:branch`: a bare branch name is ignored and lists every PR.
    let owner = repo.split('/').next().unwrap_or(repo);
    let pulls: Vec<PullRequest> = api
        .get_json(
            &format!(
                "/repos/{}/pulls?state=open&head={}:{}&per_page=10",
                escape_repo(repo),
                escape_component(owner),
                escape_component(branch)
            ),
            auth,
        )
        .await?;
    Ok(pulls.into_iter().next())
}

/// Opens a pull request from `head` into `base`.
pub async fn open_pull(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    head: &str,
    base: &str,
    title: &str,
    body: &str,
) -> Result<PullRequest, ApiError> {
    api.send_json(
        Method::POST,
        &format!("/repos/{}/pulls", escape_repo(repo)),
        auth,
        &json!({"title": title, "head": head, "base": base, "body": body}),
    )
    .await
}

/// Sets the title and body of pull request `number`.
pub async fn update_pull(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    number: u64,
    title: &str,
    body: &str,
) -> Result<PullRequest, ApiError> {
    api.send_json(
        Method::PATCH,
        &format!("/repos/{}/pulls/{number}", escape_repo(repo)),
        auth,
        &json!({"title": title, "body": body}),
    )
    .await
}

/// Closes pull request `number` without merging it; its branch stays.
pub async fn close_pull(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    number: u64,
) -> Result<PullRequest, ApiError> {
    api.send_json(
        Method::PATCH,
        &format!("/repos/{}/pulls/{number}", escape_repo(repo)),
        auth,
        &json!({"state": "closed"}),
    )
    .await
}

/// Adds `assignees` to issue or pull request `number`.
pub async fn assign(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    number: u64,
    assignees: &[String],
) -> Result<(), ApiError> {
    if assignees.is_empty() {
        return Ok(());
    }
    let _: serde_json::Value = api
        .send_json(
            Method::POST,
            &format!("/repos/{}/issues/{number}/assignees", escape_repo(repo)),
            auth,
            &json!({ "assignees": assignees }),
        )
        .await?;
    Ok(())
}
