//! Step 2 of a promotion: the version's lines, as the channel it comes from lists them,
//! added to the target channel's `SHA256SUMS` (signed, put in storage, committed), after
//! its files were copied there. From now on hosts of that channel install it, and its time
//! in the channel (towards the next automatic promotion) starts.

use super::super::manifest::{ManifestMessages, publish_manifest};
use super::super::{StepContext, StepError};
use crate::manifest::ManifestEntry;

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let Some(promotion) = context.result().promotion.clone() else {
        return Err(StepError::Permanent(
            "the promotion was not decided: its upload step did not run".into(),
        ));
    };
    let to = context.publish_channel()?;
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
