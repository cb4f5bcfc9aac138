//! Where the App is installed, and finished workflow runs, as webhooks report them.

use serde::Serialize;
use sqlx::Row;

use super::stored_name::stored_name;
use super::{Database, DatabaseError};
use crate::database::timestamp;

/// Whether an installation lets the App act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallationState {
    Active,
    Suspended,
    /// Uninstalled; kept so that its deliveries still name it.
    Deleted,
}

stored_name!(InstallationState, "installation state", {
    Active => "active",
    Suspended => "suspended",
    Deleted => "deleted",
});

/// An installation of the App.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installation {
    pub id: i64,
    pub account: Option<String>,
    pub state: InstallationState,
    pub repositories: Vec<String>,
    pub updated_at: String,
}

/// A finished workflow run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRun<'a> {
    pub id: i64,
    /// 1 for the first run, one more for each re-run (which keeps the run's id).
    pub attempt: i64,
    pub repository: &'a str,
    pub head_branch: Option<&'a str>,
    pub conclusion: Option<&'a str>,
    pub html_url: Option<&'a str>,
}

/// A change to an installation, from one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationChange<'a> {
    pub id: i64,
    pub account: Option<&'a str>,
    /// `None` leaves the state as it is.
    pub state: Option<InstallationState>,
    /// Replaces the repository list when given.
    pub repositories: Option<Vec<&'a str>>,
    pub added: Vec<&'a str>,
    pub removed: Vec<&'a str>,
}

impl Database {
    /// Applies `change` and marks `delivery_id` processed, in one transaction.
    pub async fn apply_installation_change(
        &self,
        delivery_id: &str,
        change: &InstallationChange<'_>,
    ) -> Result<(), DatabaseError> {
        let now = timestamp::now();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO installations (id, account, state, updated_at)
             VALUES ($1, $2, COALESCE($3, 'active'), $4)
             ON CONFLICT (id) DO UPDATE SET
                account = COALESCE(excluded.account, installations.account),
                state = COALESCE($5, installations.state),
                updated_at = excluded.updated_at",
        )
        .bind(change.id)
        .bind(change.account)
        .bind(change.state.map(InstallationState::as_str))
        .bind(&now)
        .bind(change.state.map(InstallationState::as_str))
        .execute(&mut *tx)
        .await?;
        if let Some(repositories) = &change.repositories {
            sqlx::query("DELETE FROM installation_repositories WHERE installation_id = $1")
                .bind(change.id)
                .execute(&mut *tx)
                .await?;
            for repository in repositories {
                insert_repository(&mut tx, change.id, repository).await?;
            }
        }
        for repository in &change.added {
            insert_repository(&mut tx, change.id, repository).await?;
        }
        for repository in &change.removed {
            sqlx::query(
                "DELETE FROM installation_repositories WHERE installation_id = $1 AND repository = $2",
            )
            .bind(change.id)
            .bind(repository)
            .execute(&mut *tx)
            .await?;
        }
        mark_processed(&mut tx, delivery_id, &now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every known installation, with its repositories.
    pub async fn installations(&self) -> Result<Vec<Installation>, DatabaseError> {
        let rows =
            sqlx::query("SELECT id, account, state, updated_at FROM installations ORDER BY id")
                .fetch_all(self.pool())
                .await?;
        let mut installations = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let state: String = row.try_get("state")?;
            let repositories = sqlx::query_scalar(
                "SELECT repository FROM installation_repositories WHERE installation_id = $1
                 ORDER BY repository",
            )
            .bind(id)
            .fetch_all(self.pool())
            .await?;
            installations.push(Installation {
                id,
                account: row.try_get("account")?,
                state: InstallationState::parse(&state)?,
                repositories,
                updated_at: row.try_get("updated_at")?,
            });
        }
        Ok(installations)
    }

