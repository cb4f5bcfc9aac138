//! The retention sweep: at start and every hour, the payloads of deliveries handled more
//! than `RETENTION_DAYS` ago are deleted, and the workflow runs received as long ago (see
//! [`crate::database::retention`]). It runs whether or not the server can act as the App,
//! since deliveries are stored either way.

use std::time::Duration;

use crate::database::Database;

/// How often the sweep runs after the one at start.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Starts the sweep; it runs until the runtime stops.
pub fn spawn(database: Database, retention: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let cutoff =
                crate::database::timestamp::format(time::OffsetDateTime::now_utc() - retention);
            match database.forget_before(&cutoff).await {
                Ok(swept) if swept.payloads > 0 || swept.workflow_runs > 0 => tracing::info!(
                    payloads = swept.payloads,
                    workflow_runs = swept.workflow_runs,
                    received_before = %cutoff,
                    "deleted old delivery payloads and workflow runs"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "deleting old delivery payloads"),
            }
            tokio::time::sleep(SWEEP_INTERVAL).await;
        }
    })
}
