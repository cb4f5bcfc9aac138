//! Handling stored deliveries: routing each one and doing what it asks.

use std::sync::Arc;

use http::Method;
use serde_json::json;
use tokio::sync::watch;

use super::Worker;
use super::replies;
use super::routing::{CommentPosted, Route, RoutingContext, WorkflowRunCompleted, route};
use crate::commands::{Command, parse_comment};
use crate::database::DatabaseError;
use crate::database::deliveries::{DeliveryOutcome, PendingDelivery};
use crate::database::installations::{InstallationChange, WorkflowRun};
use crate::database::jobs::{NewJob, Queued, Trigger};
use crate::github::api::{ApiError, Auth};
use crate::github::issues::comment;
use crate::github::pulls::open_pull_for_branch;
use crate::github::url::{escape_component, escape_repo};

/// The branches consumer pull requests come from.
pub const UPDATE_BRANCH_PREFIX: &str = "feature/update-alloy-sysext-to-";

/// A delivery whose handling keeps failing transiently is given up after this many tries.
const MAX_DELIVERY_ATTEMPTS: i64 = 5;

/// The permissions that may run `/build` and `/rebuild`.
const WRITE_PERMISSIONS: [&str; 3] = ["admin", "maintain", "write"];

/// Why a delivery could not be handled now.
#[derive(Debug, thiserror::Error)]
pub enum HandlingError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    GitHub(#[from] ApiError),
}

