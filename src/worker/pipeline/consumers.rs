//! Step 6: a pull request in each consumer repository that pins the new image in its
//! Butane file, changing only the Alloy version strings and hash (SPEC §5).
//!
//! A consumer whose file already pins this version and hash is left alone. The update
//! branch is reset from the base only when it does not already hold the wanted file, and an
//! open pull request for it is updated, never duplicated. A consumer that fails does not
//! stop the others; an enrolled repository that fails, even for a reason that may pass
//! (a file changed meanwhile, GitHub busy), fails alone and does not hold the job in
//! retries, as configured consumers do. A repository's own enrollment file is checked as
//! `CONFIG_FILE` consumers are; one that fails is reported as refused, naming the key, and
//! gets nothing; one that cannot be read is reported as failed.

use super::{StepContext, StepError};
use crate::arch::Arch;
use crate::artifacts::image_format::ImageFormat;
use crate::butane::{ButaneEdit, ButaneError, update_alloy_pin};
use crate::database::Database;
use crate::database::installations::InstallationState;
use crate::database::job_result::{BuiltImage, ConsumerOutcome, ConsumerReport};
use crate::github::api::{ApiError, Auth, GitHubApi};
use crate::github::branches::{branch_head, reset_branch};
use crate::github::collaborators::can_write;
use crate::github::contents::{
    FileTarget, FileWrite, RepoFile, read_default_branch_file, read_file, write_file,
};
use crate::github::markdown::{code_span, safe_url, table_code_span};
use crate::github::pulls::{PullRequest, assign, open_pull, open_pull_for_branch, update_pull};
use crate::manifest::image_name::ImageFileName;
use crate::settings::channels::Channel;
use crate::settings::{ConsumerSettings, Settings};
use crate::version::Version;

/// The file a repository adds to enroll itself as a consumer.
pub const ENROLLMENT_FILE: &str = ".github/alloy-sysext.toml";

/// The branches consumer pull requests come from.
pub const UPDATE_BRANCH_PREFIX: &str = "feature/update-alloy-sysext-to-";

/// An image a consumer's file can be pinned to: its architecture, file name, hash and
/// download address (empty without a public address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinTarget {
    pub arch: Arch,
    pub file: String,
    pub sha256: String,
    pub url: String,
}

impl From<&BuiltImage> for PinTarget {
    fn from(image: &BuiltImage) -> PinTarget {
        PinTarget {
            arch: image.arch,
            file: image.file.clone(),
            sha256: image.sha256.clone(),
            url: image.url.clone(),
        }
    }
}

/// What consumers are pinned to among a build's `images`: the squashfs images, one per
/// architecture. Hosts opt in to the DDIs in their own transfer definitions.
pub(super) fn pin_targets_of(images: &[BuiltImage]) -> Vec<PinTarget> {
    images
        .iter()
        .filter(|image| {
            ImageFileName::parse(&image.file)
                .is_none_or(|parsed| parsed.format == ImageFormat::Squashfs)
        })
        .map(PinTarget::from)
        .collect()
}

/// The branch a consumer's pull request for `version` comes from:
/// `feature/update-alloy-sysext-to-X.Y.Z`.
pub(super) fn update_branch(version: &Version) -> String {
    format!("{UPDATE_BRANCH_PREFIX}{version}")
}