    /// The installation that can act on `repository`, if a webhook has told of one.
    pub async fn installation_for_repository(
        &self,
        repository: &str,
    ) -> Result<Option<i64>, DatabaseError> {
        Ok(sqlx::query_scalar(
            "SELECT r.installation_id FROM installation_repositories r
             JOIN installations i ON i.id = r.installation_id
             WHERE r.repository = $1 AND i.state = 'active'
             ORDER BY r.installation_id LIMIT 1",
        )
        .bind(repository)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Stores a finished workflow run and marks `delivery_id` processed, in one transaction.
    pub async fn store_workflow_run(
        &self,
        delivery_id: &str,
        run: &WorkflowRun<'_>,
    ) -> Result<(), DatabaseError> {
        let now = timestamp::now();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO workflow_runs (id, repository, head_branch, conclusion, html_url, delivery_id, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET conclusion = excluded.conclusion,
                html_url = excluded.html_url, delivery_id = excluded.delivery_id,
                received_at = excluded.received_at",
        )
        .bind(run.id)
        .bind(run.repository)
        .bind(run.head_branch)
        .bind(run.conclusion)
        .bind(run.html_url)
        .bind(delivery_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO reported_workflow_runs (run_id, run_attempt, handled_at)
             VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(run.id)
        .bind(run.attempt)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        mark_processed(&mut tx, delivery_id, &now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether attempt `attempt` of run `id` was handled before (reported, or found not
    /// to be reported): a redelivered or replayed body of it, whatever conclusion it
    /// claims. Deliveries are handled one at a time, so checking here and recording in
    /// [`Database::store_workflow_run`] after the report cannot report an attempt twice.
    pub async fn workflow_run_handled(&self, id: i64, attempt: i64) -> Result<bool, DatabaseError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM reported_workflow_runs WHERE run_id = $1 AND run_attempt = $2",
        )
        .bind(id)
        .bind(attempt)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// How many workflow runs are stored.
    pub async fn workflow_run_count(&self) -> Result<i64, DatabaseError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM workflow_runs")
            .fetch_one(self.pool())
            .await?)
    }
}

async fn insert_repository(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    installation_id: i64,
    repository: &str,
) -> Result<(), DatabaseError> {
    sqlx::query(
        "INSERT INTO installation_repositories (installation_id, repository) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(installation_id)
    .bind(repository)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn mark_processed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    delivery_id: &str,
    now: &str,
) -> Result<(), DatabaseError> {
    sqlx::query(
        "UPDATE deliveries SET state = 'processed', processed_at = $1, error = NULL WHERE id = $2",
    )
    .bind(now)
    .bind(delivery_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::testing::on_each_backend;

    on_each_backend! {
        async fn installations_follow_their_events(database) {
            database
                .apply_installation_change(
                    "d1",
                    &InstallationChange {
                        id: 5,
                        account: Some("octo-org"),
                        state: Some(InstallationState::Active),
                        repositories: Some(vec!["octo-org/a", "octo-org/b"]),
                        added: vec![],
                        removed: vec![],
                    },
                )
                .await
                .unwrap();
            database
                .apply_installation_change(
                    "d2",
                    &InstallationChange {
                        id: 5,
                        account: None,
                        state: None,
                        repositories: None,
                        added: vec!["octo-org/c"],
                        removed: vec!["octo-org/a"],
                    },
                )
                .await
                .unwrap();
            let all = database.installations().await.unwrap();
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].account.as_deref(), Some("octo-org"));
            assert_eq!(all[0].repositories, ["octo-org/b", "octo-org/c"]);
            assert_eq!(
                database
                    .installation_for_repository("octo-org/c")
                    .await
                    .unwrap(),
                Some(5)
            );
            database
                .apply_installation_change(
                    "d3",
                    &InstallationChange {
                        id: 5,
                        account: None,
                        state: Some(InstallationState::Suspended),
                        repositories: None,
                        added: vec![],
                        removed: vec![],
                    },
                )
                .await
                .unwrap();
            assert_eq!(
                database
                    .installation_for_repository("octo-org/c")
                    .await
                    .unwrap(),
                None
            );
        }
    }

    on_each_backend! {
        async fn a_handled_run_attempt_stays_handled_after_the_retention_sweep(database) {
            let run = WorkflowRun {
                id: 9,
                attempt: 1,
                repository: "o/r",
                head_branch: Some("b"),
                conclusion: Some("failure"),
                html_url: None,
            };
            database.store_workflow_run("d1", &run).await.unwrap();
            let swept = database
                .forget_before("9999-01-01T00:00:00.000000Z")
                .await
                .unwrap();
            assert_eq!(swept.workflow_runs, 1);
            assert!(database.workflow_run_handled(9, 1).await.unwrap());
            assert!(!database.workflow_run_handled(9, 2).await.unwrap());
        }
    }
}
