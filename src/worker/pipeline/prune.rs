//! Step 7: after a publish, versions beyond the newest `publish.keep_versions` leave
//! `SHA256SUMS`, each in a commit of its own that says why, and their files are scheduled
//! to leave storage after the grace period.
//!
//! Never pruned: the newest version, the version the job published, and a version that a
//! consumer's file (configured or enrolled) on its base branch still pins, read through the
//! Butane editor: hosts provisioned from that file download it by its address. When a
//! consumer's pin cannot be read, nothing is pruned this time: a guess could delete what a
//! host is about to download. [`decide`] is shared with `plan`, which shows what a prune
//! would remove.

use super::build_repository::published_manifest;
use super::consumers::{ENROLLMENT_FILE, all_consumers};
use super::manifest::{ManifestMessages, publish_manifest};
use super::removals::removals_of;
use super::{RepositoryAccess, StepContext, StepError};
use crate::artifacts::MANIFEST_FILE;
use crate::butane::find_alloy_pin;
use crate::database::Database;
use crate::database::job_result::{ConsumerOutcome, PinnedVersion, Pruned};
use crate::database::storage_removals::RemovalReason;
use crate::github::api::GitHubApi;
use crate::github::branches::branch_head;
use crate::github::contents::read_file;
use crate::manifest::Manifest;
use crate::manifest::prune::versions_to_prune;
use crate::settings::Settings;
use crate::version::Version;

/// What pruning `SHA256SUMS` comes to now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneDecision {
    /// The versions that leave, oldest first.
    pub remove: Vec<Version>,
    /// Versions beyond the newest `keep` kept because a consumer pins them.
    pub kept_pinned: Vec<PinnedVersion>,
    /// Why nothing is pruned although versions are beyond the newest `keep`.
    pub skipped: Option<String>,
}

/// What the services see of the world that pruning reads.
pub struct PruneReader<'a> {
    pub github: &'a GitHubApi,
    pub settings: &'a Settings,
    pub database: &'a Database,
    pub access: &'a dyn RepositoryAccess,
}

/// What pruning `manifest` (the published one, with the job's build in it) comes to; the
/// job's `version` is never pruned. Consumers' pins are read only when some version is
/// beyond the newest `keep`.
pub async fn decide(
    reader: &PruneReader<'_>,
    manifest: &Manifest,
    version: &Version,
) -> PruneDecision {
    let settings = reader.settings;
    let name = &settings.image.name;
    let keep = settings.publish.keep_versions;
    let beyond = versions_to_prune(manifest, name, keep, &[]);
    if beyond.remove.iter().all(|v| v == version) {
        return PruneDecision::default();
    }
    let pins = match consumer_pins(reader).await {
        Ok(pins) => pins,
        Err(why) => {
            tracing::warn!(%why, "nothing is pruned this time");
            return PruneDecision {
                skipped: Some(why),
                ..PruneDecision::default()
            };
        }
    };
    let pinned: Vec<Version> = pins.iter().map(|(_, v)| v.clone()).collect();
    let pruning = versions_to_prune(manifest, name, keep, &pinned);
    PruneDecision {
        remove: pruning
            .remove
            .into_iter()
            .filter(|v| v != version)
            .collect(),
        kept_pinned: pruning
            .kept_pinned
            .into_iter()
            .map(|version| PinnedVersion {
                by: pins
                    .iter()
                    .filter(|(_, pinned)| pinned == &version)
                    .map(|(repo, _)| repo.clone())
                    .collect(),
                version,
            })
            .collect(),
        skipped: None,
    }
}

