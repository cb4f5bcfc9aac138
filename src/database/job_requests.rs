//! Comments that asked for a build job, and the queue's joining rules.
//!
//! A `/build` or `/rebuild` for a version that already has a queued job joins it instead of
//! queueing a second one: the commenter is added to the job's requests, and a `/rebuild`
//! makes a queued build a rebuild. A running (or retrying) job is left alone: a request
//! then queues a new job that runs after it. One user is a requester of at most
//! [`MAX_QUEUED_PER_USER`] queued jobs. Each request is stored under its key (the comment,
//! the command and the version), so the same comment handled again, or replayed under a new
//! delivery id, finds the job it asked for and changes nothing.

use sqlx::Row;

use super::jobs::{NewJob, Queued, insert_job};
use super::{Database, DatabaseError};
use crate::database::timestamp;

/// The most queued jobs one user may have asked for.
pub const MAX_QUEUED_PER_USER: i64 = 3;

/// A `/build` or `/rebuild` from a comment, about to be queued or to join a queued job.
#[derive(Debug, Clone)]
pub struct BuildRequest<'a> {
    /// `comment:{comment id}:{command}:{version}`.
    pub key: &'a str,
    /// The job to queue when no queued job for the version is there to join.
    pub job: &'a NewJob,
    pub user: &'a str,
    pub repository: &'a str,
    pub issue_number: u64,
    pub comment_id: u64,
    /// The delivery of the comment: it is linked to the job.
    pub delivery_id: &'a str,
}

/// What became of a [`BuildRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new job was queued.
    Queued(i64),
    /// The request joined the queued job; `upgraded` when a `/rebuild` made a queued build
    /// a rebuild.
    Joined { job: i64, upgraded: bool },
    /// This request was stored before (the comment handled again): nothing changed.
    AskedBefore(i64),
    /// The user is a requester of [`MAX_QUEUED_PER_USER`] queued jobs already.
    TooManyQueued,
}

/// A comment that asked for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub user: String,
    pub repository: String,
    pub issue_number: u64,
    pub comment_id: u64,
}

