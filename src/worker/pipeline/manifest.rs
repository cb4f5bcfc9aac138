//! Step 4: the build repository's `SHA256SUMS` with this build's lines merged in, signed,
//! uploaded to storage, then committed with its signature through the Contents API
//! ([`publish_manifest`], which a withdraw's change goes through too).
//!
//! The manifest is committed only after the images are in storage, so a host never sees a
//! listed image that is missing. A commit that finds the file changed since it was read
//! (409) reads it again and merges again.

use super::build::local_manifest;
use super::build_repository::{check_published_signer, published_manifest, published_signature};
use super::put::put_file;
use super::{StepContext, StepError};
use crate::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use crate::database::job_result::Publication;
use crate::github::contents::{FileTarget, FileWrite, write_file};
use crate::manifest::Manifest;
use crate::settings::channels::Channel;

/// Re-reads after a stale write before giving up (for now; the job retries later).
const MAX_MERGES: usize = 5;

/// The published manifest with this build's lines merged in: a build's file replaces the
/// line of the same name, every other line is kept.
pub fn merge(published: Manifest, local: &Manifest) -> Result<Manifest, StepError> {
    let mut merged = published;
    for entry in local.entries() {
        merged
            .upsert(entry.clone())
            .map_err(|source| StepError::Manifest {
                what: format!("merging {}", entry.file),
                source,
            })?;
    }
    Ok(merged)
}

/// The commit messages of a manifest change: the manifest's and its signature's.
pub(super) struct ManifestMessages {
    pub manifest: String,
    pub signature: String,
}

impl ManifestMessages {
    /// `chore: {doing} SHA256SUMS{why}` (`canary/SHA256SUMS` for a channel under a prefix)
    /// and `chore: sign SHA256SUMS for {what}`.
    pub fn new(channel: &Channel, doing: String, what: &str) -> ManifestMessages {
        Self::because(channel, doing, what, "")
    }

    /// [`ManifestMessages::new`] with `why` after the manifest's name.
    pub fn because(channel: &Channel, doing: String, what: &str, why: &str) -> ManifestMessages {
        let file = channel.manifest_key();
        ManifestMessages {
            manifest: format!("chore: {doing} {file}{why}"),
            signature: format!("chore: sign {file} for {what}"),
        }
    }
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let repo = context.settings.build_repo.repo.clone();
    let auth = context.auth_for(&repo).await?;
    let channel = context.publish_channel()?;
    // A build listed already may still lack its signature: a run killed between the
    // manifest's commit and its signature's finds the manifest listing this build. Under a
    // signature by a key this server may not replace, it never committed the manifest,
    // and leaves it alone.
    if context.result().published == Some(Publication::Unchanged)
        && let Some(signature) = published_signature(context, auth, &channel).await?
        && check_published_signer(context, &repo, &signature.content).is_err()
    {
        return Ok(());
    }
    let local = local_manifest(context)?;
    let what = format!("{} {}", context.settings.image.name, context.job.version);
    let messages = ManifestMessages::new(&channel, format!("publish {what} in"), &what);
    match publish_manifest(
        context,
        &channel,
        |published| merge(published, &local),
        &messages,
    )
    .await
    {
        Ok(Some(commits)) => {
            context
                .record(|result| result.manifest_commits = Some(commits))
                .await?;
        }
        Ok(None) => {}
        // Committed by an earlier attempt, and changed by others since.
        Err(StepError::Transient(_)) if context.result().manifest_commits.is_some() => {}
        Err(error) => return Err(error),
    }
    // The wait before a promotion to the next channel counts from here; new bytes start it
    // again.
    if context.result().published == Some(Publication::Replaced) {
        context
            .database
            .reenter_channel(&context.job.version, &channel.name, context.job.id)
            .await?;
    } else {
        context
            .database
            .enter_channel(&context.job.version, &channel.name, context.job.id)
            .await?;
    }
    // Published again: a withdrawal of this version (a `/rebuild` got this far) is over.
    if context
        .database
        .end_withdrawal(&context.job.version)
        .await?
    {
        tracing::info!(job = context.job.id, version = %context.job.version, "the withdrawn version is published again");
    }
    Ok(())
}

