//! The state database (SQLite): the webhook inbox, and later jobs and installations.

pub mod deliveries;

use std::str::FromStr;

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
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

impl Database {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    ///
    /// Every commit is synced to disk before it returns (WAL, `synchronous=FULL`): a
    /// delivery acknowledged to GitHub survives a crash or power loss.
    pub async fn open(url: &str) -> Result<Database, DatabaseError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| DatabaseError::BadUrl {
                url: url.to_owned(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| DatabaseError::Open {
                url: url.to_owned(),
                source,
            })?;
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
