//! Step 1 of a withdraw: the version out of every channel's `SHA256SUMS`, and its files
//! there (each listed image, its `.sha256` and `.asc`) scheduled to leave storage after the
//! grace period, when the server's sweep (`crate::worker::storage_removals`) deletes them
//! unless they are listed again.

use super::super::build_repository::published_manifest;
use super::super::manifest::{ManifestMessages, publish_manifest};
use super::super::{StepContext, StepError};
use super::reason_line;
use crate::database::job_result::WithdrawalDone;
use crate::database::storage_removals::RemovalReason;
use crate::database::withdrawals::Withdrawal;
use crate::manifest::Manifest;
use crate::settings::channels::Channel;
use crate::worker::pipeline::removals::removals_of;

/// The files of `version` that `channel`'s `SHA256SUMS` in storage lists; none when it is
/// missing or cannot be read (GitHub's is the one changed, and then put there).
async fn stored_listing(
    context: &StepContext<'_>,
    channel: &Channel,
    name: &str,
    version: &crate::version::Version,
) -> Result<Vec<String>, StepError> {
    let Some(bytes) = context.storage.get(&channel.manifest_key()).await? else {
        return Ok(Vec::new());
    };
    Ok(Manifest::parse(&String::from_utf8_lossy(&bytes))
        .map(|mut manifest| {
            manifest
                .remove_version(name, version)
                .into_iter()
                .map(|entry| entry.file)
                .collect()
        })
        .unwrap_or_default())
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let name = context.settings.image.name.clone();
    let version = context.job.version.clone();
    let channels = context.settings.publish.channels();
    // Where the version is listed now, channel by channel.
    let mut listed_in: Vec<(Channel, Vec<String>)> = Vec::new();
    let mut newest = Vec::new();
    for channel in channels.all() {
        let (published, _) = published_manifest(context, channel).await?;
        let mut files: Vec<String> = published
            .clone()
            .remove_version(&name, &version)
            .into_iter()
            .map(|entry| entry.file)
            .collect();
        // Hosts read storage's copy, which a job stopped between storage and GitHub leaves
        // ahead: what it lists is withdrawn too (the change below puts GitHub's there).
        if files.is_empty() {
            files = stored_listing(context, channel, &name, &version).await?;
        }
        if files.is_empty() {
            newest.extend(published.versions(&name).into_iter().take(5));
        } else {
            listed_in.push((channel.clone(), files));
        }
    }
    let withdrawn_before = context.database.withdrawal(&version).await?;
    let earlier = context.result().withdrawal.clone().unwrap_or_default();
    if listed_in.is_empty() && withdrawn_before.is_none() && earlier.files.is_empty() {
        newest.sort_by(|a, b| b.cmp(a));
        newest.dedup();
        let (none, they) = if channels.staged() {
            ("none of them lists a version", "they")
        } else {
            ("it lists no version", "it")
        };
        let listed_now = if newest.is_empty() {
            none.to_owned()
        } else {
            let shown: Vec<String> = newest.iter().take(5).map(|v| v.to_string()).collect();
            format!(
                "the newest {they} list{}: {}",
                if channels.staged() { "" } else { "s" },
                shown.join(", ")
            )
        };
        let manifests: Vec<String> = channels.all().iter().map(Channel::manifest_key).collect();
        return Err(StepError::Permanent(format!(
            "{name} {version} is not listed in {}, so there is nothing to withdraw ({listed_now})",
            manifests.join(" or ")
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
    // What leaves, recorded before it leaves: an attempt killed after a commit finds the
    // lines gone, and still schedules their files.
    let mut done = earlier;
    for (channel, files) in &listed_in {
        for file in files {
            if !done.files.contains(file) {
                done.files.push(file.clone());
            }
        }
        if !done.channels.contains(&channel.name) {
            done.channels.push(channel.name.clone());
        }
    }
    // The files stay for hosts that were downloading them, then go.
    let due = time::OffsetDateTime::now_utc() + context.settings.publish.withdrawn_grace();
    done.files_removed_after
        .get_or_insert_with(|| crate::database::timestamp::format(due));
    let recorded = done.clone();
    context
        .record(|result| result.withdrawal = Some(recorded))
        .await?;
    for channel in channels.all() {
        if done.channels.contains(&channel.name) {
            let removals = removals_of(&done.files, &version, RemovalReason::Withdrawn, channel);
            context.database.schedule_removals(&removals, due).await?;
        }
    }
    let what = format!("{name} {version}");
    let because = reason_line(context)
        .map(|reason| format!(": {reason}"))
        .unwrap_or_default();
    let mut commits: Option<Vec<String>> = None;
    for (channel, _) in &listed_in {
        let messages = ManifestMessages::because(
            channel,
            format!("withdraw {what} from"),
            &format!("the withdrawal of {what}"),
            &because,
        );
        let made = publish_manifest(
            context,
            channel,
            |mut manifest| {
                manifest.remove_version(&name, &version);
                Ok(manifest)
            },
            &messages,
        )
        .await?;
        if let Some(made) = made {
            commits.get_or_insert_with(Vec::new).extend(made);
        }
        context
            .database
            .forget_channel_entry(&version, &channel.name)
            .await?;
        tracing::info!(job = context.job.id, %version, %channel, "withdrawn from {}", channel.manifest_key());
    }
    context
        .record(|result| {
            if let Some(commits) = commits {
                result.manifest_commits = Some(commits);
            }
            result
                .withdrawal
                .get_or_insert_with(WithdrawalDone::default);
        })
        .await?;
    Ok(())
}
