//! Promotion after `publish.promote_after_hours`: the newest version of a channel that has
//! been there that long, with no failed CI run on a consumer's update pull request for it
//! since it arrived, is promoted to the next channel by a `promote` job, as `/promote`
//! would.
//!
//! The job loop checks when the queue is empty (soon after start, then at most every
//! [`CHECK_INTERVAL`]). What is planned, due or held is also what the status page and
//! `/status` show ([`promotion_plans`]).

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::Worker;
use super::pipeline::installation_of;
use crate::database::channel_entries::{ChannelEntry, ConsumerCiFailure};
use crate::database::job_result::as_text;
use crate::database::jobs::{JobKind, NewJob, Queued, Trigger, TriggerSource};
use crate::database::{Database, DatabaseError, timestamp};
use crate::manifest::Manifest;
use crate::settings::channels::{ChannelName, Channels};
use crate::settings::{PublishSettings, Settings};
use crate::storage::Storage;
use crate::version::Version;

/// The least time between two checks.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// A promotion that comes when its time is up, unless CI failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedPromotion {
    #[serde(with = "as_text")]
    pub version: Version,
    pub from: ChannelName,
    pub to: ChannelName,
    /// When the version entered `from`.
    pub entered_at: String,
    /// When it is promoted.
    pub due_at: String,
    /// The failed CI runs for it since it entered `from`: while there is one, only
    /// `/promote` promotes it.
    pub held_by: Vec<ConsumerCiFailure>,
}

impl PlannedPromotion {
    /// Whether it is to be promoted at `now`.
    pub fn is_due(&self, now: OffsetDateTime) -> bool {
        self.held_by.is_empty() && self.due_at <= timestamp::format(now)
    }
}

/// The promotions `entries` (where each version is, since when) lead to after `after`: for
/// each channel but the last, its newest version that is not `withdrawn`, unless the next
/// channel has it or a newer one already. `held_by` is left empty.
pub fn planned_promotions(
    channels: &Channels,
    entries: &[ChannelEntry],
    withdrawn: &[Version],
    after: Duration,
) -> Vec<PlannedPromotion> {
    let mut planned = Vec::new();
    for channel in channels.all() {
        let Some(next) = channels.after(&channel.name) else {
            continue;
        };
        let newest = entries
            .iter()
            .filter(|entry| entry.channel == channel.name && !withdrawn.contains(&entry.version))
            .max_by(|a, b| a.version.cmp(&b.version));
        let Some(newest) = newest else {
            continue;
        };
        let next_has_it = entries
            .iter()
            .any(|entry| entry.channel == next.name && entry.version >= newest.version);
        let Some(entered) = timestamp::parse(&newest.entered_at) else {
            continue;
        };
        if next_has_it {
            continue;
        }
        planned.push(PlannedPromotion {
            version: newest.version.clone(),
            from: channel.name.clone(),
            to: next.name.clone(),
            entered_at: newest.entered_at.clone(),
            due_at: timestamp::format(entered + after),
            held_by: Vec::new(),
        });
    }
    planned
}

/// The promotions planned now, each with the CI failures that hold it; none when
/// `publish.promote_after_hours` is 0 or there is one channel.
pub async fn promotion_plans(
    database: &Database,
    publish: &PublishSettings,
) -> Result<Vec<PlannedPromotion>, DatabaseError> {
    let channels = publish.channels();
    let Some(after) = publish.promote_after().filter(|_| channels.staged()) else {
        return Ok(Vec::new());
    };
    let entries = database.channel_entries().await?;
    let withdrawn: Vec<Version> = database
        .withdrawals()
        .await?
        .into_iter()
        .map(|withdrawal| withdrawal.version)
        .collect();
    let mut plans = planned_promotions(&channels, &entries, &withdrawn, after);
    for plan in &mut plans {
        plan.held_by = database
            .ci_failures_since(&plan.version, &plan.entered_at)
            .await?;
    }
    Ok(plans)
}

/// Where the rollout stands, for the status page and `/status`: each channel's newest
/// version and since when, and the promotions planned.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    pub channels: Vec<ChannelState>,
    pub planned: Vec<PlannedPromotion>,
    /// `publish.promote_after_hours`; 0 when only `/promote` promotes.
    pub promote_after_hours: u32,
}

