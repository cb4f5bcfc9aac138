//! `/build X.Y.Z`: builds and publishes the images for a version not yet published. The
//! request queues a job, or joins the one queued for that version; `/rebuild` asks the same
//! way (see `queue_job`).

use super::CommandAnswer;
use super::request::CommandRequest;
use crate::database::job_requests::{BuildRequest, MAX_QUEUED_PER_USER, RequestOutcome};
use crate::database::jobs::{JobKind, NewJob, Queued, Trigger, TriggerSource};
use crate::github::api::Auth;
use crate::github::reactions::react_to_comment;
use crate::version::Version;
use crate::worker::inbox::HandlingError;
use crate::worker::replies::BuildAnswer;

/// Asks for a build of `version`.
pub(crate) async fn run(
    request: &CommandRequest<'_>,
    version: &Version,
) -> Result<CommandAnswer, HandlingError> {
    queue_job(request, "build", version, false).await
}

/// A job asked for in a comment.
pub(super) struct AskedJob<'a> {
    /// The command word (`build`, `rebuild`, `withdraw`): part of the request's key.
    pub word: &'a str,
    pub kind: JobKind,
    pub version: &'a Version,
    pub rebuild: bool,
    pub reason: Option<&'a str>,
}

/// Queues the job the command `word` (`build` or `rebuild`) asks for, or joins the queued
/// one for `version`. [`CommandAnswer::AskedBefore`] when this comment asked for it before.
pub(super) async fn queue_job(
    request: &CommandRequest<'_>,
    word: &str,
    version: &Version,
    rebuild: bool,
) -> Result<CommandAnswer, HandlingError> {
    queue(
        request,
        AskedJob {
            word,
            kind: JobKind::Build,
            version,
            rebuild,
            reason: None,
        },
    )
    .await
}

/// Queues the job `asked` names, or joins the queued one of its kind for its version.
/// [`CommandAnswer::AskedBefore`] when this comment asked for it before.
pub(super) async fn queue(
    request: &CommandRequest<'_>,
    asked: AskedJob<'_>,
) -> Result<CommandAnswer, HandlingError> {
    let comment = request.comment;
    let AskedJob {
        word,
        kind,
        version,
        rebuild,
        reason,
    } = asked;
    let key = format!("comment:{}:{word}:{version}", comment.comment_id);
    let job = NewJob {
        kind,
        version: version.clone(),
        rebuild,
        dedupe_key: key.clone(),
        trigger: Trigger {
            source: TriggerSource::Comment,
            delivery_id: Some(request.delivery_id.into()),
            repository: Some(comment.repository.clone()),
            issue_number: Some(comment.issue_number),
            comment_id: Some(comment.comment_id),
            user: Some(comment.user.clone()),
            reason: reason.map(str::to_owned),
        },
        installation_id: Some(comment.installation_id),
    };
    let outcome = request
        .worker
        .services
        .database
        .request_build(&BuildRequest {
            key: &key,
            job: &job,
            user: &comment.user,
            repository: &comment.repository,
            issue_number: comment.issue_number,
            comment_id: comment.comment_id,
            delivery_id: request.delivery_id,
        })
        .await?;
    Ok(CommandAnswer::Build(match outcome {
        RequestOutcome::Queued(id) => {
            react_with_eyes(request).await;
            request.worker.announce_job(Queued::New(id), &job);
            BuildAnswer::Queued
        }
        RequestOutcome::Joined { job: id, upgraded } => {
            tracing::info!(job = id, upgraded, user = %comment.user, "request joined a queued job");
            react_with_eyes(request).await;
            BuildAnswer::Joined { job: id, upgraded }
        }
        RequestOutcome::AskedBefore(_) => return Ok(CommandAnswer::AskedBefore),
        RequestOutcome::TooManyQueued => BuildAnswer::TooManyQueued {
            limit: MAX_QUEUED_PER_USER,
        },
    }))
}

/// The `eyes` reaction on an accepted command's comment; a failure is only logged.
pub(super) async fn react_with_eyes(request: &CommandRequest<'_>) {
    let comment = request.comment;
    if let Err(error) = react_to_comment(
        &request.worker.services.github,
        Auth::Installation(comment.installation_id),
        &comment.repository,
        comment.comment_id,
        "eyes",
    )
    .await
    {
        tracing::warn!(%error, "the eyes reaction failed");
    }
}