impl Worker {
    /// Handles every pending delivery, oldest first.
    pub(super) async fn handle_pending_deliveries(
        self: &Arc<Self>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), DatabaseError> {
        loop {
            let pending = self.database.pending_deliveries(50).await?;
            if pending.is_empty() {
                return Ok(());
            }
            for delivery in pending {
                if *shutdown.borrow() {
                    return Ok(());
                }
                if let Err(error) = self.handle_delivery(&delivery).await {
                    let message = error.to_string();
                    let transient = match &error {
                        HandlingError::GitHub(e) => e.is_transient(),
                        HandlingError::Database(_) => true,
                    };
                    let given_up = if transient {
                        self.database
                            .delivery_attempt_failed(&delivery.id, &message, MAX_DELIVERY_ATTEMPTS)
                            .await?
                    } else {
                        self.database
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
        match self.database.delivery(&delivery.id).await {
            Ok(Some(stored)) => {
                let outcome = match stored.state.as_str() {
                    "processed" => "processed",
                    "ignored" => "ignored",
                    "failed" => "failed",
                    _ => return,
                };
                crate::metrics::global().delivery(&delivery.event, outcome);
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
                self.database
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
            build_repo: &self.settings.build_repo.repo,
            app_login,
        };
        let routed = route(&delivery.event, &delivery.id, &payload, &context);
        tracing::info!(delivery = %delivery.id, event = %delivery.event, route = ?route_name(&routed), "handling a delivery");
        match routed {
            Route::Ping => {
                self.database
                    .finish_delivery(&delivery.id, DeliveryOutcome::Processed, None)
                    .await?
            }
            Route::Ignore(reason) => {
                self.database
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
                self.database
                    .apply_installation_change(&delivery.id, &change)
                    .await?
            }
            Route::WorkflowRun(run) => {
                self.report_consumer_ci(&run).await?;
                self.database
                    .store_workflow_run(
                        &delivery.id,
                        &WorkflowRun {
                            id: run.id,
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
                    version: build.version.to_string(),
                    rebuild: false,
                    dedupe_key: build.dedupe_key,
                    trigger: build.trigger,
                    installation_id: build.installation_id,
                };
                let queued = self
                    .database
                    .queue_job_for_delivery(&delivery.id, &job)
                    .await?;
                self.announce_job(queued, &job);
            }
            Route::Comment(comment) => self.handle_comment(&delivery.id, &comment).await?,
        }
        Ok(())
    }

    fn announce_job(&self, queued: Queued, job: &NewJob) {
        match queued {
            Queued::New(id) => {
                tracing::info!(job = id, version = %job.version, source = %job.trigger.source, "job queued");
                self.jobs_queued.notify_one();
            }
            Queued::Existing(id) => {
                tracing::info!(job = id, key = %job.dedupe_key, "this request was queued before; not queued again")
            }
        }
    }

    /// Runs the commands in a comment. Replies that report a refusal or a bad command go
    /// out here; an accepted build gets an `eyes` reaction, and its job replies when it
    /// ends.
    async fn handle_comment(
        &self,
        delivery_id: &str,
        comment: &CommentPosted,
    ) -> Result<(), HandlingError> {
        let commands = parse_comment(&comment.body);
        if commands.is_empty() {
            self.database
                .finish_delivery(
                    delivery_id,
                    DeliveryOutcome::Ignored,
                    Some("no command in the comment"),
                )
                .await?;
            return Ok(());
        }
        let auth = Auth::Installation(comment.installation_id);
        let mut queued_any = false;
        for (index, command) in commands.into_iter().enumerate() {
            // Handled before and answered: this is the comment handled again after a
            // failure further on.
            if self
                .database
                .command_replied(comment.comment_id, index)
                .await?
            {
                continue;
            }
            let command = match command {
                Ok(command) => command,
                Err(error) => {
                    self.reply_to_command(
                        comment,
                        index,
                        &replies::bad_command(&comment.user, &error),
                    )
                    .await?;
                    continue;
                }
            };
            match &command {
                Command::Help => {
                    self.reply_to_command(comment, index, &replies::help())
                        .await?
                }
                Command::Status => {
                    let status = self.status_text().await?;
                    self.reply_to_command(comment, index, &status).await?
                }
                Command::Build(version) | Command::Rebuild(version) => {
                    let permission = self.permission(comment).await?;
                    if !WRITE_PERMISSIONS.contains(&permission.as_str()) {
                        tracing::info!(user = %comment.user, %permission, command = command.name(), "command refused");
                        self.reply_to_command(
                            comment,
                            index,
                            &replies::not_permitted(
                                &comment.user,
                                command.name(),
                                &comment.repository,
                                &permission,
                            ),
                        )
                        .await?;
                        continue;
                    }
                    let job = NewJob {
                        version: version.to_string(),
                        rebuild: matches!(command, Command::Rebuild(_)),
                        dedupe_key: format!(
                            "comment:{}:{}:{}",
                            comment.comment_id,
                            command.name(),
                            version
                        ),
                        trigger: Trigger {
                            source: "comment".into(),
                            delivery_id: Some(delivery_id.into()),
                            repository: Some(comment.repository.clone()),
                            issue_number: Some(comment.issue_number),
                            comment_id: Some(comment.comment_id),
                            user: Some(comment.user.clone()),
                        },
                        installation_id: Some(comment.installation_id),
                    };
                    let queued = self
                        .database
                        .queue_job_for_delivery(delivery_id, &job)
                        .await?;
                    queued_any = true;
                    if let Queued::New(_) = queued {
                        let reaction = self
                            .github
                            .request(
                                Method::POST,
                                &format!(
                                    "/repos/{}/issues/comments/{}/reactions",
                                    escape_repo(&comment.repository),
                                    comment.comment_id
                                ),
                                auth,
                                Some(&json!({"content": "eyes"})),
                            )
                            .await;
                        match reaction {
                            Ok(r) if r.is_success() => {}
                            Ok(r) => {
                                tracing::warn!(status = r.status, request_id = ?r.request_id, "the eyes reaction was refused")
                            }
                            Err(error) => tracing::warn!(%error, "the eyes reaction failed"),
                        }
                    }
                    self.announce_job(queued, &job);
                }
            }
        }
        if !queued_any {
            self.database
                .finish_delivery(delivery_id, DeliveryOutcome::Processed, None)
                .await?;
        }
        Ok(())
    }

    /// A consumer's CI finished on an update branch: its pull request gets the conclusion.
    async fn report_consumer_ci(&self, run: &WorkflowRunCompleted) -> Result<(), HandlingError> {
        let (Some(branch), Some(conclusion)) = (&run.head_branch, &run.conclusion) else {
            return Ok(());
        };
        if !branch.starts_with(UPDATE_BRANCH_PREFIX) {
            return Ok(());
        }
        let auth = match self.auth_for_repository(&run.repository).await {
            Ok(auth) => auth,
            Err(error) => {
                tracing::warn!(repo = %run.repository, ?error, "cannot report a CI run");
                return Ok(());
            }
        };
        let Some(pull) = open_pull_for_branch(&self.github, auth, &run.repository, branch).await?
        else {
            return Ok(());
        };
        let mark = match conclusion.as_str() {
            "success" => "✅",
            "failure" | "timed_out" | "startup_failure" => "❌",
            _ => "ℹ️",
        };
        let link = run
            .html_url
            .as_deref()
            .map(|url| format!(" — {url}"))
            .unwrap_or_default();
        let body = format!(
            "{mark} {} finished on `{branch}`: **{conclusion}**{link}",
            run.name.as_deref().unwrap_or("CI")
        );
        comment(&self.github, auth, &run.repository, pull.number, &body).await?;
        Ok(())
    }

    /// The commenter's permission on the repository, as GitHub names it.
    async fn permission(&self, comment: &CommentPosted) -> Result<String, ApiError> {
        let path = format!(
            "/repos/{}/collaborators/{}/permission",
            escape_repo(&comment.repository),
            escape_component(&comment.user)
        );
        let response = self
            .github
            .request(
                Method::GET,
                &path,
                Auth::Installation(comment.installation_id),
                None,
            )
            .await?;
        if response.status == 404 {
            return Ok("none".into());
        }
        if !response.is_success() {
            return Err(response.into_error("checking the commenter's permission"));
        }
        // Read as a plain string: the field holds values that typed clients fail on.
        let value: serde_json::Value = response.json()?;
        Ok(value
            .get("permission")
            .and_then(|p| p.as_str())
            .unwrap_or("none")
            .to_owned())
    }

    /// Posts `body` as a comment on the issue `comment` is on.
    /// Posts the reply to command `index` of `comment`, and remembers that it did.
    async fn reply_to_command(
        &self,
        comment: &CommentPosted,
        index: usize,
        body: &str,
    ) -> Result<(), HandlingError> {
        self.post_comment(
            comment.installation_id,
            &comment.repository,
            comment.issue_number,
            body,
        )
        .await?;
        self.database
            .record_command_reply(comment.comment_id, index)
            .await?;
        Ok(())
    }

    pub(super) async fn post_comment(
        &self,
        installation_id: i64,
        repository: &str,
        issue_number: u64,
        body: &str,
    ) -> Result<(), ApiError> {
        let path = format!(
            "/repos/{}/issues/{issue_number}/comments",
            escape_repo(repository)
        );
        let _: serde_json::Value = self
            .github
            .send_json(
                Method::POST,
                &path,
                Auth::Installation(installation_id),
                &json!({ "body": body }),
            )
            .await?;
        Ok(())
    }

    async fn status_text(&self) -> Result<String, DatabaseError> {
        let jobs = self.database.recent_jobs(5).await?;
        // What hosts see: the published manifest.
        let manifest = self
            .storage
            .get(crate::artifacts::MANIFEST_FILE)
            .await
            .ok()
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        Ok(replies::status(
            &jobs,
            manifest.as_deref(),
            &self.settings.image.name,
        ))
    }
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
