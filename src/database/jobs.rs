//! The job queue: builds asked for by webhooks and commands, run one at a time.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::job_leases::NO_STORAGE_SWEEP;
use super::job_result::{JobResult, as_text};
use super::job_steps::Step;
use super::stored_name::stored_name;
use super::{Database, DatabaseError};
use crate::database::timestamp;
use crate::version::Version;

/// What asked for a job, as stored and shown (`comment`, `release`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerSource {
    /// A `/build` or `/rebuild` comment.
    #[default]
    Comment,
    /// An upstream release published in the build repository.
    Release,
    RepositoryDispatch,
    WorkflowDispatch,
    /// The scheduled upstream check.
    Schedule,
    /// An operator's command line (`alloy-sysext-automation withdraw`).
    Cli,
}

stored_name!(TriggerSource, "trigger source", {
    Comment => "comment",
    Release => "release",
    RepositoryDispatch => "repository_dispatch",
    WorkflowDispatch => "workflow_dispatch",
    Schedule => "schedule",
    Cli => "cli",
});

/// Who or what asked for a job, and where its outcome is reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub source: TriggerSource,
    /// The delivery that asked for it.
    pub delivery_id: Option<String>,
    /// The repository the request came from (`owner/name`).
    pub repository: Option<String>,
    /// The issue or pull request whose comment asked for it; the reply goes there.
    pub issue_number: Option<u64>,
    /// The comment that asked for it; it gets the `eyes` reaction.
    pub comment_id: Option<u64>,
    /// The GitHub user who asked (for [`TriggerSource::Cli`], the operator's login name).
    pub user: Option<String>,
    /// Why, in the asker's words: the text after a `/withdraw`'s version, or `--reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A job about to be queued.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub version: Version,
    /// Republish even if the version is published already.
    pub rebuild: bool,
    /// What started it (a comment id, a release id, a delivery id): a replayed or
    /// redelivered request with the same key does not queue a second job.
    pub dedupe_key: String,
    pub trigger: Trigger,
    pub installation_id: Option<i64>,
}

/// What a job does, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Build a version's images and publish them (the pipeline's steps).
    Build,
    /// Take a published version out of `SHA256SUMS`, mark its release, and move consumers
    /// off it.
    Withdraw,
    /// Copy a published version into the next release channel and list it there.
    Promote,
}

stored_name!(JobKind, "job kind", {
    Build => "build",
    Withdraw => "withdraw",
    Promote => "promote",
});

impl JobKind {
    /// The steps a job of this kind runs, in order.
    pub fn steps(self) -> &'static [Step] {
        match self {
            JobKind::Build => &Step::ALL,
            JobKind::Withdraw => &[Step::Manifest, Step::Release, Step::Consumers, Step::Report],
            JobKind::Promote => &[
                Step::Upload,
                Step::Manifest,
                Step::Consumers,
                Step::Prune,
                Step::Report,
            ],
        }
    }

    /// `step` and the steps after it; from the first step when `step` is not one of this
    /// kind's.
    pub fn steps_from(self, step: Step) -> impl Iterator<Item = Step> {
        let steps = self.steps();
        let start = steps.iter().position(|s| *s == step).unwrap_or(0);
        steps[start..].iter().copied()
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    /// Failed transiently; runs again at `next_attempt_at`.
    Retrying,
    Succeeded,
    Failed,
}

stored_name!(JobState, "job state", {
    Queued => "queued",
    Running => "running",
    Retrying => "retrying",
    Succeeded => "succeeded",
    Failed => "failed",
});

impl JobState {
    /// True once the job will not run again.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    #[serde(with = "as_text")]
    pub version: Version,
    pub rebuild: bool,
    pub trigger: Trigger,
    pub installation_id: Option<i64>,
    pub state: JobState,
    /// The step it is in, or stopped in; `None` before the first.
    pub step: Option<Step>,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub updated_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// What it has produced so far; `None` before its first step recorded anything.
    pub result: Option<JobResult>,
    /// The replica whose claim it runs under, and the claim's generation; `None` before it
    /// was first claimed.
    #[serde(skip)]
    pub lease: Option<JobLease>,
}

/// Who ran or runs a job: every write for the job checks that its claim is still the
/// job's ([`Database::renew_job_lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    /// The replica ([`crate::worker::replica::ReplicaId`]).
    pub owner: String,
    /// One more at each claim.
    pub generation: i64,
}

