//! Step 3 of a withdraw: in each consumer repository, the open pull request for the
//! withdrawn version is closed with a comment saying why, and a file on the base branch that
//! pins the withdrawn version gets a pull request to the newest version still listed.
//!
//! Consumers are found as a build finds them (configured, then enrolled). A consumer that
//! fails does not stop the others; a configured one that fails for a reason that may pass
//! holds the job in retries, as in a build.

use super::super::build_repository::published_manifest;
use super::super::consumers::{
    ENROLLMENT_FILE, PinRead, PinTarget, Proposal, all_consumers, download_links, propose,
    read_pin, update_branch,
};
use super::super::{StepContext, StepError};
use super::reason_line;
use crate::artifacts::image_format::ImageFormat;
use crate::butane::find_alloy_pin;
use crate::database::job_result::{ConsumerOutcome, ConsumerReport, WithdrawalDone};
use crate::github::branches::branch_head;
use crate::github::contents::read_file;
use crate::github::issues::comment;
use crate::github::markdown::{code_span, table_code_span};
use crate::github::pulls::{close_pull, open_pull_for_branch};
use crate::manifest::image_name::ImageFileName;
use crate::settings::ConsumerSettings;
use crate::settings::channels::Channel;
use crate::version::Version;

/// The newest version still listed in `channel`, and its images by architecture.
async fn still_listed(
    context: &StepContext<'_>,
    channel: &Channel,
) -> Result<(Option<Version>, Vec<PinTarget>), StepError> {
    let name = &context.settings.image.name;
    let (published, _) = published_manifest(context, channel).await?;
    let Some(newest) = published.versions(name).into_iter().next() else {
        return Ok((None, Vec::new()));
    };
    let targets = published
        .entries()
        .iter()
        .filter_map(|entry| {
            let parsed = ImageFileName::parse(&entry.file)?;
            // Consumers pin the squashfs image; hosts opt in to the DDI themselves.
            (&parsed.name == name
                && parsed.version == newest
                && parsed.format == ImageFormat::Squashfs)
                .then_some(())?;
            Some(PinTarget {
                arch: parsed.arch?,
                file: entry.file.clone(),
                sha256: entry.sha256.clone(),
                url: context
                    .public_base_url
                    .url(&channel.key(&entry.file))
                    .unwrap_or_default(),
            })
        })
        .collect();
    Ok((Some(newest), targets))
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    // Each consumer moves to the newest version its channel still lists.
    let mut listed = Vec::new();
    for channel in context.settings.publish.channels().all() {
        listed.push((channel.name.clone(), still_listed(context, channel).await?));
    }
    let last = context.settings.publish.channels().last().name.clone();
    let moved_to = listed
        .iter()
        .find(|(channel, _)| *channel == last)
        .and_then(|(_, (version, _))| version.clone());
    let consumers = all_consumers(context.github, context.settings, context.database).await;
    let mut outcomes = consumers.refused;
    let mut closed = Vec::new();
    let mut transient = Vec::new();
    let configured = consumers.configured.iter().map(|c| (c, false));
    let enrolled = consumers.enrolled.iter().map(|c| (c, true));
    for (consumer, is_enrolled) in configured.chain(enrolled) {
        let done = async {
            let closed_pull = close_withdrawn_pull(context, consumer).await?;
            let follows = context
                .settings
                .channel_of(consumer)
                .map_err(|error| StepError::Permanent(format!("{ENROLLMENT_FILE}: {error}")))?;
            let (to, targets) = listed
                .iter()
                .find(|(channel, _)| *channel == follows.name)
                .map(|(_, found)| found)
                .ok_or_else(|| StepError::Permanent(format!("no channel {}", follows.name)))?;
            let outcome = move_off(context, consumer, is_enrolled, to.as_ref(), targets).await?;
            Ok::<_, StepError>((closed_pull, outcome))
        }
        .await;
        let outcome = match done {
            Ok((closed_pull, outcome)) => {
                closed.extend(closed_pull);
                outcome
            }
            Err(StepError::Interrupted) => return Err(StepError::Interrupted),
            Err(error) => {
                let will_retry = error.is_transient() && !is_enrolled;
                tracing::warn!(job = context.job.id, repo = %consumer.repo, %error, will_retry, "moving a consumer off the withdrawn version failed");
                let failed = ConsumerOutcome::Failed {
                    error: error.to_string(),
                    will_retry,
                };
                if will_retry {
                    transient.push((consumer.repo.clone(), error));
                }
                failed
            }
        };
        outcomes.push(ConsumerReport {
            repo: consumer.repo.clone(),
            path: consumer.path.clone(),
            outcome,
        });
    }
    context
        .record(|result| {
            result.consumers = Some(outcomes);
            let done = result
                .withdrawal
                .get_or_insert_with(WithdrawalDone::default);
            done.moved_to = moved_to;
            for url in closed {
                if !done.closed_pull_requests.contains(&url) {
                    done.closed_pull_requests.push(url);
                }
            }
        })
        .await?;
    if !transient.is_empty() {
        return Err(StepError::ConsumersLeft(transient));
    }
    Ok(())
}

