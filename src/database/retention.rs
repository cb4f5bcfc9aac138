//! Forgetting what strangers sent once it is handled and old: anyone who can reach the
//! webhook route with a valid signature (every installation) adds to the database, so
//! delivery payloads and workflow runs do not stay for ever. The delivery's record (id,
//! event, state, job) stays, for the status page and `/api/deliveries/{id}`.

use super::{Database, DatabaseError};

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Deliveries whose payload was deleted.
    pub payloads: u64,
    /// Workflow runs deleted.
    pub workflow_runs: u64,
}

impl Database {
    /// Deletes the payloads of the deliveries handled (no longer pending) and received
    /// before `cutoff` (a stored timestamp), and the workflow runs received before it.
    pub async fn forget_before(&self, cutoff: &str) -> Result<Swept, DatabaseError> {
        let mut tx = self.pool().begin().await?;
        let payloads = sqlx::query(
            "UPDATE deliveries SET payload = ''
             WHERE state != 'pending' AND received_at < $1 AND payload != ''",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let workflow_runs = sqlx::query("DELETE FROM workflow_runs WHERE received_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Swept {
            payloads,
            workflow_runs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::deliveries::{DeliveryOutcome, DeliveryState, NewDelivery};
    use crate::database::testing::on_each_backend;

    async fn delivery(database: &Database, id: &str, received_at: &str) {
        database
            .store_delivery(&NewDelivery {
                id,
                event: "ping",
                action: None,
                installation_id: None,
                repository: None,
                payload: "{\"zen\":\"x\"}",
                received_at,
            })
            .await
            .unwrap();
    }

    async fn payload(database: &Database, id: &str) -> String {
        sqlx::query_scalar("SELECT payload FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(database.pool())
            .await
            .unwrap()
    }

    on_each_backend! {
        async fn only_handled_old_payloads_go_and_the_records_stay(database) {
            delivery(&database, "old-handled", "2026-01-01T00:00:00.000000Z").await;
            delivery(&database, "old-pending", "2026-01-01T00:00:00.000000Z").await;
            delivery(&database, "new-handled", "2026-03-01T00:00:00.000000Z").await;
            for id in ["old-handled", "new-handled"] {
                database
                    .finish_delivery(id, DeliveryOutcome::Processed, None)
                    .await
                    .unwrap();
            }
            let swept = database
                .forget_before("2026-02-01T00:00:00.000000Z")
                .await
                .unwrap();
            assert_eq!(swept.payloads, 1);
            assert_eq!(payload(&database, "old-handled").await, "");
            assert_ne!(payload(&database, "old-pending").await, "");
            assert_ne!(payload(&database, "new-handled").await, "");
            let record = database.delivery("old-handled").await.unwrap().unwrap();
            assert_eq!(record.state, DeliveryState::Processed);
            assert_eq!(record.event, "ping");
            // A second sweep finds nothing left to do.
            let again = database
                .forget_before("2026-02-01T00:00:00.000000Z")
                .await
                .unwrap();
            assert_eq!(again, Swept::default());
        }
    }
}
