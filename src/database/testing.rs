//! Databases for the unit tests, on each backend: a SQLite file in a temporary directory,
//! or a fresh database on the test process's PostgreSQL server
//! (`tests/support/postgres.rs`).

use std::ops::Deref;

use super::{Backend, Database};

#[allow(dead_code)]
#[path = "../../tests/support/postgres.rs"]
pub mod postgres_server;

/// A database that lives as long as the test holds it.
pub struct TestDatabase {
    database: Database,
    /// Where the SQLite file is.
    dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database's URL.
    url: Option<String>,
}

impl TestDatabase {
    /// A new, empty database on `backend`, with the schema.
    pub async fn open(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let database = Database::open(None, dir.path()).await.unwrap();
                TestDatabase {
                    database,
                    dir: Some(dir),
                    url: None,
                }
            }
            Backend::Postgres => {
                let url = tokio::task::spawn_blocking(|| postgres_server::shared().new_database())
                    .await
                    .unwrap();
                let unused = std::path::Path::new("/nonexistent");
                let database = Database::open(Some(&url), unused).await.unwrap();
                TestDatabase {
                    database,
                    dir: None,
                    url: Some(url),
                }
            }
        }
    }
}

impl TestDatabase {
    /// The PostgreSQL database's URL; panics for SQLite.
    pub fn url(&self) -> &str {
        self.url.as_deref().expect("a PostgreSQL test database")
    }

    /// The same database opened again, as a restarted server opens it.
    pub async fn reopen(&self) -> Database {
        match (&self.dir, &self.url) {
            (Some(dir), _) => Database::open(None, dir.path()).await.unwrap(),
            (None, Some(url)) => Database::open(Some(url), std::path::Path::new("/nonexistent"))
                .await
                .unwrap(),
            (None, None) => unreachable!("a test database is a file or a URL"),
        }
    }
}

impl Deref for TestDatabase {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.database
    }
}

/// Runs a test once on each backend: `on_each_backend! { async fn name(database) { … } }`
/// makes the tests `name::sqlite` and `name::postgres`, each with a fresh `database`
/// (a [`Database`]). `async fn name(database, test) { … }` also gives the
/// [`TestDatabase`], to open it again.
macro_rules! on_each_backend {
    ($(#[$meta:meta])* async fn $name:ident($database:ident, $test:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(
                $database: $crate::database::Database,
                $test: &$crate::database::testing::TestDatabase,
            ) $body

            #[tokio::test]
            async fn sqlite() {
                let test = $crate::database::testing::TestDatabase::open(
                    $crate::database::Backend::Sqlite,
                )
                .await;
                run((*test).clone(), &test).await;
            }

            #[tokio::test]
            async fn postgres() {
                let test = $crate::database::testing::TestDatabase::open(
                    $crate::database::Backend::Postgres,
                )
                .await;
                run((*test).clone(), &test).await;
            }
        }
    };
    ($(
        $(#[$meta:meta])*
        async fn $name:ident($database:ident) $body:block
    )*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($database: $crate::database::Database) $body

            #[tokio::test]
            async fn sqlite() {
                let test = $crate::database::testing::TestDatabase::open(
                    $crate::database::Backend::Sqlite,
                )
                .await;
                run((*test).clone()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let test = $crate::database::testing::TestDatabase::open(
                    $crate::database::Backend::Postgres,
                )
                .await;
                run((*test).clone()).await;
            }
        }
    )*};
}
pub(crate) use on_each_backend;

/// A job lease long enough for any unit test.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(600);
