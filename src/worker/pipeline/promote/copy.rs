//! Step 1 of a promotion: where the version moves (from the last channel that lists it to
//! the next one), recorded once, then its files copied within storage into the target
//! channel's place (provenance records with them), checksums and signatures before the
//! images. Nothing is listed yet: hosts of the target channel see the version only once
//! `manifest` has run.

use super::super::build_repository::published_manifest;
use super::super::removals::{removals_of, stored_files};
use super::super::{StepContext, StepError};
use crate::database::job_result::{PromotedFile, Promotion};
use crate::database::storage_removals::RemovalReason;
use crate::settings::channels::Channel;
use crate::storage::CopyOutcome;

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let promotion = match context.result().promotion.clone() {
        // Decided by an earlier attempt: the version is listed in the target by now, maybe.
        Some(promotion) => promotion,
        None => {
            let promotion = decide(context).await?;
            let recorded = promotion.clone();
            context
                .record(|result| result.promotion = Some(recorded))
                .await?;
            promotion
        }
    };
    let channels = context.settings.publish.channels();
    let gone = |name| {
        StepError::Permanent(format!(
            "the channel {name} is no longer in publish.channels ({})",
            channels.names()
        ))
    };
    let from = channels
        .get(&promotion.from)
        .ok_or_else(|| gone(&promotion.from))?;
    let to = context.publish_channel()?;
    let listed: Vec<String> = promotion.files.iter().map(|f| f.file.clone()).collect();
    // Earlier removals of these keys (the version was pruned or withdrawn from the target)
    // give way to the one below, with its own grace period.
    context
        .database
        .cancel_removals_of(&context.job.version, &to.manifest_key())
        .await?;
    // Scheduled before anything is copied: a promotion that stops before its listing leaves
    // no file behind for good (the sweep keeps whatever the target lists when it is due).
    let due = time::OffsetDateTime::now_utc() + context.settings.publish.withdrawn_grace();
    context
        .database
        .schedule_removals(
            &removals_of(&listed, &context.job.version, RemovalReason::Unlisted, &to),
            due,
        )
        .await?;
    let mut copied = Vec::new();
    for file in stored_files(&listed) {
        let (source, target) = (from.key(&file.name), to.key(&file.name));
        match context.storage.copy(&source, &target).await? {
            CopyOutcome::Copied => {
                tracing::info!(job = context.job.id, %source, %target, "copied");
                copied.push(target);
            }
            // The compatibility copy exists only when the build made one, and the provenance
            // record only for versions built since records exist.
            CopyOutcome::SourceAbsent if file.kind.may_be_absent() => {}
            CopyOutcome::SourceAbsent => {
                return Err(StepError::Permanent(format!(
                    "{source} is not in storage, though {} lists {}: nothing was promoted; publish the version again with `/rebuild {}`",
                    from.manifest_key(),
                    file.listed_file,
                    context.job.version
                )));
            }
        }
    }
    check_copies(context, &promotion, from, &to).await?;
    context
        .record(|result| {
            if let Some(promotion) = &mut result.promotion {
                promotion.copied = copied;
            }
        })
        .await?;
    Ok(())
}

/// Checks that the images at the target are the bytes the promotion lists: the listing is
/// signed with the hashes read when the move was decided, and a `/rebuild` in between may
/// have replaced the source's, or a sweep removed a copy left unlisted too long.
pub(super) async fn check_copies(
    context: &StepContext<'_>,
    promotion: &Promotion,
    from: &Channel,
    to: &Channel,
) -> Result<(), StepError> {
    let again = format!(
        "Nothing was listed; comment `/promote {}` again",
        context.job.version
    );
    for listed in &promotion.files {
        let target = to.key(&listed.file);
        let Some(sha256) = context.storage.sha256_of(&target).await? else {
            return Err(StepError::Permanent(format!(
                "{target} is not in storage though it was copied there. {again}"
            )));
        };
        if sha256 != listed.sha256 {
            return Err(StepError::Permanent(format!(
                "{target} has sha256 {sha256}, but {} listed {} with {} when this promotion was decided: the version was published again meanwhile. {again}",
                from.manifest_key(),
                listed.file,
                listed.sha256,
            )));
        }
    }
    Ok(())
}

/// The move: from the last channel whose `SHA256SUMS` lists the version to the one after
/// it, with the version's lines there.
async fn decide(context: &StepContext<'_>) -> Result<Promotion, StepError> {
    let name = &context.settings.image.name;
    let version = &context.job.version;
    let channels = context.settings.publish.channels();
    if !channels.staged() {
        return Err(StepError::Permanent(format!(
            "there is one channel ({}), so there is nothing to promote to: list the channels in publish.channels, first to last (for example [\"canary\", \"stable\"])",
            channels.names()
        )));
    }
    let mut listed_in: Option<(Channel, Vec<PromotedFile>)> = None;
    for channel in channels.all() {
        let (published, _) = published_manifest(context, channel).await?;
        let files: Vec<PromotedFile> = published
            .clone()
            .remove_version(name, version)
            .into_iter()
            .map(|entry| PromotedFile {
                file: entry.file,
                sha256: entry.sha256,
            })
            .collect();
        if !files.is_empty() {
            listed_in = Some((channel.clone(), files));
        }
    }
    let Some((from, files)) = listed_in else {
        let manifests: Vec<String> = channels.all().iter().map(Channel::manifest_key).collect();
        return Err(StepError::Permanent(format!(
            "{name} {version} is listed in no channel ({}), so there is nothing to promote",
            manifests.join(", ")
        )));
    };
    // Moved on after this promotion was asked for (another promotion ran first): going on
    // would skip the time it is to spend in that channel.
    if let Some(entry) = context.database.channel_entry(version, &from.name).await?
        && entry.entered_at > context.job.created_at
    {
        return Err(StepError::Permanent(format!(
            "{name} {version} reached {from} after this promotion was asked for, so it is not promoted on at once; ask again with `/promote {version}`"
        )));
    }
    let Some(to) = channels.after(&from.name) else {
        return Err(StepError::Permanent(format!(
            "{name} {version} is in {from}, the last channel: there is nothing to promote it to"
        )));
    };
    Ok(Promotion {
        from: from.name.clone(),
        to: to.name.clone(),
        files,
        copied: Vec::new(),
    })
}
