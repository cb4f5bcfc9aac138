//! The App's installations: which one acts on a repository.

use serde::Deserialize;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::escape_repo;

#[derive(Deserialize)]
struct Installation {
    id: i64,
}

/// The id of the App's installation on `repo` (`GET /repos/{repo}/installation`, as the
/// App), or `None` when the App is not installed there.
pub async fn installation_of_repository(
    api: &GitHubApi,
    repo: &str,
) -> Result<Option<i64>, ApiError> {
    let installation: Option<Installation> = api
        .get_optional_json(
            &format!("/repos/{}/installation", escape_repo(repo)),
            Auth::App,
            &format!("finding the App's installation on {repo}"),
        )
        .await?;
    Ok(installation.map(|installation| installation.id))
}