/// The images a job's consumers are pinned to, in the channel it published to: a build's
/// own, or the files a promotion took along.
fn pin_targets(context: &StepContext<'_>, channel: &Channel) -> Vec<PinTarget> {
    let result = context.result();
    let url = |file: &str| {
        context
            .public_base_url
            .url(&channel.key(file))
            .unwrap_or_default()
    };
    match &result.promotion {
        Some(promotion) => promotion
            .files
            .iter()
            .filter_map(|listed| {
                let parsed = ImageFileName::parse(&listed.file)?;
                // Consumers pin the squashfs image; hosts opt in to the DDI themselves.
                (parsed.format == ImageFormat::Squashfs).then_some(())?;
                Some(PinTarget {
                    arch: parsed.arch?,
                    file: listed.file.clone(),
                    sha256: listed.sha256.clone(),
                    url: url(&listed.file),
                })
            })
            .collect(),
        None => pin_targets_of(result.images.as_deref().unwrap_or_default())
            .into_iter()
            .map(|target| PinTarget {
                url: url(&target.file),
                ..target
            })
            .collect(),
    }
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let channel = context.publish_channel()?;
    let images = pin_targets(context, &channel);
    if images.is_empty() {
        return Err(StepError::Permanent("the job recorded no images".into()));
    }
    let consumers = all_consumers(context.github, context.settings, context.database).await;
    // Counted here rather than where they are found: a dry run finds them too.
    for refused in &consumers.refused {
        let outcome = match refused.outcome {
            ConsumerOutcome::Refused { .. } => "refused",
            _ => "failed",
        };
        crate::metrics::global().consumer_update(outcome);
    }
    let mut outcomes = consumers.refused;
    let mut transient = Vec::new();
    let configured = consumers.configured.iter().map(|c| (c, false));
    let enrolled = consumers.enrolled.iter().map(|c| (c, true));
    for (consumer, is_enrolled) in configured.chain(enrolled) {
        // Each consumer gets the versions of the channel it follows, when they reach it.
        match context.settings.channel_of(consumer) {
            Ok(follows) if follows.name == channel.name => {}
            Ok(follows) => {
                outcomes.push(ConsumerReport {
                    repo: consumer.repo.clone(),
                    path: consumer.path.clone(),
                    outcome: ConsumerOutcome::OtherChannel {
                        channel: follows.name,
                    },
                });
                continue;
            }
            Err(error) => {
                crate::metrics::global().consumer_update("refused");
                outcomes.push(ConsumerReport {
                    repo: consumer.repo.clone(),
                    path: consumer.path.clone(),
                    outcome: ConsumerOutcome::Refused {
                        error: format!("{ENROLLMENT_FILE}: {error}"),
                    },
                });
                continue;
            }
        }
        match update_consumer(context, consumer, is_enrolled, &images).await {
            Ok(outcome) => {
                crate::metrics::global().consumer_update("ok");
                outcomes.push(outcome)
            }
            // An enrolled repository is anyone's: it must not be able to hold the job in
            // retries (a file that changes under every write, a ref that never resolves),
            // so it fails alone and is tried again with the next build.
            Err(StepError::Interrupted) => return Err(StepError::Interrupted),
            Err(error) if error.is_transient() && !is_enrolled => {
                crate::metrics::global().consumer_update("retrying");
                tracing::warn!(job = context.job.id, repo = %consumer.repo, %error, "updating a consumer failed; it will be tried again");
                outcomes.push(ConsumerReport {
                    repo: consumer.repo.clone(),
                    path: consumer.path.clone(),
                    outcome: ConsumerOutcome::Failed {
                        error: error.to_string(),
                        will_retry: true,
                    },
                });
                transient.push((consumer.repo.clone(), error));
            }
            Err(error) => {
                crate::metrics::global().consumer_update("failed");
                tracing::error!(job = context.job.id, repo = %consumer.repo, %error, "updating a consumer failed");
                outcomes.push(ConsumerReport {
                    repo: consumer.repo.clone(),
                    path: consumer.path.clone(),
                    outcome: ConsumerOutcome::Failed {
                        error: error.to_string(),
                        will_retry: false,
                    },
                });
            }
        }
    }
    context
        .record(|result| result.consumers = Some(outcomes))
        .await?;
    if !transient.is_empty() {
        return Err(StepError::ConsumersLeft(transient));
    }
    Ok(())
}

/// The consumers of a job: the configured ones, the repositories that enrolled themselves,
/// and, as their outcomes, the repositories whose enrollment file was refused or could not
/// be read.
pub(super) struct Consumers {
    pub configured: Vec<ConsumerSettings>,
    pub enrolled: Vec<ConsumerSettings>,
    pub refused: Vec<ConsumerReport>,
    /// Why the repositories that may have enrolled could not be listed, when they could not.
    pub enrollments_unread: Option<String>,
}

