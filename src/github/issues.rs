//! Issues: tracking issues found by title, opened once, commented on and closed.

use std::ops::ControlFlow;

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::{escape_component, escape_repo};

/// Pages of 100 read at most when looking through issues or comments.
const MAX_PAGES: u32 = 10;

/// An issue, as far as the pipeline needs it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub html_url: String,
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

/// The open issue titled `title`, if any, whatever its labels (pull requests are not issues
/// here). Issues with `label` are read first: the tracking label finds it in one request
/// even in a repository with more open issues than one listing reaches.
pub async fn find_open_issue(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    label: &str,
    title: &str,
) -> Result<Option<Issue>, ApiError> {
    let labelled = format!("&labels={}", escape_component(label));
    let filters = if label.is_empty() {
        vec![""]
    } else {
        vec![labelled.as_str(), ""]
    };
    for filter in filters {
        let mut found = None;
        let path = format!("/repos/{}/issues?state=open{filter}", escape_repo(repo));
        api.for_each_page(&path, auth, MAX_PAGES, |issues: Vec<Issue>| {
            found = issues
                .into_iter()
                .find(|i| i.pull_request.is_none() && i.title == title);
            if found.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// How often opening an issue is tried when GitHub's answers are lost.
const OPEN_ATTEMPTS: u32 = 4;

/// Opens an issue, once: when GitHub fails or its answer is lost, the open issues are read,
/// after a moment, for one with this title (GitHub may have opened it) before asking again.
pub async fn open_issue(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    title: &str,
    body: &str,
    labels: &[&str],
) -> Result<Issue, ApiError> {
    let path = format!("/repos/{}/issues", escape_repo(repo));
    let request = json!({"title": title, "body": body, "labels": labels});
    let mut attempt = 1;
    loop {
        let failure = match api
            .request_not_repeated(Method::POST, &path, auth, Some(&request))
            .await
        {
            Ok(response) if response.is_success() => return response.json(),
            Ok(response) if response.status < 500 => {
                return Err(response.into_error(&format!("POST {path}")));
            }
            Ok(response) => response.into_error(&format!("POST {path}")),
            Err(error) if error.is_transient() => error,
            Err(error) => return Err(error),
        };
        // Give GitHub's listing time to show an issue it opened before failing.
        tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
        if let Some(opened) = find_open_issue(
            api,
            auth,
            repo,
            labels.first().copied().unwrap_or(""),
            title,
        )
        .await?
        {
            tracing::info!(
                repo,
                number = opened.number,
                "the issue was opened although GitHub's answer was lost"
            );
            return Ok(opened);
        }
        if attempt == OPEN_ATTEMPTS {
            return Err(failure);
        }
        tracing::warn!(repo, error = %failure, attempt, "opening an issue failed; trying again");
        attempt += 1;
    }
}

/// A comment on an issue, as far as the pipeline needs it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IssueComment {
    #[serde(default)]
    pub body: String,
    pub user: CommentAuthor,
}

/// Who wrote a comment.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CommentAuthor {
    pub login: String,
    /// `User` or `Bot` (an App's comments).
    #[serde(rename = "type")]
    pub kind: String,
}

/// The comments on issue or pull request `number`, oldest first (at most 1000).
pub async fn issue_comments(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    number: u64,
) -> Result<Vec<IssueComment>, ApiError> {
    let mut comments = Vec::new();
    let path = format!("/repos/{}/issues/{number}/comments?", escape_repo(repo));
    api.for_each_page(&path, auth, MAX_PAGES, |page: Vec<IssueComment>| {
        comments.extend(page);
        ControlFlow::Continue(())
    })
    .await?;
    Ok(comments)
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
            &format!("/repos/{}/issues/{number}/comments", escape_repo(repo)),
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
            &format!("/repos/{}/issues/{number}", escape_repo(repo)),
            auth,
            &json!({"state": "closed", "state_reason": "completed"}),
        )
        .await?;
    Ok(())
}
