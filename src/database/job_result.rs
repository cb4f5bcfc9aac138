//! What a build job has produced so far, stored whole as the job's `result` (JSON) after each
//! step that adds to it, and read by the later steps, the replies, the status page and
//! `/api/jobs`.
//!
//! Every field is absent until the step that makes it has run, so a job stopped part-way
//! keeps what it had, and the stored JSON has the same keys the job API has always shown.
//!
//! Results written by early versions of the server load too: the keys they wrote that no
//! step writes now are read and dropped, and an image they recorded has no address. A key
//! never written, or a value of the wrong type, is refused.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::settings::channels::ChannelName;
use crate::version::Version;

/// Everything a job has produced, field by field as its steps ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobResult {
    /// `download`: the assets fetched by the latest run of the step (none when they were
    /// there already), each with the digests it was checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads: Option<Vec<Download>>,
    /// `download`: the upstream release's page (`null` when GitHub gave none).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub upstream_release: Option<Option<String>>,
    /// `download`: the first lines of the upstream release notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_notes: Option<String>,
    /// `build`: one image per architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<BuiltImage>>,
    /// `upload`: how this build relates to what was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Publication>,
    /// `upload`: every file put in storage (absent when nothing was, as `unchanged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploads: Option<Vec<Upload>>,
    /// `manifest`: the commits of `SHA256SUMS` and its signature (empty: committed by an
    /// earlier attempt already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_commits: Option<Vec<String>>,
    /// `release`: the build repository's release page (`null` when GitHub gave none).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub release: Option<Option<String>>,
    /// `release`: whether this job made the release (false: it was there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_created: Option<bool>,
    /// `consumers`: each consumer repository's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Vec<ConsumerReport>>,
    /// `tracking`: the tracking issue that got the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_issue: Option<String>,
    /// `prune`: the versions that left `SHA256SUMS`, and those kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Pruned>,
    /// A promote job's `upload` and `manifest`: where the version moves, and what it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    /// A withdraw job's `manifest`, `release` and `consumers`: what the withdrawal did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawal: Option<WithdrawalDone>,
    /// `report`: the issues (`owner/name#number`) the end report was posted to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported_to: Vec<String>,
    /// `report`: the issues the end report could not be posted to, for good.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report_failed: Vec<String>,
    /// Early versions: why nothing was built (the version was built before).
    #[serde(default, rename = "note", skip_serializing)]
    pub retired_note: Retired,
    /// Early versions: how the build changed the local manifest.
    #[serde(default, rename = "manifest", skip_serializing)]
    pub retired_manifest: Retired,
}

/// A text field early versions of the server wrote and no step reads: checked to be text,
/// then dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retired;

impl<'de> Deserialize<'de> for Retired {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|_| Retired)
    }
}

impl JobResult {
    /// What a job has produced before its first step: nothing.
    pub const NOTHING_YET: JobResult = JobResult {
        downloads: None,
        upstream_release: None,
        upstream_notes: None,
        images: None,
        published: None,
        uploads: None,
        manifest_commits: None,
        release: None,
        release_created: None,
        consumers: None,
        tracking_issue: None,
        pruned: None,
        promotion: None,
        withdrawal: None,
        reported_to: Vec::new(),
        report_failed: Vec::new(),
        retired_note: Retired,
        retired_manifest: Retired,
    };

    /// The consumer repositories whose update failed for good.
    pub fn failed_consumers(&self) -> Vec<&str> {
        self.consumers
            .iter()
            .flatten()
            .filter(|consumer| matches!(consumer.outcome, ConsumerOutcome::Failed { .. }))
            .map(|consumer| consumer.repo.as_str())
            .collect()
    }
}

/// An upstream asset, downloaded and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Download {
    pub asset: String,
    pub sha256: String,
    /// Where the digests it matched came from.
    pub checked_against: Vec<String>,
}

/// An image this job built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltImage {
    #[serde(with = "as_text")]
    pub arch: Arch,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// The hash of the Alloy binary inside it.
    pub binary_sha256: String,
    /// Where hosts download it; empty when the server had no public address for its images
    /// (local storage without `PUBLIC_URL` or `publish.base_url`), or for an image built by
    /// an early version, which did not record it. The readers then show the file name alone.
    #[serde(default)]
    pub url: String,
}

