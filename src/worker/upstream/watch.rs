//! The upstream watch: on a schedule, is there an Alloy release newer than the newest
//! published image? If so, a tracking issue and a build job.
//!
//! The release list is read with a conditional request: when its first page is unchanged
//! (304, which costs no rate limit) the list is the one read before.

use std::sync::Mutex;

use crate::database::jobs::{JobKind, NewJob, Queued, Trigger, TriggerSource};
use crate::database::{Database, DatabaseError};
use crate::github::api::{ApiError, Auth, GitHubApi};
use crate::github::issues::{find_open_issue, open_issue};
use crate::github::releases::{Release, ReleasesPage, public_releases_page};
use crate::manifest::Manifest;
use crate::manifest::image_name::ImageFileName;
use crate::settings::Settings;
use crate::version::Version;
use crate::worker::pipeline::{
    InstallationLookupError, PublishedManifestError, installation_of, read_published_manifest,
};
use crate::worker::replies::tracking_issue_title;

/// Pages of 100 releases read at most.
const MAX_PAGES: u32 = 20;

/// Why a check did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// GitHub refused or did not answer.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Which installation has the build repository is not known.
    #[error(transparent)]
    Installation(#[from] InstallationLookupError),
    /// The build repository's `SHA256SUMS` could not be had.
    #[error(transparent)]
    Manifest(#[from] PublishedManifestError),
    /// The build could not be queued.
    #[error("queuing the build: {0}")]
    Queue(#[source] DatabaseError),
    /// The withdrawn versions could not be read.
    #[error("reading the withdrawn versions: {0}")]
    Withdrawals(#[source] DatabaseError),
    /// GitHub answered a conditional request for the release list as unchanged, when no
    /// list had been read before.
    #[error("GitHub answered 304 to listing the releases of {repo}, with nothing asked before")]
    UnaskedNotModified { repo: String },
}

/// What a check found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The newest stable upstream release.
    pub newest_upstream: Option<Version>,
    /// The newest version in the build repository's `SHA256SUMS`.
    pub newest_published: Option<Version>,
    pub action: CheckAction,
}

/// What the check did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckAction {
    /// Nothing newer upstream.
    UpToDate,
    /// The newest upstream release is newer than what is published, but it was withdrawn:
    /// only a `/rebuild` publishes it again.
    Withdrawn { version: Version },
    /// A dry run: this is what would happen.
    WouldBuild {
        version: Version,
        tracking_issue_exists: bool,
    },
    /// A build was queued (or had been, by an earlier check), with its tracking issue.
    Queued {
        version: Version,
        job_id: i64,
        job_is_new: bool,
        tracking_issue: String,
        tracking_issue_is_new: bool,
    },
}

impl std::fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Version>| v.as_ref().map_or("none".to_owned(), Version::to_string);
        write!(
            f,
            "newest upstream release: {}; newest published: {}; ",
            show(&self.newest_upstream),
            show(&self.newest_published)
        )?;
        match &self.action {
            CheckAction::UpToDate => write!(f, "nothing to build"),
            CheckAction::Withdrawn { version } => write!(
                f,
                "{version} was withdrawn; nothing to build (`/rebuild {version}` publishes it again)"
            ),
            CheckAction::WouldBuild {
                version,
                tracking_issue_exists,
            } => write!(
                f,
                "would build {version} and {} the tracking issue (dry run: nothing was changed)",
                if *tracking_issue_exists {
                    "reuse"
                } else {
                    "open"
                }
            ),
            CheckAction::Queued {
                version,
                job_id,
                job_is_new,
                tracking_issue,
                tracking_issue_is_new,
            } => write!(
                f,
                "{} {version} as job #{job_id}; tracking issue {tracking_issue}{}",
                if *job_is_new {
                    "queued a build of"
                } else {
                    "a build was already queued for"
                },
                if *tracking_issue_is_new {
                    " (opened)"
                } else {
                    " (already open)"
                }
            ),
        }
    }
}

/// The newest stable version among `releases`: drafts, prereleases and tags that are not
/// plain versions are skipped, and "newest" is by version, not by date.
pub fn newest_stable(releases: &[Release]) -> Option<Version> {
    releases
        .iter()
        .filter(|r| !r.draft && !r.prerelease)
        .filter_map(|r| r.tag_name.parse::<Version>().ok())
        .max()
}

/// The newest version `manifest` lists for image `name`.
pub fn newest_listed(manifest: &Manifest, name: &str) -> Option<Version> {
    manifest
        .entries()
        .iter()
        .filter_map(|entry| ImageFileName::parse(&entry.file))
        .filter(|image| image.name == name)
        .map(|image| image.version)
        .max()
}

/// The check, with what it remembers between runs.
pub struct UpstreamWatch {
    pub github: GitHubApi,
    pub database: Database,
    pub settings: std::sync::Arc<Settings>,
    /// The first page's ETag and the whole list read with it.
    cached: Mutex<Option<(String, Vec<Release>)>>,
}

impl UpstreamWatch {
    pub fn new(github: GitHubApi, database: Database, settings: std::sync::Arc<Settings>) -> Self {
        UpstreamWatch {
            github,
            database,
            settings,
            cached: Mutex::new(None),
        }
    }

