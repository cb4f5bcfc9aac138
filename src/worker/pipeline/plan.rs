//! A dry run of a whole job: every read the job's steps would do and none of their writes.
//! The images are downloaded and built into a directory of the caller's; what would be
//! uploaded, the manifest lines that would change, the release that would be made and
//! each consumer's pull request are decided by the same functions the steps use, and
//! returned as a [`Plan`] for a renderer ([`super::plan_text`]) to show.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::build::{ImagesToBuild, build_images, read_local_manifest};
use super::build_repository::{check_signer, read_published_manifest, read_published_signature};
use super::consumers::{
    ENROLLMENT_FILE, PinRead, PinTarget, all_consumers, branch_holds, pin_targets_of, read_pin,
    settled, update_branch,
};
use super::download::fetch_assets;
use super::manifest::merge;
use super::prune::{PruneReader, decide};
use super::put::put_request;
use super::release::release_name;
use super::upload::{compare, kept_records, publishable_files, refusal};
use super::{RepositoryAccess, StepError};
use crate::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use crate::database::Database;
use crate::database::job_result::{
    BuiltImage, ConsumerOutcome, ConsumerReport, Download, PinnedVersion, Publication, as_text,
};
use crate::ddi::VeritySigner;
use crate::github::api::GitHubApi;
use crate::github::pulls::open_pull_for_branch;
use crate::github::releases::release_by_tag;
use crate::provenance::StartedBy;
use crate::settings::channels::Channel;
use crate::settings::public_base_url::PublicBaseUrl;
use crate::settings::{ConsumerSettings, Settings};
use crate::signing::SigningKey;
use crate::signing::detached::SignatureIssuers;
use crate::storage::Storage;
use crate::text_diff::unified_diff;
use crate::version::Version;

/// What a plan reads through: the services the steps use, without the database's job
/// records.
pub struct PlanServices<'a> {
    pub github: &'a GitHubApi,
    pub storage: &'a Storage,
    pub settings: &'a Settings,
    /// Where hosts read the images (their URLs in the plan).
    pub public_base_url: &'a PublicBaseUrl,
    /// Read for the installations whose repositories may have enrolled.
    pub database: &'a Database,
    pub access: &'a dyn RepositoryAccess,
}

/// The job to plan.
pub struct PlanRequest<'a> {
    pub version: Version,
    /// Plan a `/rebuild`: published images with other hashes are replaced.
    pub rebuild: bool,
    /// Where the downloads and the build go (`out/` in it); assets there already are reused.
    pub work_dir: PathBuf,
    /// The key the server signs with; `None` when it would make one on its first start
    /// (the images are then built unsigned).
    pub signing_key: Option<&'a Arc<SigningKey>>,
    /// The key that signs the DDIs' root hashes, when `image.formats` includes `ddi`.
    pub verity_signer: Option<&'a Arc<VeritySigner>>,
    /// What asks for the plan, as the images' provenance records name it.
    pub started_by: StartedBy,
}

/// What a job would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    #[serde(with = "as_text")]
    pub version: Version,
    pub rebuild: bool,
    /// The signing key's fingerprint; `None`: one made at the server's first start.
    pub signing_key: Option<String>,
    /// The upstream release's page.
    pub upstream_release: Option<String>,
    /// The assets downloaded now, with the digests they were checked against (those in the
    /// work directory already are not listed).
    pub downloads: Vec<Download>,
    /// Where the images were built.
    pub out_dir: PathBuf,
    pub images: Vec<BuiltImage>,
    /// How this build relates to what the build repository's `SHA256SUMS` lists.
    pub publication: Publication,
    /// Why the job would stop at `upload` and publish nothing; the later sections are then
    /// absent.
    pub stops: Option<String>,
    /// The files the job would put in storage (none when `publication` is `unchanged`).
    pub uploads: Vec<PlannedUpload>,
    pub manifest: Option<ManifestPlan>,
    pub release: Option<ReleasePlan>,
    pub consumers: Option<Vec<ConsumerPlan>>,
    /// What `prune` would take out of `SHA256SUMS` after this publish.
    pub prune: Option<PrunePlan>,
    /// Why repositories that enrolled themselves could not be listed (they are then
    /// missing from `consumers`).
    pub enrollments_unread: Option<String>,
}