/// What a build's `prune` step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// `publish.keep_versions` when it ran.
    pub keep: u32,
    /// The versions that left `SHA256SUMS`, oldest first, each in a commit of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Version>,
    /// Versions beyond the newest `keep` that stay, and the consumer repositories whose
    /// files pin them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_pinned: Vec<PinnedVersion>,
    /// Why nothing was pruned although versions are beyond the newest `keep` (a consumer's
    /// pin could not be read): tried again with the next publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The commits of the manifest and its signature, two per version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<String>,
    /// When the removed versions' files leave storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_removed_after: Option<String>,
}

/// A version a consumer's file pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedVersion {
    pub version: Version,
    /// The repositories whose file on its base branch pins it.
    pub by: Vec<String>,
}

/// What a withdraw job did, step by step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalDone {
    /// `manifest`: the files whose lines left `SHA256SUMS`.
    pub files: Vec<String>,
    /// `manifest`: the channels whose `SHA256SUMS` listed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelName>,
    /// `manifest`: when the files leave storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_removed_after: Option<String>,
    /// `release`: whether the version's release was marked withdrawn (false: it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_marked: Option<bool>,
    /// `consumers`: the newest version still listed, which consumers that pin the withdrawn
    /// one are moved to (none when no version is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<Version>,
    /// `consumers`: the open pull requests for the withdrawn version that were closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed_pull_requests: Vec<String>,
}

/// A version's move from one channel to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub from: ChannelName,
    pub to: ChannelName,
    /// The version's lines in `from`'s `SHA256SUMS`, which `to`'s gets.
    pub files: Vec<PromotedFile>,
    /// `upload`: the storage keys copied into `to` (none: they were there).
    #[serde(default)]
    pub copied: Vec<String>,
}

/// A file listed in a channel's `SHA256SUMS`, with its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedFile {
    pub file: String,
    pub sha256: String,
}

/// How a build relates to what is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Publication {
    /// Listed with the same hashes: nothing to do.
    Unchanged,
    /// Not listed yet.
    New,
    /// Listed with other hashes, replaced by `/rebuild`.
    Replaced,
}

/// A file put in storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub key: String,
    /// False when storage held the same content already.
    pub uploaded: bool,
}

/// What became of one consumer repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerReport {
    /// `owner/name`.
    pub repo: String,
    /// The Butane file updated (or, for an enrollment that failed, the enrollment file).
    pub path: String,
    #[serde(flatten)]
    pub outcome: ConsumerOutcome,
}

/// The outcome of one consumer's update, stored under `outcome` by its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome")]
pub enum ConsumerOutcome {
    /// A pull request was opened.
    #[serde(rename = "opened")]
    Opened {
        #[serde(with = "as_text")]
        from: Version,
        image: String,
        pull_request: String,
    },
    /// The open pull request got a new commit, title or body.
    #[serde(rename = "updated")]
    Updated {
        #[serde(with = "as_text")]
        from: Version,
        image: String,
        pull_request: String,
    },
    /// The open pull request already held this update.
    #[serde(rename = "unchanged")]
    Unchanged {
        #[serde(with = "as_text")]
        from: Version,
        image: String,
        pull_request: String,
    },
    /// The file pins this version and hash already.
    #[serde(rename = "up to date")]
    UpToDate {
        #[serde(with = "as_text")]
        from: Version,
        image: String,
    },
    /// The file pins a newer version, which is never downgraded.
    #[serde(rename = "pins a newer version")]
    PinsNewer {
        #[serde(with = "as_text")]
        from: Version,
        image: String,
    },
    /// A withdrawal's consumer whose file pins another version than the withdrawn one: it
    /// is left as it is.
    #[serde(rename = "pins another version")]
    PinsOther {
        #[serde(with = "as_text")]
        from: Version,
    },
    /// A withdrawal's consumer that pins the withdrawn version, with no version left listed
    /// to move it to.
    #[serde(rename = "no version left")]
    NoVersionLeft,
    /// The consumer follows another channel than the one the job published to: it gets
    /// its pull request when the version reaches that channel.
    #[serde(rename = "follows another channel")]
    OtherChannel { channel: ChannelName },
    /// The repository's enrollment file failed its checks.
    #[serde(rename = "refused")]
    Refused { error: String },
    /// The update failed; `will_retry` when the job is retried for it.
    #[serde(rename = "failed")]
    Failed {
        error: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        will_retry: bool,
    },
}