/// The configured consumers, then the repositories of active installations that enrolled
/// themselves with [`ENROLLMENT_FILE`] on their default branch.
pub(super) async fn all_consumers(
    github: &GitHubApi,
    settings: &Settings,
    database: &Database,
) -> Consumers {
    let mut consumers = Consumers {
        configured: settings.consumers.clone(),
        enrolled: Vec::new(),
        refused: Vec::new(),
        enrollments_unread: None,
    };
    let installations = match database.installations().await {
        Ok(installations) => installations,
        Err(error) => {
            tracing::warn!(%error, "reading installations; enrolled consumers are skipped");
            consumers.enrollments_unread = Some(format!("reading the installations: {error}"));
            return consumers;
        }
    };
    for installation in installations
        .iter()
        .filter(|i| i.state == InstallationState::Active)
    {
        for repo in &installation.repositories {
            if repo.eq_ignore_ascii_case(&settings.build_repo.repo)
                || consumers
                    .configured
                    .iter()
                    .chain(&consumers.enrolled)
                    .any(|c| c.repo.eq_ignore_ascii_case(repo))
            {
                continue;
            }
            let auth = Auth::Installation(installation.id);
            match read_default_branch_file(github, auth, repo, ENROLLMENT_FILE).await {
                Ok(Some(file)) => match ConsumerSettings::from_enrollment(repo, &file.content) {
                    Ok(consumer) => consumers.enrolled.push(consumer),
                    Err(error) => {
                        tracing::warn!(%repo, %error, "{ENROLLMENT_FILE} is refused; no pull request is opened there");
                        consumers.refused.push(ConsumerReport {
                            repo: repo.clone(),
                            path: ENROLLMENT_FILE.into(),
                            outcome: ConsumerOutcome::Refused {
                                error: format!("{ENROLLMENT_FILE}: {error}"),
                            },
                        });
                    }
                },
                Ok(None) => {}
                // The repository may have enrolled: its owners must hear that it was not
                // served, and the job must not look complete.
                Err(error) => {
                    tracing::warn!(%repo, %error, "{ENROLLMENT_FILE} could not be read; no pull request is opened there");
                    consumers.refused.push(ConsumerReport {
                        repo: repo.clone(),
                        path: ENROLLMENT_FILE.into(),
                        outcome: ConsumerOutcome::Failed {
                            error: format!("reading {ENROLLMENT_FILE}: {error}"),
                            will_retry: false,
                        },
                    });
                }
            }
        }
    }
    consumers
}

/// Whether `repo` is a consumer: configured, or enrolled by a valid enrollment file on its
/// default branch.
pub(crate) async fn is_consumer(
    settings: &Settings,
    github: &GitHubApi,
    auth: Auth,
    repo: &str,
) -> Result<bool, ApiError> {
    if settings
        .consumers
        .iter()
        .any(|c| c.repo.eq_ignore_ascii_case(repo))
    {
        return Ok(true);
    }
    Ok(
        read_default_branch_file(github, auth, repo, ENROLLMENT_FILE)
            .await?
            .is_some_and(|file| ConsumerSettings::from_enrollment(repo, &file.content).is_ok()),
    )
}

/// Those of an enrollment file's `assignees` who may push to the enrolled repository itself:
/// anyone can write the file, and an assignment notifies, so the App never assigns (nor
/// notifies) someone on a stranger's word. A login whose permission cannot be read is left
/// out.
async fn writers_of(api: &GitHubApi, auth: Auth, repo: &str, assignees: &[String]) -> Vec<String> {
    let mut writers = Vec::new();
    for login in assignees {
        match can_write(api, auth, repo, login).await {
            Ok(true) => writers.push(login.clone()),
            Ok(false) => {
                tracing::info!(%repo, %login, "not assigned: the enrollment file names someone who cannot push to the repository")
            }
            Err(error) => {
                tracing::warn!(%repo, %login, %error, "not assigned: their permission could not be read")
            }
        }
    }
    writers
}

/// An address in a pull request body: bare when it is a plain web address, else in a code
/// span.
fn link_or_code(url: &str) -> String {
    safe_url(url).map_or_else(|| code_span(url), str::to_owned)
}

