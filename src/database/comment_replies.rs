//! Replies already posted to the commands of a comment.
//!
//! A comment can hold several commands, each answered with its own reply. When handling it
//! fails part-way (GitHub unavailable), the whole comment is handled again later; commands
//! answered the first time are skipped then, so nobody gets the same reply twice.

use super::{Database, DatabaseError};
use crate::timestamp;

impl Database {
    /// Whether the reply to command `index` (from 0) of comment `comment_id` was posted.
    pub async fn command_replied(
        &self,
        comment_id: u64,
        index: usize,
    ) -> Result<bool, DatabaseError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM comment_replies WHERE comment_id = ? AND command_index = ?",
        )
        .bind(comment_id as i64)
        .bind(index as i64)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// Records that the reply to command `index` of comment `comment_id` was posted.
    pub async fn record_command_reply(
        &self,
        comment_id: u64,
        index: usize,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "INSERT OR IGNORE INTO comment_replies (comment_id, command_index, posted_at)
             VALUES (?, ?, ?)",
        )
        .bind(comment_id as i64)
        .bind(index as i64)
        .bind(timestamp::now())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_are_remembered_per_comment_and_command() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(None, dir.path()).await.unwrap();
        assert!(!database.command_replied(4_000_000_001, 0).await.unwrap());
        database
            .record_command_reply(4_000_000_001, 0)
            .await
            .unwrap();
        // Recording it again (a reply posted, then the recording retried) is no error.
        database
            .record_command_reply(4_000_000_001, 0)
            .await
            .unwrap();
        assert!(database.command_replied(4_000_000_001, 0).await.unwrap());
        assert!(!database.command_replied(4_000_000_001, 1).await.unwrap());
        assert!(!database.command_replied(4_000_000_002, 0).await.unwrap());

        // It survives a restart.
        drop(database);
        let database = Database::open(None, dir.path()).await.unwrap();
        assert!(database.command_replied(4_000_000_001, 0).await.unwrap());
    }
}