impl ConsumerOutcome {
    /// The outcome's name, as stored and shown.
    pub fn name(&self) -> &'static str {
        match self {
            ConsumerOutcome::Opened { .. } => "opened",
            ConsumerOutcome::Updated { .. } => "updated",
            ConsumerOutcome::Unchanged { .. } => "unchanged",
            ConsumerOutcome::UpToDate { .. } => "up to date",
            ConsumerOutcome::PinsNewer { .. } => "pins a newer version",
            ConsumerOutcome::PinsOther { .. } => "pins another version",
            ConsumerOutcome::NoVersionLeft => "no version left",
            ConsumerOutcome::OtherChannel { .. } => "follows another channel",
            ConsumerOutcome::Refused { .. } => "refused",
            ConsumerOutcome::Failed { .. } => "failed",
        }
    }

    /// The pull request's address, when there is one.
    pub fn pull_request(&self) -> Option<&str> {
        match self {
            ConsumerOutcome::Opened { pull_request, .. }
            | ConsumerOutcome::Updated { pull_request, .. }
            | ConsumerOutcome::Unchanged { pull_request, .. } => Some(pull_request),
            _ => None,
        }
    }

    /// The error, when the update failed or was refused.
    pub fn error(&self) -> Option<&str> {
        match self {
            ConsumerOutcome::Refused { error } | ConsumerOutcome::Failed { error, .. } => {
                Some(error)
            }
            _ => None,
        }
    }
}

