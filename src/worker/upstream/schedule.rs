//! The upstream check on its schedule: once at start (a scheduled time missed while the
//! server was down is not lost), then at each time of `schedule.check_upstream`. With
//! replicas, each tick runs on the one replica that claims it first in the database (the
//! tick at start being the schedule's last time, which only the first replica to start, or
//! to survive one that died before running it, finds unclaimed). A check that
//! fails is tried again after 5 minutes, then 10, 20, … up to an hour, never later than the
//! next scheduled time; the last result is on the status page and in the metrics.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::watch::{CheckAction, UpstreamWatch};
use crate::worker::Worker;

/// The wait before retrying a failed check; doubled after each failure in a row.
const FIRST_RETRY: Duration = Duration::from_secs(5 * 60);
/// The longest wait between retries.
const MAX_RETRY: Duration = Duration::from_secs(60 * 60);

/// The name the upstream check's ticks are claimed under ([`crate::database::scheduled_runs`]).
const UPSTREAM_CHECK_TASK: &str = "upstream-check";

/// The last check's time and what it found, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUpstreamCheck {
    /// RFC 3339, UTC.
    pub at: String,
    pub result: Result<String, String>,
}

/// What the worker knows of the checks it ran and the next one.
#[derive(Debug, Default)]
pub struct UpstreamSchedule {
    last: Option<LastUpstreamCheck>,
    /// When the loop will check next (a retry, or the scheduled time).
    next: Option<DateTime<Utc>>,
}

/// When to check after a failure: `retry` from `now`, but no later than `scheduled`.
fn after_failure(
    now: DateTime<Utc>,
    retry: Duration,
    scheduled: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let retry_at = now + chrono::Duration::from_std(retry).unwrap_or(chrono::Duration::MAX);
    scheduled.map_or(retry_at, |scheduled| retry_at.min(scheduled))
}

impl Worker {
    /// When the upstream check runs next, if it is scheduled.
    pub fn next_upstream_check(&self) -> Option<DateTime<Utc>> {
        self.services.settings.schedule.check_upstream.as_ref()?;
        let planned = self.upstream_schedule().next;
        planned.or_else(|| self.services.settings.schedule.next_check(Utc::now()))
    }

    /// The last upstream check this process ran, if any.
    pub fn last_upstream_check(&self) -> Option<LastUpstreamCheck> {
        self.upstream_schedule().last.clone()
    }

    fn upstream_schedule(&self) -> std::sync::MutexGuard<'_, UpstreamSchedule> {
        self.state
            .upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Checks upstream at start and on the schedule, each tick on one replica only.
    pub(in crate::worker) async fn upstream_loop(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.services.settings.schedule.check_upstream.is_none() {
            tracing::info!("the upstream check is off");
            return;
        }
        let watch = UpstreamWatch::new(
            self.services.github.clone(),
            self.services.database.clone(),
            self.services.settings.clone(),
        );
        let mut retry = FIRST_RETRY;
        let database = &self.services.database;
        // The first tick is at start. With one replica (SQLite) it is now: a check at every
        // start. With replicas it is the schedule's last time: the first replica to start
        // after it (or to survive a replica that died before running it) runs it.
        let now = Utc::now();
        let mut tick = match database.backend() {
            crate::database::Backend::Sqlite => now,
            crate::database::Backend::Postgres => self
                .services
                .settings
                .schedule
                .last_check(now)
                .unwrap_or(now),
        };
        let mut next = now;
        loop {
            self.upstream_schedule().next = Some(next);
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tracing::info!(next = %next.to_rfc3339(), "next upstream check");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            // One replica runs each tick: the first to claim it.
            let claimed = database
                .claim_scheduled_run(
                    UPSTREAM_CHECK_TASK,
                    &tick.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    self.replica.as_str(),
                )
                .await;
            match claimed {
                Ok(true) => {}
                Ok(false) => {
                    next = self
                        .services
                        .settings
                        .schedule
                        .next_check(Utc::now())
                        .unwrap_or(Utc::now() + chrono::Duration::days(1));
                    tick = next;
                    tracing::info!("another replica ran this upstream check");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not claim the upstream check's tick; trying again soon");
                    next = Utc::now() + chrono::Duration::seconds(30);
                    continue;
                }
            }
            let result = watch.check(false).await;
            let now = Utc::now();
            let scheduled = self.services.settings.schedule.next_check(now);
            crate::metrics::global().upstream_check(result.is_ok());
            let last = match result {
                Ok(outcome) => {
                    tracing::info!(%outcome, "upstream checked");
                    if let CheckAction::Queued {
                        job_is_new: true, ..
                    } = outcome.action
                    {
                        self.state.jobs_queued.notify_one();
                    }
                    retry = FIRST_RETRY;
                    next = scheduled.unwrap_or(now + chrono::Duration::days(1));
                    Ok(outcome.to_string())
                }
                Err(error) => {
                    next = after_failure(now, retry, scheduled);
                    tracing::warn!(%error, retry_at = %next.to_rfc3339(), "the upstream check failed");
                    retry = (retry * 2).min(MAX_RETRY);
                    Err(error.to_string())
                }
            };
            self.upstream_schedule().last = Some(LastUpstreamCheck {
                at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                result: last,
            });
            tick = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_is_retried_soon_but_not_after_the_next_scheduled_time() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let midnight = DateTime::parse_from_rfc3339("2026-11-30T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            after_failure(now, FIRST_RETRY, Some(midnight)),
            now + chrono::Duration::minutes(5)
        );
        let late = DateTime::parse_from_rfc3339("2026-11-29T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(after_failure(late, MAX_RETRY, Some(midnight)), midnight);
        assert_eq!(
            after_failure(now, MAX_RETRY, None),
            now + chrono::Duration::hours(1)
        );
        // The retries in a row: 5, 10, 20, 40, 60, 60 minutes.
        let mut retry = FIRST_RETRY;
        let mut waits = Vec::new();
        for _ in 0..6 {
            waits.push(retry.as_secs() / 60);
            retry = (retry * 2).min(MAX_RETRY);
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    }
}
