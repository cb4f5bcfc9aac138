//! Comments already answered.
//!
//! A comment gets at most one reply, however many commands it holds: the answers to all of
//! them, together. When handling a comment fails part-way (GitHub unavailable), the whole
//! comment is handled again later; a comment answered before is not answered again, so
//! nobody gets the same reply twice.

use super::{Database, DatabaseError};
use crate::database::timestamp;

impl Database {
    /// Whether the reply to comment `comment_id` was posted.
    pub async fn comment_replied(&self, comment_id: u64) -> Result<bool, DatabaseError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM comment_replies WHERE comment_id = $1 LIMIT 1")
                .bind(comment_id as i64)
                .fetch_optional(self.pool())
                .await?;
        Ok(found.is_some())
    }

    /// Records that the reply to comment `comment_id` was posted, and with it the answer to
    /// its refusal, if it had one to answer: from now on that answer keeps the next refusals
    /// to the same user in the same repository unanswered for the hour.
    pub async fn record_comment_reply(&self, comment_id: u64) -> Result<(), DatabaseError> {
        let now = timestamp::now();
        let mut tx = self.pool().begin().await?;
        // One row per comment now; `command_index` is kept at 0 (the table once held one row
        // per command).
        sqlx::query(
            "INSERT INTO comment_replies (comment_id, command_index, posted_at)
             VALUES ($1, 0, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(comment_id as i64)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE command_refusals SET answered = 1, refused_at = $1
             WHERE comment_id = $2 AND answered = 2",
        )
        .bind(&now)
        .bind(comment_id as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::database::testing::on_each_backend;

    on_each_backend! {
        async fn replies_are_remembered_per_comment(database, test) {
            assert!(!database.comment_replied(4_000_000_001).await.unwrap());
            database.record_comment_reply(4_000_000_001).await.unwrap();
            // Recording it again (a reply posted, then the recording retried) is no error.
            database.record_comment_reply(4_000_000_001).await.unwrap();
            assert!(database.comment_replied(4_000_000_001).await.unwrap());
            assert!(!database.comment_replied(4_000_000_002).await.unwrap());

            // It survives a restart.
            drop(database);
            let database = test.reopen().await;
            assert!(database.comment_replied(4_000_000_001).await.unwrap());
        }
    }
}
