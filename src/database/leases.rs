//! Named leases, each held by one replica at a time: the `leader` runs the inbox and the
//! scheduled tasks. A holder renews its lease well before it lapses; when it stops renewing
//! (killed, paused, cut off), another replica takes the lease once it has lapsed, with the
//! next generation.

use std::time::Duration;

use super::{Database, DatabaseError, timestamp};

/// A lease as held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    pub owner: String,
    pub generation: i64,
    pub expires_at: String,
}

impl Database {
    /// Takes or renews the lease `name` for the replica `owner`, for `lease_for`: it is
    /// taken when free, lapsed, or `owner`'s already. Returns the lease's generation, the
    /// same while one owner keeps renewing it; `None` while another replica holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        lease_for: Duration,
    ) -> Result<Option<i64>, DatabaseError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO leases (name, owner, generation, expires_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (name) DO UPDATE SET
                 generation = CASE WHEN leases.owner = excluded.owner
                                   THEN leases.generation ELSE leases.generation + 1 END,
                 owner = excluded.owner,
                 expires_at = excluded.expires_at
             WHERE leases.owner = excluded.owner OR leases.expires_at <= $4
             RETURNING generation",
        )
        .bind(name)
        .bind(owner)
        .bind(timestamp::after(lease_for))
        .bind(timestamp::now())
        .fetch_optional(self.pool())
        .await?)
    }

    /// Whether `owner` still holds the lease `name` at `generation`, renewing it for
    /// `lease_for` if so.
    pub async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        generation: i64,
        lease_for: Duration,
    ) -> Result<bool, DatabaseError> {
        let renewed = sqlx::query(
            "UPDATE leases SET expires_at = $1 WHERE name = $2 AND owner = $3 AND generation = $4",
        )
        .bind(timestamp::after(lease_for))
        .bind(name)
        .bind(owner)
        .bind(generation)
        .execute(self.pool())
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives the lease `name` up, if `owner` holds it: another replica may take it at once.
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<(), DatabaseError> {
        sqlx::query("UPDATE leases SET expires_at = $1 WHERE name = $2 AND owner = $3")
            .bind(timestamp::now())
            .bind(name)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Gives up every lease `owner` holds: its running jobs' (which another replica then
    /// resumes at their step) and its named leases.
    pub async fn release_leases_of(&self, owner: &str) -> Result<(), DatabaseError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE jobs SET lease_expires_at = NULL WHERE state = 'running' AND lease_owner = $1",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE leases SET expires_at = $1 WHERE owner = $2")
            .bind(timestamp::now())
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives every named lease up: a single-replica server (SQLite) starting up is the only
    /// one that could hold them.
    pub async fn release_all_leases(&self) -> Result<(), DatabaseError> {
        sqlx::query("UPDATE leases SET expires_at = $1")
            .bind(timestamp::now())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Who holds the lease `name`, if anyone ever took it (it may have lapsed).
    pub async fn lease(&self, name: &str) -> Result<Option<HeldLease>, DatabaseError> {
        let row: Option<(String, i64, String)> =
            sqlx::query_as("SELECT owner, generation, expires_at FROM leases WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(owner, generation, expires_at)| HeldLease {
            owner,
            generation,
            expires_at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::testing::on_each_backend;

    const MINUTE: Duration = Duration::from_secs(60);

    on_each_backend! {
        async fn a_lease_has_one_holder_until_it_lapses_or_is_given_up(database) {
            assert_eq!(database.acquire_lease("leader", "a", MINUTE).await.unwrap(), Some(1));
            assert_eq!(database.acquire_lease("leader", "b", MINUTE).await.unwrap(), None);
            // Renewed by its holder: the same generation.
            assert_eq!(database.acquire_lease("leader", "a", MINUTE).await.unwrap(), Some(1));
            assert!(database.renew_lease("leader", "a", 1, MINUTE).await.unwrap());
            assert!(!database.renew_lease("leader", "b", 1, MINUTE).await.unwrap());
            // Another lease is another name.
            assert_eq!(database.acquire_lease("other", "b", MINUTE).await.unwrap(), Some(1));

            // Lapsed: the next replica takes it, with the next generation, and the old
            // holder's renewal fails.
            assert_eq!(
                database.acquire_lease("leader", "a", Duration::ZERO).await.unwrap(),
                Some(1)
            );
            assert_eq!(database.acquire_lease("leader", "b", MINUTE).await.unwrap(), Some(2));
            assert!(!database.renew_lease("leader", "a", 1, MINUTE).await.unwrap());
            assert_eq!(database.lease("leader").await.unwrap().unwrap().owner, "b");

            // Given up: taken at once.
            database.release_lease("leader", "a").await.unwrap();
            assert_eq!(database.acquire_lease("leader", "c", MINUTE).await.unwrap(), None);
            database.release_lease("leader", "b").await.unwrap();
            assert_eq!(database.acquire_lease("leader", "c", MINUTE).await.unwrap(), Some(3));
        }
    }
}
