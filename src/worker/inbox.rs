//! Handling stored deliveries: routing each one (`super::routing`) and doing what it asks.
//! A comment's commands are run by their handlers in `crate::worker::commands`; what is done here
//! is the comment as a whole: one reply, refusals answered at most hourly, the delivery's
//! outcome.

use crate::fence;
use std::sync::Arc;

use tokio::sync::watch;

use super::Worker;
use super::pipeline::{StepError, UPDATE_BRANCH_PREFIX};
use super::replies::{self, Audience, BuildAnswer};
use super::routing::{CommentPosted, Route, RoutingContext, WorkflowRunCompleted, route};
use crate::database::DatabaseError;
use crate::database::channel_entries::ConsumerCiFailure;
use crate::database::command_refusals::RefusalReason;
use crate::database::deliveries::{DeliveryOutcome, DeliveryState, PendingDelivery};
use crate::database::installations::{InstallationChange, WorkflowRun};
use crate::database::jobs::{JobKind, NewJob, Queued};
use crate::github::api::{ApiError, Auth};
use crate::github::issues;
use crate::github::markdown::{code_span, escape, safe_url};
use crate::github::pulls::open_pull_for_branch;
use crate::version::Version;
use crate::worker::commands::request::{CommandRequest, Permitted};
use crate::worker::commands::{CommandAnswer, parse_comment};

/// How often the inbox is read when no stored delivery wakes it.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// A delivery whose handling keeps failing transiently is given up after this many tries.
const MAX_DELIVERY_ATTEMPTS: i64 = 5;