impl Database {
    /// Queues the job `request` asks for, or joins the queued job for its version, in one
    /// transaction, following the rules in the module documentation.
    pub async fn request_build(
        &self,
        request: &BuildRequest<'_>,
    ) -> Result<RequestOutcome, DatabaseError> {
        let mut tx = self.begin_immediate().await?;
        let asked_before: Option<i64> =
            sqlx::query_scalar("SELECT job_id FROM job_requests WHERE request_key = $1")
                .bind(request.key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(job) = asked_before {
            return Ok(RequestOutcome::AskedBefore(job));
        }
        let queued_job = sqlx::query(
            "SELECT id, rebuild FROM jobs
             WHERE kind = $1 AND version = $2 AND state = 'queued'
             ORDER BY id LIMIT 1",
        )
        .bind(request.job.kind.as_str())
        .bind(request.job.version.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let queued_job = queued_job
            .map(|row| -> Result<(i64, bool), sqlx::Error> {
                Ok((row.try_get("id")?, row.try_get::<i64, _>("rebuild")? != 0))
            })
            .transpose()?;
        let already_a_requester = match queued_job {
            Some((id, _)) => sqlx::query_scalar::<_, i64>(
                "SELECT 1 FROM job_requests WHERE job_id = $1 AND lower(\"user\") = lower($2)",
            )
            .bind(id)
            .bind(request.user)
            .fetch_optional(&mut *tx)
            .await?
            .is_some(),
            None => false,
        };
        if !already_a_requester {
            let queued_by_user: i64 = sqlx::query_scalar(
                "SELECT COUNT(DISTINCT jobs.id) FROM jobs
                 JOIN job_requests ON job_requests.job_id = jobs.id
                 WHERE jobs.state = 'queued' AND lower(job_requests.\"user\") = lower($1)",
            )
            .bind(request.user)
            .fetch_one(&mut *tx)
            .await?;
            if queued_by_user >= MAX_QUEUED_PER_USER {
                return Ok(RequestOutcome::TooManyQueued);
            }
        }
        let (outcome, job_id) = match queued_job {
            Some((id, rebuild)) => {
                let upgraded = request.job.rebuild && !rebuild;
                if upgraded {
                    sqlx::query(
                        "UPDATE jobs SET rebuild = 1, updated_at = $1 WHERE id = $2 AND state = 'queued'",
                    )
                        .bind(timestamp::now())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                (RequestOutcome::Joined { job: id, upgraded }, id)
            }
            None => match insert_job(&mut tx, request.job).await? {
                Queued::New(id) => (RequestOutcome::Queued(id), id),
                // A job queued under this key before requests were stored.
                Queued::Existing(id) => return Ok(RequestOutcome::AskedBefore(id)),
            },
        };
        sqlx::query(
            "INSERT INTO job_requests
                 (request_key, job_id, \"user\", repository, issue_number, comment_id, asked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(request.key)
        .bind(job_id)
        .bind(request.user)
        .bind(request.repository)
        .bind(request.issue_number as i64)
        .bind(request.comment_id as i64)
        .bind(timestamp::now())
        .execute(&mut *tx)
        .await?;
        // The delivery stays pending until its comment is answered; it is linked to the job
        // now.
        sqlx::query("UPDATE deliveries SET job_id = $1 WHERE id = $2")
            .bind(job_id)
            .bind(request.delivery_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The comments that asked for job `job_id`, oldest first.
    pub async fn job_requests(&self, job_id: i64) -> Result<Vec<JobRequest>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT \"user\", repository, issue_number, comment_id FROM job_requests
             WHERE job_id = $1 ORDER BY asked_at, rowid",
        )
        .bind(job_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(JobRequest {
                    user: row.try_get("user")?,
                    repository: row.try_get("repository")?,
                    issue_number: row.try_get::<i64, _>("issue_number")? as u64,
                    comment_id: row.try_get::<i64, _>("comment_id")? as u64,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::jobs::{JobKind, JobState, Trigger, TriggerSource};
    use crate::database::testing::on_each_backend;

    fn job(key: &str, version: &str, rebuild: bool) -> NewJob {
        NewJob {
            kind: JobKind::Build,
            version: version.parse().unwrap(),
            rebuild,
            dedupe_key: key.into(),
            trigger: Trigger {
                source: TriggerSource::Comment,
                ..Trigger::default()
            },
            installation_id: Some(1),
        }
    }

    async fn ask(
        database: &Database,
        comment_id: u64,
        user: &str,
        version: &str,
        rebuild: bool,
    ) -> RequestOutcome {
        let command = if rebuild { "rebuild" } else { "build" };
        let key = format!("comment:{comment_id}:{command}:{version}");
        database
            .request_build(&BuildRequest {
                key: &key,
                job: &job(&key, version, rebuild),
                user,
                repository: "o/r",
                issue_number: 4,
                comment_id,
                delivery_id: "d",
            })
            .await
            .unwrap()
    }

    on_each_backend! {
        async fn requests_join_the_queued_job_and_a_rebuild_upgrades_it(database) {
            let RequestOutcome::Queued(first) = ask(&database, 1, "ann", "1.0.0", false).await else {
                panic!("expected a new job");
            };
            assert_eq!(
                ask(&database, 2, "bob", "1.0.0", false).await,
                RequestOutcome::Joined {
                    job: first,
                    upgraded: false
                }
            );
            assert_eq!(
                ask(&database, 3, "cy", "1.0.0", true).await,
                RequestOutcome::Joined {
                    job: first,
                    upgraded: true
                }
            );
            assert!(database.job(first).await.unwrap().unwrap().rebuild);
            // The same comment again changes nothing.
            assert_eq!(
                ask(&database, 2, "bob", "1.0.0", false).await,
                RequestOutcome::AskedBefore(first)
            );
            let users: Vec<String> = database
                .job_requests(first)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.user)
                .collect();
            assert_eq!(users, ["ann", "bob", "cy"]);
            assert_eq!(database.recent_jobs(10).await.unwrap().len(), 1);
        }
    }

    on_each_backend! {
        async fn a_running_job_is_left_alone_and_a_rebuild_queues_after_it(database) {
            let RequestOutcome::Queued(running) = ask(&database, 1, "ann", "1.0.0", false).await else {
                panic!("expected a new job");
            };
            database.claim_job(running, "here", crate::database::testing::LEASE).await.unwrap().unwrap();
            let RequestOutcome::Queued(after) = ask(&database, 2, "bob", "1.0.0", true).await else {
                panic!("expected a job after the running one");
            };
            assert!(after > running);
            let running_job = database.job(running).await.unwrap().unwrap();
            assert_eq!(running_job.state, JobState::Running);
            assert!(!running_job.rebuild);
            assert_eq!(database.job_requests(running).await.unwrap().len(), 1);
        }
    }

    on_each_backend! {
        async fn a_user_has_at_most_three_queued_jobs(database) {
            for (comment, version) in [(1, "1.0.0"), (2, "1.0.1"), (3, "1.0.2")] {
                assert!(matches!(
                    ask(&database, comment, "ann", version, false).await,
                    RequestOutcome::Queued(_)
                ));
            }
            assert_eq!(
                ask(&database, 4, "ANN", "1.0.3", false).await,
                RequestOutcome::TooManyQueued
            );
            // Joining a job she already asked for is no new job.
            assert!(matches!(
                ask(&database, 5, "ann", "1.0.0", true).await,
                RequestOutcome::Joined { upgraded: true, .. }
            ));
            // Someone else may still ask; and once one of hers runs, she may ask again.
            assert!(matches!(
                ask(&database, 6, "bob", "1.0.3", false).await,
                RequestOutcome::Queued(_)
            ));
            let oldest = database.next_runnable_job().await.unwrap().unwrap();
            database.claim_job(oldest.id, "here", crate::database::testing::LEASE).await.unwrap().unwrap();
            assert!(matches!(
                ask(&database, 7, "ann", "1.0.4", false).await,
                RequestOutcome::Queued(_)
            ));
        }
    }

    on_each_backend! {
        async fn a_rebuild_joining_between_the_read_and_the_claim_runs_as_a_rebuild(database) {
            let RequestOutcome::Queued(id) = ask(&database, 1, "ann", "1.0.0", false).await else {
                panic!("expected a new job");
            };
            // The job loop reads the next job; a /rebuild joins it before the loop claims it.
            let read = database.next_runnable_job().await.unwrap().unwrap();
            assert!(!read.rebuild);
            assert!(matches!(
                ask(&database, 2, "bob", "1.0.0", true).await,
                RequestOutcome::Joined { upgraded: true, .. }
            ));
            let claimed = database.claim_job(read.id, "here", crate::database::testing::LEASE).await.unwrap().unwrap();
            assert_eq!(claimed.id, id);
            assert!(claimed.rebuild, "the job runs as it is when claimed");
            assert_eq!(claimed.state, JobState::Running);
            assert_eq!(claimed.attempts, 1);
            // A job that ended is not claimed again.
            database.finish_job(id, None).await.unwrap();
            assert!(database.claim_job(id, "here", crate::database::testing::LEASE).await.unwrap().is_none());
        }
    }
}
