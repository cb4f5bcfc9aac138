//! Comments whose commands were handled to the end.
//!
//! A comment's signed body can be replayed under a new delivery id at any time. What a
//! comment asked is decided once, when it is first handled: a replay once the queue has
//! room, or after the commenter gained write permission, must not queue what was refused.
//! So every comment handled to the end is recorded for good, and checked before anything
//! else when a comment comes in.

use super::deliveries::DeliveryOutcome;
use super::{Database, DatabaseError};
use crate::database::timestamp;

impl Database {
    /// Whether comment `comment_id` was handled to the end before.
    pub async fn comment_handled(&self, comment_id: u64) -> Result<bool, DatabaseError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM handled_comments WHERE comment_id = $1")
                .bind(comment_id as i64)
                .fetch_optional(self.pool())
                .await?;
        Ok(found.is_some())
    }

    /// Records that comment `comment_id` was handled to the end, and finishes
    /// `delivery_id` with `outcome`, in one transaction.
    pub async fn finish_comment(
        &self,
        delivery_id: &str,
        comment_id: u64,
        outcome: DeliveryOutcome,
        note: Option<&str>,
    ) -> Result<(), DatabaseError> {
        let now = timestamp::now();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO handled_comments (comment_id, delivery_id, handled_at)
             VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(comment_id as i64)
        .bind(delivery_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        super::deliveries::finish_pending_delivery(&mut *tx, delivery_id, outcome, note, &now)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::testing::on_each_backend;

    on_each_backend! {
        async fn a_handled_comment_is_remembered_across_restarts(database, test) {
            assert!(!database.comment_handled(7).await.unwrap());
            database
                .finish_comment("d1", 7, DeliveryOutcome::Ignored, Some("note"))
                .await
                .unwrap();
            // Recording it again (a replay handled meanwhile) is no error.
            database
                .finish_comment("d2", 7, DeliveryOutcome::Processed, None)
                .await
                .unwrap();
            drop(database);
            let database = test.reopen().await;
            assert!(database.comment_handled(7).await.unwrap());
            assert!(!database.comment_handled(8).await.unwrap());
        }
    }
}
