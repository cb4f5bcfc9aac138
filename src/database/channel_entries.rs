//! Where each version is in the rollout: when it entered each release channel, and the
//! failed CI runs on consumers' pull requests for it, which hold back its promotion after
//! `publish.promote_after_hours`.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::job_result::as_text;
use super::{Database, DatabaseError, timestamp};
use crate::settings::channels::ChannelName;
use crate::version::Version;

/// A version listed in a channel since `entered_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelEntry {
    #[serde(with = "as_text")]
    pub version: Version,
    pub channel: ChannelName,
    /// The job that put it there.
    pub job_id: i64,
    pub entered_at: String,
}

/// A failed CI run on the App's update pull request for `version` in a consumer repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerCiFailure {
    pub run_id: i64,
    pub run_attempt: i64,
    pub repository: String,
    #[serde(with = "as_text")]
    pub version: Version,
    /// GitHub's conclusion: `failure`, `timed_out`, …
    pub conclusion: String,
    pub html_url: Option<String>,
    pub failed_at: String,
}

fn entry_from_row(row: &AnyRow) -> Result<ChannelEntry, DatabaseError> {
    let version: String = row.try_get("version")?;
    let channel: String = row.try_get("channel")?;
    Ok(ChannelEntry {
        version: version
            .parse()
            .map_err(|e| DatabaseError::Corrupt(format!("channel entry version: {e}")))?,
        channel: channel
            .parse()
            .map_err(|e| DatabaseError::Corrupt(format!("channel entry channel: {e}")))?,
        job_id: row.try_get("job_id")?,
        entered_at: row.try_get("entered_at")?,
    })
}

impl Database {
    /// Records that `version` is listed in `channel` from now on, by job `job_id`. A version
    /// there already keeps its first time: a job run again does not restart the wait.
    pub async fn enter_channel(
        &self,
        version: &Version,
        channel: &ChannelName,
        job_id: i64,
    ) -> Result<(), DatabaseError> {
        self.enter_channel_at(version, channel, job_id, &timestamp::now())
            .await
    }