/// The pull request's body. The path and the hashes read from the consumer's file are in
/// code spans: they come from the repository.
fn pull_body(
    context: &StepContext<'_>,
    edit: &ButaneEdit,
    image: &PinTarget,
    consumer: &ConsumerSettings,
) -> String {
    let result = context.result();
    let upstream = result
        .upstream_release
        .as_ref()
        .and_then(Option::as_deref)
        .map(|u| format!("- Upstream release notes: {}\n", link_or_code(u)))
        .unwrap_or_default();
    let release = result
        .release
        .as_ref()
        .and_then(Option::as_deref)
        .map(|u| format!("- Sysext release: {}\n", link_or_code(u)))
        .unwrap_or_default();
    format!(
        "## Summary\n\nUpdates the Grafana Alloy sysext in {path} from **{from}** to **{to}**.\n\n\
         | | version | sha256 |\n|---|---|---|\n| from | {from} | {from_hash} |\n| to | {to} | {to_hash} |\n\n\
         Only the Alloy image's version strings and its hash change.\n\n\
         ## Test plan\n\n\
         - [ ] CI passes\n\
         - [ ] A host provisioned from this config starts `alloy.service` on {to}\n\
         - [ ] `systemd-sysext status` lists the alloy extension\n\n\
         ## Links\n\n\
         {downloads}\
         {upstream}{release}",
        path = code_span(&consumer.path),
        from = edit.previous.version,
        from_hash = table_code_span(&edit.previous.sha256),
        to = context.job.version,
        to_hash = table_code_span(&image.sha256),
        downloads = download_links(image),
    )
}

/// The lines that link the image and its checksum; without a public address, a line that
/// names the image and says why it has no link.
pub(super) fn download_links(image: &PinTarget) -> String {
    if image.url.is_empty() {
        return format!(
            "- Image: {} (no link: the server that built it has no public URL for its images; set `PUBLIC_URL` or `publish.base_url` on it)\n",
            code_span(&image.file)
        );
    }
    format!(
        "- Image: {}\n- Checksum: {}\n",
        link_or_code(&image.url),
        link_or_code(&format!("{}.sha256", image.url)),
    )
}

/// A consumer's Butane file as read on its base branch, and the edit that pins this build.
pub(super) struct PinRead<'i> {
    /// The base branch's head commit, which the file was read at.
    pub base_head: String,
    pub base_file: RepoFile,
    pub edit: ButaneEdit,
    /// The image the file pins (its architecture's).
    pub image: &'i PinTarget,
}

/// Reads `consumer`'s file at the head of its base branch and computes the edit that pins
/// `version` with the image of the architecture the file pins.
pub(super) async fn read_pin<'i>(
    api: &GitHubApi,
    auth: Auth,
    consumer: &ConsumerSettings,
    image_name: &str,
    images: &'i [PinTarget],
    version: &Version,
) -> Result<PinRead<'i>, StepError> {
    let repo = &consumer.repo;
    let Some(base_head) = branch_head(api, auth, repo, &consumer.base).await? else {
        return Err(StepError::Permanent(format!(
            "{repo} has no branch {}",
            consumer.base
        )));
    };
    // Read at the commit the branch reset below starts from: a name would be resolved again
    // by GitHub (a tag of that name may win), and a push meanwhile would move it.
    let Some(base_file) = read_file(api, auth, repo, &base_head, &consumer.path).await? else {
        return Err(StepError::Permanent(format!(
            "{repo} has no file {} on {}",
            consumer.path, consumer.base
        )));
    };
    let text = String::from_utf8(base_file.content.clone()).map_err(|_| {
        StepError::Permanent(format!("{} in {repo} is not UTF-8 text", consumer.path))
    })?;
    // The consumer pins one architecture's image; find which.
    // The error of an entry that exists says more than another architecture's "no entry".
    let mut last_error: Option<ButaneError> = None;
    let mut found = None;
    for image in images {
        match update_alloy_pin(&text, image_name, image.arch, version, &image.sha256) {
            Ok(edit) => {
                found = Some((edit, image));
                break;
            }
            Err(error) => last_error = last_error.filter(|e| !e.is_no_entry()).or(Some(error)),
        }
    }
    let (edit, image) = match (found, last_error) {
        (Some(found), _) => found,
        (None, Some(source)) => {
            return Err(StepError::Pin {
                repo: repo.clone(),
                path: consumer.path.clone(),
                source: Box::new(source),
            });
        }
        (None, None) => return Err(StepError::Permanent("the build recorded no images".into())),
    };
    Ok(PinRead {
        base_head,
        base_file,
        edit,
        image,
    })
}