/// (De)serializes a value by its text form (`Display` and `FromStr`), as versions and
/// architectures are stored.
pub(crate) mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads a field that is there, even as `null`, as `Some`: `Some(None)` is "the step ran and
/// GitHub gave no address", told apart from a field still absent.
fn present<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A result exactly as stored before it was typed, by a job that ran every step.
    fn stored_whole() -> serde_json::Value {
        json!({
            "downloads": [{
                "asset": "alloy-linux-amd64.zip",
                "sha256": "a".repeat(64),
                "checked_against": ["SHA256SUMS of the release"],
            }],
            "upstream_release": "https://github.com/grafana/alloy/releases/tag/v1.18.0",
            "upstream_notes": "release notes",
            "images": [{
                "arch": "amd64",
                "file": "alloy-1.18.0-amd64.raw",
                "size": 4096,
                "sha256": "b".repeat(64),
                "binary_sha256": "c".repeat(64),
                "url": "https://images.example/alloy-1.18.0-amd64.raw",
            }],
            "published": "new",
            "uploads": [
                {"key": "alloy-1.18.0-amd64.raw.sha256", "uploaded": true},
                {"key": "alloy-1.18.0-amd64.raw", "uploaded": false},
            ],
            "manifest_commits": ["0123abcd", "4567ef01"],
            "release": "https://github.com/o/build/releases/tag/v1.18.0",
            "release_created": true,
            "consumers": [
                {"repo": "o/opened", "path": "a.bu", "from": "1.14.2", "image": "alloy-1.18.0-amd64.raw", "outcome": "opened", "pull_request": "https://github.com/o/opened/pull/1"},
                {"repo": "o/updated", "path": "a.bu", "from": "1.14.2", "image": "alloy-1.18.0-amd64.raw", "outcome": "updated", "pull_request": "https://github.com/o/updated/pull/2"},
                {"repo": "o/unchanged", "path": "a.bu", "from": "1.14.2", "image": "alloy-1.18.0-amd64.raw", "outcome": "unchanged", "pull_request": "https://github.com/o/unchanged/pull/3"},
                {"repo": "o/current", "path": "a.bu", "from": "1.18.0", "image": "alloy-1.18.0-amd64.raw", "outcome": "up to date"},
                {"repo": "o/newer", "path": "a.bu", "from": "1.19.0", "image": "alloy-1.18.0-amd64.raw", "outcome": "pins a newer version"},
                {"repo": "o/refused", "path": ".github/alloy-sysext.toml", "outcome": "refused", "error": ".github/alloy-sysext.toml: bad"},
                {"repo": "o/unread", "path": ".github/alloy-sysext.toml", "outcome": "failed", "error": "reading .github/alloy-sysext.toml: GitHub answered 500"},
                {"repo": "o/busy", "path": "a.bu", "outcome": "failed", "error": "GitHub answered 502", "will_retry": true},
            ],
            "tracking_issue": "https://github.com/o/build/issues/1",
            "reported_to": ["o/build#1"],
            "report_failed": ["o/locked#2"],
        })
    }

    #[test]
    fn a_result_stored_before_it_was_typed_loads_and_is_written_back_the_same() {
        let stored = stored_whole();
        let result: JobResult = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(result.images.as_ref().unwrap()[0].arch, Arch::Amd64);
        assert_eq!(result.published, Some(Publication::New));
        let consumers = result.consumers.as_ref().unwrap();
        assert_eq!(
            consumers
                .iter()
                .map(|c| c.outcome.name())
                .collect::<Vec<_>>(),
            [
                "opened",
                "updated",
                "unchanged",
                "up to date",
                "pins a newer version",
                "refused",
                "failed",
                "failed"
            ]
        );
        assert_eq!(
            consumers[7].outcome,
            ConsumerOutcome::Failed {
                error: "GitHub answered 502".into(),
                will_retry: true
            }
        );
        assert_eq!(result.failed_consumers(), ["o/unread", "o/busy"]);
        assert_eq!(serde_json::to_value(&result).unwrap(), stored);
    }

    #[test]
    fn a_result_of_a_job_stopped_part_way_loads() {
        // Stopped in `manifest` after an unchanged upload: no commits, no release yet.
        let stored = json!({
            "upstream_release": "https://github.com/grafana/alloy/releases/tag/v1.18.0",
            "upstream_notes": "",
            "images": stored_whole()["images"].clone(),
            "published": "unchanged",
        });
        let result: JobResult = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(result.published, Some(Publication::Unchanged));
        assert!(result.consumers.is_none() && result.release.is_none());
        assert!(result.upstream_release.is_some());
        assert_eq!(serde_json::to_value(&result).unwrap(), stored);
        // Committed by an earlier attempt: an empty list, kept as such.
        let stored = json!({"manifest_commits": [], "release": null, "release_created": false});
        let result: JobResult = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(result.manifest_commits, Some(Vec::new()));
        assert_eq!(result.release, Some(None));
        assert_eq!(serde_json::to_value(&result).unwrap(), stored);
        // Nothing yet.
        assert_eq!(
            serde_json::from_value::<JobResult>(json!({})).unwrap(),
            JobResult::NOTHING_YET
        );
    }

    #[test]
    fn a_malformed_result_is_refused_rather_than_dropped() {
        let mut stored = stored_whole();
        stored["consumers"][0]["outcome"] = json!("merged");
        assert!(serde_json::from_value::<JobResult>(stored).is_err());
        let mut stored = stored_whole();
        stored["images"][0]["arch"] = json!("sparc");
        assert!(serde_json::from_value::<JobResult>(stored).is_err());
    }

    /// The results the first versions of the build step wrote: a version built before, and
    /// images without their address, each with how the local manifest changed.
    #[test]
    fn a_result_written_by_an_early_version_loads() {
        let built_before = json!({
            "note": "Alloy 1.2.3 was built before; nothing changed. Comment `/rebuild 1.2.3` to build it again.",
            "manifest": "unchanged",
        });
        let result: JobResult = serde_json::from_value(built_before).unwrap();
        assert_eq!(result, JobResult::NOTHING_YET);
        assert_eq!(serde_json::to_value(&result).unwrap(), json!({}));
        let built = json!({
            "images": [{
                "arch": "amd64",
                "file": "alloy-1.2.3-amd64.raw",
                "size": 4096,
                "sha256": "b".repeat(64),
                "binary_sha256": "c".repeat(64),
            }],
            "manifest": "added",
        });
        let result: JobResult = serde_json::from_value(built).unwrap();
        let image = &result.images.as_ref().unwrap()[0];
        assert_eq!(image.file, "alloy-1.2.3-amd64.raw");
        assert_eq!(image.url, "");
        // Written back without the retired key.
        assert!(
            serde_json::to_value(&result)
                .unwrap()
                .get("manifest")
                .is_none()
        );
    }

    #[test]
    fn an_early_key_of_the_wrong_type_is_refused() {
        assert!(serde_json::from_value::<JobResult>(json!({"note": 5})).is_err());
        assert!(serde_json::from_value::<JobResult>(json!({"manifest": ["added"]})).is_err());
        let mut stored = stored_whole();
        stored["images"][0]["url"] = json!(7);
        assert!(serde_json::from_value::<JobResult>(stored).is_err());
        let mut stored = stored_whole();
        stored["images"][0]["checked"] = json!(true);
        assert!(serde_json::from_value::<JobResult>(stored).is_err());
    }
}
