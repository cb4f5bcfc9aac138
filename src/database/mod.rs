//! The state database (SQLite): the webhook inbox, jobs and who asked for them, installations,
//! comment replies and refusals, and the comments and workflow runs handled once for good.

pub mod command_refusals;
pub mod comment_replies;
pub mod deliveries;
pub mod handled_comments;
pub mod installations;
pub mod job_requests;
pub mod job_steps;
pub mod jobs;
pub mod retention;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: SqlitePool,
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("DATABASE_URL {url:?} is not a SQLite URL: {source}")]
    BadUrl { url: String, source: sqlx::Error },
    #[error("opening the database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("updating the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database holds something unreadable: {0}")]
    Corrupt(String),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

impl Database {
    /// Opens (creating if needed) the database at `url` (`DATABASE_URL`), or the SQLite
    /// file `alloy-sysext.db` in `data_dir`, and brings its schema up to date.
    ///
    /// Every commit is synced to disk before it returns (WAL, `synchronous=FULL`): a
    /// delivery acknowledged to GitHub survives a crash or power loss. Waits for locks are
    /// short, so that a busy database answers in time for GitHub's 10-second deadline.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Database, DatabaseError> {
        let (options, shown) = match url {
            Some(url) => {
                let options = SqliteConnectOptions::from_str(url).map_err(|source| {
                    DatabaseError::BadUrl {
                        url: url.to_owned(),
                        source,
                    }
                })?;
                (options, url.to_owned())
            }
            None => {
                let file = data_dir.join("alloy-sysext.db");
                let shown = file.display().to_string();
                (SqliteConnectOptions::new().filename(file), shown)
            }
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|source| DatabaseError::Open { url: shown, source })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Database { pool })
    }

    /// True when the database answers.
    pub async fn is_reachable(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_are_synced_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(None, dir.path()).await.unwrap();
        let mut connection = database.pool().acquire().await.unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(synchronous, 2, "synchronous must be FULL");
        assert_eq!(journal, "wal");
        assert!(dir.path().join("alloy-sysext.db").exists());
    }
}