/// A file of the build and whether storage has it already.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedUpload {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    /// An object with this key and content is there already: nothing would be sent.
    pub in_storage: bool,
}

/// The build repository's `SHA256SUMS` as the job would commit it.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestPlan {
    pub repo: String,
    pub branch: String,
    /// Lines the merge removes, then lines it adds.
    pub removed: Vec<String>,
    pub added: Vec<String>,
    /// The unified diff of the file; empty when it would not change.
    pub diff: String,
}

/// What `prune` would do after the publish.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    /// `publish.keep_versions` (0: nothing is pruned).
    pub keep: u32,
    /// The versions that would leave `SHA256SUMS`, oldest first, each in a commit of its
    /// own.
    pub remove: Vec<Version>,
    /// Versions beyond the newest `keep` kept because a consumer's file pins them.
    pub kept_pinned: Vec<PinnedVersion>,
    /// Why nothing would be pruned although versions are beyond the newest `keep`.
    pub skipped: Option<String>,
}

/// The release the job would make.
#[derive(Debug, Clone, Serialize)]
pub struct ReleasePlan {
    pub repo: String,
    pub tag: String,
    pub name: String,
    /// The branch it would be made on.
    pub target: String,
    /// There is a release with this tag already (its page): the job leaves it.
    pub exists: Option<String>,
}

/// What the job would do in one consumer repository.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerPlan {
    pub repo: String,
    pub path: String,
    /// Enrolled by its own `.github/alloy-sysext.toml` rather than configured.
    pub enrolled: bool,
    /// The base branch and the branch the pull request would come from (none when the
    /// repository is skipped before its file is read).
    pub base: Option<String>,
    pub branch: Option<String>,
    pub action: ConsumerAction,
    /// The unified diff of the file's change; empty when there is none.
    pub diff: String,
}

/// Open, update, or skip a consumer's pull request.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ConsumerAction {
    /// A new pull request.
    Open {
        #[serde(with = "as_text")]
        from: Version,
    },
    /// The open pull request's branch gets the change.
    Update {
        #[serde(with = "as_text")]
        from: Version,
        pull_request: String,
    },
    Skip {
        reason: SkipReason,
    },
}

/// Why a consumer gets no pull request.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// The file pins this version and hash already.
    UpToDate {
        #[serde(with = "as_text")]
        from: Version,
    },
    /// The file pins a newer version: hosts are never downgraded.
    PinsNewer {
        #[serde(with = "as_text")]
        from: Version,
    },
    /// The pull request is open and its branch holds the change already.
    PullRequestOpen {
        #[serde(with = "as_text")]
        from: Version,
        pull_request: String,
    },
    /// The repository's enrollment file fails its checks.
    Refused { error: String },
    /// The job would fail for this repository.
    Fails { error: String },
}

impl PlannedUpload {
    /// What the job would do with the file.
    pub fn action(&self) -> &'static str {
        if self.in_storage {
            "already in storage"
        } else {
            "would upload"
        }
    }
}

