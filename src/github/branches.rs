//! Branches through the Git refs API.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::{escape_repo, escape_segments};

/// The commit `branch` of `repo` points at, or `None` when there is no such branch.
pub async fn branch_head(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    branch: &str,
) -> Result<Option<String>, ApiError> {
    let reference: Option<Reference> = api
        .get_optional_json(
            &format!(
                "/repos/{}/git/ref/heads/{}",
                escape_repo(repo),
                escape_segments(branch)?
            ),
            auth,
            &format!("reading branch {branch} of {repo}"),
        )
        .await?;
    Ok(reference.map(|reference| reference.object.sha))
}

/// A Git reference, as far as its target.
#[derive(Deserialize)]
struct Reference {
    object: GitObject,
}

#[derive(Deserialize)]
struct GitObject {
    sha: String,
}

/// Points `branch` at `sha`, creating it or moving it there (a stale branch is reset).
pub async fn reset_branch(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    branch: &str,
    sha: &str,
) -> Result<(), ApiError> {
    let exists = branch_head(api, auth, repo, branch).await?;
    let response = match exists {
        Some(current) if current == sha => return Ok(()),
        Some(_) => {
            api.request(
                Method::PATCH,
                &format!(
                    "/repos/{}/git/refs/heads/{}",
                    escape_repo(repo),
                    escape_segments(branch)?
                ),
                auth,
                Some(&json!({"sha": sha, "force": true})),
            )
            .await?
        }
        None => {
            api.request(
                Method::POST,
                &format!("/repos/{}/git/refs", escape_repo(repo)),
                auth,
                Some(&json!({"ref": format!("refs/heads/{branch}"), "sha": sha})),
            )
            .await?
        }
    };
    if !response.is_success() {
        return Err(response.into_error(&format!("pointing {branch} of {repo} at {sha}")));
    }
    Ok(())
}
