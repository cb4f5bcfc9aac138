//! Claims on running jobs, for several replicas sharing one database.
//!
//! A replica claims a job for a while (its lease), renews the claim while the job runs, and
//! writes the job's row only under its claim: each claim raises the job's lease generation,
//! so a replica that was paused past its lease, while another took the job over, finds its
//! generation gone and stops. Claims are made under [`Database::begin_immediate`]: one job
//! runs at a time across all replicas.

use std::time::Duration;

use super::job_result::JobResult;
use super::job_steps::Step;
use super::jobs::{COLUMNS, Job, JobLease, JobState, LEASE_LAPSED, job_from_row};
use super::{Database, DatabaseError, timestamp};

/// The lease a storage sweep holds while it deletes; no job is claimed meanwhile.
pub const STORAGE_SWEEP_LEASE: &str = "storage-sweep";

/// SQL: no storage sweep holds its lease at `$1`.
pub(super) const NO_STORAGE_SWEEP: &str = "NOT EXISTS (SELECT 1 FROM leases
    WHERE leases.name = 'storage-sweep' AND leases.expires_at > $1)";

/// SQL: the row is still under the claim `($owner, $generation)` given as the parameters
/// numbered here, and the job still runs.
fn under_claim(owner: u8, generation: u8) -> String {
    format!("lease_owner = ${owner} AND lease_generation = ${generation} AND state = 'running'")
}

