//! The state database: the webhook inbox, jobs and who asked for them, installations,
//! comment replies and refusals, the comments and workflow runs handled once for good, and
//! the published files scheduled to leave storage.
//!
//! SQLite by default (one file, one replica), or PostgreSQL, which several replicas share.
//! Queries are written once, in SQL both engines read (numbered `$1` parameters, `ON
//! CONFLICT`, `RETURNING`), and run through sqlx's `Any` driver; each engine has its own
//! migrations (`migrations/sqlite`, `migrations/postgres`) with the same versions.
//! Timestamps are stored as text that sorts in time order ([`timestamp`]).

pub mod channel_entries;
pub mod command_refusals;
pub mod comment_replies;
pub mod deliveries;
pub mod handled_comments;
pub mod installations;
pub mod job_leases;
pub mod job_requests;
pub mod job_result;
pub mod job_steps;
pub mod jobs;
pub mod leases;
pub mod retention;
pub mod scheduled_runs;
pub mod storage_removals;
mod stored_name;
#[cfg(test)]
pub(crate) mod testing;
pub mod timestamp;
pub mod withdrawals;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};

/// Which database engine holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file beside the server (the default): one replica.
    Sqlite,
    /// A PostgreSQL server that several replicas share.
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error(
        "DATABASE_URL {url:?} is neither a SQLite URL (sqlite:PATH) nor a PostgreSQL URL \
         (postgres://USER@HOST/DATABASE): {reason}"
    )]
    BadUrl { url: String, reason: String },
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
    /// A write for a job this replica no longer runs: another took it over after its
    /// lease lapsed.
    #[error("job {job} was taken over by another replica; nothing more is written for it here")]
    LeaseLost { job: i64 },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// The SQLite file in `DATA_DIR` that holds the database when `DATABASE_URL` is not set.
pub const DATABASE_FILE: &str = "alloy-sysext.db";

/// The PostgreSQL advisory lock that [`Database::begin_immediate`] takes: it makes writers
/// that read first wait for each other, as SQLite's single write lock does.
const POSTGRES_WRITE_LOCK: i64 = 0x616c_6c6f_7977_7269; // "alloywri"

