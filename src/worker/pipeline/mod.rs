//! A build job's steps, SPEC §1 steps 1–7:
//!
//! 1. `download`: the upstream asset, its digest checked;
//! 2. `build`: the images, signed, reproducibly;
//! 3. `upload`: images, `.sha256` and `.asc` to storage, unless the build repository's
//!    `SHA256SUMS` lists them with the same hash already;
//! 4. `manifest`: the merged, signed `SHA256SUMS` uploaded, then committed;
//! 5. `release`: `vX.Y.Z` in the build repository;
//! 6. `consumers`: a pull request per consumer repository;
//! 7. `tracking`: the tracking issue gets the outcome and is closed;
//! 8. `report`: the reply to whoever asked in a comment.
//!
//! The job's step is recorded before each step runs, so a job whose process was killed
//! resumes at the step it was in. Every step is idempotent: a step that runs again finds
//! its work done (same content in storage, the manifest already merged, the release or the
//! pull request already there) and changes nothing.

mod build;
mod consumers;
mod download;
mod manifest;
mod release;
mod report;
mod upload;

pub(crate) use consumers::is_consumer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::Worker;
use crate::database::DatabaseError;
use crate::database::jobs::Job;
use crate::github::api::{ApiError, Auth};
use crate::storage::StorageError;
use crate::version::Version;

/// A job that keeps failing transiently fails for good after this many attempts.
pub const MAX_JOB_ATTEMPTS: i64 = 5;

/// The steps, in order.
pub const STEPS: [&str; 8] = [
    "download",
    "build",
    "upload",
    "manifest",
    "release",
    "consumers",
    "tracking",
    "report",
];

/// How a step failed.
#[derive(Debug)]
pub enum StepError {
    /// Worth trying again later (network, rate limits, GitHub's or storage's 5xx).
    Transient(String),
    /// Trying again cannot help (no such release, a corrupt download, a bad build).
    Permanent(String),
    /// The server is shutting down; the job resumes from this step on the next start.
    Interrupted,
}

impl From<DatabaseError> for StepError {
    fn from(error: DatabaseError) -> Self {
        StepError::Transient(error.to_string())
    }
}

impl From<ApiError> for StepError {
    fn from(error: ApiError) -> Self {
        if error.is_transient() {
            StepError::Transient(error.to_string())
        } else {
            StepError::Permanent(error.to_string())
        }
    }
}

impl From<StorageError> for StepError {
    fn from(error: StorageError) -> Self {
        if error.is_transient() {
            StepError::Transient(format!("storage: {error}"))
        } else {
            StepError::Permanent(format!("storage: {error}"))
        }
    }
}

/// What every step works with.
pub struct JobContext<'a> {
    pub worker: &'a Worker,
    pub job: Job,
    pub version: Version,
}

impl JobContext<'_> {
    /// Where this job keeps its downloads and build output.
    pub fn work_dir(&self) -> PathBuf {
        self.worker.work_dir(self.job.id)
    }

    /// Where the build writes its files.
    pub fn out_dir(&self) -> PathBuf {
        self.work_dir().join("out")
    }

    /// The job's result so far (an object).
    pub fn result(&self) -> Value {
        self.job.result.clone().unwrap_or_else(|| json!({}))
    }

    /// Merges `fields` into the stored result.
    pub async fn record(&mut self, fields: Value) -> Result<(), DatabaseError> {
        let mut result = self.result();
        if let (Some(target), Some(fields)) = (result.as_object_mut(), fields.as_object()) {
            for (key, value) in fields {
                target.insert(key.clone(), value.clone());
            }
        }
        self.worker
            .database
            .set_job_result(self.job.id, &result)
            .await?;
        self.job.result = Some(result);
        Ok(())
    }

    /// How the job acts on `repo`: the installation that has it.
    pub async fn auth_for(&self, repo: &str) -> Result<Auth, StepError> {
        self.worker.auth_for_repository(repo).await
    }

    /// `feature/update-alloy-sysext-to-X.Y.Z`.
    pub fn update_branch(&self) -> String {
        format!("{}{}", super::inbox::UPDATE_BRANCH_PREFIX, self.version)
    }
}