/// Closes the consumer's open pull request for the withdrawn version, after a comment that
/// says why; gives its address. None when there is none open (or an earlier attempt closed
/// it).
async fn close_withdrawn_pull(
    context: &StepContext<'_>,
    consumer: &ConsumerSettings,
) -> Result<Option<String>, StepError> {
    let api = context.github;
    let repo = &consumer.repo;
    let auth = context.auth_for(repo).await?;
    let version = &context.job.version;
    let Some(pull) = open_pull_for_branch(api, auth, repo, &update_branch(version)).await? else {
        return Ok(None);
    };
    let because = reason_line(context)
        .map(|reason| format!(" The reason given: {}.", code_span(&reason)))
        .unwrap_or_default();
    let text = format!(
        "Grafana Alloy {version} was withdrawn from the published images: hosts no longer \
         install it.{because} This pull request is closed; a later version gets a pull \
         request of its own."
    );
    comment(api, auth, repo, pull.number, &text).await?;
    close_pull(api, auth, repo, pull.number).await?;
    tracing::info!(job = context.job.id, %repo, pull = pull.number, "closed the pull request for the withdrawn version");
    Ok(Some(pull.html_url))
}

/// The version `consumer`'s file on its base branch pins, if it has the file and an Alloy
/// entry.
async fn pinned_version(
    context: &StepContext<'_>,
    consumer: &ConsumerSettings,
) -> Result<Option<Version>, StepError> {
    let api = context.github;
    let repo = &consumer.repo;
    let auth = context.auth_for(repo).await?;
    let Some(head) = branch_head(api, auth, repo, &consumer.base).await? else {
        return Ok(None);
    };
    let Some(file) = read_file(api, auth, repo, &head, &consumer.path).await? else {
        return Ok(None);
    };
    let text = String::from_utf8(file.content).map_err(|_| {
        StepError::Permanent(format!("{} in {repo} is not UTF-8 text", consumer.path))
    })?;
    for arch in &context.settings.image.arches {
        match find_alloy_pin(&text, &context.settings.image.name, *arch) {
            Ok(pin) => return Ok(Some(pin.version)),
            Err(error) if error.is_no_entry() => {}
            Err(error) => {
                return Err(StepError::Pin {
                    repo: repo.clone(),
                    path: consumer.path.clone(),
                    source: Box::new(error),
                });
            }
        }
    }
    Ok(None)
}

/// Proposes `moved_to` to a consumer whose base branch pins the withdrawn version.
async fn move_off(
    context: &StepContext<'_>,
    consumer: &ConsumerSettings,
    is_enrolled: bool,
    moved_to: Option<&Version>,
    targets: &[PinTarget],
) -> Result<ConsumerOutcome, StepError> {
    let withdrawn = &context.job.version;
    let Some(target) = moved_to else {
        // Nothing to move to: say whether it mattered.
        return Ok(match pinned_version(context, consumer).await? {
            Some(from) if &from != withdrawn => ConsumerOutcome::PinsOther { from },
            _ => ConsumerOutcome::NoVersionLeft,
        });
    };
    let auth = context.auth_for(&consumer.repo).await?;
    let PinRead {
        base_head,
        base_file,
        edit,
        image,
    } = read_pin(
        context.github,
        auth,
        consumer,
        &context.settings.image.name,
        targets,
        target,
    )
    .await?;
    let from = edit.previous.version.clone();
    if &from != withdrawn {
        return Ok(ConsumerOutcome::PinsOther { from });
    }
    let (verb, title) = if target < withdrawn {
        (
            "Moves",
            format!("Move Grafana Alloy sysext back to {target}: {withdrawn} was withdrawn"),
        )
    } else {
        (
            "Updates",
            format!("Update Grafana Alloy sysext to {target}: {withdrawn} was withdrawn"),
        )
    };
    let because = reason_line(context)
        .map(|reason| format!(" The reason given: {}.", code_span(&reason)))
        .unwrap_or_default();
    let mut body = format!(
        "## Summary\n\n{verb} the Grafana Alloy sysext in {path} from **{withdrawn}** to \
         **{target}**, the newest version still published: {withdrawn} was withdrawn, and \
         hosts no longer install it.{because}\n\n\
         | | version | sha256 |\n|---|---|---|\n| from | {withdrawn} | {from_hash} |\n\
         | to | {target} | {to_hash} |\n\n\
         Hosts provisioned from this config get {target}. Hosts already running {withdrawn} \
         keep it until they are moved back or a newer version is published (see the \
         README's section on withdrawing).\n\n## Links\n\n{downloads}",
        path = code_span(&consumer.path),
        from_hash = table_code_span(&edit.previous.sha256),
        to_hash = table_code_span(&image.sha256),
        downloads = download_links(image),
    );
    body.extend(edit.yaml_check.review_note());
    let proposal = Proposal {
        branch: update_branch(target),
        base_head: &base_head,
        base_file: &base_file,
        text: &edit.text,
        commit_message: format!(
            "chore: move Grafana Alloy sysext to {target}, {withdrawn} was withdrawn"
        ),
        title,
        body,
    };
    let proposed = propose(context, consumer, is_enrolled, &proposal).await?;
    Ok(proposed.outcome(from, image.file.clone()))
}