/// A channel and the newest version its `SHA256SUMS` in storage lists (what its hosts
/// install), with when it entered the channel, if this server recorded that.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelState {
    pub name: ChannelName,
    /// Where its files are: `canary/`, or empty for the root.
    pub prefix: String,
    pub newest: Newest,
}

/// What a channel's manifest in storage says its newest version is.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Newest {
    Listed {
        #[serde(with = "as_text")]
        version: Version,
        /// When it entered the channel; `None` when it did before this server recorded it.
        since: Option<String>,
    },
    /// The manifest lists no version, or there is none.
    Nothing,
    /// The manifest could not be read; why.
    Unreadable { error: String },
}

impl Rollout {
    /// The rollout, or `None` with one channel (nothing is staged). Each channel's newest
    /// version is read from its manifest in `storage`, where its hosts read it.
    pub async fn read(
        database: &Database,
        storage: &Storage,
        settings: &Settings,
    ) -> Result<Option<Rollout>, DatabaseError> {
        let publish = &settings.publish;
        let channels = publish.channels();
        if !channels.staged() {
            return Ok(None);
        }
        let entries = database.channel_entries().await?;
        let mut states = Vec::new();
        for channel in channels.all() {
            let newest = match storage.get(&channel.manifest_key()).await {
                Ok(None) => Newest::Nothing,
                Ok(Some(bytes)) => match Manifest::parse(&String::from_utf8_lossy(&bytes)) {
                    Ok(manifest) => {
                        match manifest.versions(&settings.image.name).into_iter().next() {
                            Some(version) => Newest::Listed {
                                since: entries
                                    .iter()
                                    .find(|e| e.channel == channel.name && e.version == version)
                                    .map(|e| e.entered_at.clone()),
                                version,
                            },
                            None => Newest::Nothing,
                        }
                    }
                    Err(error) => Newest::Unreadable {
                        error: error.to_string(),
                    },
                },
                Err(error) => Newest::Unreadable {
                    error: error.to_string(),
                },
            };
            states.push(ChannelState {
                name: channel.name.clone(),
                prefix: channel.prefix.clone(),
                newest,
            });
        }
        Ok(Some(Rollout {
            channels: states,
            planned: promotion_plans(database, publish).await?,
            promote_after_hours: publish.promote_after_hours,
        }))
    }
}

