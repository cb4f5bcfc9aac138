//! The job queue's loop: takes the next runnable job, claims it, runs its steps in order
//! from the one it is at, and ends it, retries it later with a growing wait, or leaves it
//! to resume (here or on another replica) at its step. A job runs under its lease
//! ([`super::job_lease`]), and one job runs at a time across all replicas. What each step does is in [`super::pipeline`]. Between
//! jobs, it runs the storage removal sweep ([`super::storage_removals`]) and queues the
//! promotions that are due ([`super::promotions`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::job_lease::RunningLease;
use super::leadership::LeaseFence;
use super::pipeline::{
    MAX_JOB_ATTEMPTS, MAX_JOB_STARTS, RepositoryAccess, StepContext, StepError, has_inputs,
    report_failure, run_step,
};
use super::{Worker, promotions, storage_removals, work_dir};
use crate::database::DatabaseError;
use crate::database::job_leases::STORAGE_SWEEP_LEASE;
use crate::database::job_steps::StepOutcome;
use crate::database::jobs::Job;
use crate::fence;
use crate::github::api::Auth;

impl RepositoryAccess for Worker {
    fn auth_for<'a>(
        &'a self,
        repo: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Auth, StepError>> + Send + 'a>> {
        Box::pin(self.auth_for_repository(repo))
    }
}

impl Worker {
    /// Runs jobs one at a time until `shutdown` turns true. When the queue is empty, the
    /// storage removal sweep runs: the first time soon after start, then at most every
    /// [`storage_removals::SWEEP_INTERVAL`]. Between jobs, it never runs while a job
    /// writes to storage.
    pub(super) async fn job_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let database = &self.services.database;
        if database.backend() == crate::database::Backend::Sqlite
            && let Err(error) = database.release_all_job_leases().await
        {
            tracing::warn!(%error, "could not give up the job leases of the previous run; they lapse by themselves");
        }
        let mut next_removal_sweep = Instant::now();
        let mut next_promotion_check = Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.services.database.next_runnable_job().await {
                Ok(Some(job)) => {
                    self.run_job(job, &shutdown).await;
                    continue;
                }
                Ok(None) => {
                    // The sweep and the promotions run on the leader only, as it.
                    if let Some(generation) = self.leadership().generation() {
                        let fence = self.leadership().fence(generation);
                        if Instant::now() >= next_removal_sweep {
                            self.sweep_storage_removals_alone().await;
                            next_removal_sweep = Instant::now() + storage_removals::SWEEP_INTERVAL;
                        }
                        if Instant::now() >= next_promotion_check {
                            fence::fenced(fence, self.promote_due_versions()).await;
                            next_promotion_check = Instant::now() + promotions::CHECK_INTERVAL;
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "reading the job queue"),
            }
            tokio::select! {
                () = self.state.jobs_queued.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Runs the storage removal sweep while no job runs on any replica: under the sweep's
    /// lease, which keeps jobs from being claimed, and fenced by it.
    async fn sweep_storage_removals_alone(&self) {
        let database = &self.services.database;
        let length = self.lease_times.job;
        let owner = self.replica.as_str();
        let generation = match database.claim_storage_sweep(owner, length).await {
            Ok(Some(generation)) => generation,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "could not start the storage removal sweep");
                return;
            }
        };
        let fence = Arc::new(LeaseFence {
            database: database.clone(),
            name: STORAGE_SWEEP_LEASE,
            owner: self.replica.clone(),
            generation,
            length,
        });
        fence::fenced(fence, self.sweep_storage_removals()).await;
        if let Err(error) = database.release_lease(STORAGE_SWEEP_LEASE, owner).await {
            tracing::warn!(%error, "could not end the storage removal sweep's lease; it lapses by itself");
        }
    }

    /// What the steps of `job` work with.
    fn step_context(&self, job: Job) -> StepContext<'_> {
        StepContext {
            github: &self.services.github,
            storage: &self.services.storage,
            settings: &self.services.settings,
            public_base_url: &self.services.public_base_url,
            signing_key: &self.services.signing_key,
            verity_signer: self.services.verity_signer.as_ref(),
            database: &self.services.database,
            access: self,
            work_dir: self.work_dir(job.id),
            job,
        }
    }

    /// Claims `job` and runs it from the step it is at until it ends, waits for a retry,
    /// the server stops, or another replica takes it over. Every write it makes is fenced
    /// by its lease.
    async fn run_job(&self, job: Job, shutdown: &watch::Receiver<bool>) {
        let id = job.id;
        // Run the job as claimed, not as read before: a `/rebuild` may have joined it since.
        let claimed = self
            .services
            .database
            .claim_job(id, self.replica.as_str(), self.lease_times.job)
            .await;
        let job = match claimed {
            Ok(Some(claimed)) => claimed,
            Ok(None) => {
                tracing::info!(job = id, "the job is no longer runnable here; not started");
                return;
            }
            Err(error) => {
                tracing::error!(job = id, %error, "could not start the job");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return;
            }
        };
        let Some(claim) = job.lease.clone() else {
            tracing::error!(job = id, "the claimed job has no lease; not started");
            return;
        };
        let lease = RunningLease::new(
            self.services.database.clone(),
            id,
            claim,
            self.lease_times.job,
        );
        let renewing = lease.keep_renewed();
        fence::fenced(lease.clone(), self.run_claimed_job(job, &lease, shutdown)).await;
        renewing.abort();
    }