impl Database {
    /// Opens (creating if needed) the database at `url` (`DATABASE_URL`: `sqlite:…` or
    /// `postgres://…`), or the SQLite file `alloy-sysext.db` in `data_dir`, and brings its
    /// schema up to date.
    ///
    /// SQLite: every commit is synced to disk before it returns (WAL, `synchronous=FULL`): a
    /// delivery acknowledged to GitHub survives a crash or power loss. Waits for locks are
    /// short, so that a busy database answers in time for GitHub's 10-second deadline.
    /// PostgreSQL: several replicas may open the same database at once; the schema is
    /// brought up to date under PostgreSQL's migration lock, by the first.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Database, DatabaseError> {
        let location = Location::parse(url, data_dir)?;
        let database = location.connect(Access::Create, 8).await?;
        if let Location::Sqlite { file, .. } = &location {
            // A file made before (by an older version, or by hand, wherever DATABASE_URL
            // points) keeps its mode; SQLite gives the database's mode to its -wal and -shm.
            make_owner_only(file);
        }
        database.migrator().run(&database.pool).await?;
        Ok(database)
    }

    /// Which engine `url` (else the SQLite file in `data_dir`) names, with `url` checked as
    /// [`Self::open`] checks it, without connecting.
    pub fn backend_of(url: Option<&str>, data_dir: &Path) -> Result<Backend, DatabaseError> {
        Ok(match Location::parse(url, data_dir)? {
            Location::Sqlite { .. } => Backend::Sqlite,
            Location::Postgres { .. } => Backend::Postgres,
        })
    }

    /// Opens the server's database to read only: nothing is created, no schema is changed,
    /// and a schema other than this binary's is refused (a newer binary must not upgrade
    /// the schema under an older server, nor an older one read a newer schema).
    pub async fn open_read_only(
        url: Option<&str>,
        data_dir: &Path,
    ) -> Result<Database, DatabaseError> {
        Self::open_beside_server(url, data_dir, Access::ReadOnly).await
    }

    /// Opens the server's database to add to its job queue, as the CLI's `withdraw` does:
    /// like [`Self::open_read_only`], nothing is created and the schema must be this
    /// binary's, but rows may be written.
    pub async fn open_existing(
        url: Option<&str>,
        data_dir: &Path,
    ) -> Result<Database, DatabaseError> {
        Self::open_beside_server(url, data_dir, Access::Write).await
    }

    async fn open_beside_server(
        url: Option<&str>,
        data_dir: &Path,
        access: Access,
    ) -> Result<Database, DatabaseError> {
        let location = Location::parse(url, data_dir)?;
        let database = location.connect(access, 2).await?;
        let expected = database
            .migrator()
            .iter()
            .map(|migration| migration.version)
            .max()
            .unwrap_or(0);
        let found: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&database.pool)
        .await
        .unwrap_or(0);
        if found != expected {
            return Err(DatabaseError::SchemaMismatch {
                url: location.shown().to_owned(),
                found,
                expected,
            });
        }
        Ok(database)
    }

    /// Which engine holds the state.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The schema this binary brings its backend to. Both directories hold the same
    /// versions, each in its engine's dialect.
    ///
    /// A migration this binary does not know, applied by a newer version, is no error:
    /// during a rolling deploy the older replicas keep running (and restarting) on the
    /// newer schema, which every migration keeps usable by the version before it.
    fn migrator(&self) -> sqlx::migrate::Migrator {
        let mut migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.set_ignore_missing(true);
        migrator
    }

    /// True when the database answers.
    pub async fn is_reachable(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that holds the write lock from its start, for those that read and then
    /// write on what they read. On SQLite, a deferred one would take the lock only at its
    /// first write, and fail with `SQLITE_BUSY_SNAPSHOT` if another connection (the job
    /// loop) wrote in between; this one makes the other writer wait (`busy_timeout`)
    /// instead. On PostgreSQL, it takes one advisory lock, held to its end, which every such
    /// transaction (on any replica) takes first.
    pub(crate) async fn begin_immediate(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                // A replica paused or cut off while holding the lock must not hold up the
                // others: the server ends its session (freeing the lock) once it sits idle,
                // and a waiter gives up after a while instead of waiting for ever.
                sqlx::query(
                    "SELECT set_config('idle_in_transaction_session_timeout', '10s', true),
                            set_config('lock_timeout', '15s', true)",
                )
                .execute(&mut *tx)
                .await?;
                // pg_advisory_xact_lock returns `void`, which the Any driver cannot read.
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
                    .bind(POSTGRES_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }
}

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Create the database file if it is missing, and change the schema.
    Create,
    /// Write rows into a database that exists.
    Write,
    /// Read only.
    ReadOnly,
}

/// Where the database is, and how to name it in errors and logs (without a password).
#[derive(Debug)]
enum Location {
    Sqlite {
        options: Box<SqliteConnectOptions>,
        file: PathBuf,
        shown: String,
    },
    Postgres {
        url: String,
        shown: String,
    },
}