/// How long a succeeded dispatch-started job stops the same request, replayed, from
/// starting another.
pub const DISPATCH_REPLAY_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether a job was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    New(i64),
    /// A job with the same dedupe key exists already.
    Existing(i64),
}

impl Queued {
    pub fn id(self) -> i64 {
        match self {
            Queued::New(id) | Queued::Existing(id) => id,
        }
    }
}

/// SQL: the job's lease has lapsed, or it never had one (a row written before leases, or
/// released by a single-replica start), at `$1`.
pub(super) const LEASE_LAPSED: &str = "(lease_expires_at IS NULL OR lease_expires_at <= $1)";

pub(super) const COLUMNS: &str =
    "id, kind, version, rebuild, trigger, installation_id, state, step, attempts,
    next_attempt_at, created_at, started_at, updated_at, finished_at, error, result,
    lease_owner, lease_generation";

pub(super) fn job_from_row(row: &AnyRow) -> Result<Job, DatabaseError> {
    let trigger: String = row.try_get("trigger")?;
    let result: Option<String> = row.try_get("result")?;
    let state: String = row.try_get("state")?;
    let version: String = row.try_get("version")?;
    let step: Option<String> = row.try_get("step")?;
    let kind: String = row.try_get("kind")?;
    let lease_owner: Option<String> = row.try_get("lease_owner")?;
    let lease_generation: i64 = row.try_get("lease_generation")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: JobKind::parse(&kind)?,
        version: version
            .parse()
            .map_err(|e| DatabaseError::Corrupt(format!("job version: {e}")))?,
        rebuild: row.try_get::<i64, _>("rebuild")? != 0,
        trigger: serde_json::from_str(&trigger)
            .map_err(|e| DatabaseError::Corrupt(format!("job trigger: {e}")))?,
        installation_id: row.try_get("installation_id")?,
        state: JobState::parse(&state)?,
        step: step.as_deref().map(Step::parse).transpose()?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
        result: result
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| DatabaseError::Corrupt(format!("job result: {e}")))?,
        lease: lease_owner.map(|owner| JobLease {
            owner,
            generation: lease_generation,
        }),
    })
}

impl Database {
    /// Queues `job` for `delivery_id` and marks the delivery processed, in one transaction:
    /// a crash leaves either both or neither.
    pub async fn queue_job_for_delivery(
        &self,
        delivery_id: &str,
        job: &NewJob,
    ) -> Result<Queued, DatabaseError> {
        let mut tx = self.pool().begin().await?;
        let queued = insert_job(&mut tx, job).await?;
        mark_delivery_processed(&mut tx, delivery_id, queued.id()).await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// Queues `job`, asked for by no delivery (the upstream check).
    pub async fn queue_job(&self, job: &NewJob) -> Result<Queued, DatabaseError> {
        let mut tx = self.pool().begin().await?;
        let queued = insert_job(&mut tx, job).await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// The job with `dedupe_key`, if one was queued.
    pub async fn job_by_key(&self, dedupe_key: &str) -> Result<Option<Job>, DatabaseError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE dedupe_key = $1"
        )))
        .bind(dedupe_key)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }
}

impl Database {
    /// Queues `job`, started by a dispatch, for `delivery_id` unless a job that asked for
    /// the same `request_key` (`dispatch:{kind}:{version}`) is queued, running or retrying,
    /// or succeeded within [`DISPATCH_REPLAY_WINDOW`]: a signed dispatch body replayed
    /// under a new delivery id then finds that job. A failed job does not count, so asking
    /// again after a failure builds again. Marks the delivery processed in the same
    /// transaction.
    pub async fn queue_dispatched_job(
        &self,
        delivery_id: &str,
        job: &NewJob,
        request_key: &str,
    ) -> Result<Queued, DatabaseError> {
        let since = timestamp::format(time::OffsetDateTime::now_utc() - DISPATCH_REPLAY_WINDOW);
        let mut tx = self.begin_immediate().await?;
        let asked_before: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs
             WHERE request_key = $1
               AND (state IN ('queued', 'running', 'retrying')
                    OR (state = 'succeeded' AND finished_at >= $2))
             ORDER BY id DESC LIMIT 1",
        )
        .bind(request_key)
        .bind(&since)
        .fetch_optional(&mut *tx)
        .await?;
        let queued = match asked_before {
            Some(id) => Queued::Existing(id),
            None => {
                let queued = insert_job(&mut tx, job).await?;
                if let Queued::New(id) = queued {
                    sqlx::query("UPDATE jobs SET request_key = $1 WHERE id = $2")
                        .bind(request_key)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                queued
            }
        };
        mark_delivery_processed(&mut tx, delivery_id, queued.id()).await?;
        tx.commit().await?;
        Ok(queued)
    }
}