impl ConsumerAction {
    /// What the job would do, to `version`, in words; a renderer gives how pull request
    /// URLs (`url`) and repository-made error text (`text`) are shown.
    pub fn describe(
        &self,
        version: &Version,
        url: impl Fn(&str) -> String,
        text: impl Fn(&str) -> String,
    ) -> String {
        match self {
            ConsumerAction::Open { from } => {
                format!("would open a pull request: {from} → {version}")
            }
            ConsumerAction::Update { from, pull_request } => {
                format!("would update {}: {from} → {version}", url(pull_request))
            }
            ConsumerAction::Skip { reason } => format!(
                "skip: {}",
                match reason {
                    SkipReason::UpToDate { from } => format!("pins {from} with this hash already"),
                    SkipReason::PinsNewer { from } => {
                        format!("pins {from}, newer: hosts are never downgraded")
                    }
                    SkipReason::PullRequestOpen { pull_request, .. } => format!(
                        "pull request open already with this change: {}",
                        url(pull_request)
                    ),
                    SkipReason::Refused { error } => format!("enrollment refused: {}", text(error)),
                    SkipReason::Fails { error } => format!("would fail: {}", text(error)),
                }
            ),
        }
    }
}

/// Plans the job `request` describes: downloads and builds into `request.work_dir`, and
/// reads GitHub and storage as the steps would, writing to neither.
pub async fn plan_job(
    services: &PlanServices<'_>,
    request: &PlanRequest<'_>,
) -> Result<Plan, StepError> {
    let settings = services.settings;
    let version = &request.version;
    let fetched = fetch_assets(
        services.github,
        services.access,
        settings,
        version,
        &request.work_dir,
    )
    .await?;
    let out_dir = request.work_dir.join("out");
    // A fresh directory, as `build` makes: its SHA256SUMS then lists exactly this build.
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir).map_err(StepError::work_dir("clearing", &out_dir))?;
    }
    let what = ImagesToBuild {
        version,
        zip_dir: &request.work_dir,
        out_dir: &out_dir,
        key: request.signing_key,
        verity_signer: request.verity_signer,
        started_by: &request.started_by,
        progress_of: 0,
    };
    let images = build_images(settings, services.public_base_url, &what).await?;
    let local = read_local_manifest(&out_dir.join(MANIFEST_FILE))?;
    let build_repo = &settings.build_repo;
    let auth = services.access.auth_for(&build_repo.repo).await?;
    let channels = settings.publish.channels();
    let channel = channels.first();
    let (published, current) =
        read_published_manifest(services.github, auth, build_repo, channel).await?;
    let (publication, differing) = compare(&local, &published);
    let mut stops = refusal(publication, &differing, request.rebuild, version);
    if stops.is_none() && publication != Publication::Unchanged {
        stops = signer_refusal(services, request.signing_key, auth).await?;
    }
    let mut plan = Plan {
        version: version.clone(),
        rebuild: request.rebuild,
        signing_key: request
            .signing_key
            .map(|key| key.signing_fingerprint().to_string()),
        upstream_release: fetched.release_url,
        downloads: fetched.checked,
        out_dir: out_dir.clone(),
        images,
        publication,
        stops,
        uploads: Vec::new(),
        manifest: None,
        release: None,
        consumers: None,
        prune: None,
        enrollments_unread: None,
    };
    if plan.stops.is_some() {
        return Ok(plan);
    }
    if publication != Publication::Unchanged {
        let key = request.signing_key.map(|key| key.public_key());
        plan.uploads =
            planned_uploads(services.storage, channel, &out_dir, &local, key.as_ref()).await?;
    }
    let before = current
        .as_ref()
        .map(|file| String::from_utf8_lossy(&file.content).into_owned())
        .unwrap_or_default();
    let merged = merge(published, &local)?;
    let after = merged.render();
    let (removed, added) = changed_lines(&before, &after);
    plan.manifest = Some(ManifestPlan {
        repo: build_repo.repo.clone(),
        branch: build_repo.branch.clone(),
        removed,
        added,
        diff: unified_diff(&channel.manifest_key(), &before, &after),
    });
    let tag = version.tag();
    let existing = release_by_tag(services.github, auth, &build_repo.repo, &tag).await?;
    plan.release = Some(ReleasePlan {
        repo: build_repo.repo.clone(),
        name: release_name(version),
        target: build_repo.branch.clone(),
        exists: existing.map(|release| {
            release
                .html_url
                .unwrap_or_else(|| format!("release {tag} in {}", build_repo.repo))
        }),
        tag,
    });
    let (consumers, enrollments_unread) = planned_consumers(services, &plan.images, version).await;
    plan.consumers = Some(consumers);
    plan.enrollments_unread = enrollments_unread;
    let keep = services.settings.publish.keep_versions;
    let reader = PruneReader {
        github: services.github,
        settings: services.settings,
        database: services.database,
        access: services.access,
    };
    let decision = decide(&reader, &merged, version).await;
    plan.prune = Some(PrunePlan {
        keep,
        remove: decision.remove,
        kept_pinned: decision.kept_pinned,
        skipped: decision.skipped,
    });
    Ok(plan)
}

