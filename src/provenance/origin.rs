//! What a build's record says that the build itself cannot know: which upstream release the
//! zip is the asset of, what its sha256 was checked against when it was downloaded, who built
//! it (the server or someone's command line) and what asked for it.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::version::Version;

/// The upstream repository images are built from unless told otherwise.
pub const DEFAULT_UPSTREAM_REPOSITORY: &str = "grafana/alloy";

/// Where the zip comes from and what started the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOrigin {
    /// The upstream repository (`grafana/alloy`).
    pub repository: String,
    /// The release tag (`v1.17.1`).
    pub tag: String,
    /// The release asset the zip is (`alloy-linux-amd64.zip`).
    pub asset: String,
    /// How the zip was checked when it was downloaded; `None` for a zip given as a file,
    /// which the build takes as it is.
    pub checked: Option<CheckedAsset>,
    pub builder: BuilderKind,
    pub started_by: StartedBy,
}

impl BuildOrigin {
    /// A zip given as a file on the command line for `version` and `arch`, named as the
    /// asset of release `v<version>` of `grafana/alloy`.
    pub fn command_line(version: &Version, arch: Arch) -> Self {
        BuildOrigin {
            repository: DEFAULT_UPSTREAM_REPOSITORY.to_owned(),
            tag: version.tag(),
            asset: format!("alloy-linux-{}.zip", arch.upstream_name()),
            checked: None,
            builder: BuilderKind::CommandLine,
            started_by: StartedBy::command_line(),
        }
    }
}

/// A downloaded asset's sha256 and what it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckedAsset {
    /// The asset's name (`alloy-linux-amd64.zip`).
    pub asset: String,
    /// Lowercase hex.
    pub sha256: String,
    /// Every digest the download matched; never empty for a download.
    pub checked_against: Vec<AssetCheck>,
}

/// A published digest an asset was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssetCheck {
    /// The `digest` GitHub lists for the release asset.
    #[serde(rename = "assetDigest")]
    AssetDigest,
    /// The asset's line in the release's `SHA256SUMS` asset.
    #[serde(rename = "releaseSha256Sums")]
    ReleaseSha256Sums,
}

impl AssetCheck {
    /// How the check is told in messages and in a job's result.
    pub fn describe(self) -> &'static str {
        match self {
            AssetCheck::AssetDigest => "the release's asset digest",
            AssetCheck::ReleaseSha256Sums => "the release's SHA256SUMS",
        }
    }
}

/// Who ran the build, and so who vouches for it: the records' `builder.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuilderKind {
    /// The App's server (`serve`), in its pipeline.
    Server,
    /// `alloy-sysext-automation build`, on whoever's machine ran it.
    CommandLine,
}

impl BuilderKind {
    /// The `builder.id` of records this builder writes.
    pub fn id(self) -> &'static str {
        match self {
            BuilderKind::Server => "urn:alloy-sysext-automation:builder:server",
            BuilderKind::CommandLine => "urn:alloy-sysext-automation:builder:command-line",
        }
    }
}

/// What started the build that made the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedBy {
    pub event: StartEvent,
    /// The repository the event came from (`owner/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The issue or pull request the build reports to: the one whose comment asked for it,
    /// or the upstream check's tracking issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<u64>,
    /// The comment that asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<u64>,
    /// The GitHub user who asked (who commented, dispatched or published the release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Asked to build again a version that may be published (`/rebuild`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rebuild: bool,
}

impl StartedBy {
    /// `alloy-sysext-automation build`.
    pub fn command_line() -> Self {
        StartedBy {
            event: StartEvent::CommandLine,
            ..StartedBy::default()
        }
    }

    /// One line for a person: `comment by ann in o/r#3 (/rebuild)`.
    pub fn describe(&self) -> String {
        let mut text = self.event.describe().to_owned();
        if let Some(user) = &self.user {
            text.push_str(&format!(" by {user}"));
        }
        match (&self.repository, self.issue) {
            (Some(repo), Some(issue)) => text.push_str(&format!(" in {repo}#{issue}")),
            (Some(repo), None) => text.push_str(&format!(" in {repo}")),
            _ => {}
        }
        if self.rebuild {
            text.push_str(" (rebuild)");
        }
        text
    }
}

/// The kind of event that started a build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartEvent {
    /// A release published in the build repository.
    Release,
    RepositoryDispatch,
    WorkflowDispatch,
    /// A `/build` or `/rebuild` comment.
    Comment,
    /// The scheduled upstream check.
    Schedule,
    /// A command line: `build`, or an operator's command on the server's machine.
    #[default]
    CommandLine,
}

impl StartEvent {
    pub fn describe(self) -> &'static str {
        match self {
            StartEvent::Release => "release event",
            StartEvent::RepositoryDispatch => "repository dispatch",
            StartEvent::WorkflowDispatch => "workflow dispatch",
            StartEvent::Comment => "comment",
            StartEvent::Schedule => "upstream check",
            StartEvent::CommandLine => "command line",
        }
    }
}
