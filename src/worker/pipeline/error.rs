//! How a step fails: the error it met, kept with its type, and whether trying again later
//! may help. Its text is what the job records and reports as its error.

use super::installation::InstallationLookupError;
use crate::arch::Arch;
use crate::artifacts::{BuildError, MANIFEST_FILE};
use crate::butane::ButaneError;
use crate::database::DatabaseError;
use crate::github::api::ApiError;
use crate::github::release_asset::AssetError;
use crate::manifest::ManifestError;
use crate::signing::SigningError;
use crate::storage::StorageError;

/// Why a step did not finish.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth trying again later, for the reason given.
    #[error("{0}")]
    Transient(String),
    /// Trying again cannot help, for the reason given (a refusal that explains itself).
    #[error("{0}")]
    Permanent(String),
    /// GitHub refused or did not answer.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Storage refused or did not answer.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The state database could not be read or written.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The upstream asset could not be had, or failed its digest check.
    #[error(transparent)]
    Download(Box<AssetError>),
    /// The image for `arch` could not be built.
    #[error("building for {arch}: {source}")]
    Build { arch: Arch, source: BuildError },
    /// The build's thread ended without an answer (it panicked).
    #[error("the build stopped unexpectedly: {0}")]
    BuildStopped(#[source] tokio::task::JoinError),
    /// A `SHA256SUMS` could not be read, or an entry not merged into it; `what` names the
    /// file or the entry.
    #[error("{what}: {source}")]
    Manifest { what: String, source: ManifestError },
    /// The merged `SHA256SUMS` could not be signed.
    #[error("signing {MANIFEST_FILE}: {0}")]
    Signing(#[source] SigningError),
    /// The App is not installed on a repository the job acts on.
    #[error("the App is not installed on {repo}; install it there to let it act")]
    NotInstalled { repo: String },
    /// A file in the job's work directory could not be written or read.
    #[error("{action} {path}: {source}")]
    WorkDir {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// A consumer's Butane file cannot take the new pin.
    #[error("{path} in {repo}: {source}")]
    Pin {
        repo: String,
        path: String,
        source: Box<ButaneError>,
    },
    /// Configured consumers whose update failed in a way that may pass; the job is
    /// retried for them.
    #[error("consumer updates failed: {}", list(.0))]
    ConsumersLeft(Vec<(String, StepError)>),
    /// The server is shutting down; the job resumes from this step on the next start.
    #[error("interrupted")]
    Interrupted,
}

fn list(failures: &[(String, StepError)]) -> String {
    failures
        .iter()
        .map(|(repo, error)| format!("{repo}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

// Boxed: an asset error carries GitHub's answer, and every step's `Result` would be as large.
impl From<AssetError> for StepError {
    fn from(error: AssetError) -> Self {
        StepError::Download(Box::new(error))
    }
}

impl From<InstallationLookupError> for StepError {
    fn from(error: InstallationLookupError) -> Self {
        match error {
            InstallationLookupError::Database(error) => StepError::Database(error),
            InstallationLookupError::Api(error) => StepError::Api(error),
            InstallationLookupError::NotInstalled { repo } => StepError::NotInstalled { repo },
        }
    }
}

impl StepError {
    /// True when the job's row says another replica holds the job now.
    pub fn is_taken_over(&self) -> bool {
        matches!(self, StepError::Database(DatabaseError::LeaseLost { .. }))
    }

    /// True when the lease the step worked under may have passed to another replica (or
    /// could not be checked): the step stopped before a write.
    pub fn is_lost_lease(&self) -> bool {
        matches!(
            self,
            StepError::Api(crate::github::api::ApiError::FenceLost(_))
                | StepError::Storage(crate::storage::StorageError::FenceLost(_))
                | StepError::Database(DatabaseError::LeaseLost { .. })
        )
    }

    /// True when trying again later may succeed: network trouble, rate limits, GitHub's
    /// or storage's 5xx, a busy database, a stop of the server.
    pub fn is_transient(&self) -> bool {
        match self {
            StepError::Transient(_)
            | StepError::Database(_)
            | StepError::WorkDir { .. }
            | StepError::ConsumersLeft(_)
            | StepError::Interrupted => true,
            StepError::Permanent(_)
            | StepError::Build { .. }
            | StepError::BuildStopped(_)
            | StepError::Manifest { .. }
            | StepError::Signing(_)
            | StepError::NotInstalled { .. }
            | StepError::Pin { .. } => false,
            StepError::Api(error) => error.is_transient(),
            StepError::Storage(error) => error.is_transient(),
            StepError::Download(error) => matches!(
                **error,
                AssetError::ReleaseLookup { .. }
                    | AssetError::Download { .. }
                    | AssetError::Write { .. }
            ),
        }
    }

    /// A [`StepError::WorkDir`] for `action` (`"creating"`, `"reading"` …) on `path`.
    pub fn work_dir(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> StepError + use<> {
        let path = path.display().to_string();
        move |source| StepError::WorkDir {
            action,
            path,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_the_error_met_and_retry_follows_its_kind() {
        let storage = StepError::from(StorageError::InvalidKey {
            key: "../x".into(),
            reason: "no parent directories",
        });
        assert!(storage.to_string().starts_with("storage: "), "{storage}");
        assert!(!storage.is_transient());
        let left = StepError::ConsumersLeft(vec![
            (
                "o/a".into(),
                StepError::Transient("GitHub answered 502".into()),
            ),
            ("o/b".into(), StepError::Permanent("gone".into())),
        ]);
        assert_eq!(
            left.to_string(),
            "consumer updates failed: o/a: GitHub answered 502; o/b: gone"
        );
        assert!(left.is_transient());
        let missing = StepError::work_dir("reading", std::path::Path::new("/w/out"))(
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(
            missing.to_string().starts_with("reading /w/out: "),
            "{missing}"
        );
        assert!(missing.is_transient());
        let unreadable = StepError::Manifest {
            what: "SHA256SUMS in o/build cannot be read".into(),
            source: crate::manifest::Manifest::parse("nonsense").unwrap_err(),
        };
        assert!(
            unreadable
                .to_string()
                .starts_with("SHA256SUMS in o/build cannot be read: SHA256SUMS line 1: "),
            "{unreadable}"
        );
        assert!(!unreadable.is_transient());
        let not_installed =
            StepError::from(InstallationLookupError::NotInstalled { repo: "o/c".into() });
        assert_eq!(
            not_installed.to_string(),
            "the App is not installed on o/c; install it there to let it act"
        );
        assert!(!not_installed.is_transient());
    }
}