/// Marks the delivery `delivery_id` processed by the job `job_id`, inside `tx` so that the
/// job and the delivery's state are written together.
async fn mark_delivery_processed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    delivery_id: &str,
    job_id: i64,
) -> Result<(), DatabaseError> {
    sqlx::query(
        "UPDATE deliveries SET state = 'processed', processed_at = $1, job_id = $2, error = NULL
         WHERE id = $3",
    )
    .bind(timestamp::now())
    .bind(job_id)
    .bind(delivery_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts `job` unless its dedupe key is taken; either way, says which job it is.
pub(super) async fn insert_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &NewJob,
) -> Result<Queued, DatabaseError> {
    let now = timestamp::now();
    let trigger = serde_json::to_string(&job.trigger)
        .map_err(|e| DatabaseError::Corrupt(format!("job trigger: {e}")))?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO jobs (kind, version, rebuild, dedupe_key, trigger, installation_id,
                           state, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
    )
    .bind(job.kind.as_str())
    .bind(job.version.as_str())
    .bind(job.rebuild as i64)
    .bind(&job.dedupe_key)
    .bind(&trigger)
    .bind(job.installation_id)
    .bind(&now)
    .bind(&now)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = inserted {
        return Ok(Queued::New(id));
    }
    let id: i64 = sqlx::query_scalar("SELECT id FROM jobs WHERE dedupe_key = $1")
        .bind(&job.dedupe_key)
        .fetch_one(&mut **tx)
        .await?;
    Ok(Queued::Existing(id))
}

impl Database {
    /// The job with `id`.
    pub async fn job(&self, id: i64) -> Result<Option<Job>, DatabaseError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// The newest `limit` jobs, newest first.
    pub async fn recent_jobs(&self, limit: i64) -> Result<Vec<Job>, DatabaseError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs ORDER BY id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        // One row that cannot be read does not hide the others.
        Ok(rows
            .iter()
            .filter_map(|row| match job_from_row(row) {
                Ok(job) => Some(job),
                Err(error) => {
                    let id = row.try_get::<i64, _>("id").ok();
                    tracing::warn!(job = ?id, %error, "a stored job cannot be read; not listed");
                    None
                }
            })
            .collect())
    }

    /// The job to run next, when no job runs under a live lease (one job runs at a time,
    /// across replicas): one whose lease lapsed first (its replica stopped; it resumes),
    /// then the oldest queued job or retrying job whose wait is over.
    ///
    /// A runnable job whose row cannot be read cannot run: it is ended as failed, saying
    /// why, and the next one is taken, so it does not stop the queue.
    pub async fn next_runnable_job(&self) -> Result<Option<Job>, DatabaseError> {
        loop {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM jobs
                 WHERE ((state = 'running' AND {LEASE_LAPSED})
                        OR state = 'queued'
                        OR (state = 'retrying' AND next_attempt_at <= $1))
                   AND NOT EXISTS (SELECT 1 FROM jobs AS live
                                   WHERE live.state = 'running' AND live.lease_expires_at > $1)
                   AND {NO_STORAGE_SWEEP}
                 ORDER BY state = 'running' DESC, id ASC
                 LIMIT 1"
            )))
            .bind(timestamp::now())
            .fetch_optional(self.pool())
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            match job_from_row(&row) {
                Ok(job) => return Ok(Some(job)),
                Err(error) if self.backend() == super::Backend::Postgres => {
                    // Other replicas may run a newer version, which wrote what this one
                    // cannot read (during a rolling deploy): the job is theirs to run.
                    let id: i64 = row.try_get("id")?;
                    tracing::warn!(job = id, %error, "the next job cannot be read by this version; left to a replica that can");
                    return Ok(None);
                }
                Err(error) => {
                    let id: i64 = row.try_get("id")?;
                    tracing::error!(job = id, %error, "a stored job cannot be read; ending it as failed");
                    self.fail_unreadable_job(
                        id,
                        &format!("the stored job cannot be read: {error}"),
                    )
                    .await?;
                }
            }
        }
    }

    /// When the next retrying job becomes runnable, if any is waiting.
    pub async fn next_retry_at(&self) -> Result<Option<String>, DatabaseError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'retrying'")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Ends job `id`, which cannot be read, as failed with `error`, unless a replica runs it
    /// under a live lease; the new generation fences out any claim it had.
    async fn fail_unreadable_job(&self, id: i64, error: &str) -> Result<(), DatabaseError> {
        let now = timestamp::now();
        sqlx::query(
            "UPDATE jobs SET state = 'failed', error = $1, finished_at = $2, updated_at = $2,
                    next_attempt_at = NULL, lease_expires_at = NULL,
                    lease_generation = lease_generation + 1
             WHERE id = $3
               AND (state IN ('queued', 'retrying')
                    OR (state = 'running'
                        AND (lease_expires_at IS NULL OR lease_expires_at <= $2)))",
        )
        .bind(error)
        .bind(&now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends the job: `error` is `None` on success. For a job no replica runs; a running
    /// job ends through [`Database::finish_claimed_job`].
    pub async fn finish_job(&self, id: i64, error: Option<&str>) -> Result<(), DatabaseError> {
        let now = timestamp::now();
        let state = if error.is_some() {
            JobState::Failed
        } else {
            JobState::Succeeded
        };
        sqlx::query(
            "UPDATE jobs SET state = $1, error = $2, finished_at = $3, updated_at = $4, next_attempt_at = NULL
             WHERE id = $5",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(&now)
        .bind(&now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::deliveries::DeliveryState;
    use crate::database::testing::on_each_backend;

    #[test]
    fn a_trigger_source_is_stored_and_shown_by_its_name() {
        for source in TriggerSource::ALL {
            let stored = serde_json::to_string(&source).unwrap();
            assert_eq!(stored, format!("\"{}\"", source.as_str()));
            assert_eq!(
                serde_json::from_str::<TriggerSource>(&stored).unwrap(),
                source
            );
        }
        // Every version of the server has written one of these names.
        assert!(serde_json::from_str::<TriggerSource>("\"cron\"").is_err());
    }

    fn new_job(key: &str) -> NewJob {
        NewJob {
            kind: JobKind::Build,
            version: "1.2.3".parse().unwrap(),
            rebuild: false,
            dedupe_key: key.into(),
            trigger: Trigger {
                source: TriggerSource::Comment,
                comment_id: Some(7),
                ..Trigger::default()
            },
            installation_id: Some(1),
        }
    }

    async fn add_delivery(database: &Database, id: &str) {
        database
            .store_delivery(&crate::database::deliveries::NewDelivery {
                id,
                event: "issue_comment",
                action: Some("created"),
                installation_id: Some(1),
                repository: Some("o/r"),
                payload: "{}",
                received_at: &timestamp::now(),
            })
            .await
            .unwrap();
    }

    /// Queues one job in `database`, and says its id.
    async fn queued_job(database: &Database) -> i64 {
        add_delivery(database, "d1").await;
        database
            .queue_job_for_delivery("d1", &new_job("k"))
            .await
            .unwrap()
            .id()
    }

    on_each_backend! {
        async fn a_job_is_queued_once_per_key_and_its_delivery_is_marked_in_the_same_step(database) {
            add_delivery(&database, "d1").await;
            let first = database
                .queue_job_for_delivery("d1", &new_job("comment:7"))
                .await
                .unwrap();
            assert!(matches!(first, Queued::New(_)));
            let again = database
                .queue_job_for_delivery("d1", &new_job("comment:7"))
                .await
                .unwrap();
            assert_eq!(again, Queued::Existing(first.id()));
            assert_eq!(database.recent_jobs(10).await.unwrap().len(), 1);
            let delivery = database.delivery("d1").await.unwrap().unwrap();
            assert_eq!(delivery.state, DeliveryState::Processed);
            let job = database.job(first.id()).await.unwrap().unwrap();
            assert_eq!(job.state, JobState::Queued);
            assert_eq!(job.trigger.comment_id, Some(7));
        }
    }

    on_each_backend! {
        async fn a_dispatch_is_keyed_by_what_it_asks_while_its_job_is_live_or_lately_succeeded(database) {
            add_delivery(&database, "d1").await;
            let queue = |key: &'static str| {
                let database = database.clone();
                async move {
                    database
                        .queue_dispatched_job("d1", &new_job(key), "dispatch:build:1.2.3")
                        .await
                        .unwrap()
                }
            };
            let first = queue("delivery:d1").await;
            assert!(matches!(first, Queued::New(_)));
            // Replayed under new delivery ids: queued, running, then succeeded.
            assert_eq!(queue("delivery:d2").await, Queued::Existing(first.id()));
            database.claim_job(first.id(), "here", crate::database::testing::LEASE).await.unwrap().unwrap();
            assert_eq!(queue("delivery:d3").await, Queued::Existing(first.id()));
            database.finish_job(first.id(), None).await.unwrap();
            assert_eq!(queue("delivery:d4").await, Queued::Existing(first.id()));
            // Succeeded more than the window ago: asking again builds again.
            let long_ago = timestamp::format(
                time::OffsetDateTime::now_utc() - DISPATCH_REPLAY_WINDOW - time::Duration::minutes(1),
            );
            sqlx::query("UPDATE jobs SET finished_at = $1")
                .bind(&long_ago)
                .execute(database.pool())
                .await
                .unwrap();
            let second = queue("delivery:d5").await;
            assert!(matches!(second, Queued::New(_)));
            // A failed job does not block either.
            database
                .finish_job(second.id(), Some("boom"))
                .await
                .unwrap();
            assert!(matches!(queue("delivery:d6").await, Queued::New(_)));
            let delivery = database.delivery("d1").await.unwrap().unwrap();
            assert_eq!(delivery.state, DeliveryState::Processed);
        }
    }

    on_each_backend! {
        async fn jobs_move_through_their_states(database) {
            use crate::database::testing::LEASE;
            let id = queued_job(&database).await;
            let other = database.queue_job(&new_job("k2")).await.unwrap().id();
            assert_eq!(database.next_runnable_job().await.unwrap().unwrap().id, id);
            let job = database.claim_job(id, "here", LEASE).await.unwrap().unwrap();
            database.set_job_step(&job, Step::Download).await.unwrap();
            // One job runs at a time: the other waits while this one's lease holds.
            assert!(database.next_runnable_job().await.unwrap().is_none());
            assert!(database.claim_job(other, "there", LEASE).await.unwrap().is_none());
            database
                .retry_job_later(
                    &job,
                    "GitHub answered 502",
                    &timestamp::after(std::time::Duration::from_secs(3600)),
                )
                .await
                .unwrap();
            // Waiting to retry, it holds nothing back.
            assert_eq!(database.next_runnable_job().await.unwrap().unwrap().id, other);
            let other_job = database.claim_job(other, "there", LEASE).await.unwrap().unwrap();
            database.finish_claimed_job(&other_job, None).await.unwrap();
            // Its end is still its claim's: the report of it goes out under the claim.
            let claim = other_job.lease.as_ref().unwrap();
            assert!(database.renew_job_lease(other, claim, LEASE).await.unwrap());
            assert!(database.next_runnable_job().await.unwrap().is_none());
            let job = database.job(id).await.unwrap().unwrap();
            // Its claim ended with the attempt.
            assert!(matches!(
                database.set_job_step(&job, Step::Build).await,
                Err(DatabaseError::LeaseLost { job }) if job == id
            ));
            sqlx::query("UPDATE jobs SET next_attempt_at = $1 WHERE id = $2")
                .bind(timestamp::now())
                .bind(id)
                .execute(database.pool())
                .await
                .unwrap();
            assert_eq!(database.next_runnable_job().await.unwrap().unwrap().id, id);
            let job = database.claim_job(id, "here", LEASE).await.unwrap().unwrap();
            let result = JobResult {
                manifest_commits: Some(vec!["ab".into()]),
                ..JobResult::default()
            };
            database.set_job_result(&job, &result).await.unwrap();
            database.finish_claimed_job(&job, None).await.unwrap();
            let job = database.job(id).await.unwrap().unwrap();
            assert_eq!(job.state, JobState::Succeeded);
            assert_eq!(job.attempts, 2);
            assert_eq!(job.result, Some(result));
            assert!(job.finished_at.is_some());
            assert!(database.next_runnable_job().await.unwrap().is_none());
        }
    }

    on_each_backend! {
        /// The storage sweep and jobs exclude each other: the sweep never deletes a file a
        /// job is publishing again on another replica.
        async fn the_storage_sweep_runs_only_while_no_job_does(database) {
            use crate::database::job_leases::STORAGE_SWEEP_LEASE;
            use crate::database::testing::LEASE;
            let id = queued_job(&database).await;
            let job = database.claim_job(id, "a", LEASE).await.unwrap().unwrap();
            assert_eq!(database.claim_storage_sweep("b", LEASE).await.unwrap(), None);
            database.finish_claimed_job(&job, None).await.unwrap();
            let sweep = database.claim_storage_sweep("b", LEASE).await.unwrap();
            assert!(sweep.is_some());
            assert_eq!(database.claim_storage_sweep("c", LEASE).await.unwrap(), None);
            let next = database.queue_job(&new_job("k2")).await.unwrap().id();
            assert!(database.next_runnable_job().await.unwrap().is_none());
            assert!(database.claim_job(next, "a", LEASE).await.unwrap().is_none());
            database.release_lease(STORAGE_SWEEP_LEASE, "b").await.unwrap();
            assert_eq!(database.next_runnable_job().await.unwrap().unwrap().id, next);
            assert!(database.claim_job(next, "a", LEASE).await.unwrap().is_some());
        }
    }

    on_each_backend! {
        /// A replica that stops renewing (killed, paused) leaves its job to another once
        /// the lease lapses; the new claim has the next generation, and nothing the old
        /// claim writes lands.
        async fn a_lapsed_job_is_taken_over_and_its_old_claim_writes_nothing(database) {
            use crate::database::testing::LEASE;
            let id = queued_job(&database).await;
            let short = std::time::Duration::from_millis(300);
            let first = database.claim_job(id, "a", short).await.unwrap().unwrap();
            database.set_job_step(&first, Step::Build).await.unwrap();
            assert!(database.claim_job(id, "b", LEASE).await.unwrap().is_none());
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            // Lapsed: picked again first, to resume at its step.
            let resumed = database.next_runnable_job().await.unwrap().unwrap();
            assert_eq!((resumed.id, resumed.step), (id, Some(Step::Build)));
            let second = database.claim_job(id, "b", LEASE).await.unwrap().unwrap();
            let (old, new) = (first.lease.clone().unwrap(), second.lease.clone().unwrap());
            assert_eq!((new.owner.as_str(), new.generation), ("b", old.generation + 1));
            assert_eq!(second.attempts, 2);

            // The first replica wakes up: its renewal and every write of its claim fail.
            assert!(!database.renew_job_lease(id, &old, LEASE).await.unwrap());
            for lost in [
                database.set_job_step(&first, Step::Upload).await,
                database.set_job_result(&first, &JobResult::default()).await,
                database.retry_job_later(&first, "late", &timestamp::now()).await,
                database.finish_claimed_job(&first, Some("late")).await,
            ] {
                assert!(matches!(lost, Err(DatabaseError::LeaseLost { .. })), "{lost:?}");
            }
            database.release_job_lease(id, &old).await.unwrap();
            let now = database.job(id).await.unwrap().unwrap();
            assert_eq!(
                (now.state, now.step, now.lease),
                (JobState::Running, Some(Step::Build), Some(new.clone()))
            );
            assert!(database.renew_job_lease(id, &new, LEASE).await.unwrap());
            // Released (the replica stops): another resumes it at once.
            database.release_job_lease(id, &new).await.unwrap();
            let third = database.claim_job(id, "c", LEASE).await.unwrap().unwrap();
            assert_eq!(third.lease.unwrap().generation, new.generation + 1);
        }
    }

    on_each_backend! {
        /// A row as the server wrote it before results were typed: a job stopped in `manifest`.
        async fn a_job_stored_before_results_were_typed_loads(database) {
            let id = queued_job(&database).await;
            let stored = r#"{"images":[{"arch":"amd64","binary_sha256":"bb","file":"alloy-1.2.3-amd64.raw","sha256":"aa","size":10,"url":"https://images.example/alloy-1.2.3-amd64.raw"}],"published":"new","upload_failed":null}"#;
            let stored_fine = stored.replace(r#","upload_failed":null"#, "");
            sqlx::query("UPDATE jobs SET result = $1, step = 'manifest' WHERE id = $2")
                .bind(&stored_fine)
                .bind(id)
                .execute(database.pool())
                .await
                .unwrap();
            let job = database.job(id).await.unwrap().unwrap();
            assert_eq!(job.step, Some(Step::Manifest));
            assert_eq!(job.version.as_str(), "1.2.3");
            let result = job.result.unwrap();
            assert_eq!(result.images.unwrap()[0].file, "alloy-1.2.3-amd64.raw");
            assert_eq!(
                result.published,
                Some(crate::database::job_result::Publication::New)
            );
            // What cannot be read is refused, not dropped: a key no step writes, a step no
            // server runs.
            for (result, step) in [(Some(stored), "download"), (None, "deploy")] {
                store_raw_result(&database, id, result, step).await;
                assert!(matches!(
                    database.job(id).await,
                    Err(DatabaseError::Corrupt(_))
                ));
            }
        }
    }

    /// Stores `result` as job `id`'s, as text, whatever it holds (NULL for `None`), at
    /// `step`.
    async fn store_raw_result(database: &Database, id: i64, result: Option<&str>, step: &str) {
        sqlx::query("UPDATE jobs SET result = $1, step = $2 WHERE id = $3")
            .bind(result)
            .bind(step)
            .bind(id)
            .execute(database.pool())
            .await
            .unwrap();
    }

    on_each_backend! {
        /// Rows as the first versions of the server wrote them load; a row that cannot be read
        /// is left out of the list and ended when it is next in the queue, and the others go on.
        async fn early_rows_load_and_an_unreadable_one_neither_hides_the_list_nor_stops_the_queue(database) {
            let unreadable = queued_job(&database).await;
            store_raw_result(&database, unreadable, Some(r#"{"images":"two"}"#), "upload").await;
            let built_before = database.queue_job(&new_job("k2")).await.unwrap().id();
            store_raw_result(
                &database,
                built_before,
                Some(r#"{"note":"Alloy 1.2.3 was built before; nothing changed. Comment `/rebuild 1.2.3` to build it again.","manifest":"unchanged"}"#),
                "report",
            )
            .await;
            let built = database.queue_job(&new_job("k3")).await.unwrap().id();
            store_raw_result(
                &database,
                built,
                Some(r#"{"images":[{"arch":"amd64","file":"alloy-1.2.3-amd64.raw","size":10,"sha256":"aa","binary_sha256":"bb"}],"manifest":"added"}"#),
                "build",
            )
            .await;

            let listed = database.recent_jobs(10).await.unwrap();
            assert_eq!(
                listed.iter().map(|job| job.id).collect::<Vec<_>>(),
                [built, built_before]
            );
            assert_eq!(listed[1].result, Some(JobResult::NOTHING_YET));
            let images = listed[0].result.as_ref().unwrap().images.clone().unwrap();
            assert_eq!(images[0].file, "alloy-1.2.3-amd64.raw");
            assert_eq!(images[0].url, "");

            if database.backend() == crate::database::Backend::Postgres {
                // With replicas, another (newer) version may read it: it is left to them,
                // and this replica runs nothing meanwhile.
                assert!(database.next_runnable_job().await.unwrap().is_none());
                let state: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
                    .bind(unreadable)
                    .fetch_one(database.pool())
                    .await
                    .unwrap();
                assert_eq!(state, "queued");
                return;
            }
            // The unreadable job is first in the queue: it is ended, and the next one runs.
            let next = database.next_runnable_job().await.unwrap().unwrap();
            assert_eq!(next.id, built_before);
            let (state, error): (String, Option<String>) =
                sqlx::query_as("SELECT state, error FROM jobs WHERE id = $1")
                    .bind(unreadable)
                    .fetch_one(database.pool())
                    .await
                    .unwrap();
            assert_eq!(state, "failed");
            let error = error.unwrap();
            assert!(
                error.starts_with("the stored job cannot be read: ") && error.contains("job result"),
                "{error}"
            );
            database.finish_job(built_before, None).await.unwrap();
            assert_eq!(
                database.next_runnable_job().await.unwrap().unwrap().id,
                built
            );
            database.finish_job(built, None).await.unwrap();
            assert!(database.next_runnable_job().await.unwrap().is_none());
        }
    }
}
