//! The build repository's `SHA256SUMS` and `SHA256SUMS.gpg` as published: read by
//! `upload` (is this build published already? may this server sign over it?) and by
//! `manifest` (what to merge into, what to replace).

use super::{StepContext, StepError};
use crate::artifacts::MANIFEST_SIGNATURE_FILE;
use crate::github::api::{ApiError, Auth, GitHubApi};
use crate::github::contents::{RepoFile, read_file};
use crate::manifest::{Manifest, ManifestError};
use crate::settings::BuildRepoSettings;
use crate::settings::channels::Channel;
use crate::signing::SigningKey;
use crate::signing::detached::SignatureIssuers;

/// Why the published `SHA256SUMS` could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PublishedManifestError {
    /// GitHub could not be asked for it.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// It is there but is no `SHA256SUMS`.
    #[error("{path} in {repo} cannot be read: {source}")]
    Unreadable {
        repo: String,
        path: String,
        source: ManifestError,
    },
}

impl From<PublishedManifestError> for StepError {
    fn from(error: PublishedManifestError) -> Self {
        match error {
            PublishedManifestError::Api(error) => StepError::Api(error),
            PublishedManifestError::Unreadable { repo, path, source } => StepError::Manifest {
                what: format!("{path} in {repo} cannot be read"),
                source,
            },
        }
    }
}

/// `channel`'s `SHA256SUMS` as published on the build repository's branch (empty when
/// there is none yet), and the file as read, to write over.
pub async fn read_published_manifest(
    github: &GitHubApi,
    auth: Auth,
    build_repo: &BuildRepoSettings,
    channel: &Channel,
) -> Result<(Manifest, Option<RepoFile>), PublishedManifestError> {
    let repo = &build_repo.repo;
    let path = channel.manifest_key();
    let file = read_file(github, auth, repo, &build_repo.branch, &path).await?;
    let manifest = match &file {
        Some(file) => {
            Manifest::parse(&String::from_utf8_lossy(&file.content)).map_err(|source| {
                PublishedManifestError::Unreadable {
                    repo: repo.clone(),
                    path: path.clone(),
                    source,
                }
            })?
        }
        None => Manifest::default(),
    };
    Ok((manifest, file))
}

/// `channel`'s `SHA256SUMS` in the build repository (empty when there is none yet), and the
/// file as read, to write over.
pub async fn published_manifest(
    context: &StepContext<'_>,
    channel: &Channel,
) -> Result<(Manifest, Option<RepoFile>), StepError> {
    let build_repo = &context.settings.build_repo;
    let auth = context.auth_for(&build_repo.repo).await?;
    Ok(read_published_manifest(context.github, auth, build_repo, channel).await?)
}

/// `channel`'s `SHA256SUMS.gpg` in the build repository, if there is one.
pub async fn published_signature(
    context: &StepContext<'_>,
    auth: Auth,
    channel: &Channel,
) -> Result<Option<RepoFile>, StepError> {
    read_published_signature(context.github, auth, &context.settings.build_repo, channel).await
}

/// `channel`'s `SHA256SUMS.gpg` on the build repository's branch, if there is one.
pub async fn read_published_signature(
    github: &GitHubApi,
    auth: Auth,
    build_repo: &BuildRepoSettings,
    channel: &Channel,
) -> Result<Option<RepoFile>, StepError> {
    Ok(read_file(
        github,
        auth,
        &build_repo.repo,
        &build_repo.branch,
        &channel.signature_key(),
    )
    .await?)
}

/// Refuses to publish over a `SHA256SUMS.gpg` made by a key other than the server's, unless
/// `publish.replace_signatures_by` names that key: hosts check the manifest against the keys
/// they trust, so a manifest signed by a key they do not know stops every update. (A server
/// started without `GPG_PRIVATE_KEY` makes a key of its own; this is what keeps that key
/// from reaching hosts by mistake.) `upload` runs it before it puts anything in storage, and
/// this step again on the signature it is about to replace.
pub fn check_published_signer(
    context: &StepContext<'_>,
    repo: &str,
    published: &[u8],
) -> Result<(), StepError> {
    check_signer(
        context.signing_key,
        &context.settings.publish.replace_signatures_by,
        repo,
        published,
    )
}

/// [`check_published_signer`] for the server's key `key`, which may replace signatures by
/// the keys in `allowed`.
pub fn check_signer(
    key: &SigningKey,
    allowed: &[String],
    repo: &str,
    published: &[u8],
) -> Result<(), StepError> {
    let ours = key.public_key();
    let issuers = match ours.issued(published) {
        Ok(true) => return Ok(()),
        Ok(false) => SignatureIssuers::of(published),
        Err(error) => Err(error),
    };
    let issuers = match issuers {
        Ok(issuers) => issuers,
        Err(error) => {
            // Perhaps a format this server cannot read, made by a key hosts trust.
            return Err(StepError::Permanent(format!(
                "{MANIFEST_SIGNATURE_FILE} in {repo} cannot be read ({error}), so whether hosts trust this server's key ({}) is unknown; nothing was published. If they do, delete {MANIFEST_SIGNATURE_FILE} from {repo} and run the build again.",
                key.signing_fingerprint()
            )));
        }
    };
    if allowed.iter().any(|key| issuers.named_by(key)) {
        tracing::warn!(previous = %issuers, ours = %key.signing_fingerprint(), "replacing the published {MANIFEST_SIGNATURE_FILE} made by a listed earlier key");
        return Ok(());
    }
    Err(StepError::Permanent(format!(
        "{MANIFEST_SIGNATURE_FILE} in {repo} was signed by {issuers}, but this server signs with {}: hosts that trust the earlier key would refuse every update signed with this one, so nothing was published. Give the server the key hosts trust (GPG_PRIVATE_KEY or SIGNING_KEY_PATH); to change keys on purpose, add the new public key to every host's keyring first, then list the earlier key in publish.replace_signatures_by.",
        key.signing_fingerprint()
    )))
}