impl Worker {
    /// Runs `job` from the step it is at until it ends, waits for a retry, or the server
    /// stops.
    pub(super) async fn run_job(self: &Arc<Self>, job: Job, shutdown: &watch::Receiver<bool>) {
        let id = job.id;
        // Run the job as claimed, not as read before: a `/rebuild` may have joined it since.
        let job = match self.database.claim_job(id).await {
            Ok(Some(claimed)) => claimed,
            Ok(None) => {
                tracing::info!(job = id, "the job is no longer runnable; not started");
                return;
            }
            Err(error) => {
                tracing::error!(job = id, %error, "could not start the job");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return;
            }
        };
        let resumed_at = job.step.clone();
        // `attempts` counts this attempt already.
        tracing::info!(job = id, version = %job.version, rebuild = job.rebuild, attempt = job.attempts, resumed_at = ?resumed_at, "job started");
        let outcome = self.run_steps(job.clone(), shutdown).await;
        let metrics = crate::metrics::global();
        let result = match outcome {
            Ok(()) => self.database.finish_job(id, None).await.map(|()| {
                metrics.job("succeeded");
                tracing::info!(job = id, "job succeeded");
            }),
            Err(StepError::Interrupted) => {
                tracing::info!(job = id, "stopping; the job resumes on the next start");
                Ok(())
            }
            Err(StepError::Transient(error)) if job.attempts < MAX_JOB_ATTEMPTS => {
                // The first retry waits `job_retry_delay`, each later one twice as long.
                let delay =
                    self.job_retry_delay * 2u32.pow((job.attempts.max(1) as u32 - 1).min(10));
                tracing::warn!(job = id, %error, retry_in_seconds = delay.as_secs(), "job failed; it will be retried");
                metrics.job("retrying");
                self.database
                    .retry_job_later(id, &error, &crate::timestamp::after(delay))
                    .await
            }
            Err(StepError::Transient(error)) | Err(StepError::Permanent(error)) => {
                tracing::error!(job = id, %error, "job failed");
                metrics.job("failed");
                self.fail_job(id, &error).await
            }
        };
        if let Err(error) = result {
            tracing::error!(job = id, %error, "could not record the job's outcome");
        }
    }

    async fn run_steps(&self, job: Job, shutdown: &watch::Receiver<bool>) -> Result<(), StepError> {
        let version: Version = job
            .version
            .parse()
            .map_err(|e| StepError::Permanent(format!("{e}")))?;
        let first = job
            .step
            .as_deref()
            .and_then(|step| STEPS.iter().position(|s| *s == step))
            .unwrap_or(0);
        let mut context = JobContext {
            worker: self,
            job,
            version,
        };
        for step in &STEPS[first..] {
            if *shutdown.borrow() {
                return Err(StepError::Interrupted);
            }
            self.database.set_job_step(context.job.id, step).await?;
            let attempt = context.job.attempts;
            self.database
                .start_step(context.job.id, step, attempt)
                .await?;
            context.job.step = Some((*step).to_owned());
            tracing::info!(job = context.job.id, step, "step");
            let started = std::time::Instant::now();
            let ran = match *step {
                "download" => download::run(&mut context).await,
                "build" => build::run(&mut context).await,
                "upload" => upload::run(&mut context).await,
                "manifest" => manifest::run(&mut context).await,
                "release" => release::run(&mut context).await,
                "consumers" => consumers::run(&mut context).await,
                "tracking" => report::close_tracking_issue(&mut context).await,
                "report" => report::reply(&mut context).await,
                other => Err(StepError::Permanent(format!("unknown step {other}"))),
            };
            let took = started.elapsed();
            let outcome = match &ran {
                Ok(()) => "ok",
                Err(StepError::Interrupted) => "interrupted",
                Err(_) => "error",
            };
            if outcome != "interrupted" {
                crate::metrics::global().step(step, ran.is_ok(), took);
            }
            if let Err(error) = self
                .database
                .finish_step(context.job.id, step, attempt, outcome, took.as_secs_f64())
                .await
            {
                tracing::warn!(job = context.job.id, step, %error, "could not record the step's duration");
            }
            ran?;
        }
        let _ = std::fs::remove_dir_all(context.work_dir());
        Ok(())
    }

    /// Ends the job as failed and tells whoever asked.
    async fn fail_job(&self, id: i64, error: &str) -> Result<(), DatabaseError> {
        self.database.finish_job(id, Some(error)).await?;
        // The job will not run again: its downloads and build output go.
        let _ = std::fs::remove_dir_all(self.work_dir(id));
        let Some(job) = self.database.job(id).await? else {
            return Ok(());
        };
        if let Err(reply_error) = report::report_failure(self, &job, error).await {
            tracing::error!(job = id, error = %reply_error, "could not report the failed job");
        }
        Ok(())
    }
}
