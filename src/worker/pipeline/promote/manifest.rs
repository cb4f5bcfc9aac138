//! Step 2 of a promotion: the version's lines, as the channel it comes from lists them,
//! added to the target channel's `SHA256SUMS` (signed, put in storage, committed), after
//! its files were copied there. From now on hosts of that channel install it, and its time
//! in the channel (towards the next automatic promotion) starts.

use super::super::build_repository::published_manifest;
use super::super::manifest::{ManifestMessages, publish_manifest};
use super::super::{StepContext, StepError};
use super::copy::check_copies;
use crate::manifest::ManifestEntry;

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let Some(promotion) = context.result().promotion.clone() else {
        return Err(StepError::Permanent(
            "the promotion was not decided: its upload step did not run".into(),
        ));
    };
    let to = context.publish_channel()?;
    let channels = context.settings.publish.channels();
    let Some(from) = channels.get(&promotion.from).cloned() else {
        return Err(StepError::Permanent(format!(
            "the channel {} is no longer in publish.channels ({})",
            promotion.from,
            channels.names()
        )));
    };
    // The source must still list what is about to be listed: a version withdrawn (and maybe
    // published again) while this job waited is not promoted on its old word.
    let (source, _) = published_manifest(context, &from).await?;
    for listed in &promotion.files {
        if source.get(&listed.file).map(|e| e.sha256.as_str()) != Some(listed.sha256.as_str()) {
            return Err(StepError::Permanent(format!(
                "{} no longer lists {} with sha256 {} as it did when this promotion was decided (the version was withdrawn or published again meanwhile): nothing was listed; comment `/promote {}` again",
                from.manifest_key(),
                listed.file,
                listed.sha256,
                context.job.version
            )));
        }
    }
    // Copies waiting to leave the target (scheduled while unlisted) stay: they are about to
    // be listed. Then they are checked, in case a sweep or a rebuild got to them first.
    context
        .database
        .cancel_removals_of(&context.job.version, &to.manifest_key())
        .await?;
    check_copies(context, &promotion, &from, &to).await?;
    let what = format!("{} {}", context.settings.image.name, context.job.version);
    let file = to.manifest_key();
    let messages = ManifestMessages {
        manifest: format!(
            "chore: promote {what} from {} to {}: list it in {file}",
            promotion.from, promotion.to
        ),
        signature: format!("chore: sign {file} for the promotion of {what}"),
    };
    let commits = publish_manifest(
        context,
        &to,
        |mut manifest| {
            for listed in &promotion.files {
                manifest
                    .upsert(ManifestEntry {
                        sha256: listed.sha256.clone(),
                        file: listed.file.clone(),
                    })
                    .map_err(|source| StepError::Manifest {
                        what: format!("adding {} to {file}", listed.file),
                        source,
                    })?;
            }
            Ok(manifest)
        },
        &messages,
    )
    .await?;
    if let Some(commits) = commits {
        context
            .record(|result| result.manifest_commits = Some(commits))
            .await?;
    }
    context
        .database
        .enter_channel(&context.job.version, &to.name, context.job.id)
        .await?;
    tracing::info!(job = context.job.id, version = %context.job.version, from = %promotion.from, to = %promotion.to, "promoted");
    Ok(())
}
