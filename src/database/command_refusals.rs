//! Refused `/build` and `/rebuild` commands, and whether each was answered.
//!
//! Refusals to one user in one repository are answered at most once an hour
//! ([`REFUSAL_ANSWER_INTERVAL`]); those within the hour after an answered one are only
//! recorded. The decision is stored with the comment, so a comment handled again after a
//! failure part-way is answered (or not) as it was decided the first time.
//!
//! `answered` is 0 for a refusal only recorded, 2 for one to be answered whose reply is not
//! posted yet, and 1 once the reply is posted ([`Database::record_comment_reply`]). Only a
//! posted answer keeps the next refusals unanswered: a reply that could never be posted
//! leaves the user free to be answered next time.

use super::{Database, DatabaseError};
use crate::database::timestamp;

/// The least time between two answered refusals to the same user in the same repository.
pub const REFUSAL_ANSWER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long a refusal is kept: past the answer interval, and past the few minutes a comment
/// may be handled again after a failure.
const REFUSAL_KEPT: time::Duration = time::Duration::days(1);

/// `answered` of a refusal whose reply is to be posted and is not yet.
const TO_ANSWER: i64 = 2;

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// The commenter lacks write permission on the build repository.
    Permission,
    /// The commenter has asked for the most queued jobs one user may have.
    QueueLimit,
    /// A command that cannot be read (`/build 1.2`, an unknown command).
    Malformed,
}

impl RefusalReason {
    /// The reason as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Permission => "permission",
            RefusalReason::QueueLimit => "queue_limit",
            RefusalReason::Malformed => "malformed",
        }
    }
}

/// A comment's refusal, as decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Whether the comment's reply says why it was refused.
    pub answered: bool,
    /// False when the refusal was recorded before (the comment handled again).
    pub new: bool,
}

impl Database {
    /// Records that a command in comment `comment_id` by `user` in `repository` was
    /// refused, and decides whether to answer it: yes, unless a refusal to the same user in
    /// the same repository was answered within [`REFUSAL_ANSWER_INTERVAL`]. A comment
    /// recorded before keeps its first decision.
    pub async fn record_refusal(
        &self,
        comment_id: u64,
        user: &str,
        repository: &str,
        reason: RefusalReason,
    ) -> Result<Refusal, DatabaseError> {
        let mut tx = self.begin_immediate().await?;
        let decided: Option<i64> =
            sqlx::query_scalar("SELECT answered FROM command_refusals WHERE comment_id = $1")
                .bind(comment_id as i64)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(answered) = decided {
            return Ok(Refusal {
                answered: answered != 0,
                new: false,
            });
        }
        let since = timestamp::format(time::OffsetDateTime::now_utc() - REFUSAL_ANSWER_INTERVAL);
        let answered_lately: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM command_refusals
             WHERE lower(\"user\") = lower($1) AND lower(repository) = lower($2)
               AND answered = 1 AND refused_at >= $3
             LIMIT 1",
        )
        .bind(user)
        .bind(repository)
        .bind(&since)
        .fetch_optional(&mut *tx)
        .await?;
        let answered = answered_lately.is_none();
        sqlx::query(
            "INSERT INTO command_refusals
                 (comment_id, \"user\", repository, reason, answered, refused_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(comment_id as i64)
        .bind(user)
        .bind(repository)
        .bind(reason.as_str())
        .bind(if answered { TO_ANSWER } else { 0 })
        .bind(timestamp::now())
        .execute(&mut *tx)
        .await?;
        // Older refusals decide nothing any more.
        sqlx::query("DELETE FROM command_refusals WHERE refused_at < $1")
            .bind(timestamp::format(
                time::OffsetDateTime::now_utc() - REFUSAL_KEPT,
            ))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Refusal {
            answered,
            new: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::testing::on_each_backend;

    on_each_backend! {
        async fn refusals_are_answered_once_an_hour_per_user_and_repository(database) {
            let refuse = |comment: u64, user: &'static str, repo: &'static str| {
                let database = database.clone();
                async move {
                    database
                        .record_refusal(comment, user, repo, RefusalReason::Permission)
                        .await
                        .unwrap()
                }
            };
            let first = refuse(1, "mallory", "o/r").await;
            assert_eq!(
                first,
                Refusal {
                    answered: true,
                    new: true
                }
            );
            // Until its reply is posted, the answer does not count.
            assert!(refuse(7, "mallory", "o/r").await.answered);
            database.record_comment_reply(1).await.unwrap();
            // The same user again, any case, in the same repository: recorded, not answered.
            assert!(!refuse(2, "Mallory", "O/R").await.answered);
            // Another user, or another repository, is answered.
            assert!(refuse(3, "eve", "o/r").await.answered);
            assert!(refuse(4, "mallory", "o/other").await.answered);
            // A comment handled again keeps its first decision.
            assert_eq!(
                refuse(1, "mallory", "o/r").await,
                Refusal {
                    answered: true,
                    new: false
                }
            );
            assert_eq!(
                refuse(2, "mallory", "o/r").await,
                Refusal {
                    answered: false,
                    new: false
                }
            );

            // An answer older than the interval no longer counts.
            let long_ago = timestamp::format(
                time::OffsetDateTime::now_utc() - REFUSAL_ANSWER_INTERVAL - time::Duration::minutes(1),
            );
            sqlx::query("UPDATE command_refusals SET refused_at = $1")
                .bind(long_ago)
                .execute(database.pool())
                .await
                .unwrap();
            assert!(refuse(5, "mallory", "o/r").await.answered);

            // Refusals older than a day are dropped as new ones come.
            let last_week =
                timestamp::format(time::OffsetDateTime::now_utc() - time::Duration::days(7));
            sqlx::query("UPDATE command_refusals SET refused_at = $1 WHERE comment_id = 1")
                .bind(last_week)
                .execute(database.pool())
                .await
                .unwrap();
            refuse(6, "eve", "o/other").await;
            let kept: Vec<i64> =
                sqlx::query_scalar("SELECT comment_id FROM command_refusals ORDER BY comment_id")
                    .fetch_all(database.pool())
                    .await
                    .unwrap();
            assert_eq!(kept, [2, 3, 4, 5, 6, 7]);
        }
    }
}
