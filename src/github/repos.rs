//! A repository's visibility, as `GET /repos/{owner}/{repo}` reports it: who may read what
//! the App writes about it.

use serde::Deserialize;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::escape_repo;

/// Who may read a repository, from the fewest readers to the most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Visibility {
    /// Its collaborators only.
    Private,
    /// The members of its enterprise.
    Internal,
    /// Everyone.
    Public,
}

/// GitHub's answer, as far as it is read. `visibility` is newer than `private` and missing
/// from some answers (GitHub Enterprise Server's older versions).
#[derive(Debug, Deserialize)]
struct RepositoryAnswer {
    private: bool,
    visibility: Option<String>,
}

impl From<RepositoryAnswer> for Visibility {
    fn from(answer: RepositoryAnswer) -> Visibility {
        match answer.visibility.as_deref() {
            Some("public") if !answer.private => Visibility::Public,
            Some("internal") => Visibility::Internal,
            // An unknown value is taken as the narrowest, so nothing is shown too widely.
            Some(_) => Visibility::Private,
            None if answer.private => Visibility::Private,
            None => Visibility::Public,
        }
    }
}

/// Who may read `repo`.
pub async fn visibility(api: &GitHubApi, auth: Auth, repo: &str) -> Result<Visibility, ApiError> {
    let answer: RepositoryAnswer = api
        .get_json(&format!("/repos/{}", escape_repo(repo)), auth)
        .await?;
    Ok(answer.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Visibility {
        serde_json::from_str::<RepositoryAnswer>(json)
            .unwrap()
            .into()
    }

    #[test]
    fn visibility_is_read_from_both_fields() {
        assert_eq!(
            read(r#"{"private": false, "visibility": "public"}"#),
            Visibility::Public
        );
        assert_eq!(
            read(r#"{"private": true, "visibility": "private"}"#),
            Visibility::Private
        );
        assert_eq!(
            read(r#"{"private": true, "visibility": "internal"}"#),
            Visibility::Internal
        );
        assert_eq!(read(r#"{"private": true}"#), Visibility::Private);
        assert_eq!(read(r#"{"private": false}"#), Visibility::Public);
        // Contradicting or unknown answers are the narrowest.
        assert_eq!(
            read(r#"{"private": true, "visibility": "public"}"#),
            Visibility::Private
        );
        assert_eq!(
            read(r#"{"private": false, "visibility": "secret"}"#),
            Visibility::Private
        );
        assert!(Visibility::Private < Visibility::Internal);
        assert!(Visibility::Internal < Visibility::Public);
    }
}
