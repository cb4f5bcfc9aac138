//! Step 1 of a withdraw: the version out of `SHA256SUMS`, and its files (each listed image,
//! its `.sha256` and `.asc`) scheduled to leave storage after the grace period, when the
//! server's sweep (`crate::worker::storage_removals`) deletes them unless they are listed
//! again.

use super::super::build_repository::published_manifest;
use super::super::manifest::{ManifestMessages, publish_manifest};
use super::super::{StepContext, StepError};
use super::reason_line;
use crate::artifacts::MANIFEST_FILE;
use crate::database::job_result::WithdrawalDone;
use crate::database::storage_removals::RemovalReason;
use crate::database::withdrawals::Withdrawal;
use crate::worker::pipeline::removals::removals_of;

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let name = context.settings.image.name.clone();
    let version = context.job.version.clone();
    let (published, _) = published_manifest(context).await?;
    let listed: Vec<String> = published
        .clone()
        .remove_version(&name, &version)
        .into_iter()
        .map(|entry| entry.file)
        .collect();
    let withdrawn_before = context.database.withdrawal(&version).await?;
    if listed.is_empty() && withdrawn_before.is_none() {
        let newest: Vec<String> = published
            .versions(&name)
            .iter()
            .take(5)
            .map(|v| v.to_string())
            .collect();
        let listed_now = if newest.is_empty() {
            "it lists no version".to_owned()
        } else {
            format!("the newest it lists: {}", newest.join(", "))
        };
        return Err(StepError::Permanent(format!(
            "{name} {version} is not listed in {MANIFEST_FILE}, so there is nothing to withdraw ({listed_now})"
        )));
    }
    // Recorded first: from now on no release event, dispatch or upstream check publishes
    // the version, even while its lines are being taken out.
    let trigger = &context.job.trigger;
    context
        .database
        .record_withdrawal(&Withdrawal {
            version: version.clone(),
            source: trigger.source,
            withdrawn_by: trigger.user.clone(),
            reason: trigger.reason.clone(),
            job_id: context.job.id,
            withdrawn_at: String::new(),
        })
        .await?;
    let what = format!("{name} {version}");
    let because = reason_line(context)
        .map(|reason| format!(": {reason}"))
        .unwrap_or_default();
    let messages = ManifestMessages {
        manifest: format!("chore: withdraw {what} from {MANIFEST_FILE}{because}"),
        signature: format!("chore: sign {MANIFEST_FILE} for the withdrawal of {what}"),
    };
    let commits = publish_manifest(
        context,
        |mut manifest| {
            manifest.remove_version(&name, &version);
            Ok(manifest)
        },
        &messages,
    )
    .await?;
    let files = match &context.result().withdrawal {
        // Taken out by an earlier attempt: what it took out stays the record.
        Some(done) if listed.is_empty() => done.files.clone(),
        _ => listed,
    };
    // The files stay for hosts that were downloading them, then go.
    let due = time::OffsetDateTime::now_utc() + context.settings.publish.withdrawn_grace();
    let removals = removals_of(&files, &version, RemovalReason::Withdrawn);
    context.database.schedule_removals(&removals, due).await?;
    let files_removed_after = crate::database::timestamp::format(due);
    tracing::info!(job = context.job.id, %version, files = ?files, "withdrawn from {MANIFEST_FILE}");
    context
        .record(|result| {
            if let Some(commits) = commits {
                result.manifest_commits = Some(commits);
            }
            let done = result
                .withdrawal
                .get_or_insert_with(WithdrawalDone::default);
            done.files = files;
            done.files_removed_after.get_or_insert(files_removed_after);
        })
        .await?;
    Ok(())
}
