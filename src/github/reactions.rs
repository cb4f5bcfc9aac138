//! Reactions on issue and pull request comments: how the App shows it took a command.

use http::Method;
use serde_json::json;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::escape_repo;

/// Adds the reaction `content` (`eyes`, `+1`, …) to the issue or pull request comment
/// `comment_id` in `repo`.
pub async fn react_to_comment(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    comment_id: u64,
    content: &str,
) -> Result<(), ApiError> {
    let path = format!(
        "/repos/{}/issues/comments/{comment_id}/reactions",
        escape_repo(repo)
    );
    let response = api
        .request(
            Method::POST,
            &path,
            auth,
            Some(&json!({ "content": content })),
        )
        .await?;
    if !response.is_success() {
        return Err(response.into_error(&format!("POST {path}")));
    }
    Ok(())
}