    /// [`Database::enter_channel`] at the time `entered_at` (RFC 3339).
    pub async fn enter_channel_at(
        &self,
        version: &Version,
        channel: &ChannelName,
        job_id: i64,
        entered_at: &str,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "INSERT INTO channel_entries (version, channel, job_id, entered_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (version, channel) DO NOTHING",
        )
        .bind(version.as_str())
        .bind(channel.as_str())
        .bind(job_id)
        .bind(entered_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Forgets that `version` is in `channel`: it left it.
    pub async fn forget_channel_entry(
        &self,
        version: &Version,
        channel: &ChannelName,
    ) -> Result<(), DatabaseError> {
        sqlx::query("DELETE FROM channel_entries WHERE version = $1 AND channel = $2")
            .bind(version.as_str())
            .bind(channel.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// When `version` entered `channel`, if it is there.
    pub async fn channel_entry(
        &self,
        version: &Version,
        channel: &ChannelName,
    ) -> Result<Option<ChannelEntry>, DatabaseError> {
        let row = sqlx::query(
            "SELECT version, channel, job_id, entered_at FROM channel_entries
             WHERE version = $1 AND channel = $2",
        )
        .bind(version.as_str())
        .bind(channel.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// Records that `version` entered `channel` anew now (its bytes were replaced): the wait
    /// before its promotion starts again.
    pub async fn reenter_channel(
        &self,
        version: &Version,
        channel: &ChannelName,
        job_id: i64,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "INSERT INTO channel_entries (version, channel, job_id, entered_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (version, channel) DO UPDATE SET
                 job_id = excluded.job_id, entered_at = excluded.entered_at",
        )
        .bind(version.as_str())
        .bind(channel.as_str())
        .bind(job_id)
        .bind(timestamp::now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every version in every channel, earliest entry first.
    pub async fn channel_entries(&self) -> Result<Vec<ChannelEntry>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT version, channel, job_id, entered_at FROM channel_entries
             ORDER BY entered_at, version, channel",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Records a failed CI run on an update pull request for `failure.version`; the same
    /// run attempt is recorded once.
    pub async fn record_ci_failure(
        &self,
        failure: &ConsumerCiFailure,
    ) -> Result<(), DatabaseError> {
        sqlx::query(
            "INSERT INTO consumer_ci_failures
                 (run_id, run_attempt, repository, version, conclusion, html_url, failed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (run_id, run_attempt) DO NOTHING",
        )
        .bind(failure.run_id)
        .bind(failure.run_attempt)
        .bind(&failure.repository)
        .bind(failure.version.as_str())
        .bind(&failure.conclusion)
        .bind(&failure.html_url)
        .bind(&failure.failed_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The failed CI runs for `version` recorded at `since` or later, earliest first.
    pub async fn ci_failures_since(
        &self,
        version: &Version,
        since: &str,
    ) -> Result<Vec<ConsumerCiFailure>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT run_id, run_attempt, repository, version, conclusion, html_url, failed_at
             FROM consumer_ci_failures WHERE version = $1 AND failed_at >= $2
             ORDER BY failed_at, run_id",
        )
        .bind(version.as_str())
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let version: String = row.try_get("version")?;
                Ok(ConsumerCiFailure {
                    run_id: row.try_get("run_id")?,
                    run_attempt: row.try_get("run_attempt")?,
                    repository: row.try_get("repository")?,
                    version: version
                        .parse()
                        .map_err(|e| DatabaseError::Corrupt(format!("CI failure version: {e}")))?,
                    conclusion: row.try_get("conclusion")?,
                    html_url: row.try_get("html_url")?,
                    failed_at: row.try_get("failed_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::testing::on_each_backend;

    on_each_backend! {
        async fn a_version_keeps_its_first_entry_until_it_leaves(database) {
            let version: Version = "1.2.3".parse().unwrap();
            let canary: ChannelName = "canary".parse().unwrap();
            database
                .enter_channel_at(&version, &canary, 1, "2026-01-01T00:00:00Z")
                .await
                .unwrap();
            database
                .enter_channel_at(&version, &canary, 2, "2026-01-02T00:00:00Z")
                .await
                .unwrap();
            let entries = database.channel_entries().await.unwrap();
            assert_eq!(
                entries,
                [ChannelEntry {
                    version: version.clone(),
                    channel: canary.clone(),
                    job_id: 1,
                    entered_at: "2026-01-01T00:00:00Z".into(),
                }]
            );
            database
                .forget_channel_entry(&version, &canary)
                .await
                .unwrap();
            assert!(database.channel_entries().await.unwrap().is_empty());
        }
    }

    on_each_backend! {
        async fn failures_count_from_a_time_and_each_run_attempt_once(database) {
            let version: Version = "1.2.3".parse().unwrap();
            let failure = |attempt: i64, at: &str| ConsumerCiFailure {
                run_id: 7,
                run_attempt: attempt,
                repository: "acme/fleet".into(),
                version: version.clone(),
                conclusion: "failure".into(),
                html_url: None,
                failed_at: at.into(),
            };
            database
                .record_ci_failure(&failure(1, "2026-01-01T00:00:00Z"))
                .await
                .unwrap();
            database
                .record_ci_failure(&failure(1, "2026-01-03T00:00:00Z"))
                .await
                .unwrap();
            database
                .record_ci_failure(&failure(2, "2026-01-02T00:00:00Z"))
                .await
                .unwrap();
            let since = database
                .ci_failures_since(&version, "2026-01-01T12:00:00Z")
                .await
                .unwrap();
            assert_eq!(since, [failure(2, "2026-01-02T00:00:00Z")]);
            let other: Version = "1.2.4".parse().unwrap();
            assert!(
                database
                    .ci_failures_since(&other, "2020-01-01T00:00:00Z")
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }
}
