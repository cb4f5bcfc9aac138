//! Steps 7 and 8: the tracking issue gets the outcome and is closed (unless a consumer update
//! failed); each issue where a comment asked for the job gets one report, naming everyone
//! who asked. A failed job is reported in both places too.

use super::{MAX_JOB_ATTEMPTS, StepContext, StepError};
use crate::database::jobs::{Job, TriggerSource};
use crate::database::{Database, DatabaseError};
use crate::github::api::ApiError;
use crate::github::issues::{close_issue, comment, find_open_issue, issue_comments};
use crate::worker::replies::{
    Asker, Audience, failed_consumers, job_failed, job_succeeded, tracking_issue_title,
};

/// Who asked for a job, and where they asked.
struct Askers {
    /// First asker first, each login once per repository asked in.
    users: Vec<Asker>,
    /// `(owner/name, issue number)` of each issue a comment asked in, each once.
    issues: Vec<(String, u64)>,
}

/// Everyone who asked for `job`: whoever started it (a commenter, a release's or a
/// dispatch's sender) and the comments that joined it.
async fn askers(database: &Database, job: &Job) -> Result<Askers, DatabaseError> {
    let mut askers = Askers {
        users: Vec::new(),
        issues: Vec::new(),
    };
    let mut add = |user: Option<&str>, issue: Option<(&str, u64)>| {
        let repository = issue.map(|(repo, _)| repo);
        if let Some(user) = user
            && !askers.users.iter().any(|a| {
                a.user.eq_ignore_ascii_case(user)
                    && match (&a.repository, repository) {
                        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                        (None, None) => true,
                        _ => false,
                    }
            })
        {
            askers.users.push(Asker {
                user: user.to_owned(),
                repository: repository.map(str::to_owned),
            });
        }
        if let Some((repo, number)) = issue
            && !askers
                .issues
                .iter()
                .any(|(r, n)| r.eq_ignore_ascii_case(repo) && *n == number)
        {
            askers.issues.push((repo.to_owned(), number));
        }
    };
    let trigger = &job.trigger;
    let trigger_issue = match (&trigger.repository, trigger.issue_number, trigger.source) {
        (Some(repo), Some(number), TriggerSource::Comment) => Some((repo.as_str(), number)),
        _ => None,
    };
    add(trigger.user.as_deref(), trigger_issue);
    for request in database.job_requests(job.id).await? {
        add(
            Some(&request.user),
            Some((&request.repository, request.issue_number)),
        );
    }
    Ok(askers)
}

pub async fn close_tracking_issue(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let github = context.github;
    let repo = &context.settings.build_repo.repo;
    let auth = context.auth_for(repo).await?;
    let title = tracking_issue_title(&context.job.version);
    let Some(issue) = find_open_issue(
        github,
        auth,
        repo,
        &context.settings.schedule.tracking_label,
        &title,
    )
    .await?
    else {
        return Ok(());
    };
    let askers = askers(context.database, &context.job).await?;
    let outcome = job_succeeded(
        &context.job,
        &Asker::visible_to(&askers.users, Audience::BuildRepository),
        Audience::BuildRepository,
    );
    // The step is recorded only once the issue is closed: an attempt stopped after its
    // comment left it there already, and the issue gets it once.
    let commented = issue_comments(github, auth, repo, issue.number)
        .await?
        .iter()
        .any(|posted| posted.user.kind == "Bot" && posted.body == outcome);
    if commented {
        tracing::info!(
            job = context.job.id,
            issue = issue.number,
            "the tracking issue has the outcome already"
        );
    } else {
        comment(github, auth, repo, issue.number, &outcome).await?;
    }
    // A consumer left behind is not done: the issue stays open until a later run updates it.
    if failed_consumers(&context.job).is_empty() {
        close_issue(github, auth, repo, issue.number).await?;
    }
    context
        .record(|result| result.tracking_issue = Some(issue.html_url))
        .await?;
    Ok(())
}

