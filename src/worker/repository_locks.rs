//! The repository write locks replicas share, as PostgreSQL advisory locks: a write to a
//! repository runs inside a transaction that holds the repository's lock, and commits when
//! the write is done. A replica that dies holding one loses its connection, and with it the
//! lock; one paused while holding it has its session ended by the server after
//! [`IDLE_LIMIT`], so the others wait that long at most.

use std::future::Future;
use std::pin::Pin;

use crate::database::Database;
use crate::github::shared_write_locks::{Locking, SharedWriteLock, SharedWriteLocks};

/// How long a transaction holding a repository's lock may sit idle (the write's HTTP
/// request and its retries) before PostgreSQL ends the session and frees the lock.
pub const IDLE_LIMIT: &str = "120s";

/// Namespaces the repository locks among the database's advisory locks ("repo").
const LOCK_SPACE: i32 = 0x7265_706f;

/// The repository locks of the replicas sharing `database` (PostgreSQL).
pub struct RepositoryWriteLocks {
    database: Database,
}

impl RepositoryWriteLocks {
    pub fn new(database: Database) -> Self {
        RepositoryWriteLocks { database }
    }
}

impl SharedWriteLocks for RepositoryWriteLocks {
    fn lock<'a>(&'a self, repository: &'a str) -> Locking<'a> {
        Box::pin(async move {
            let taken = async {
                let mut tx = self.database.pool().begin().await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SET LOCAL idle_in_transaction_session_timeout = '{IDLE_LIMIT}'"
                )))
                .execute(&mut *tx)
                .await?;
                // pg_advisory_xact_lock returns `void`, which the Any driver cannot read.
                sqlx::query(
                    "SELECT 1 FROM (SELECT pg_advisory_xact_lock($1, hashtext(lower($2)))) AS locked",
                )
                .bind(LOCK_SPACE)
                .bind(repository)
                .execute(&mut *tx)
                .await?;
                Ok::<_, sqlx::Error>(tx)
            };
            match taken.await {
                Ok(tx) => Ok(Box::new(Held(tx)) as Box<dyn SharedWriteLock>),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}

/// A repository's lock: the transaction that holds it.
struct Held(sqlx::Transaction<'static, sqlx::Any>);

impl SharedWriteLock for Held {
    fn release(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if let Err(error) = self.0.commit().await {
                // The session ended (the idle limit passed): the lock is free already.
                tracing::warn!(%error, "releasing a repository's write lock");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::Backend;
    use crate::database::testing::TestDatabase;
    use std::time::Duration;

    #[tokio::test]
    async fn one_write_to_a_repository_at_a_time_across_replicas() {
        let test = TestDatabase::open(Backend::Postgres).await;
        // Two replicas' connections.
        let other = Database::open(Some(test.url()), std::path::Path::new("/nonexistent"))
            .await
            .unwrap();
        let (here, there) = (
            RepositoryWriteLocks::new((*test).clone()),
            RepositoryWriteLocks::new(other),
        );
        let held = here.lock("Owner/Repo").await.unwrap();
        // Another repository is free; the same one, in any case, waits.
        there.lock("owner/other").await.unwrap().release().await;
        let waiting = tokio::time::timeout(Duration::from_millis(300), there.lock("owner/repo"));
        assert!(
            waiting.await.is_err(),
            "the same repository was locked twice"
        );
        held.release().await;
        let taken = tokio::time::timeout(Duration::from_secs(5), there.lock("owner/repo"));
        taken
            .await
            .expect("free once released")
            .unwrap()
            .release()
            .await;
    }
}