/// Why `upload` would refuse to publish over the build repository's `SHA256SUMS.gpg`, if
/// it would. Without a key the server makes one on first start, which has signed nothing:
/// it may replace only signatures by keys `publish.replace_signatures_by` lists.
async fn signer_refusal(
    services: &PlanServices<'_>,
    key: Option<&Arc<SigningKey>>,
    auth: crate::github::api::Auth,
) -> Result<Option<String>, StepError> {
    let build_repo = &services.settings.build_repo;
    let channels = services.settings.publish.channels();
    let Some(signature) =
        read_published_signature(services.github, auth, build_repo, channels.first()).await?
    else {
        return Ok(None);
    };
    let allowed = &services.settings.publish.replace_signatures_by;
    let repo = &build_repo.repo;
    Ok(match key {
        Some(key) => check_signer(key, allowed, repo, &signature.content)
            .err()
            .map(|error| error.to_string()),
        None => match SignatureIssuers::of(&signature.content) {
            Ok(issuers) if allowed.iter().any(|key| issuers.named_by(key)) => None,
            Ok(issuers) => Some(format!(
                "{MANIFEST_SIGNATURE_FILE} in {repo} was signed by {issuers}, but the server would sign with a key it makes on its first start: hosts that trust the earlier key would refuse it. Give the server the key hosts trust (GPG_PRIVATE_KEY or SIGNING_KEY_PATH)."
            )),
            Err(error) => Some(format!(
                "{MANIFEST_SIGNATURE_FILE} in {repo} cannot be read ({error}); nothing would be published"
            )),
        },
    })
}

/// Each file of the build in `out_dir`, in the order `upload` puts them into `channel`,
/// and whether storage has it already (a provenance record of the same image counts, since
/// it stays).
async fn planned_uploads(
    storage: &Storage,
    channel: &Channel,
    out_dir: &Path,
    local: &crate::manifest::Manifest,
    key: Option<&crate::signing::PublicKey>,
) -> Result<Vec<PlannedUpload>, StepError> {
    let kept = kept_records(storage, channel, local, key).await?;
    let mut uploads = Vec::new();
    for file in publishable_files(out_dir, local)? {
        let size = std::fs::metadata(&file.path)
            .map_err(StepError::work_dir("reading", &file.path))?
            .len();
        let key = channel.key(&file.key);
        let in_storage = kept.contains(&file.key)
            || storage
                .holds(&put_request(&key, &file.path, &file.sha256))
                .await?;
        uploads.push(PlannedUpload {
            key: file.key,
            size,
            sha256: file.sha256,
            in_storage,
        });
    }
    Ok(uploads)
}

/// The lines of `before` that `after` lacks, and the lines of `after` that `before` lacks.
fn changed_lines(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let old: HashSet<&str> = before.lines().collect();
    let new: HashSet<&str> = after.lines().collect();
    let removed = before
        .lines()
        .filter(|l| !new.contains(l))
        .map(str::to_owned)
        .collect();
    let added = after
        .lines()
        .filter(|l| !old.contains(l))
        .map(str::to_owned)
        .collect();
    (removed, added)
}

