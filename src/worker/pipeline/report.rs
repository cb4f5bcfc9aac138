//! Steps 7 and 8: the tracking issue gets the outcome and is closed (unless a consumer update
//! failed); whoever asked in a comment gets a reply. A failed job is reported in both places
//! too.

use super::{JobContext, StepError};
use crate::database::jobs::Job;
use crate::github::api::ApiError;
use crate::github::issues::{close_issue, comment, find_open_issue};
use crate::version::Version;
use crate::worker::Worker;
use crate::worker::replies::{failed_consumers, job_failed, job_succeeded, tracking_issue_title};

pub async fn close_tracking_issue(context: &mut JobContext<'_>) -> Result<(), StepError> {
    let worker = context.worker;
    let repo = &worker.settings.build_repo.repo;
    let auth = context.auth_for(repo).await?;
    let title = tracking_issue_title(&context.version);
    let Some(issue) = find_open_issue(
        &worker.github,
        auth,
        repo,
        &worker.settings.schedule.tracking_label,
        &title,
    )
    .await?
    else {
        return Ok(());
    };
    comment(
        &worker.github,
        auth,
        repo,
        issue.number,
        &job_succeeded(&context.job),
    )
    .await?;
    // A consumer left behind is not done: the issue stays open until a later run updates it.
    if failed_consumers(&context.job).is_empty() {
        close_issue(&worker.github, auth, repo, issue.number).await?;
    }
    context
        .record(serde_json::json!({ "tracking_issue": issue.html_url }))
        .await?;
    Ok(())
}

pub async fn reply(context: &mut JobContext<'_>) -> Result<(), StepError> {
    let job = &context.job;
    let (Some(repository), Some(issue), "comment") = (
        &job.trigger.repository,
        job.trigger.issue_number,
        job.trigger.source.as_str(),
    ) else {
        return Ok(());
    };
    let auth = context.auth_for(repository).await?;
    comment(
        &context.worker.github,
        auth,
        repository,
        issue,
        &job_succeeded(job),
    )
    .await?;
    Ok(())
}

/// Tells the commenter who asked, and the tracking issue, that `job` failed.
pub async fn report_failure(worker: &Worker, job: &Job, error: &str) -> Result<(), ApiError> {
    let text = job_failed(job, error);
    if let (Some(repository), Some(issue), "comment") = (
        &job.trigger.repository,
        job.trigger.issue_number,
        job.trigger.source.as_str(),
    ) && let Ok(auth) = worker.auth_for_repository(repository).await
    {
        comment(&worker.github, auth, repository, issue, &text).await?;
    }
    let repo = &worker.settings.build_repo.repo;
    if let (Ok(version), Ok(auth)) = (
        job.version.parse::<Version>(),
        worker.auth_for_repository(repo).await,
    ) && let Some(issue) = find_open_issue(
        &worker.github,
        auth,
        repo,
        &worker.settings.schedule.tracking_label,
        &tracking_issue_title(&version),
    )
    .await?
    {
        comment(&worker.github, auth, repo, issue.number, &text).await?;
    }
    Ok(())
}
