//! The webhook inbox: deliveries as GitHub sent them, and how far each has been handled.

use serde::Serialize;
use sqlx::Row;

use super::stored_name::stored_name;
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
    pub state: DeliveryState,
    pub processed_at: Option<String>,
    /// Why it was ignored or failed.
    pub error: Option<String>,
    /// The job it started, if any.
    pub job_id: Option<i64>,
}

/// A stored delivery waiting for the worker, with its body.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub id: String,
    pub event: String,
    pub payload: String,
}

/// How far a delivery has been handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Stored, waiting for the worker.
    Pending,
    Processed,
    /// Nothing to do (an event or action the App does not act on, a refused command).
    Ignored,
    /// Given up on; `error` says why.
    Failed,
}

stored_name!(DeliveryState, "delivery state", {
    Pending => "pending",
    Processed => "processed",
    Ignored => "ignored",
    Failed => "failed",
});

/// How the worker left a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Processed,
    Ignored,
    Failed,
}

impl DeliveryOutcome {
    /// The delivery's state once left so.
    pub fn state(self) -> DeliveryState {
        match self {
            DeliveryOutcome::Processed => DeliveryState::Processed,
            DeliveryOutcome::Ignored => DeliveryState::Ignored,
            DeliveryOutcome::Failed => DeliveryState::Failed,
        }
    }
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

/// The columns every delivery query selects.
const COLUMNS: &str = "id, event, action, installation_id, repository, received_at, state,
    processed_at, error, job_id";

fn delivery_from_row(row: &sqlx::any::AnyRow) -> Result<StoredDelivery, DatabaseError> {
    let state: String = row.try_get("state")?;
    Ok(StoredDelivery {
        id: row.try_get("id")?,
        event: row.try_get("event")?,
        action: row.try_get("action")?,
        installation_id: row.try_get("installation_id")?,
        repository: row.try_get("repository")?,
        received_at: row.try_get("received_at")?,
        state: DeliveryState::parse(&state)?,
        processed_at: row.try_get("processed_at")?,
        error: row.try_get("error")?,
        job_id: row.try_get("job_id")?,
    })
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deliveries WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// How many deliveries are stored.
    pub async fn delivery_count(&self) -> Result<i64, DatabaseError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
            .fetch_one(self.pool())
            .await?)
    }

    /// Up to `limit` deliveries the worker has not handled yet, oldest first.
    pub async fn pending_deliveries(
        &self,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, DatabaseError> {
        let rows = sqlx::query(
            "SELECT id, event, payload FROM deliveries WHERE state = 'pending'
             ORDER BY received_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingDelivery {
                    id: row.try_get("id")?,
                    event: row.try_get("event")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect()
    }

    /// Records how the worker left a pending delivery; `note` says why it was ignored or
    /// failed. A delivery handled already is left as it is.
    pub async fn finish_delivery(
        &self,
        id: &str,
        outcome: DeliveryOutcome,
        note: Option<&str>,
    ) -> Result<(), DatabaseError> {
        finish_pending_delivery(
            self.pool(),
            id,
            outcome,
            note,
            &crate::database::timestamp::now(),
        )
        .await
    }

    /// Which of `ids` are stored.
    pub async fn stored_delivery_ids(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, DatabaseError> {
        let mut stored = std::collections::HashSet::new();
        for id in ids {
            if sqlx::query("SELECT 1 FROM deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .is_some()
            {
                stored.insert(id.clone());
            }
        }
        Ok(stored)
    }

    /// Handling the pending delivery `id` failed transiently: counts the attempt, and after
    /// `max_attempts` gives up on it (state `failed`, with `error`). Returns true when it
    /// was given up.
    pub async fn delivery_attempt_failed(
        &self,
        id: &str,
        error: &str,
        max_attempts: i64,
    ) -> Result<bool, DatabaseError> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE deliveries SET attempts = attempts + 1, error = $1,
                    state = CASE WHEN attempts + 1 >= $2 THEN 'failed' ELSE state END,
                    processed_at = CASE WHEN attempts + 1 >= $3 THEN $4 ELSE processed_at END
             WHERE id = $5 AND state = 'pending'
             RETURNING attempts",
        )
        .bind(error)
        .bind(max_attempts)
        .bind(max_attempts)
        .bind(crate::database::timestamp::now())
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(attempts.is_some_and(|a| a >= max_attempts))
    }

    /// The newest `limit` deliveries, newest first.
    pub async fn recent_deliveries(
        &self,
        limit: i64,
    ) -> Result<Vec<StoredDelivery>, DatabaseError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deliveries ORDER BY received_at DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }
}
/// [`Database::finish_delivery`] on `executor`, so that a caller can write it in the same
/// transaction as what handling the delivery recorded.
pub(super) async fn finish_pending_delivery<'e>(
    executor: impl sqlx::any::AnyExecutor<'e>,
    id: &str,
    outcome: DeliveryOutcome,
    note: Option<&str>,
    now: &str,
) -> Result<(), DatabaseError> {
    sqlx::query(
        "UPDATE deliveries SET state = $1, error = $2, processed_at = $3
         WHERE id = $4 AND state = 'pending'",
    )
    .bind(outcome.state().as_str())
    .bind(note)
    .bind(now)
    .bind(id)
    .execute(executor)
    .await?;
    Ok(())
}