impl Database {
    /// Claims job `id` for another attempt by the replica `owner`, for `lease_for`, if it is
    /// still runnable (queued, retrying with its wait over, or running under a lapsed
    /// lease) and no other job runs under a live lease; returns it as it is now, with its
    /// new lease. The claim and the read are one statement: a request that changes the
    /// queued job (a `/rebuild` joining it) either lands before the claim, and the job runs
    /// with it, or finds the job running and queues another.
    pub async fn claim_job(
        &self,
        id: i64,
        owner: &str,
        lease_for: Duration,
    ) -> Result<Option<Job>, DatabaseError> {
        let now = timestamp::now();
        let until = timestamp::after(lease_for);
        let mut tx = self.begin_immediate().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, next_attempt_at = NULL,
                    started_at = COALESCE(started_at, $1), updated_at = $1,
                    lease_owner = $2, lease_generation = lease_generation + 1,
                    lease_expires_at = $3
             WHERE id = $4
               AND (state = 'queued'
                    OR (state = 'running' AND {LEASE_LAPSED})
                    OR (state = 'retrying' AND next_attempt_at <= $1))
               AND NOT EXISTS (SELECT 1 FROM jobs AS live
                               WHERE live.state = 'running' AND live.id != $4
                                 AND live.lease_expires_at > $1)
               AND {NO_STORAGE_SWEEP}
             RETURNING {COLUMNS}"
        )))
        .bind(&now)
        .bind(owner)
        .bind(&until)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Takes the storage sweep's lease for the replica `owner`, for `lease_for`, if no job
    /// runs under a live lease (and no other sweep runs): while it is held no job is
    /// claimed, so the sweep never deletes a file a job is publishing again. Returns the
    /// lease's generation.
    pub async fn claim_storage_sweep(
        &self,
        owner: &str,
        lease_for: Duration,
    ) -> Result<Option<i64>, DatabaseError> {
        let now = timestamp::now();
        let mut tx = self.begin_immediate().await?;
        let generation: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leases (name, owner, generation, expires_at)
             SELECT $1, $2, 1, $3
             WHERE NOT EXISTS (SELECT 1 FROM jobs
                               WHERE state = 'running' AND lease_expires_at > $4)
             ON CONFLICT (name) DO UPDATE SET
                 generation = leases.generation + 1,
                 owner = excluded.owner,
                 expires_at = excluded.expires_at
             WHERE leases.expires_at <= $4
             RETURNING generation",
        )
        .bind(STORAGE_SWEEP_LEASE)
        .bind(owner)
        .bind(timestamp::after(lease_for))
        .bind(&now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(generation)
    }

    /// Extends `job`'s lease to `lease_for` from now, if the claim `lease` is still the
    /// job's last; false when another replica has taken the job over. A job this claim
    /// ended stays its claim's: its end is reported under it.
    pub async fn renew_job_lease(
        &self,
        job: i64,
        lease: &JobLease,
        lease_for: Duration,
    ) -> Result<bool, DatabaseError> {
        let renewed = sqlx::query(
            "UPDATE jobs SET lease_expires_at = CASE WHEN state = 'running' THEN $1 END
             WHERE id = $2 AND lease_owner = $3 AND lease_generation = $4",
        )
        .bind(timestamp::after(lease_for))
        .bind(job)
        .bind(&lease.owner)
        .bind(lease.generation)
        .execute(self.pool())
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Lets `job` go at once, as a replica that stops does: another replica resumes it at
    /// its step without waiting for the lease to lapse.
    pub async fn release_job_lease(&self, job: i64, lease: &JobLease) -> Result<(), DatabaseError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET lease_expires_at = NULL WHERE id = $1 AND {}",
            under_claim(2, 3)
        )))
        .bind(job)
        .bind(&lease.owner)
        .bind(lease.generation)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Lets every running job go: a single-replica server (SQLite) starting up is the only
    /// one that could run them, so what it ran before it stopped resumes at once.
    pub async fn release_all_job_leases(&self) -> Result<u64, DatabaseError> {
        Ok(sqlx::query(
            "UPDATE jobs SET lease_expires_at = NULL
             WHERE state = 'running' AND lease_expires_at IS NOT NULL",
        )
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Records the step the claimed `job` is entering.
    pub async fn set_job_step(&self, job: &Job, step: Step) -> Result<(), DatabaseError> {
        self.update_claimed(job, "step = $1, updated_at = $2", 2, |query| {
            query.bind(step.as_str()).bind(timestamp::now())
        })
        .await
    }

    /// Records what the claimed `job` has produced so far, whole; later steps (the reply)
    /// read it.
    pub async fn set_job_result(&self, job: &Job, result: &JobResult) -> Result<(), DatabaseError> {
        let text = serde_json::to_string(result)
            .map_err(|e| DatabaseError::Corrupt(format!("job result: {e}")))?;
        self.update_claimed(job, "result = $1, updated_at = $2", 2, |query| {
            query.bind(text).bind(timestamp::now())
        })
        .await
    }

    /// A transient failure of the claimed `job`: it runs again at `next_attempt_at`.
    pub async fn retry_job_later(
        &self,
        job: &Job,
        error: &str,
        next_attempt_at: &str,
    ) -> Result<(), DatabaseError> {
        self.update_claimed(
            job,
            "state = 'retrying', error = $1, next_attempt_at = $2, updated_at = $3,
             lease_expires_at = NULL",
            3,
            |query| {
                query
                    .bind(error.to_owned())
                    .bind(next_attempt_at.to_owned())
                    .bind(timestamp::now())
            },
        )
        .await
    }

    /// Ends the claimed `job`: `error` is `None` on success.
    pub async fn finish_claimed_job(
        &self,
        job: &Job,
        error: Option<&str>,
    ) -> Result<(), DatabaseError> {
        let state = if error.is_some() {
            JobState::Failed
        } else {
            JobState::Succeeded
        };
        let now = timestamp::now();
        self.update_claimed(
            job,
            "state = $1, error = $2, finished_at = $3, updated_at = $3, next_attempt_at = NULL,
             lease_expires_at = NULL",
            3,
            |query| {
                query
                    .bind(state.as_str())
                    .bind(error.map(str::to_owned))
                    .bind(now)
            },
        )
        .await
    }

    /// Sets `assignments` (whose parameters are `$1`…`$parameters`, bound by `bind`) on
    /// `job`'s row, only while the row is under `job`'s claim.
    async fn update_claimed<'q>(
        &self,
        job: &Job,
        assignments: &str,
        parameters: u8,
        bind: impl FnOnce(
            sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<(), DatabaseError> {
        let lost = || DatabaseError::LeaseLost { job: job.id };
        let lease = job.lease.as_ref().ok_or_else(lost)?;
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET {assignments} WHERE id = ${} AND {}",
            parameters + 1,
            under_claim(parameters + 2, parameters + 3)
        )));
        let updated = bind(query)
            .bind(job.id)
            .bind(lease.owner.clone())
            .bind(lease.generation)
            .execute(self.pool())
            .await?;
        if updated.rows_affected() == 1 {
            Ok(())
        } else {
            Err(lost())
        }
    }
}
