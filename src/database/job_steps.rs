//! The steps of a job, and how long each of them took, run by run, for the job API
//! and the status page.

use serde::Serialize;
use sqlx::Row;

use super::stored_name::stored_name;
use super::{Database, DatabaseError};
use crate::database::timestamp;

/// A step of a build job, in the order they run (SPEC §1). Stored and shown by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// The upstream asset, its digest checked.
    Download,
    /// The images, signed, reproducibly.
    Build,
    /// Images, `.sha256` and `.asc` into storage.
    Upload,
    /// The merged, signed `SHA256SUMS` uploaded, then committed.
    Manifest,
    /// `vX.Y.Z` in the build repository.
    Release,
    /// A pull request per consumer repository.
    Consumers,
    /// Versions beyond `publish.keep_versions` that no consumer pins leave `SHA256SUMS`.
    Prune,
    /// The tracking issue gets the outcome and is closed.
    Tracking,
    /// The reply to whoever asked in a comment.
    Report,
}

stored_name!(Step, "job step", {
    Download => "download",
    Build => "build",
    Upload => "upload",
    Manifest => "manifest",
    Release => "release",
    Consumers => "consumers",
    Prune => "prune",
    Tracking => "tracking",
    Report => "report",
});

/// How one run of a step ended, or that it is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    Running,
    Ok,
    Error,
    /// The server began shutting down during it; the step runs again from its start.
    Interrupted,
}

stored_name!(StepOutcome, "step outcome", {
    Running => "running",
    Ok => "ok",
    Error => "error",
    Interrupted => "interrupted",
});

/// One run of one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRun {
    pub step: Step,
    /// The job's attempt it ran in, from 1.
    pub attempt: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    pub outcome: StepOutcome,
}

impl Database {
    /// Records that `step` of job `job_id` started, in the job's attempt `attempt`.
    pub async fn start_step(
        &self,
        job_id: i64,
        step: Step,
        attempt: i64,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "INSERT INTO job_steps (job_id, step, attempt, started_at, outcome)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (job_id, step, attempt) DO UPDATE SET
                 started_at = excluded.started_at, outcome = excluded.outcome,
                 finished_at = NULL, seconds = NULL",
        )
        .bind(job_id)
        .bind(step.as_str())
        .bind(attempt)
        .bind(timestamp::now())
        .bind(StepOutcome::Running.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records how that run of `step` ended after `seconds`.
    pub async fn finish_step(
        &self,
        job_id: i64,
        step: Step,
        attempt: i64,
        outcome: StepOutcome,
        seconds: f64,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "UPDATE job_steps SET finished_at = $1, seconds = $2, outcome = $3
             WHERE job_id = $4 AND step = $5 AND attempt = $6",
        )
        .bind(timestamp::now())
        .bind(seconds)
        .bind(outcome.as_str())
        .bind(job_id)
        .bind(step.as_str())
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
             FROM job_steps WHERE job_id BETWEEN $1 AND $2
             ORDER BY job_id, attempt, started_at",
        )
        .bind(first_id)
        .bind(last_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let step: String = row.try_get("step")?;
                let outcome: String = row.try_get("outcome")?;
                Ok((
                    row.try_get("job_id")?,
                    StepRun {
                        step: Step::parse(&step)?,
                        attempt: row.try_get("attempt")?,
                        started_at: row.try_get("started_at")?,
                        finished_at: row.try_get("finished_at")?,
                        seconds: row.try_get("seconds")?,
                        outcome: StepOutcome::parse(&outcome)?,
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::jobs::{JobKind, NewJob, Trigger};
    use crate::database::testing::on_each_backend;

    on_each_backend! {
        async fn step_runs_are_kept_per_attempt(database) {
            let job = NewJob {
                kind: JobKind::Build,
                version: "1.17.1".parse().unwrap(),
                rebuild: false,
                dedupe_key: "test:1".into(),
                trigger: Trigger::default(),
                installation_id: None,
            };
            let id = match database.queue_job(&job).await.unwrap() {
                crate::database::jobs::Queued::New(id) => id,
                other => panic!("{other:?}"),
            };
            database.start_step(id, Step::Download, 1).await.unwrap();
            database
                .finish_step(id, Step::Download, 1, StepOutcome::Error, 0.5)
                .await
                .unwrap();
            database.start_step(id, Step::Download, 2).await.unwrap();
            database
                .finish_step(id, Step::Download, 2, StepOutcome::Ok, 1.25)
                .await
                .unwrap();
            database.start_step(id, Step::Build, 2).await.unwrap();

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

    #[test]
    fn steps_are_stored_by_name_and_an_unknown_name_is_corrupt() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()).unwrap(), step);
            assert_eq!(
                serde_json::to_value(step).unwrap(),
                serde_json::json!(step.as_str())
            );
        }
        assert!(matches!(
            Step::parse("deploy"),
            Err(DatabaseError::Corrupt(_))
        ));
        assert_eq!(
            JobKind::Build
                .steps_from(Step::Consumers)
                .collect::<Vec<_>>(),
            [Step::Consumers, Step::Prune, Step::Tracking, Step::Report]
        );
        assert_eq!(
            JobKind::Withdraw
                .steps_from(Step::Download)
                .collect::<Vec<_>>(),
            JobKind::Withdraw.steps(),
            "a step the kind does not have starts it from its first"
        );
    }
}