impl Location {
    /// `url` (`DATABASE_URL`), or the file `alloy-sysext.db` in `data_dir`.
    fn parse(url: Option<&str>, data_dir: &Path) -> Result<Location, DatabaseError> {
        let Some(url) = url else {
            let file = data_dir.join(DATABASE_FILE);
            return Ok(Location::Sqlite {
                options: Box::new(SqliteConnectOptions::new().filename(&file)),
                shown: file.display().to_string(),
                file,
            });
        };
        let shown = shown_url(url);
        let bad = |reason: String| DatabaseError::BadUrl {
            url: shown.clone(),
            reason,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Checked here, so that a mistyped URL is named before any connection is tried.
            // Its message may quote the URL: only its kind is told.
            PgConnectOptions::from_str(url).map_err(|_| {
                bad(
                    "the PostgreSQL driver cannot read it (check the host, port and \
                     percent-encoding of the user and password)"
                        .to_owned(),
                )
            })?;
            Ok(Location::Postgres {
                url: url.to_owned(),
                shown,
            })
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            Ok(Location::Sqlite {
                file: options.get_filename().to_owned(),
                options: Box::new(options),
                shown,
            })
        } else {
            Err(bad(
                "it starts with neither `sqlite:` nor `postgres://`".to_owned()
            ))
        }
    }

    fn shown(&self) -> &str {
        match self {
            Location::Sqlite { shown, .. } | Location::Postgres { shown, .. } => shown,
        }
    }

    /// A pool of at most `connections` connections with `access`.
    async fn connect(&self, access: Access, connections: u32) -> Result<Database, DatabaseError> {
        sqlx::any::install_default_drivers();
        let open_error = |source| DatabaseError::Open {
            url: self.shown().to_owned(),
            source,
        };
        let pool_options = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(5));
        let (pool_options, any_options, backend) = match self {
            Location::Sqlite { options, .. } => {
                let options = SqliteConnectOptions::clone(options)
                    .create_if_missing(access == Access::Create)
                    .read_only(access == Access::ReadOnly);
                // The Any driver opens SQLite from a URL, which carries the file and its
                // mode; the journal and sync settings are set on each new connection.
                let any_options =
                    AnyConnectOptions::from_url(&options.to_url_lossy()).map_err(open_error)?;
                let pool_options = pool_options.after_connect(move |connection, _| {
                    Box::pin(async move {
                        if access != Access::ReadOnly {
                            connection.execute("PRAGMA journal_mode = WAL").await?;
                        }
                        connection.execute("PRAGMA synchronous = FULL").await?;
                        Ok(())
                    })
                });
                (pool_options, any_options, Backend::Sqlite)
            }
            Location::Postgres { url, .. } => {
                let any_options = AnyConnectOptions::from_str(url).map_err(open_error)?;
                let pool_options = pool_options.after_connect(move |connection, _| {
                    Box::pin(async move {
                        if access == Access::ReadOnly {
                            connection
                                .execute("SET default_transaction_read_only = on")
                                .await?;
                        }
                        Ok(())
                    })
                });
                (pool_options, any_options, Backend::Postgres)
            }
        };
        let pool = pool_options
            .connect_with(any_options)
            .await
            .map_err(open_error)?;
        Ok(Database { pool, backend })
    }
}

