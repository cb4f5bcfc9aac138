//! How long each step of each job took, run by run, for the job API and the status page.

use serde::Serialize;
use sqlx::Row;

use super::{Database, DatabaseError};
use crate::timestamp;

/// One run of one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRun {
    pub step: String,
    /// The job's attempt it ran in, from 1.
    pub attempt: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    /// `running`, `ok`, `error` or `interrupted`.
    pub outcome: String,
}

impl Database {
    /// Records that `step` of job `job_id` started, in the job's attempt `attempt`.
    pub async fn start_step(
        &self,
        job_id: i64,
        step: &str,
        attempt: i64,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "INSERT OR REPLACE INTO job_steps (job_id, step, attempt, started_at, outcome)
             VALUES (?, ?, ?, ?, 'running')",
        )
        .bind(job_id)
        .bind(step)
        .bind(attempt)
        .bind(timestamp::now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records how that run of `step` ended (`ok`, `error`, `interrupted`) after `seconds`.
    pub async fn finish_step(
        &self,
        job_id: i64,
        step: &str,
        attempt: i64,
        outcome: &str,
        seconds: f64,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "UPDATE job_steps SET finished_at = ?, seconds = ?, outcome = ?
             WHERE job_id = ? AND step = ? AND attempt = ?",
        )
        .bind(timestamp::now())
        .bind(seconds)
        .bind(outcome)
        .bind(job_id)
        .bind(step)
        .bind(attempt)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every step run of the jobs `first_id..=last_id`, in the order they started.
    pub async fn step_runs(
        &self,
        first_id: i64,
        last_id: i64,
    ) -> Result<Vec<(i64, StepRun)>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT job_id, step, attempt, started_at, finished_at, seconds, outcome
             FROM job_steps WHERE job_id BETWEEN ? AND ?
             ORDER BY job_id, attempt, started_at",
        )
        .bind(first_id)
        .bind(last_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("job_id")?,
                    StepRun {
                        step: row.try_get("step")?,
                        attempt: row.try_get("attempt")?,
                        started_at: row.try_get("started_at")?,
                        finished_at: row.try_get("finished_at")?,
                        seconds: row.try_get("seconds")?,
                        outcome: row.try_get("outcome")?,
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DatabaseError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::jobs::{NewJob, Trigger};

    #[tokio::test]
    async fn step_runs_are_kept_per_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(None, dir.path()).await.unwrap();
        let job = NewJob {
            version: "1.17.1".into(),
            rebuild: false,
            dedupe_key: "test:1".into(),
            trigger: Trigger::default(),
            installation_id: None,
        };
        let id = match database.queue_job(&job).await.unwrap() {
            crate::database::jobs::Queued::New(id) => id,
            other => panic!("{other:?}"),
        };
        database.start_step(id, "download", 1).await.unwrap();
        database
            .finish_step(id, "download", 1, "error", 0.5)
            .await
            .unwrap();
        database.start_step(id, "download", 2).await.unwrap();
        database
            .finish_step(id, "download", 2, "ok", 1.25)
            .await
            .unwrap();
        database.start_step(id, "build", 2).await.unwrap();

        let runs = database.step_runs(id, id).await.unwrap();
        let seen: Vec<(&str, i64, &str, Option<f64>)> = runs
            .iter()
            .map(|(_, r)| (r.step.as_str(), r.attempt, r.outcome.as_str(), r.seconds))
            .collect();
        assert_eq!(
            seen,
            [
                ("download", 1, "error", Some(0.5)),
                ("download", 2, "ok", Some(1.25)),
                ("build", 2, "running", None),
            ]
        );
        assert!(runs.iter().all(|(job, _)| *job == id));
        assert!(database.step_runs(id + 1, id + 5).await.unwrap().is_empty());
    }
}