/// Every consumer, configured then enrolled, with what the job would do there; then the
/// repositories whose enrollment was refused or could not be read.
async fn planned_consumers(
    services: &PlanServices<'_>,
    images: &[BuiltImage],
    version: &Version,
) -> (Vec<ConsumerPlan>, Option<String>) {
    let consumers = all_consumers(services.github, services.settings, services.database).await;
    let images = pin_targets_of(images);
    let mut plans = Vec::new();
    let configured = consumers.configured.iter().map(|c| (c, false));
    let enrolled = consumers.enrolled.iter().map(|c| (c, true));
    for (consumer, is_enrolled) in configured.chain(enrolled) {
        let plan = match planned_consumer(services, consumer, &images, version).await {
            Ok((action, diff)) => ConsumerPlan {
                repo: consumer.repo.clone(),
                path: consumer.path.clone(),
                enrolled: is_enrolled,
                base: Some(consumer.base.clone()),
                branch: Some(update_branch(version)),
                action,
                diff,
            },
            Err(error) => ConsumerPlan {
                repo: consumer.repo.clone(),
                path: consumer.path.clone(),
                enrolled: is_enrolled,
                base: Some(consumer.base.clone()),
                branch: None,
                action: ConsumerAction::Skip {
                    reason: SkipReason::Fails {
                        error: error.to_string(),
                    },
                },
                diff: String::new(),
            },
        };
        plans.push(plan);
    }
    plans.extend(consumers.refused.into_iter().map(refused_plan));
    (plans, consumers.enrollments_unread)
}

/// A repository whose enrollment file was refused or could not be read.
fn refused_plan(report: ConsumerReport) -> ConsumerPlan {
    let reason = match report.outcome {
        ConsumerOutcome::Refused { error } => SkipReason::Refused { error },
        ConsumerOutcome::Failed { error, .. } => SkipReason::Fails { error },
        other => SkipReason::Fails {
            error: format!("{ENROLLMENT_FILE}: {}", other.name()),
        },
    };
    ConsumerPlan {
        repo: report.repo,
        path: report.path,
        enrolled: true,
        base: None,
        branch: None,
        action: ConsumerAction::Skip { reason },
        diff: String::new(),
    }
}

/// What `consumers` would do in `consumer`'s repository, and the diff of its file.
async fn planned_consumer(
    services: &PlanServices<'_>,
    consumer: &ConsumerSettings,
    images: &[PinTarget],
    version: &Version,
) -> Result<(ConsumerAction, String), StepError> {
    let api = services.github;
    let repo = &consumer.repo;
    let auth = services.access.auth_for(repo).await?;
    let PinRead {
        base_file,
        edit,
        image,
        ..
    } = read_pin(
        api,
        auth,
        consumer,
        &services.settings.image.name,
        images,
        version,
    )
    .await?;
    let before = String::from_utf8_lossy(&base_file.content);
    let diff = unified_diff(&consumer.path, &before, &edit.text);
    let from = edit.previous.version.clone();
    if let Some(outcome) = settled(&edit, image, version) {
        let reason = match outcome {
            ConsumerOutcome::PinsNewer { from, .. } => SkipReason::PinsNewer { from },
            _ => SkipReason::UpToDate { from },
        };
        return Ok((ConsumerAction::Skip { reason }, String::new()));
    }
    let branch = update_branch(version);
    let holds = branch_holds(api, auth, repo, &branch, &consumer.path, &edit.text).await?;
    let action = match open_pull_for_branch(api, auth, repo, &branch).await? {
        None => ConsumerAction::Open { from },
        Some(pull) if holds => ConsumerAction::Skip {
            reason: SkipReason::PullRequestOpen {
                from,
                pull_request: pull.html_url,
            },
        },
        Some(pull) => ConsumerAction::Update {
            from,
            pull_request: pull.html_url,
        },
    };
    Ok((action, diff))
}
