//! Releases: the build repository's own, and the upstream list the watch reads.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::{escape_component, escape_repo};

/// A release, as far as the pipeline and the watch need it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ReleaseSummary {
    pub tag_name: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub prerelease: bool,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
}

/// The release tagged `tag` in `repo`, if any.
pub async fn release_by_tag(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    tag: &str,
) -> Result<Option<ReleaseSummary>, ApiError> {
    api.get_optional_json(
        &format!(
            "/repos/{}/releases/tags/{}",
            escape_repo(repo),
            escape_component(tag)
        ),
        auth,
        &format!("reading release {tag} of {repo}"),
    )
    .await
}

/// Creates release `tag` on `target` (a branch). Returns `None` when GitHub says the tag
/// has a release already (made by an earlier attempt).
pub async fn create_release(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    tag: &str,
    target: &str,
    name: &str,
    body: &str,
) -> Result<Option<ReleaseSummary>, ApiError> {
    let response = api
        .request(
            Method::POST,
            &format!("/repos/{}/releases", escape_repo(repo)),
            auth,
            Some(&json!({
                "tag_name": tag,
                "target_commitish": target,
                "name": name,
                "body": body,
                "draft": false,
                "prerelease": false,
            })),
        )
        .await?;
    if response.status == 422 && response.body.contains("already_exists") {
        return Ok(None);
    }
    if !response.is_success() {
        return Err(response.into_error(&format!("creating release {tag} in {repo}")));
    }
    response.json().map(Some)
}
