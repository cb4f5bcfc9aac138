//! Ticks of scheduled tasks, each run by one replica: the first to record a tick runs it.

use super::{Database, DatabaseError};

impl Database {
    /// Records that the replica `replica` runs `task`'s tick `tick` (a stored timestamp),
    /// unless that tick or a later one was recorded before: true when it is this replica's
    /// to run.
    pub async fn claim_scheduled_run(
        &self,
        task: &str,
        tick: &str,
        replica: &str,
    ) -> Result<bool, DatabaseError> {
        let claimed: Option<String> = sqlx::query_scalar(
            "INSERT INTO scheduled_runs (task, run_for, run_by) VALUES ($1, $2, $3)
             ON CONFLICT (task) DO UPDATE SET run_for = excluded.run_for,
                                              run_by = excluded.run_by
             WHERE scheduled_runs.run_for < excluded.run_for
             RETURNING run_by",
        )
        .bind(task)
        .bind(tick)
        .bind(replica)
        .fetch_optional(self.pool())
        .await?;
        Ok(claimed.is_some())
    }
}

#[cfg(test)]
mod tests {
    use crate::database::testing::on_each_backend;

    on_each_backend! {
        async fn each_tick_is_claimed_once(database) {
            let ten = "2026-12-03T10:00:00.000000Z";
            let eleven = "2026-12-03T11:00:00.000000Z";
            assert!(database.claim_scheduled_run("upstream-check", ten, "a").await.unwrap());
            assert!(!database.claim_scheduled_run("upstream-check", ten, "b").await.unwrap());
            // Another task's ticks are its own.
            assert!(database.claim_scheduled_run("other", ten, "b").await.unwrap());
            assert!(database.claim_scheduled_run("upstream-check", eleven, "b").await.unwrap());
            // An earlier tick, late: already covered.
            assert!(!database.claim_scheduled_run("upstream-check", ten, "a").await.unwrap());
        }
    }
}
