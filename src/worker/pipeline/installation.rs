//! Which installation of the App has a repository: the one the stored installation events
//! name, else the one GitHub names. The App acts on a repository only as that installation.

use crate::database::{Database, DatabaseError};
use crate::github::api::{ApiError, GitHubApi};
use crate::github::installations::installation_of_repository;

/// Why the installation that has a repository is not known.
#[derive(Debug, thiserror::Error)]
pub enum InstallationLookupError {
    /// The stored installations could not be read.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// GitHub could not be asked.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Neither the stored events nor GitHub know an installation that has `repo`.
    #[error("the App is not installed on {repo}; install it there to let it act")]
    NotInstalled { repo: String },
}

/// The id of the installation that has `repo`: from the installation events stored, else as
/// GitHub answers (`GET /repos/{repo}/installation`).
pub async fn installation_of(
    database: &Database,
    github: &GitHubApi,
    repo: &str,
) -> Result<i64, InstallationLookupError> {
    if let Some(id) = database.installation_for_repository(repo).await? {
        return Ok(id);
    }
    installation_of_repository(github, repo)
        .await?
        .ok_or_else(|| InstallationLookupError::NotInstalled {
            repo: repo.to_owned(),
        })
}