    /// Every release of the upstream repository, all pages.
    async fn upstream_releases(&self, auth: Auth) -> Result<Vec<Release>, CheckError> {
        let repo = &self.settings.upstream.repo;
        let cached_etag = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(etag, _)| etag.clone());
        let mut releases = Vec::new();
        let mut first_etag = None;
        for page in 1..=MAX_PAGES {
            let etag = cached_etag.as_deref().filter(|_| page == 1);
            let answer = public_releases_page(
                &self.github,
                auth,
                &self.settings.build_repo.repo,
                repo,
                page,
                etag,
            )
            .await?;
            let (batch, etag, has_next) = match answer {
                ReleasesPage::Releases {
                    releases,
                    etag,
                    has_next,
                } => (releases, etag, has_next),
                ReleasesPage::NotModified => {
                    let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
                    let Some((_, list)) = cached.as_ref() else {
                        return Err(CheckError::UnaskedNotModified { repo: repo.clone() });
                    };
                    tracing::debug!(%repo, "upstream releases unchanged (304)");
                    return Ok(list.clone());
                }
            };
            if page == 1 {
                first_etag = etag;
            }
            let count = batch.len();
            releases.extend(batch);
            if !has_next || count == 0 {
                break;
            }
        }
        if let Some(etag) = first_etag {
            *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((etag, releases.clone()));
        }
        Ok(releases)
    }

    /// One check; with `dry_run`, changes nothing and says what it would do.
    pub async fn check(&self, dry_run: bool) -> Result<CheckOutcome, CheckError> {
        let settings = &self.settings;
        let installation_id =
            installation_of(&self.database, &self.github, &settings.build_repo.repo).await?;
        let auth = Auth::Installation(installation_id);
        let releases = self.upstream_releases(auth).await?;
        let newest_upstream = newest_stable(&releases);
        // Published is listed in any channel: a version promoted on and pruned from the
        // first is not built again.
        let mut newest_published = None;
        for channel in settings.publish.channels().all() {
            let (manifest, _) =
                read_published_manifest(&self.github, auth, &settings.build_repo, channel).await?;
            newest_published = newest_published.max(newest_listed(&manifest, &settings.image.name));
        }
        let version = match (&newest_upstream, &newest_published) {
            (Some(upstream), Some(published)) if upstream > published => upstream.clone(),
            (Some(upstream), None) => upstream.clone(),
            _ => {
                return Ok(CheckOutcome {
                    newest_upstream,
                    newest_published,
                    action: CheckAction::UpToDate,
                });
            }
        };
        if self
            .database
            .withdrawal(&version)
            .await
            .map_err(CheckError::Withdrawals)?
            .is_some()
        {
            return Ok(CheckOutcome {
                newest_upstream,
                newest_published,
                action: CheckAction::Withdrawn { version },
            });
        }
        let repo = &settings.build_repo.repo;
        let label = &settings.schedule.tracking_label;
        let title = tracking_issue_title(&version);
        let existing = find_open_issue(&self.github, auth, repo, label, &title).await?;
        if dry_run {
            return Ok(CheckOutcome {
                newest_upstream,
                newest_published,
                action: CheckAction::WouldBuild {
                    version,
                    tracking_issue_exists: existing.is_some(),
                },
            });
        }
        let (issue, issue_is_new) = match existing {
            Some(issue) => (issue, false),
            None => {
                let body = format!(
                    "Grafana Alloy {version} is out (newest published here: {}). A build was queued; this issue is closed when the images are published.",
                    newest_published
                        .as_ref()
                        .map_or("none".to_owned(), Version::to_string)
                );
                (
                    open_issue(&self.github, auth, repo, &title, &body, &[label.as_str()]).await?,
                    true,
                )
            }
        };
        let queued = self
            .database
            .queue_job(&NewJob {
                kind: JobKind::Build,
                version: version.clone(),
                rebuild: false,
                dedupe_key: format!("upstream:{version}"),
                trigger: Trigger {
                    source: TriggerSource::Schedule,
                    repository: Some(repo.clone()),
                    issue_number: Some(issue.number),
                    ..Trigger::default()
                },
                installation_id: Some(installation_id),
            })
            .await
            .map_err(CheckError::Queue)?;
        tracing::info!(%version, job = queued.id(), issue = %issue.html_url, "upstream has a newer release");
        Ok(CheckOutcome {
            newest_upstream,
            newest_published,
            action: CheckAction::Queued {
                version,
                job_id: queued.id(),
                job_is_new: matches!(queued, Queued::New(_)),
                tracking_issue: issue.html_url,
                tracking_issue_is_new: issue_is_new,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestEntry;

    fn release(tag: &str, prerelease: bool, draft: bool) -> Release {
        Release {
            id: 0,
            tag_name: tag.into(),
            name: None,
            draft,
            prerelease,
            html_url: None,
            body: None,
            assets: Vec::new(),
        }
    }

    #[test]
    fn the_newest_stable_release_is_by_version_not_by_date() {
        // Newest first by date, as GitHub lists them: a patch of an older line came last.
        let releases = [
            release("v1.9.4", false, false),
            release("v1.11.0-rc.1", true, false),
            release("v1.12.0", false, true),
            release("v1.10.0", false, false),
            release("v1.9.3", false, false),
            release("nightly", false, false),
        ];
        assert_eq!(newest_stable(&releases).unwrap().to_string(), "1.10.0");
        assert_eq!(newest_stable(&[]), None);
    }

    #[test]
    fn the_newest_listed_version_comes_from_the_manifest() {
        let mut manifest = Manifest::default();
        for file in [
            "alloy-1.9.3-amd64.raw",
            "alloy-1.10.0.raw",
            "other-2.0.0-amd64.raw",
        ] {
            manifest
                .upsert(ManifestEntry {
                    sha256: "a".repeat(64),
                    file: file.into(),
                })
                .unwrap();
        }
        assert_eq!(
            newest_listed(&manifest, "alloy").unwrap().to_string(),
            "1.10.0"
        );
        assert_eq!(newest_listed(&Manifest::default(), "alloy"), None);
    }
}