/// Why a delivery could not be handled now.
#[derive(Debug, thiserror::Error)]
pub enum HandlingError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    GitHub(#[from] ApiError),
    /// The App cannot act on the build repository, to check a commenter's permission there.
    #[error("acting on the build repository: {0}")]
    BuildRepository(#[source] StepError),
}

impl HandlingError {
    /// True when the leader lease passed to another replica before a write.
    fn is_lost_lease(&self) -> bool {
        match self {
            HandlingError::GitHub(error) => matches!(error, ApiError::FenceLost(_)),
            HandlingError::BuildRepository(error) => error.is_lost_lease(),
            HandlingError::Database(error) => matches!(error, DatabaseError::LeaseLost { .. }),
        }
    }
}

impl Worker {
    /// Handles stored deliveries as they come, until `shutdown` turns true.
    pub(super) async fn inbox_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            // Any replica stores deliveries; the leader handles them, one at a time and in
            // order, with its writes fenced by its lease.
            self.leadership().wait_to_lead(&mut shutdown).await;
            if *shutdown.borrow() {
                return;
            }
            if let Some(generation) = self.leadership().generation() {
                let fence = self.leadership().fence(generation);
                let handled = fence::fenced(fence, self.handle_pending_deliveries(&shutdown));
                if let Err(error) = handled.await {
                    tracing::error!(%error, "reading the inbox");
                }
            }
            tokio::select! {
                () = self.deliveries_stored.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Handles every pending delivery, oldest first.
    async fn handle_pending_deliveries(
        self: &Arc<Self>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), DatabaseError> {
        loop {
            let pending = self.services.database.pending_deliveries(50).await?;
            if pending.is_empty() {
                return Ok(());
            }
            for delivery in pending {
                if *shutdown.borrow() || !self.leadership().is_leader() {
                    return Ok(());
                }
                if let Err(error) = self.handle_delivery(&delivery).await {
                    if error.is_lost_lease() {
                        // The new leader handles it; nothing is recorded here.
                        tracing::warn!(delivery = %delivery.id, %error, "this replica no longer leads; the delivery is left to the leader");
                        return Ok(());
                    }
                    let message = error.to_string();
                    let transient = match &error {
                        HandlingError::GitHub(e) => e.is_transient(),
                        HandlingError::Database(_) => true,
                        HandlingError::BuildRepository(error) => error.is_transient(),
                    };
                    let given_up = if transient {
                        self.services
                            .database
                            .delivery_attempt_failed(&delivery.id, &message, MAX_DELIVERY_ATTEMPTS)
                            .await?
                    } else {
                        self.services
                            .database
                            .finish_delivery(&delivery.id, DeliveryOutcome::Failed, Some(&message))
                            .await?;
                        true
                    };
                    tracing::warn!(delivery = %delivery.id, event = %delivery.event, error = %message, given_up, "handling a delivery failed");
                    if !given_up {
                        // Try it again on a later round, after the others.
                        return Ok(());
                    }
                }
                self.count_handled(&delivery).await;
            }
        }
    }

    /// Counts how the worker left `delivery` (`processed`, `ignored` or `failed`), as
    /// stored.
    async fn count_handled(&self, delivery: &PendingDelivery) {
        match self.services.database.delivery(&delivery.id).await {
            Ok(Some(stored)) => {
                if stored.state != DeliveryState::Pending {
                    crate::metrics::global().delivery(&delivery.event, stored.state.as_str());
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(delivery = %delivery.id, %error, "reading a handled delivery back for the metrics")
            }
        }
    }

    async fn handle_delivery(&self, delivery: &PendingDelivery) -> Result<(), HandlingError> {
        let payload: serde_json::Value = match serde_json::from_str(&delivery.payload) {
            Ok(payload) => payload,
            Err(error) => {
                self.services
                    .database
                    .finish_delivery(
                        &delivery.id,
                        DeliveryOutcome::Failed,
                        Some(&format!("the payload is not JSON: {error}")),
                    )
                    .await?;
                return Ok(());
            }
        };
        let app_login = self.app_login().await;
        let context = RoutingContext {
            build_repo: &self.services.settings.build_repo.repo,
            app_login,
        };
        let routed = route(&delivery.event, &delivery.id, &payload, &context);
        tracing::info!(delivery = %delivery.id, event = %delivery.event, route = ?route_name(&routed), "handling a delivery");
        match routed {
            Route::Ping => {
                self.services
                    .database
                    .finish_delivery(&delivery.id, DeliveryOutcome::Processed, None)
                    .await?
            }
            Route::Ignore(reason) => {
                self.services
                    .database
                    .finish_delivery(&delivery.id, DeliveryOutcome::Ignored, Some(&reason))
                    .await?
            }
            Route::Installation(event) => {
                let change = InstallationChange {
                    id: event.id,
                    account: event.account.as_deref(),
                    state: event.state,
                    repositories: event
                        .repositories
                        .as_ref()
                        .map(|r| r.iter().map(String::as_str).collect()),
                    added: event.added.iter().map(String::as_str).collect(),
                    removed: event.removed.iter().map(String::as_str).collect(),
                };
                self.services
                    .database
                    .apply_installation_change(&delivery.id, &change)
                    .await?
            }
            Route::WorkflowRun(run) => {
                // A run attempt handled before (its body replayed under a new delivery id,
                // with any conclusion) is not reported again.
                if !self
                    .services
                    .database
                    .workflow_run_handled(run.id, run.attempt)
                    .await?
                {
                    self.report_consumer_ci(&run).await?;
                }
                self.services
                    .database
                    .store_workflow_run(
                        &delivery.id,
                        &WorkflowRun {
                            id: run.id,
                            attempt: run.attempt,
                            repository: &run.repository,
                            head_branch: run.head_branch.as_deref(),
                            conclusion: run.conclusion.as_deref(),
                            html_url: run.html_url.as_deref(),
                        },
                    )
                    .await?
            }
            Route::Build(build) => {
                let job = NewJob {
                    kind: JobKind::Build,
                    version: build.version,
                    rebuild: false,
                    dedupe_key: build.dedupe_key,
                    trigger: build.trigger,
                    installation_id: build.installation_id,
                };
                let queued = match &build.request_key {
                    Some(key) => {
                        self.services
                            .database
                            .queue_dispatched_job(&delivery.id, &job, key)
                            .await?
                    }
                    None => {
                        self.services
                            .database
                            .queue_job_for_delivery(&delivery.id, &job)
                            .await?
                    }
                };
                self.announce_job(queued, &job);
            }
            Route::Comment(comment) => self.handle_comment(&delivery.id, &comment).await?,
        }
        Ok(())
    }

    /// Logs a queued job, and wakes the job loop when it is new.
    pub(in crate::worker) fn announce_job(&self, queued: Queued, job: &NewJob) {
        match queued {
            Queued::New(id) => {
                tracing::info!(job = id, version = %job.version, source = %job.trigger.source, "job queued");
                self.state.jobs_queued.notify_one();
            }
            Queued::Existing(id) => {
                tracing::info!(job = id, key = %job.dedupe_key, "this request was queued before; not queued again")
            }
        }
    }

    /// Runs the commands in a comment and answers them all in one reply, if any needs an
    /// answer: help, status, bad commands, refusals, requests that joined a queued job. An
    /// accepted build gets an `eyes` reaction instead, and its job reports when it ends.
    ///
    /// The delivery stays pending until the reply is posted: handling that fails part-way
    /// is done again later, and finds the jobs it asked for and the refusals it decided
    /// (stored under the comment), so nothing is queued or answered twice.
    async fn handle_comment(
        &self,
        delivery_id: &str,
        comment: &CommentPosted,
    ) -> Result<(), HandlingError> {
        // Decided once, for good: a replay of a handled comment's body (under a new
        // delivery id, when the queue has room or the commenter has gained permission)
        // does nothing.
        if self
            .services
            .database
            .comment_handled(comment.comment_id)
            .await?
        {
            self.services
                .database
                .finish_delivery(
                    delivery_id,
                    DeliveryOutcome::Ignored,
                    Some("this comment was handled before"),
                )
                .await?;
            return Ok(());
        }
        let commands = parse_comment(&comment.body);
        if commands.is_empty() {
            self.services
                .database
                .finish_delivery(
                    delivery_id,
                    DeliveryOutcome::Ignored,
                    Some("no command in the comment"),
                )
                .await?;
            return Ok(());
        }
        if self
            .services
            .database
            .comment_replied(comment.comment_id)
            .await?
        {
            self.services
                .database
                .finish_delivery(
                    delivery_id,
                    DeliveryOutcome::Ignored,
                    Some("this comment was answered before"),
                )
                .await?;
            return Ok(());
        }
        let build_repo = self.services.settings.build_repo.repo.as_str();
        let audience = Audience::of(&comment.repository, build_repo);
        let request = CommandRequest::new(self, delivery_id, comment, audience);
        let mut parts = Vec::new();
        let mut unanswered = Vec::new();
        let mut accepted = false;
        for command in commands {
            let command = match command {
                Ok(command) => command,
                Err(error) => {
                    // Answered like a refusal, so a flood of bad commands gets one answer
                    // an hour.
                    if self
                        .refusal_answered(
                            comment,
                            RefusalReason::Malformed,
                            "a command",
                            &mut unanswered,
                        )
                        .await?
                    {
                        parts.push(replies::bad_command(&error));
                    }
                    continue;
                }
            };
            let answered = match request.check_permission(&command).await? {
                Permitted::Yes => command.run(&request).await?,
                Permitted::No { permission } => {
                    tracing::info!(user = %comment.user, %permission, command = command.name(), "command refused");
                    CommandAnswer::Build(BuildAnswer::NotPermitted { permission })
                }
            };
            let answer = match answered {
                CommandAnswer::Text(text) => {
                    parts.push(text);
                    continue;
                }
                CommandAnswer::Build(answer) => answer,
                // Asked for by this comment before: already answered or queued.
                CommandAnswer::AskedBefore => continue,
            };
            let refused = match answer {
                BuildAnswer::NotPermitted { .. } => Some(RefusalReason::Permission),
                BuildAnswer::TooManyQueued { .. } => Some(RefusalReason::QueueLimit),
                BuildAnswer::Queued | BuildAnswer::Joined { .. } => None,
            };
            if refused.is_none() {
                accepted = true;
            }
            if let Some(reason) = refused
                && !self
                    .refusal_answered(comment, reason, &command.to_string(), &mut unanswered)
                    .await?
            {
                continue;
            }
            if let Some(text) =
                replies::build_answer(&command.to_string(), &answer, build_repo, audience)
            {
                parts.push(text);
            }
        }
        if !parts.is_empty() {
            issues::comment(
                &self.services.github,
                Auth::Installation(comment.installation_id),
                &comment.repository,
                comment.issue_number,
                &replies::comment_reply(&comment.user, &parts),
            )
            .await?;
            self.services
                .database
                .record_comment_reply(comment.comment_id)
                .await?;
        }
        let note = (!unanswered.is_empty()).then(|| unanswered.join("; "));
        let outcome = if parts.is_empty() && !accepted && note.is_some() {
            DeliveryOutcome::Ignored
        } else {
            DeliveryOutcome::Processed
        };
        self.services
            .database
            .finish_comment(delivery_id, comment.comment_id, outcome, note.as_deref())
            .await?;
        Ok(())
    }

    /// Records that `what` in `comment` was refused for `reason`, and whether to answer it
    /// (at most once an hour per user and repository); when not, notes it in `unanswered`.
    async fn refusal_answered(
        &self,
        comment: &CommentPosted,
        reason: RefusalReason,
        what: &str,
        unanswered: &mut Vec<String>,
    ) -> Result<bool, HandlingError> {
        let refusal = self
            .services
            .database
            .record_refusal(
                comment.comment_id,
                &comment.user,
                &comment.repository,
                reason,
            )
            .await?;
        if refusal.new {
            crate::metrics::global().command_refusal(reason.as_str(), refusal.answered);
        }
        if !refusal.answered {
            unanswered.push(format!(
                "{what} refused ({}); not answered: a refusal to {} in {} was answered within the hour",
                reason.as_str(),
                comment.user,
                comment.repository
            ));
        }
        Ok(refusal.answered)
    }

    /// A consumer's CI finished on an update branch: its pull request gets the conclusion,
    /// when the run is of that pull request's own head: run in the consumer repository
    /// itself (not a fork's pull request), on the commit the pull request is at; and when
    /// the pull request is the App's own, in a configured or enrolled consumer repository.
    async fn report_consumer_ci(&self, run: &WorkflowRunCompleted) -> Result<(), HandlingError> {
        let (Some(branch), Some(conclusion)) = (&run.head_branch, &run.conclusion) else {
            return Ok(());
        };
        if !branch.starts_with(UPDATE_BRANCH_PREFIX) {
            return Ok(());
        }
        let own_head = run
            .head_repository
            .as_deref()
            .is_some_and(|head| head.eq_ignore_ascii_case(&run.repository));
        if !own_head {
            tracing::info!(run = run.id, repo = %run.repository, head_repository = ?run.head_repository, "a CI run from another repository is not reported");
            return Ok(());
        }
        let auth = match self.auth_for_repository(&run.repository).await {
            Ok(auth) => auth,
            Err(error) => {
                tracing::warn!(repo = %run.repository, ?error, "cannot report a CI run");
                return Ok(());
            }
        };
        let Some(pull) =
            open_pull_for_branch(&self.services.github, auth, &run.repository, branch).await?
        else {
            return Ok(());
        };
        // Only the App's own update pull requests, in a consumer repository: anyone who can
        // push to an installed repository could open one from a branch of that name and
        // have a workflow's name posted in the App's name.
        let author = pull.user.as_ref().map(|user| user.login.as_str());
        let own_pull = matches!((author, self.app_login().await), (Some(a), Some(app)) if a.eq_ignore_ascii_case(app));
        if !own_pull {
            tracing::info!(run = run.id, repo = %run.repository, author = ?author, "a CI run on a pull request the App did not open is not reported");
            return Ok(());
        }
        if !super::pipeline::is_consumer(
            &self.services.settings,
            &self.services.github,
            auth,
            &run.repository,
        )
        .await?
        {
            tracing::info!(run = run.id, repo = %run.repository, "a CI run in a repository that is no consumer is not reported");
            return Ok(());
        }
        let pull_head = pull.head.as_ref().map(|head| head.sha.as_str());
        if pull_head.is_none() || pull_head != run.head_sha.as_deref() {
            tracing::info!(run = run.id, repo = %run.repository, run_sha = ?run.head_sha, pull_sha = ?pull_head, "a CI run on another commit than the pull request's head is not reported");
            return Ok(());
        }
        // The App's own pull request, on its head commit: a failure there holds the
        // version's promotion after `publish.promote_after_hours`.
        if is_failure(conclusion)
            && let Some(version) = branch
                .strip_prefix(UPDATE_BRANCH_PREFIX)
                .and_then(|v| v.parse::<Version>().ok())
        {
            self.services
                .database
                .record_ci_failure(&ConsumerCiFailure {
                    run_id: run.id,
                    run_attempt: run.attempt,
                    repository: run.repository.clone(),
                    version,
                    conclusion: conclusion.clone(),
                    html_url: run.html_url.clone(),
                    failed_at: crate::database::timestamp::now(),
                })
                .await?;
        }
        let body = consumer_ci_report(run, branch, conclusion);
        issues::comment(
            &self.services.github,
            auth,
            &run.repository,
            pull.number,
            &body,
        )
        .await?;
        Ok(())
    }
}

/// Whether a workflow run's conclusion says the change broke something: `failure`,
/// `timed_out` or `startup_failure` (not `cancelled`, `skipped` or `neutral`).
fn is_failure(conclusion: &str) -> bool {
    matches!(conclusion, "failure" | "timed_out" | "startup_failure")
}

/// The comment on an update pull request about a CI run: the workflow's name, the branch
/// and the conclusion come from the payload, so each is escaped or in a code span, and the
/// run's address is linked only when it is a plain web address.
fn consumer_ci_report(run: &WorkflowRunCompleted, branch: &str, conclusion: &str) -> String {
    let mark = match conclusion {
        "success" => "✅",
        "failure" | "timed_out" | "startup_failure" => "❌",
        _ => "ℹ️",
    };
    let link = run
        .html_url
        .as_deref()
        .and_then(safe_url)
        .map(|url| format!(" — {url}"))
        .unwrap_or_default();
    format!(
        "{mark} {} finished on {}: **{}**{link}",
        code_span(run.name.as_deref().unwrap_or("CI")),
        code_span(branch),
        escape(conclusion),
    )
}

fn route_name(route: &Route) -> &'static str {
    match route {
        Route::Ping => "ping",
        Route::Build(_) => "build",
        Route::Comment(_) => "comment",
        Route::Installation(_) => "installation",
        Route::WorkflowRun(_) => "workflow_run",
        Route::Ignore(_) => "ignore",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ci_report_shows_payload_text_without_markup() {
        let run = WorkflowRunCompleted {
            id: 1,
            attempt: 1,
            name: Some("CI @org/team ![x](https://evil.example/x.png) <img src=x> `".into()),
            repository: "o/r".into(),
            head_branch: None,
            head_sha: None,
            head_repository: None,
            conclusion: None,
            html_url: Some("https://evil.example/)[click](https://evil.example".into()),
        };
        let body = consumer_ci_report(&run, "feature/update-alloy-sysext-to-1.0.0", "fail**ure");
        assert_eq!(
            body,
            "ℹ️ `` CI @org/team ![x](https://evil.example/x.png) <img src=x> ` `` finished on \
             `feature/update-alloy-sysext-to-1.0.0`: **fail\\*\\*ure**"
        );
        let mut plain = run.clone();
        plain.name = Some("Validate Butane".into());
        plain.html_url = Some("https://github.com/o/r/actions/runs/1".into());
        assert_eq!(
            consumer_ci_report(&plain, "b", "success"),
            "✅ `Validate Butane` finished on `b`: **success** — https://github.com/o/r/actions/runs/1"
        );
    }
}