/// The end report, once to each issue a comment asked in. Each issue reported to is
/// recorded, so a step run again after a failure part-way does not report twice.
///
/// The job is published by now: an issue that cannot be reached (locked, deleted, the App
/// removed from its repository) is logged and recorded under `report_failed`, and the
/// others still get theirs. A transient failure runs the step again while the job has
/// attempts left; after that it is recorded like the others.
pub async fn reply(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let askers = askers(context.database, &context.job).await?;
    let mut transient = None;
    for (repository, issue) in &askers.issues {
        let done = format!("{repository}#{issue}");
        let result = context.result();
        if result.reported_to.contains(&done) || result.report_failed.contains(&done) {
            continue;
        }
        let audience = Audience::of(repository, &context.settings.build_repo.repo);
        let users = Asker::visible_to(&askers.users, audience);
        let text = job_succeeded(&context.job, &users, audience);
        let posted = match context.auth_for(repository).await {
            Ok(auth) => comment(context.github, auth, repository, *issue, &text)
                .await
                .map_err(StepError::from),
            Err(error) => Err(error),
        };
        match posted {
            Ok(()) => {
                context
                    .record(|result| result.reported_to.push(done))
                    .await?
            }
            Err(StepError::Interrupted) => return Err(StepError::Interrupted),
            Err(error) if error.is_transient() && context.job.attempts < MAX_JOB_ATTEMPTS => {
                tracing::warn!(job = context.job.id, issue = %done, %error, "the end report could not be posted; trying again later");
                transient = Some(error);
            }
            Err(error) => {
                tracing::warn!(job = context.job.id, issue = %done, %error, "the end report could not be posted to this issue; the others still get theirs");
                context
                    .record(|result| result.report_failed.push(done))
                    .await?
            }
        }
    }
    match transient {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Tells the issues where comments asked for `job`, and the tracking issue, that it failed.
/// An issue that already got the job's outcome (reported to before the failure) gets
/// nothing more, and an issue that cannot be reached does not keep the others from theirs:
/// its error is logged, and the last one returned.
pub async fn report_failure(context: &StepContext<'_>, error: &str) -> Result<(), ApiError> {
    let job = &context.job;
    let askers = match askers(context.database, job).await {
        Ok(askers) => askers,
        Err(database) => {
            tracing::warn!(job = job.id, error = %database, "reading who asked for a failed job");
            Askers {
                users: job
                    .trigger
                    .user
                    .iter()
                    .map(|user| Asker {
                        user: user.clone(),
                        repository: job.trigger.repository.clone(),
                    })
                    .collect(),
                issues: Vec::new(),
            }
        }
    };
    let result = context.result();
    let mut last_error = None;
    for (repository, issue) in &askers.issues {
        if result
            .reported_to
            .contains(&format!("{repository}#{issue}"))
        {
            continue;
        }
        let Ok(auth) = context.auth_for(repository).await else {
            tracing::warn!(job = job.id, repo = %repository, issue, "cannot act on the repository to report the failed job");
            continue;
        };
        let audience = Audience::of(repository, &context.settings.build_repo.repo);
        let users = Asker::visible_to(&askers.users, audience);
        let text = job_failed(job, error, &users, audience);
        if let Err(posting) = comment(context.github, auth, repository, *issue, &text).await {
            tracing::warn!(job = job.id, repo = %repository, issue, error = %posting, "reporting the failed job to an issue");
            last_error = Some(posting);
        }
    }
    // The tracking issue had the outcome already when the job failed after that step.
    let tracked = result.tracking_issue.is_some();
    let repo = &context.settings.build_repo.repo;
    if !tracked && let Ok(auth) = context.auth_for(repo).await {
        let posted = match find_open_issue(
            context.github,
            auth,
            repo,
            &context.settings.schedule.tracking_label,
            &tracking_issue_title(&job.version),
        )
        .await
        {
            Ok(Some(issue)) => {
                let users = Asker::visible_to(&askers.users, Audience::BuildRepository);
                let text = job_failed(job, error, &users, Audience::BuildRepository);
                comment(context.github, auth, repo, issue.number, &text).await
            }
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(posting) = posted {
            tracing::warn!(job = job.id, error = %posting, "reporting the failed job to the tracking issue");
            last_error = Some(posting);
        }
    }
    match last_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