/// Every version a consumer's file pins on its base branch, with the repository; an error
/// naming the first consumer whose pin could not be read.
async fn consumer_pins(reader: &PruneReader<'_>) -> Result<Vec<(String, Version)>, String> {
    let settings = reader.settings;
    let consumers = all_consumers(reader.github, settings, reader.database).await;
    if let Some(why) = consumers.enrollments_unread {
        return Err(format!(
            "the repositories that may have enrolled could not be listed ({why})"
        ));
    }
    if let Some(unread) = consumers
        .refused
        .iter()
        .find(|r| matches!(r.outcome, ConsumerOutcome::Failed { .. }))
    {
        return Err(format!(
            "{ENROLLMENT_FILE} of {} could not be read",
            unread.repo
        ));
    }
    let mut pins = Vec::new();
    for consumer in consumers.configured.iter().chain(&consumers.enrolled) {
        let repo = &consumer.repo;
        let unreadable = |why: String| format!("the pin of {repo} could not be read: {why}");
        let auth = reader
            .access
            .auth_for(repo)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let Some(head) = branch_head(reader.github, auth, repo, &consumer.base)
            .await
            .map_err(|e| unreadable(e.to_string()))?
        else {
            continue; // no base branch: nothing provisions from it
        };
        let Some(file) = read_file(reader.github, auth, repo, &head, &consumer.path)
            .await
            .map_err(|e| unreadable(e.to_string()))?
        else {
            continue;
        };
        let text = String::from_utf8(file.content)
            .map_err(|_| unreadable(format!("{} is not UTF-8 text", consumer.path)))?;
        for arch in &settings.image.arches {
            match find_alloy_pin(&text, &settings.image.name, *arch) {
                Ok(pin) => pins.push((repo.clone(), pin.version)),
                Err(error) if error.is_no_entry() => {}
                Err(error) => return Err(unreadable(format!("{}: {error}", consumer.path))),
            }
        }
    }
    Ok(pins)
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let keep = context.settings.publish.keep_versions;
    if keep == 0 {
        return Ok(());
    }
    let name = context.settings.image.name.clone();
    let channel = context.publish_channel()?;
    let (published, _) = published_manifest(context, &channel).await?;
    let reader = PruneReader {
        github: context.github,
        settings: context.settings,
        database: context.database,
        access: context.access,
    };
    let decision = decide(&reader, &published, &context.job.version).await;
    let due = time::OffsetDateTime::now_utc() + context.settings.publish.withdrawn_grace();
    context
        .record(|result| {
            let pruned = result.pruned.get_or_insert_with(Pruned::default);
            pruned.keep = keep;
            pruned.kept_pinned = decision.kept_pinned.clone();
            pruned.skipped = decision.skipped.clone();
        })
        .await?;
    for version in &decision.remove {
        let listed: Vec<String> = published
            .clone()
            .remove_version(&name, version)
            .into_iter()
            .map(|entry| entry.file)
            .collect();
        let what = format!("{name} {version}");
        let messages = ManifestMessages::because(
            &channel,
            format!("prune {what} from"),
            &format!("the pruning of {what}"),
            &format!(": older than the newest {keep} versions, and no consumer pins it"),
        );
        // Scheduled before the lines leave: a job killed in between leaves no file behind
        // for good, and the sweep keeps whatever is still listed when it is due.
        context
            .database
            .schedule_removals(
                &removals_of(&listed, version, RemovalReason::Pruned, &channel),
                due,
            )
            .await?;
        let commits = publish_manifest(
            context,
            &channel,
            |mut manifest| {
                manifest.remove_version(&name, version);
                Ok(manifest)
            },
            &messages,
        )
        .await?;
        context
            .database
            .forget_channel_entry(version, &channel.name)
            .await?;
        tracing::info!(job = context.job.id, %version, %channel, files = ?listed, "pruned from {MANIFEST_FILE}");
        context
            .record(|result| {
                let pruned = result.pruned.get_or_insert_with(Pruned::default);
                if !pruned.removed.contains(version) {
                    pruned.removed.push(version.clone());
                }
                pruned.commits.extend(commits.into_iter().flatten());
                pruned
                    .files_removed_after
                    .get_or_insert_with(|| crate::database::timestamp::format(due));
            })
            .await?;
    }
    Ok(())
}