/// The outcome of a consumer whose file needs no pull request: it pins `version` with this
/// hash already, or pins a newer version (a build of an older version, a late `/build` or
/// `/rebuild`, never downgrades hosts).
pub(super) fn settled(
    edit: &ButaneEdit,
    image: &PinTarget,
    version: &Version,
) -> Option<ConsumerOutcome> {
    let from = edit.previous.version.clone();
    let pinned = image.file.clone();
    if !edit.changed {
        Some(ConsumerOutcome::UpToDate {
            from,
            image: pinned,
        })
    } else if &edit.previous.version > version {
        Some(ConsumerOutcome::PinsNewer {
            from,
            image: pinned,
        })
    } else {
        None
    }
}

/// Whether `branch` of `repo` exists and holds `text` at `path`.
pub(super) async fn branch_holds(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    branch: &str,
    path: &str,
    text: &str,
) -> Result<bool, ApiError> {
    let on_branch = match branch_head(api, auth, repo, branch).await? {
        Some(head) => read_file(api, auth, repo, &head, path).await?,
        None => None,
    };
    Ok(on_branch.is_some_and(|f| f.content == text.as_bytes()))
}

async fn update_consumer(
    context: &StepContext<'_>,
    consumer: &ConsumerSettings,
    is_enrolled: bool,
    images: &[PinTarget],
) -> Result<ConsumerReport, StepError> {
    let version = &context.job.version;
    let api = context.github;
    let repo = &consumer.repo;
    let auth = context.auth_for(repo).await?;
    let PinRead {
        base_head,
        base_file,
        edit,
        image,
    } = read_pin(
        api,
        auth,
        consumer,
        &context.settings.image.name,
        images,
        version,
    )
    .await?;
    let report = |outcome| ConsumerReport {
        repo: repo.clone(),
        path: consumer.path.clone(),
        outcome,
    };
    if let Some(settled) = settled(&edit, image, version) {
        return Ok(report(settled));
    }
    let mut body = pull_body(context, &edit, image, consumer);
    body.extend(edit.yaml_check.review_note());
    let proposal = Proposal {
        branch: update_branch(version),
        base_head: &base_head,
        base_file: &base_file,
        text: &edit.text,
        commit_message: format!("chore: update Grafana Alloy sysext to {version}"),
        title: format!("Update Grafana Alloy sysext to {version}"),
        body,
    };
    let proposed = propose(context, consumer, is_enrolled, &proposal).await?;
    let outcome = proposed.outcome(edit.previous.version.clone(), image.file.clone());
    tracing::info!(job = context.job.id, %repo, pull = ?outcome.pull_request(), outcome = outcome.name(), "consumer updated");
    Ok(report(outcome))
}

/// A change to a consumer's file, proposed in a pull request from a branch of its own.
pub(super) struct Proposal<'a> {
    pub branch: String,
    /// The base branch's head, which the branch is reset to, and the file read there.
    pub base_head: &'a str,
    pub base_file: &'a RepoFile,
    /// The file's new text.
    pub text: &'a str,
    pub commit_message: String,
    pub title: String,
    pub body: String,
}

/// What became of a proposal's pull request.
pub(super) enum Proposed {
    Opened(PullRequest),
    /// The branch or the pull request's text changed.
    Updated(PullRequest),
    /// Open already with this text and this file.
    Unchanged(PullRequest),
}