/// How `url` (`DATABASE_URL`) is shown in logs, errors and `config`: a PostgreSQL URL as its
/// user, host, port and database only, read by the same parser that connects, so that no
/// password (in the user information, or a `password=` parameter) is ever shown, whatever
/// characters it holds; a SQLite URL as it is.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, _)) = url.split_once("://") else {
        return url.to_owned();
    };
    if scheme != "postgres" && scheme != "postgresql" {
        return url.to_owned();
    }
    match PgConnectOptions::from_str(url) {
        Ok(options) => {
            let database = options.get_database().unwrap_or("");
            let options_hidden = if url.contains('?') { "?…" } else { "" };
            format!(
                "{scheme}://{}@{}:{}/{database}{options_hidden}",
                options.get_username(),
                options.get_host(),
                options.get_port()
            )
        }
        Err(_) => format!("{scheme}://… (not a URL the PostgreSQL driver reads)"),
    }
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
        sqlx::query("UPDATE t SET n = $1 + 1")
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
    async fn a_read_only_postgres_connection_takes_no_write_and_refuses_another_schema() {
        let test = testing::TestDatabase::open(Backend::Postgres).await;
        let url = test.url().to_owned();
        let unused = Path::new("/nonexistent");
        let reader = Database::open_read_only(Some(&url), unused).await.unwrap();
        assert_eq!(reader.backend(), Backend::Postgres);
        assert!(reader.installations().await.unwrap().is_empty());
        assert!(
            sqlx::query("CREATE TABLE t (n BIGINT)")
                .execute(reader.pool())
                .await
                .is_err(),
            "a read-only database takes a write"
        );
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (99990101000000, 'newer', TRUE, '\\x00'::bytea, 0)",
        )
        .execute(test.pool())
        .await
        .unwrap();
        let error = Database::open_existing(Some(&url), unused)
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

    /// On PostgreSQL, transactions that read and then write take turns, on every replica.
    #[tokio::test]
    async fn postgres_read_then_write_transactions_take_turns() {
        let test = testing::TestDatabase::open(Backend::Postgres).await;
        let url = test.url().to_owned();
        // Another replica's connection.
        let other = Database::open(Some(&url), Path::new("/nonexistent"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n BIGINT)")
            .execute(test.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (0)")
            .execute(test.pool())
            .await
            .unwrap();
        let mut tx = test.begin_immediate().await.unwrap();
        let read: i64 = sqlx::query_scalar("SELECT n FROM t")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let writer = tokio::spawn(async move {
            let mut tx = other.begin_immediate().await?;
            let read: i64 = sqlx::query_scalar("SELECT n FROM t")
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("UPDATE t SET n = $1 + 10")
                .bind(read)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!writer.is_finished(), "the other transaction did not wait");
        sqlx::query("UPDATE t SET n = $1 + 1")
            .bind(read)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        writer.await.unwrap().unwrap();
        let n: i64 = sqlx::query_scalar("SELECT n FROM t")
            .fetch_one(test.pool())
            .await
            .unwrap();
        assert_eq!(n, 11);
    }

    testing::on_each_backend! {
        /// During a rolling deploy, an older replica restarts on a schema a newer one
        /// brought further.
        async fn a_schema_migrated_further_by_a_newer_version_still_opens(database, test) {
            let checksum = match database.backend() {
                Backend::Sqlite => "x'00'",
                Backend::Postgres => "'\\x00'::bytea",
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO _sqlx_migrations
                     (version, description, success, checksum, execution_time)
                 VALUES (99990101000000, 'newer', TRUE, {checksum}, 0)"
            )))
            .execute(database.pool())
            .await
            .unwrap();
            let reopened = test.reopen().await;
            assert!(reopened.installations().await.unwrap().is_empty());
        }
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            shown_url("postgres://app:s3cr%40t@db.internal:5432/alloy?sslmode=require"),
            "postgres://app@db.internal:5432/alloy?…"
        );
        assert_eq!(
            shown_url("postgresql://app@db/alloy?password=hunter2"),
            "postgresql://app@db:5432/alloy?…"
        );
        assert_eq!(shown_url("sqlite:/data/a.db"), "sqlite:/data/a.db");
        for url in [
            "postgres://app:hunter2@db:notaport/alloy",
            "postgres://app:ab#hunter2@db/alloy",
            "postgres://app:a/hunter2@db/alloy",
        ] {
            let shown = shown_url(url);
            assert!(!shown.contains("hunter2"), "{shown}");
            if let Err(error) = Location::parse(Some(url), Path::new("/data")) {
                let error = error.to_string();
                assert!(!error.contains("hunter2"), "{error}");
            }
        }
        let error = Location::parse(
            Some("postgres://app:hunter2@db:notaport/alloy"),
            Path::new("/data"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("the PostgreSQL driver cannot read it"),
            "{error}"
        );
        let error = Location::parse(Some("mysql://db/alloy"), Path::new("/data"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "DATABASE_URL \"mysql://db/alloy\" is neither a SQLite URL (sqlite:PATH) nor a \
             PostgreSQL URL (postgres://USER@HOST/DATABASE): it starts with neither `sqlite:` \
             nor `postgres://`"
        );
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
