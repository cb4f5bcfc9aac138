//! The webhook inbox: deliveries as GitHub sent them, and how far each has been handled.

use serde::Serialize;
use sqlx::Row;

use super::{Database, DatabaseError};

/// A verified delivery, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredDelivery {
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository: Option<String>,
    pub received_at: String,
    pub state: String,
}

/// A delivery about to be stored.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub event: &'a str,
    pub action: Option<&'a str>,
    pub installation_id: Option<i64>,
    pub repository: Option<&'a str>,
    pub payload: &'a str,
    pub received_at: &'a str,
}

/// Whether a delivery was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The same `X-GitHub-Delivery` was stored before (a redelivery); nothing changed.
    AlreadyStored,
}

impl Database {
    /// Stores `delivery` unless one with its id is stored already; committed when it
    /// returns.
    pub async fn store_delivery(
        &self,
        delivery: &NewDelivery<'_>,
    ) -> Result<Stored, DatabaseError> {
        let result = sqlx::query(
            "INSERT INTO deliveries (id, event, action, installation_id, repository, payload, received_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(delivery.id)
        .bind(delivery.event)
        .bind(delivery.action)
        .bind(delivery.installation_id)
        .bind(delivery.repository)
        .bind(delivery.payload)
        .bind(delivery.received_at)
        .execute(self.pool())
        .await?;
        Ok(if result.rows_affected() == 1 {
            Stored::New
        } else {
            Stored::AlreadyStored
        })
    }

    /// The delivery with `id`, if stored.
    pub async fn delivery(&self, id: &str) -> Result<Option<StoredDelivery>, DatabaseError> {
        let row = sqlx::query(
            "SELECT id, event, action, installation_id, repository, received_at, state
             FROM deliveries WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(StoredDelivery {
                id: row.try_get("id")?,
                event: row.try_get("event")?,
                action: row.try_get("action")?,
                installation_id: row.try_get("installation_id")?,
                repository: row.try_get("repository")?,
                received_at: row.try_get("received_at")?,
                state: row.try_get("state")?,
            })
        })
        .transpose()
    }

    /// How many deliveries are stored.
    pub async fn delivery_count(&self) -> Result<i64, DatabaseError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
            .fetch_one(self.pool())
            .await?)
    }
}