impl Worker {
    /// Queues a `promote` job for each planned promotion that is due and not held. Each is
    /// queued once: a promotion that fails is not tried again by itself.
    pub(super) async fn promote_due_versions(&self) {
        let services = &self.services;
        let plans = match promotion_plans(&services.database, &services.settings.publish).await {
            Ok(plans) => plans,
            Err(error) => {
                tracing::warn!(%error, "reading the planned promotions");
                return;
            }
        };
        let now = OffsetDateTime::now_utc();
        for plan in &plans {
            if !plan.held_by.is_empty() && plan.due_at <= timestamp::format(now) {
                tracing::info!(version = %plan.version, from = %plan.from, to = %plan.to, failed_runs = plan.held_by.len(), "promotion held: a consumer's CI failed on the version; only /promote moves it on");
            }
        }
        for plan in plans.iter().filter(|plan| plan.is_due(now)) {
            let repo = &services.settings.build_repo.repo;
            let installation_id = match installation_of(&services.database, &services.github, repo)
                .await
            {
                Ok(id) => id,
                Err(error) => {
                    tracing::warn!(%error, version = %plan.version, "cannot promote: the build repository's installation is unknown");
                    return;
                }
            };
            let job = NewJob {
                kind: JobKind::Promote,
                version: plan.version.clone(),
                rebuild: false,
                // Once per arrival in the channel: after a withdrawal and a rebuild, or new
                // bytes, the version may move on by itself again.
                dedupe_key: format!(
                    "promote:{}:{}:after-hours:{}",
                    plan.version, plan.to, plan.entered_at
                ),
                trigger: Trigger {
                    source: TriggerSource::Schedule,
                    repository: Some(repo.clone()),
                    ..Trigger::default()
                },
                installation_id: Some(installation_id),
            };
            match services.database.queue_job(&job).await {
                Ok(Queued::New(id)) => {
                    tracing::info!(job = id, version = %plan.version, from = %plan.from, to = %plan.to, "promotion queued: its time in the channel is up and no consumer CI failed");
                    self.state.jobs_queued.notify_one();
                }
                Ok(Queued::Existing(_)) => {}
                Err(error) => {
                    tracing::warn!(%error, version = %plan.version, "queueing a promotion")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, channel: &str, at: &str) -> ChannelEntry {
        ChannelEntry {
            version: version.parse().unwrap(),
            channel: channel.parse().unwrap(),
            job_id: 1,
            entered_at: at.into(),
        }
    }

    fn channels(names: &[&str]) -> Channels {
        let names: Vec<ChannelName> = names.iter().map(|n| n.parse().unwrap()).collect();
        Channels::new(&names)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_newest_version_of_each_channel_moves_on_after_its_time() {
        let entries = [
            entry("1.1.0", "canary", "2026-01-01T00:00:00.000000Z"),
            entry("1.2.0", "canary", "2026-01-02T00:00:00.000000Z"),
            entry("1.1.0", "beta", "2026-01-02T06:00:00.000000Z"),
            entry("1.0.0", "stable", "2025-12-01T00:00:00.000000Z"),
        ];
        let plans = planned_promotions(
            &channels(&["canary", "beta", "stable"]),
            &entries,
            &[],
            24 * HOUR,
        );
        let shown: Vec<(String, &str, &str, &str)> = plans
            .iter()
            .map(|p| {
                (
                    p.version.to_string(),
                    p.from.as_str(),
                    p.to.as_str(),
                    p.due_at.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "1.2.0".into(),
                    "canary",
                    "beta",
                    "2026-01-03T00:00:00.000000Z"
                ),
                (
                    "1.1.0".into(),
                    "beta",
                    "stable",
                    "2026-01-03T06:00:00.000000Z"
                ),
            ]
        );
        let at = |text: &str| timestamp::parse(text).unwrap();
        assert!(!plans[0].is_due(at("2026-01-02T23:59:59Z")));
        assert!(plans[0].is_due(at("2026-01-03T00:00:00Z")));
    }

    #[test]
    fn nothing_moves_that_the_next_channel_has_or_that_was_withdrawn() {
        let two = channels(&["canary", "stable"]);
        // Promoted already, or overtaken by a newer version promoted by hand.
        for stable in ["1.2.0", "1.3.0"] {
            let entries = [
                entry("1.2.0", "canary", "2026-01-01T00:00:00.000000Z"),
                entry(stable, "stable", "2026-01-01T01:00:00.000000Z"),
            ];
            assert_eq!(planned_promotions(&two, &entries, &[], HOUR), []);
        }
        // The newest is withdrawn: the one before it is the channel's newest.
        let entries = [
            entry("1.1.0", "canary", "2026-01-01T00:00:00.000000Z"),
            entry("1.2.0", "canary", "2026-01-02T00:00:00.000000Z"),
        ];
        let plans = planned_promotions(&two, &entries, &["1.2.0".parse().unwrap()], HOUR);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].version.as_str(), "1.1.0");
        // One channel: nowhere to go.
        assert_eq!(
            planned_promotions(&channels(&["stable"]), &entries, &[], HOUR),
            []
        );
    }

    #[test]
    fn a_ci_failure_holds_a_due_promotion() {
        let entries = [entry("1.2.0", "canary", "2026-01-01T00:00:00.000000Z")];
        let mut plan = planned_promotions(&channels(&["canary", "stable"]), &entries, &[], HOUR)
            .pop()
            .unwrap();
        let later = timestamp::parse("2026-01-05T00:00:00Z").unwrap();
        assert!(plan.is_due(later));
        plan.held_by.push(ConsumerCiFailure {
            run_id: 1,
            run_attempt: 1,
            repository: "acme/fleet".into(),
            version: plan.version.clone(),
            conclusion: "failure".into(),
            html_url: None,
            failed_at: "2026-01-01T00:30:00.000000Z".into(),
        });
        assert!(!plan.is_due(later));
    }
}