/// Puts `manifest` and its `signature` in storage as `channel`'s (each skipped when storage
/// holds it already).
async fn put_manifest(
    context: &StepContext<'_>,
    channel: &Channel,
    manifest: &[u8],
    signature: &[u8],
) -> Result<(), StepError> {
    let staged = context.work_dir.join("manifest");
    std::fs::create_dir_all(&staged).map_err(StepError::work_dir("creating", &staged))?;
    for (name, key, bytes) in [
        (MANIFEST_FILE, channel.manifest_key(), manifest),
        (MANIFEST_SIGNATURE_FILE, channel.signature_key(), signature),
    ] {
        let path = staged.join(name);
        std::fs::write(&path, bytes).map_err(StepError::work_dir("writing", &path))?;
        let sha256 = crate::artifacts::digest::sha256_hex(bytes)
            .map_err(StepError::work_dir("hashing", &path))?;
        put_file(context, &key, &path, &sha256).await?;
    }
    Ok(())
}

/// Changes `channel`'s `SHA256SUMS` in the build repository with `change` (given the
/// published one), signs it, puts both in storage, then commits both. A commit that finds the file changed
/// since it was read (409) reads it again and changes it again.
///
/// `Ok(Some(commits))` when it wrote (the commits may be empty when GitHub had the same
/// content); `Ok(None)` when the published manifest, signed by this server's key, was what
/// `change` gives already.
pub(super) async fn publish_manifest(
    context: &StepContext<'_>,
    channel: &Channel,
    change: impl Fn(Manifest) -> Result<Manifest, StepError>,
    messages: &ManifestMessages,
) -> Result<Option<Vec<String>>, StepError> {
    let repo = context.settings.build_repo.repo.clone();
    let branch = context.settings.build_repo.branch.clone();
    let auth = context.auth_for(&repo).await?;
    let mut commits = Vec::new();
    for _ in 0..MAX_MERGES {
        let (published, current) = published_manifest(context, channel).await?;
        let changed = change(published)?;
        let text = changed.render();
        let signature_file = published_signature(context, auth, channel).await?;
        if let Some(published) = &signature_file {
            check_published_signer(context, &repo, &published.content)?;
        }
        let manifest_is_current = current
            .as_ref()
            .is_some_and(|f| f.content == text.as_bytes());
        let signature_is_current = manifest_is_current
            && signature_file.as_ref().is_some_and(|sig| {
                context
                    .signing_key
                    .public_key()
                    .verify_detached(text.as_bytes(), &sig.content)
                    .is_ok()
            });
        if let (true, Some(published)) = (signature_is_current, &signature_file) {
            // Changed and signed by an earlier attempt (or the change changes nothing). What
            // hosts read is made the same: an attempt that stopped between storage and
            // GitHub, or a later one's storage write that GitHub never took, leaves storage
            // elsewhere.
            put_manifest(context, channel, text.as_bytes(), &published.content).await?;
            return Ok(None);
        }
        let signature = context
            .signing_key
            .sign_detached(text.as_bytes())
            .map_err(StepError::Signing)?;
        // Storage first: the committed manifest never lists what storage lacks.
        put_manifest(context, channel, text.as_bytes(), signature.as_bytes()).await?;
        match write_file(
            context.github,
            auth,
            FileTarget {
                repo: &repo,
                branch: &branch,
                path: &channel.manifest_key(),
            },
            text.as_bytes(),
            current.as_ref(),
            &messages.manifest,
        )
        .await?
        {
            FileWrite::Stale => {
                tracing::info!(
                    job = context.job.id,
                    %channel,
                    "{MANIFEST_FILE} changed while it was changed here; changing it again"
                );
                continue;
            }
            FileWrite::Committed { commit_sha } => commits.push(commit_sha),
            FileWrite::Unchanged => {}
        }
        // The signature is ours alone: a stale read of it is simply read again.
        let mut signature_file = signature_file;
        loop {
            match write_file(
                context.github,
                auth,
                FileTarget {
                    repo: &repo,
                    branch: &branch,
                    path: &channel.signature_key(),
                },
                signature.as_bytes(),
                signature_file.as_ref(),
                &messages.signature,
            )
            .await?
            {
                FileWrite::Stale => {
                    signature_file = published_signature(context, auth, channel).await?;
                }
                FileWrite::Committed { commit_sha } => {
                    commits.push(commit_sha);
                    break;
                }
                FileWrite::Unchanged => break,
            }
        }
        return Ok(Some(commits));
    }
    // Too many concurrent changes, unless the change is in already.
    let (published, _) = published_manifest(context, channel).await?;
    if change(published.clone())? == published {
        return Ok(None);
    }
    Err(StepError::Transient(format!(
        "{} in {repo} kept changing while it was changed here",
        channel.manifest_key()
    )))
}