impl Proposed {
    /// The consumer's outcome, for a file that pinned `from` and now pins `image`.
    pub(super) fn outcome(self, from: Version, image: String) -> ConsumerOutcome {
        match self {
            Proposed::Opened(pull) => ConsumerOutcome::Opened {
                from,
                image,
                pull_request: pull.html_url,
            },
            Proposed::Updated(pull) => ConsumerOutcome::Updated {
                from,
                image,
                pull_request: pull.html_url,
            },
            Proposed::Unchanged(pull) => ConsumerOutcome::Unchanged {
                from,
                image,
                pull_request: pull.html_url,
            },
        }
    }
}

/// Commits `proposal.text` to its branch (reset from the base only when it does not hold
/// that text yet, so a second run adds no commit) and opens its pull request, or updates
/// the open one; never a second one. A pull request opened in an enrolled repository is
/// assigned only to the listed assignees who may push there.
pub(super) async fn propose(
    context: &StepContext<'_>,
    consumer: &ConsumerSettings,
    is_enrolled: bool,
    proposal: &Proposal<'_>,
) -> Result<Proposed, StepError> {
    let api = context.github;
    let repo = &consumer.repo;
    let auth = context.auth_for(repo).await?;
    let branch = &proposal.branch;
    let mut committed = false;
    if !branch_holds(api, auth, repo, branch, &consumer.path, proposal.text).await? {
        reset_branch(api, auth, repo, branch, proposal.base_head).await?;
        match write_file(
            api,
            auth,
            FileTarget {
                repo,
                branch,
                path: &consumer.path,
            },
            proposal.text.as_bytes(),
            Some(proposal.base_file),
            &proposal.commit_message,
        )
        .await?
        {
            FileWrite::Committed { .. } => committed = true,
            FileWrite::Unchanged => {}
            FileWrite::Stale => {
                return Err(StepError::Transient(format!(
                    "{} in {repo} changed while it was updated",
                    consumer.path
                )));
            }
        }
    }
    let (title, body) = (&proposal.title, &proposal.body);
    let proposed = match open_pull_for_branch(api, auth, repo, branch).await? {
        Some(existing) => {
            if existing.title != *title || existing.body.as_deref() != Some(body.as_str()) {
                update_pull(api, auth, repo, existing.number, title, body).await?;
                Proposed::Updated(existing)
            } else if committed {
                Proposed::Updated(existing)
            } else {
                Proposed::Unchanged(existing)
            }
        }
        None => {
            let opened = match open_pull(api, auth, repo, branch, &consumer.base, title, body).await
            {
                Ok(pull) => pull,
                // Opened by an earlier attempt whose answer was lost.
                Err(error) if error.status() == Some(422) => {
                    open_pull_for_branch(api, auth, repo, branch)
                        .await?
                        .ok_or(error)?
                }
                Err(error) => return Err(error.into()),
            };
            let assignees = if is_enrolled {
                writers_of(api, auth, repo, &consumer.assignees).await
            } else {
                consumer.assignees.clone()
            };
            assign(api, auth, repo, opened.number, &assignees).await?;
            Proposed::Opened(opened)
        }
    };
    Ok(proposed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(url: &str) -> PinTarget {
        PinTarget {
            arch: Arch::Amd64,
            file: "alloy-1.2.3-amd64.raw".into(),
            sha256: "b".repeat(64),
            url: url.into(),
        }
    }

    #[test]
    fn an_image_with_an_address_is_linked_with_its_checksum() {
        assert_eq!(
            download_links(&image(
                "https://alloy.example.test/images/alloy-1.2.3-amd64.raw"
            )),
            "- Image: https://alloy.example.test/images/alloy-1.2.3-amd64.raw\n\
             - Checksum: https://alloy.example.test/images/alloy-1.2.3-amd64.raw.sha256\n"
        );
    }

    #[test]
    fn an_image_without_an_address_is_named_with_the_settings_that_give_one() {
        assert_eq!(
            download_links(&image("")),
            "- Image: `alloy-1.2.3-amd64.raw` (no link: the server that built it has no public URL for its images; set `PUBLIC_URL` or `publish.base_url` on it)\n"
        );
    }
}
