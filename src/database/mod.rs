//! The state database (SQLite): the webhook inbox, jobs and who asked for them, installations,
//! comment replies and refusals, the comments and workflow runs handled once for good, and
//! the published files scheduled to leave storage.
//! Timestamps are stored as text that sorts in time order ([`timestamp`]).

pub mod channel_entries;
pub mod command_refusals;
pub mod comment_replies;
pub mod deliveries;
pub mod handled_comments;
pub mod installations;
pub mod job_requests;
pub mod job_result;
pub mod job_steps;
pub mod jobs;
pub mod retention;
pub mod storage_removals;
mod stored_name;
pub mod timestamp;
pub mod withdrawals;

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
    /// A reader that must not change the schema found another one than it knows.
    #[error(
        "the database {url} has schema version {found}, this binary reads version {expected}: \
         run the same version of alloy-sysext-automation as the server"
    )]
    SchemaMismatch {
        url: String,
        found: i64,
        expected: i64,
    },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// The SQLite file in `DATA_DIR` that holds the database when `DATABASE_URL` is not set.
pub const DATABASE_FILE: &str = "alloy-sysext.db";

impl Database {
    /// Opens (creating if needed) the database at `url` (`DATABASE_URL`), or the SQLite
    /// file `alloy-sysext.db` in `data_dir`, and brings its schema up to date.
    ///
    /// Every commit is synced to disk before it returns (WAL, `synchronous=FULL`): a
    /// delivery acknowledged to GitHub survives a crash or power loss. Waits for locks are
    /// short, so that a busy database answers in time for GitHub's 10-second deadline.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Database, DatabaseError> {
        let (options, shown) = location(url, data_dir)?;
        let file = options.get_filename().to_owned();
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
        // A file made before (by an older version, or by hand, wherever DATABASE_URL
        // points) keeps its mode; SQLite gives the database's mode to its -wal and -shm.
        make_owner_only(&file);
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Database { pool })
    }

    /// Opens the server's database to read only: nothing is created, no schema is changed,
    /// and a schema other than this binary's is refused (a newer binary must not upgrade
    /// the schema under an older server, nor an older one read a newer schema).
    pub async fn open_read_only(
        url: Option<&str>,
        data_dir: &Path,
    ) -> Result<Database, DatabaseError> {
        Self::open_beside_server(url, data_dir, true).await
    }

    /// Opens the server's database to add to its job queue, as the CLI's `withdraw` does:
    /// like [`Self::open_read_only`], nothing is created and the schema must be this
    /// binary's, but rows may be written.
    pub async fn open_existing(
        url: Option<&str>,
        data_dir: &Path,
    ) -> Result<Database, DatabaseError> {
        Self::open_beside_server(url, data_dir, false).await
    }

    async fn open_beside_server(
        url: Option<&str>,
        data_dir: &Path,
        read_only: bool,
    ) -> Result<Database, DatabaseError> {
        let (options, shown) = location(url, data_dir)?;
        let options = options
            .read_only(read_only)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|source| DatabaseError::Open {
                url: shown.clone(),
                source,
            })?;
        let expected = sqlx::migrate!("./migrations")
            .iter()
            .map(|migration| migration.version)
            .max()
            .unwrap_or(0);
        let found: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        if found != expected {
            return Err(DatabaseError::SchemaMismatch {
                url: shown,
                found,
                expected,
            });
        }
        Ok(Database { pool })
    }

    /// True when the database answers.
    pub async fn is_reachable(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that holds the write lock from its start, for those that read and then
    /// write on what they read. A deferred one would take the lock only at its first write,
    /// and fail with `SQLITE_BUSY_SNAPSHOT` if another connection (the job loop) wrote in
    /// between; this one makes the other writer wait (`busy_timeout`) instead.
    pub(crate) async fn begin_immediate(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

/// The connection options for `url` (`DATABASE_URL`), or the file `alloy-sysext.db` in
/// `data_dir`, and how to name it in errors.
fn location(
    url: Option<&str>,
    data_dir: &Path,
) -> Result<(SqliteConnectOptions, String), DatabaseError> {
    Ok(match url {
        Some(url) => {
            let options =
                SqliteConnectOptions::from_str(url).map_err(|source| DatabaseError::BadUrl {
                    url: url.to_owned(),
                    source,
                })?;
            (options, url.to_owned())
        }
        None => {
            let file = data_dir.join(DATABASE_FILE);
            let shown = file.display().to_string();
            (SqliteConnectOptions::new().filename(file), shown)
        }
    })
}

/// Makes the database file `file` and its journals readable by its owner alone; one that
/// cannot be changed (another user's, an in-memory database) is left as it is, with a
/// warning when it is open to others.
fn make_owner_only(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let name = file.as_os_str().to_string_lossy();
    if name.is_empty() || name == ":memory:" {
        return;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = std::path::PathBuf::from(format!("{name}{suffix}"));
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), was = format!("{mode:o}"), "the database was readable by others; it is now the owner's only")
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), %error, "the database is readable by others and could not be made the owner's only")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_only_open_creates_nothing_and_refuses_another_schema() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Database::open_read_only(None, dir.path()).await,
            Err(DatabaseError::Open { .. })
        ));
        assert!(!dir.path().join("alloy-sysext.db").exists());

        let database = Database::open(None, dir.path()).await.unwrap();
        let reader = Database::open_read_only(None, dir.path()).await.unwrap();
        assert!(reader.installations().await.unwrap().is_empty());
        assert!(
            sqlx::query("CREATE TABLE t (n INTEGER)")
                .execute(reader.pool())
                .await
                .is_err(),
            "a read-only database takes a write"
        );
        drop(reader);

        // A newer server's migration, unknown to this binary.
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (99990101000000, 'newer', TRUE, x'00', 0)",
        )
        .execute(database.pool())
        .await
        .unwrap();
        let error = Database::open_read_only(None, dir.path())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                error,
                DatabaseError::SchemaMismatch {
                    found: 99990101000000,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_read_then_write_transaction_is_not_broken_by_a_write_in_between() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(None, dir.path()).await.unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(database.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (0)")
            .execute(database.pool())
            .await
            .unwrap();
        let mut tx = database.begin_immediate().await.unwrap();
        let read: i64 = sqlx::query_scalar("SELECT n FROM t")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        // Another connection writes meanwhile: it waits for the transaction.
        let other = database.clone();
        let writer = tokio::spawn(async move {
            sqlx::query("UPDATE t SET n = n + 10")
                .execute(other.pool())
                .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query("UPDATE t SET n = ? + 1")
            .bind(read)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        writer.await.unwrap().unwrap();
        let n: i64 = sqlx::query_scalar("SELECT n FROM t")
            .fetch_one(database.pool())
            .await
            .unwrap();
        assert_eq!(n, 11);
    }

    #[tokio::test]
    async fn a_database_outside_data_dir_is_made_the_owners_only_too() {
        use std::os::unix::fs::PermissionsExt;
        let data_dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let file = elsewhere.path().join("state.db");
        // Made before, open to everyone.
        Database::open(
            Some(&format!("sqlite://{}", file.display())),
            data_dir.path(),
        )
        .await
        .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", file.display());
            if std::path::Path::new(&path).exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _database = Database::open(
            Some(&format!("sqlite://{}", file.display())),
            data_dir.path(),
        )
        .await
        .unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for suffix in ["-wal", "-shm"] {
            let path = format!("{}{suffix}", file.display());
            if let Ok(metadata) = std::fs::metadata(&path) {
                assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "{path}");
            }
        }
        assert!(std::fs::read_dir(data_dir.path()).unwrap().next().is_none());
    }

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