    /// Runs the claimed `job` under `lease`, and records how it ended.
    async fn run_claimed_job(
        &self,
        job: Job,
        lease: &RunningLease,
        shutdown: &watch::Receiver<bool>,
    ) {
        let id = job.id;
        let attempts = job.attempts;
        let outcome = if attempts > MAX_JOB_STARTS {
            // Not run again: it ends as failed, like a step that failed for good.
            let at = job
                .step
                .map_or_else(|| "its start".to_owned(), |step| format!("the {step} step"));
            Err(StepError::Permanent(format!(
                "the job was started {attempts} times without ending, the last time at {at}: whatever ran it stopped or died each time, so it is not started again; a /rebuild starts it afresh"
            )))
        } else {
            // `attempts` counts this attempt already.
            tracing::info!(job = id, replica = %self.replica, version = %job.version, rebuild = job.rebuild, attempt = job.attempts, resumed_at = ?job.step, "job started");
            self.run_steps(job.clone(), shutdown).await
        };
        let metrics = crate::metrics::global();
        let result = match outcome {
            // Taken over: the lease says so (a fence that could not be checked because the
            // database did not answer is a transient failure instead).
            Err(error) if lease.is_lost() || error.is_taken_over() => {
                tracing::warn!(job = id, %error, "another replica took the job over; it stops here");
                Ok(())
            }
            Ok(()) => self
                .services
                .database
                .finish_claimed_job(&job, None)
                .await
                .map(|()| {
                    metrics.job("succeeded");
                    tracing::info!(job = id, "job succeeded");
                }),
            Err(StepError::Interrupted) => {
                // Another replica, or this one started again, resumes it at once.
                lease.release().await;
                tracing::info!(job = id, "stopping; the job resumes at its step");
                Ok(())
            }
            Err(error) if error.is_transient() && attempts < MAX_JOB_ATTEMPTS => {
                // The first retry waits `job_retry_delay`, each later one twice as long.
                let delay = self.job_retry_delay * 2u32.pow((attempts.max(1) as u32 - 1).min(10));
                tracing::warn!(job = id, %error, retry_in_seconds = delay.as_secs(), "job failed; it will be retried");
                metrics.job("retrying");
                self.services
                    .database
                    .retry_job_later(
                        &job,
                        &error.to_string(),
                        &crate::database::timestamp::after(delay),
                    )
                    .await
            }
            Err(error) => {
                tracing::error!(job = id, %error, "job failed");
                metrics.job("failed");
                self.fail_job(&job, &error.to_string()).await
            }
        };
        if let Err(error) = result {
            tracing::error!(job = id, %error, "could not record the job's outcome");
        }
    }

    /// Runs the steps of `job` from the one it is at; from `download` when that step needs
    /// the work directory and it is gone.
    async fn run_steps(&self, job: Job, shutdown: &watch::Receiver<bool>) -> Result<(), StepError> {
        let mut context = self.step_context(job);
        if let Some(lease) = &context.job.lease {
            let adopted = work_dir::adopt(&context.work_dir, lease.generation)
                .map_err(|e| StepError::Transient(format!("preparing the work directory: {e}")))?;
            if adopted == work_dir::Adopted::Emptied && context.job.step.is_some() {
                tracing::info!(
                    job = context.job.id,
                    "the work directory here was not left by the job's previous claim; emptied"
                );
            }
        }
        let kind = context.job.kind;
        let mut first = context.job.step.unwrap_or(kind.steps()[0]);
        if !has_inputs(first, &context) {
            tracing::info!(job = context.job.id, step = %first, "the work directory lacks what this step reads; starting again at download");
            first = kind.steps()[0];
        }
        for step in kind.steps_from(first) {
            if *shutdown.borrow() {
                return Err(StepError::Interrupted);
            }
            let id = context.job.id;
            self.services
                .database
                .set_job_step(&context.job, step)
                .await?;
            let attempt = context.job.attempts;
            self.services.database.start_step(id, step, attempt).await?;
            context.job.step = Some(step);
            tracing::info!(job = id, %step, "step");
            let started = std::time::Instant::now();
            let ran = run_step(step, &mut context).await;
            let took = started.elapsed();
            let outcome = match &ran {
                Ok(()) => StepOutcome::Ok,
                Err(StepError::Interrupted) => StepOutcome::Interrupted,
                Err(_) => StepOutcome::Error,
            };
            if outcome != StepOutcome::Interrupted {
                crate::metrics::global().step(step, ran.is_ok(), took);
            }
            if let Err(error) = self
                .services
                .database
                .finish_step(id, step, attempt, outcome, took.as_secs_f64())
                .await
            {
                tracing::warn!(job = id, %step, %error, "could not record the step's duration");
            }
            ran?;
        }
        work_dir::remove(&context.work_dir);
        Ok(())
    }

    /// Ends the claimed `job` as failed and tells whoever asked.
    async fn fail_job(&self, job: &Job, error: &str) -> Result<(), DatabaseError> {
        let id = job.id;
        self.services
            .database
            .finish_claimed_job(job, Some(error))
            .await?;
        // The job will not run again: its downloads and build output go.
        work_dir::remove(&self.work_dir(id));
        let Some(job) = self.services.database.job(id).await? else {
            return Ok(());
        };
        if let Err(reply_error) = report_failure(&self.step_context(job), error).await {
            tracing::error!(job = id, error = %reply_error, "could not report the failed job");
        }
        Ok(())
    }
}
