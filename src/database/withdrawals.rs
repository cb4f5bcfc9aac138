//! Withdrawn versions: taken out of `SHA256SUMS` by a `/withdraw` or the CLI's `withdraw`,
//! and refused to every publication but a `/rebuild` of the version, which removes the row.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::job_result::as_text;
use super::jobs::TriggerSource;
use super::{Database, DatabaseError, timestamp};
use crate::version::Version;

/// A withdrawn version, who withdrew it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withdrawal {
    #[serde(with = "as_text")]
    pub version: Version,
    /// A comment's `/withdraw`, or the command line.
    pub source: TriggerSource,
    /// The commenter's GitHub login, or the operator's login name.
    pub withdrawn_by: Option<String>,
    /// The asker's words, if any.
    pub reason: Option<String>,
    /// The withdraw job.
    pub job_id: i64,
    pub withdrawn_at: String,
}

fn withdrawal_from_row(row: &AnyRow) -> Result<Withdrawal, DatabaseError> {
    let version: String = row.try_get("version")?;
    let source: String = row.try_get("source")?;
    Ok(Withdrawal {
        version: version
            .parse()
            .map_err(|e| DatabaseError::Corrupt(format!("withdrawn version: {e}")))?,
        source: TriggerSource::parse(&source)?,
        withdrawn_by: row.try_get("withdrawn_by")?,
        reason: row.try_get("reason")?,
        job_id: row.try_get("job_id")?,
        withdrawn_at: row.try_get("withdrawn_at")?,
    })
}

const COLUMNS: &str = "version, source, withdrawn_by, reason, job_id, withdrawn_at";

impl Database {
    /// Records `withdrawal` (its `withdrawn_at` is set to now). A version withdrawn already
    /// keeps its first record: the job that withdrew it first said who and why.
    pub async fn record_withdrawal(&self, withdrawal: &Withdrawal) -> Result<(), DatabaseError> {
        sqlx::query(
            "INSERT INTO withdrawals (version, source, withdrawn_by, reason, job_id, withdrawn_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(withdrawal.version.as_str())
        .bind(withdrawal.source.as_str())
        .bind(&withdrawal.withdrawn_by)
        .bind(&withdrawal.reason)
        .bind(withdrawal.job_id)
        .bind(timestamp::now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The withdrawal of `version`, if it is withdrawn.
    pub async fn withdrawal(&self, version: &Version) -> Result<Option<Withdrawal>, DatabaseError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM withdrawals WHERE version = $1"
        )))
        .bind(version.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(withdrawal_from_row).transpose()
    }

    /// Every withdrawn version, the latest withdrawn first.
    pub async fn withdrawals(&self) -> Result<Vec<Withdrawal>, DatabaseError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM withdrawals ORDER BY withdrawn_at DESC, version"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(withdrawal_from_row).collect()
    }

    /// Forgets the withdrawal of `version`: a `/rebuild` published it again. True when it
    /// was withdrawn.
    pub async fn end_withdrawal(&self, version: &Version) -> Result<bool, DatabaseError> {
        let done = sqlx::query("DELETE FROM withdrawals WHERE version = $1")
            .bind(version.as_str())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::testing::on_each_backend;

    fn withdrawal(version: &str, by: &str, job_id: i64) -> Withdrawal {
        Withdrawal {
            version: version.parse().unwrap(),
            source: TriggerSource::Comment,
            withdrawn_by: Some(by.into()),
            reason: Some("crashes on start".into()),
            job_id,
            withdrawn_at: String::new(),
        }
    }

    on_each_backend! {
        async fn a_withdrawal_is_kept_once_and_ends_with_a_rebuild(database) {
            let version: Version = "1.2.3".parse().unwrap();
            assert_eq!(database.withdrawal(&version).await.unwrap(), None);
            database
                .record_withdrawal(&withdrawal("1.2.3", "ann", 4))
                .await
                .unwrap();
            // A second withdraw of the same version keeps the first record.
            database
                .record_withdrawal(&withdrawal("1.2.3", "bob", 9))
                .await
                .unwrap();
            database
                .record_withdrawal(&withdrawal("1.0.0", "cy", 2))
                .await
                .unwrap();
            let found = database.withdrawal(&version).await.unwrap().unwrap();
            assert_eq!(
                (found.withdrawn_by.as_deref(), found.job_id, found.source),
                (Some("ann"), 4, TriggerSource::Comment)
            );
            assert!(!found.withdrawn_at.is_empty());
            let all: Vec<String> = database
                .withdrawals()
                .await
                .unwrap()
                .into_iter()
                .map(|w| w.version.to_string())
                .collect();
            assert_eq!(all, ["1.0.0", "1.2.3"]);
            assert!(database.end_withdrawal(&version).await.unwrap());
            assert!(!database.end_withdrawal(&version).await.unwrap());
            assert_eq!(database.withdrawal(&version).await.unwrap(), None);
        }
    }
}
