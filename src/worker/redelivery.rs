//! Asking GitHub to redeliver what the server missed while it was down.
//!
//! GitHub does not redeliver failed deliveries by itself. On start and then periodically
//! the worker lists the App's recent deliveries and asks for another attempt of each one
//! that never succeeded and is not in the inbox. A redelivery keeps its `guid` (the
//! `X-GitHub-Delivery` header), which is how the inbox knows it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::database::{Database, DatabaseError};
use crate::github::api::{ApiError, GitHubApi};
use crate::github::hook_deliveries::{
    FIRST_PAGE, HookDelivery, Redelivery, deliveries_page, redeliver,
};

/// How often the sweep runs after the first one at start.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// GitHub only redelivers deliveries younger than three days.
const REDELIVERY_WINDOW: time::Duration = time::Duration::days(3);
/// Pages of 100 deliveries read per sweep at most.
const MAX_PAGES: usize = 10;
/// Redeliveries asked for per sweep at most (content-creating requests are limited).
const MAX_REDELIVERIES: usize = 50;

/// Why a sweep did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// GitHub refused or did not answer.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Which deliveries the inbox holds could not be read.
    #[error("reading the inbox: {0}")]
    Inbox(#[from] DatabaseError),
}

/// Of `attempts`, the newest attempt of each delivery that never succeeded, is young
/// enough to be redelivered, and is not in `stored`.
pub fn to_redeliver(
    attempts: &[HookDelivery],
    stored: &HashSet<String>,
    now: OffsetDateTime,
) -> Vec<HookDelivery> {
    let succeeded: HashSet<&str> = attempts
        .iter()
        .filter(|a| (200..300).contains(&a.status_code))
        .map(|a| a.guid.as_str())
        .collect();
    let mut newest: HashMap<&str, &HookDelivery> = HashMap::new();
    for attempt in attempts {
        if succeeded.contains(attempt.guid.as_str()) || stored.contains(&attempt.guid) {
            continue;
        }
        if attempt
            .delivered_at
            .is_some_and(|at| now - at > REDELIVERY_WINDOW)
        {
            continue;
        }
        let entry = newest.entry(attempt.guid.as_str()).or_insert(attempt);
        if attempt.id > entry.id {
            *entry = attempt;
        }
    }
    let mut chosen: Vec<HookDelivery> = newest.into_values().cloned().collect();
    chosen.sort_by_key(|a| a.id);
    chosen.truncate(MAX_REDELIVERIES);
    chosen
}

/// Sweeps every [`SWEEP_INTERVAL`] until `shutdown` turns true, while this replica leads
/// (one replica sweeps at a time); the first sweep runs as soon as it leads.
pub(super) async fn sweep_loop(
    github: GitHubApi,
    database: Database,
    leadership: super::leadership::Leadership,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        leadership.wait_to_lead(&mut shutdown).await;
        if *shutdown.borrow() {
            return;
        }
        if let Some(generation) = leadership.generation() {
            let sweep = redeliver_missed(&github, &database);
            if let Err(error) = crate::fence::fenced(leadership.fence(generation), sweep).await {
                tracing::warn!(%error, "asking GitHub to redeliver missed deliveries");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SWEEP_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One sweep: lists recent deliveries and asks for the missed ones again. Returns how
/// many redeliveries were asked for.
pub async fn redeliver_missed(
    github: &GitHubApi,
    database: &Database,
) -> Result<usize, SweepError> {
    let mut attempts = Vec::new();
    let mut path = FIRST_PAGE.to_owned();
    for _ in 0..MAX_PAGES {
        let page = deliveries_page(github, &path).await?;
        let oldest_is_old = page
            .deliveries
            .last()
            .and_then(|d| d.delivered_at)
            .is_some_and(|at| OffsetDateTime::now_utc() - at > REDELIVERY_WINDOW);
        attempts.extend(page.deliveries);
        match page.next {
            Some(next) if !oldest_is_old => path = next,
            _ => break,
        }
    }
    let guids: Vec<String> = attempts.iter().map(|a| a.guid.clone()).collect();
    let stored = database.stored_delivery_ids(&guids).await?;
    let missed = to_redeliver(&attempts, &stored, OffsetDateTime::now_utc());
    for delivery in &missed {
        match redeliver(github, delivery.id).await? {
            Redelivery::Asked => {
                tracing::info!(guid = %delivery.guid, event = ?delivery.event, "asked GitHub to redeliver a missed delivery")
            }
            Redelivery::Refused { status, request_id } => {
                tracing::warn!(guid = %delivery.guid, status, request_id = ?request_id, "GitHub refused to redeliver")
            }
        }
    }
    Ok(missed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn attempt(id: i64, guid: &str, status_code: i64, at: OffsetDateTime) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            status_code,
            delivered_at: Some(at),
            event: Some("issue_comment".into()),
        }
    }

    #[test]
    fn only_missed_young_unstored_deliveries_are_redelivered_once() {
        let now = datetime!(2026-06-10 12:00 UTC);
        let recent = datetime!(2026-06-10 11:00 UTC);
        let attempts = vec![
            attempt(1, "a", 502, recent),
            attempt(2, "a", 502, recent), // the newest attempt of "a" is redelivered
            attempt(3, "b", 502, recent),
            attempt(4, "b", 200, recent), // "b" got through later
            attempt(5, "c", 0, recent),   // timed out, but already stored
            attempt(6, "d", 503, datetime!(2026-06-01 00:00 UTC)), // too old
            attempt(7, "e", 200, recent),
        ];
        let stored: HashSet<String> = ["c".to_owned()].into();
        let chosen = to_redeliver(&attempts, &stored, now);
        let ids: Vec<i64> = chosen.iter().map(|a| a.id).collect();
        assert_eq!(ids, [2]);
    }
}
