//! Step 4: the build repository's `SHA256SUMS` with this build's lines merged in, signed,
//! uploaded to storage, then committed with its signature through the Contents API.
//!
//! The manifest is committed only after the images are in storage, so a host never sees a
//! listed image that is missing. A commit that finds the file changed since it was read
//! (409) reads it again and merges again.

use serde_json::json;

use super::upload::{local_manifest, published_manifest};
use super::{JobContext, StepError};
use crate::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use crate::github::contents::{FileTarget, FileWrite, read_file, write_file};
use crate::signing::detached::SignatureIssuers;
use crate::storage::{PutRequest, cache_control_of, content_type_of};

/// Re-reads after a stale write before giving up (for now; the job retries later).
const MAX_MERGES: usize = 5;

pub async fn run(context: &mut JobContext<'_>) -> Result<(), StepError> {
    if context.result().get("published").and_then(|p| p.as_str()) == Some("unchanged") {
        return Ok(());
    }
    let worker = context.worker;
    let repo = worker.settings.build_repo.repo.clone();
    let branch = worker.settings.build_repo.branch.clone();
    let auth = context.auth_for(&repo).await?;
    let local = local_manifest(context)?;
    let mut commits = Vec::new();
    for _ in 0..MAX_MERGES {
        let (mut merged, current) = published_manifest(context).await?;
        for entry in local.entries() {
            merged
                .upsert(entry.clone())
                .map_err(|e| StepError::Permanent(format!("merging {}: {e}", entry.file)))?;
        }
        let text = merged.render();
        let signature_file = read_file(
            &worker.github,
            auth,
            &repo,
            &branch,
            MANIFEST_SIGNATURE_FILE,
        )
        .await?;
        if let Some(published) = &signature_file {
            check_published_signer(context, &repo, &published.content)?;
        }
        let manifest_is_current = current
            .as_ref()
            .is_some_and(|f| f.content == text.as_bytes());
        let signature_is_current = manifest_is_current
            && signature_file.as_ref().is_some_and(|sig| {
                worker
                    .signing_key
                    .public_key()
                    .verify_detached(text.as_bytes(), &sig.content)
                    .is_ok()
            });
        if signature_is_current {
            // Merged and signed by an earlier attempt (or this build changed nothing).
            break;
        }
        let signature = worker
            .signing_key
            .sign_detached(text.as_bytes())
            .map_err(|e| StepError::Permanent(format!("signing {MANIFEST_FILE}: {e}")))?;
        // Storage first: the committed manifest never lists what storage lacks.
        let staged = context.work_dir().join("manifest");
        std::fs::create_dir_all(&staged)
            .map_err(|e| StepError::Transient(format!("creating {}: {e}", staged.display())))?;
        for (name, bytes) in [
            (MANIFEST_FILE, text.as_bytes()),
            (MANIFEST_SIGNATURE_FILE, signature.as_bytes()),
        ] {
            let path = staged.join(name);
            std::fs::write(&path, bytes)
                .map_err(|e| StepError::Transient(format!("writing {}: {e}", path.display())))?;
            let sha256 = crate::digest::sha256_hex(bytes)
                .map_err(|e| StepError::Transient(format!("hashing {name}: {e}")))?;
            let outcome = worker
                .storage
                .put_file(&PutRequest {
                    key: name,
                    path: &path,
                    sha256: &sha256,
                    content_type: content_type_of(name),
                    cache_control: cache_control_of(name),
                })
                .await?;
            if outcome == crate::storage::PutOutcome::Uploaded {
                super::upload::count_uploaded(&path);
            }
        }
        let what = format!("{} {}", worker.settings.image.name, context.version);
        match write_file(
            &worker.github,
            auth,
            FileTarget {
                repo: &repo,
                branch: &branch,
                path: MANIFEST_FILE,
            },
            text.as_bytes(),
            current.as_ref(),
            &format!("chore: publish {what} in {MANIFEST_FILE}"),
        )
        .await?
        {
            FileWrite::Stale => {
                tracing::info!(
                    job = context.job.id,
                    "{MANIFEST_FILE} changed while merging; merging again"
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
                &worker.github,
                auth,
                FileTarget {
                    repo: &repo,
                    branch: &branch,
                    path: MANIFEST_SIGNATURE_FILE,
                },
                signature.as_bytes(),
                signature_file.as_ref(),
                &format!("chore: sign {MANIFEST_FILE} for {what}"),
            )
            .await?
            {
                FileWrite::Stale => {
                    signature_file = read_file(
                        &worker.github,
                        auth,
                        &repo,
                        &branch,
                        MANIFEST_SIGNATURE_FILE,
                    )
                    .await?;
                }
                FileWrite::Committed { commit_sha } => {
                    commits.push(commit_sha);
                    break;
                }
                FileWrite::Unchanged => break,
            }
        }
        context
            .record(json!({ "manifest_commits": commits }))
            .await?;
        return Ok(());
    }
    if commits.is_empty() && context.result().get("manifest_commits").is_none() {
        // Either merged by an earlier attempt, or too many concurrent changes.
        let (merged, _) = published_manifest(context).await?;
        let all_listed = local.entries().iter().all(|entry| {
            merged
                .get(&entry.file)
                .is_some_and(|e| e.sha256 == entry.sha256)
        });
        if !all_listed {
            return Err(StepError::Transient(format!(
                "{MANIFEST_FILE} in {repo} kept changing while it was merged"
            )));
        }
    }
    Ok(())
}

/// Refuses to publish over a `SHA256SUMS.gpg` made by a key other than the server's, unless
/// `publish.replace_signatures_by` names that key: hosts check the manifest against the keys
/// they trust, so a manifest signed by a key they do not know stops every update. (A server
/// started without `GPG_PRIVATE_KEY` makes a key of its own; this is what keeps that key
/// from reaching hosts by mistake.) `upload` runs it before it puts anything in storage, and
/// this step again on the signature it is about to replace.
pub(super) fn check_published_signer(
    context: &JobContext<'_>,
    repo: &str,
    published: &[u8],
) -> Result<(), StepError> {
    let worker = context.worker;
    let ours = worker.signing_key.public_key();
    let allowed = &worker.settings.publish.replace_signatures_by;
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
                worker.signing_key.signing_fingerprint()
            )));
        }
    };
    if allowed.iter().any(|key| issuers.named_by(key)) {
        tracing::warn!(job = context.job.id, previous = %issuers, ours = %worker.signing_key.signing_fingerprint(), "replacing the published {MANIFEST_SIGNATURE_FILE} made by a listed earlier key");
        return Ok(());
    }
    Err(StepError::Permanent(format!(
        "{MANIFEST_SIGNATURE_FILE} in {repo} was signed by {issuers}, but this server signs with {}: hosts that trust the earlier key would refuse every update signed with this one, so nothing was published. Give the server the key hosts trust (GPG_PRIVATE_KEY or SIGNING_KEY_PATH); to change keys on purpose, add the new public key to every host's keyring first, then list the earlier key in publish.replace_signatures_by.",
        worker.signing_key.signing_fingerprint()
    )))
}
