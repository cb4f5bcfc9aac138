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

use serde_json::{Value, json};

use super::{JobContext, StepError};
use crate::arch::Arch;
use crate::butane::{ButaneEdit, ButaneError, update_alloy_pin};
use crate::github::api::{ApiError, Auth, GitHubApi};
use crate::github::branches::{branch_head, reset_branch};
use crate::github::collaborators::can_write;
use crate::github::contents::{
    FileTarget, FileWrite, read_default_branch_file, read_file, write_file,
};
use crate::github::pulls::{PullRequest, assign, open_pull, open_pull_for_branch, update_pull};
use crate::markdown::{code_span, safe_url, table_code_span};
use crate::settings::ConsumerSettings;
use crate::worker::Worker;

/// The file a repository adds to enroll itself as a consumer.
pub const ENROLLMENT_FILE: &str = ".github/alloy-sysext.toml";

/// One image this job published.
#[derive(Debug, Clone)]
struct Image {
    arch: Arch,
    file: String,
    sha256: String,
    url: String,
}

fn images(result: &Value) -> Vec<Image> {
    result
        .get("images")
        .and_then(|i| i.as_array())
        .map(|images| {
            images
                .iter()
                .filter_map(|image| {
                    Some(Image {
                        arch: image.get("arch")?.as_str()?.parse().ok()?,
                        file: image.get("file")?.as_str()?.to_owned(),
                        sha256: image.get("sha256")?.as_str()?.to_owned(),
                        url: image.get("url")?.as_str()?.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub async fn run(context: &mut JobContext<'_>) -> Result<(), StepError> {
    let images = images(&context.result());
    if images.is_empty() {
        return Err(StepError::Permanent("the build recorded no images".into()));
    }
    let consumers = all_consumers(context).await;
    let mut outcomes = consumers.refused;
    let mut transient = Vec::new();
    let configured = consumers.configured.iter().map(|c| (c, false));
    let enrolled = consumers.enrolled.iter().map(|c| (c, true));
    for (consumer, is_enrolled) in configured.chain(enrolled) {
        match update_consumer(context, consumer, is_enrolled, &images).await {
            Ok(outcome) => {
                crate::metrics::global().consumer_update("ok");
                outcomes.push(outcome)
            }
            // An enrolled repository is anyone's: it must not be able to hold the job in
            // retries (a file that changes under every write, a ref that never resolves),
            // so it fails alone and is tried again with the next build.
            Err(StepError::Transient(error)) if !is_enrolled => {
                crate::metrics::global().consumer_update("retrying");
                tracing::warn!(job = context.job.id, repo = %consumer.repo, %error, "updating a consumer failed; it will be tried again");
                transient.push(format!("{}: {error}", consumer.repo));
                outcomes.push(json!({"repo": consumer.repo, "path": consumer.path, "outcome": "failed", "error": error, "will_retry": true}));
            }
            Err(StepError::Transient(error) | StepError::Permanent(error)) => {
                crate::metrics::global().consumer_update("failed");
                tracing::error!(job = context.job.id, repo = %consumer.repo, %error, "updating a consumer failed");
                outcomes.push(json!({"repo": consumer.repo, "path": consumer.path, "outcome": "failed", "error": error}));
            }
            Err(StepError::Interrupted) => return Err(StepError::Interrupted),
        }
    }
    context.record(json!({ "consumers": outcomes })).await?;
    if !transient.is_empty() {
        return Err(StepError::Transient(format!(
            "consumer updates failed: {}",
            transient.join("; ")
        )));
    }
    Ok(())
}

/// The consumers of a job: the configured ones, the repositories that enrolled themselves,
/// and, as their outcomes, the repositories whose enrollment file was refused or could not
/// be read.
struct Consumers {
    configured: Vec<ConsumerSettings>,
    enrolled: Vec<ConsumerSettings>,
    refused: Vec<Value>,
}

/// The configured consumers, then the repositories that enrolled themselves.
async fn all_consumers(context: &JobContext<'_>) -> Consumers {
    let worker = context.worker;
    let mut consumers = Consumers {
        configured: worker.settings.consumers.clone(),
        enrolled: Vec::new(),
        refused: Vec::new(),
    };
    let installations = match worker.database.installations().await {
        Ok(installations) => installations,
        Err(error) => {
            tracing::warn!(%error, "reading installations; enrolled consumers are skipped");
            return consumers;
        }
    };
    for installation in installations.iter().filter(|i| i.state == "active") {
        for repo in &installation.repositories {
            if repo.eq_ignore_ascii_case(&worker.settings.build_repo.repo)
                || consumers
                    .configured
                    .iter()
                    .chain(&consumers.enrolled)
                    .any(|c| c.repo.eq_ignore_ascii_case(repo))
            {
                continue;
            }
            let auth = Auth::Installation(installation.id);
            match read_default_branch_file(&worker.github, auth, repo, ENROLLMENT_FILE).await {
                Ok(Some(file)) => match ConsumerSettings::from_enrollment(repo, &file.content) {
                    Ok(consumer) => consumers.enrolled.push(consumer),
                    Err(error) => {
                        tracing::warn!(%repo, %error, "{ENROLLMENT_FILE} is refused; no pull request is opened there");
                        crate::metrics::global().consumer_update("refused");
                        consumers.refused.push(json!({
                            "repo": repo,
                            "path": ENROLLMENT_FILE,
                            "outcome": "refused",
                            "error": format!("{ENROLLMENT_FILE}: {error}"),
                        }));
                    }
                },
                Ok(None) => {}
                // The repository may have enrolled: its owners must hear that it was not
                // served, and the job must not look complete.
                Err(error) => {
                    tracing::warn!(%repo, %error, "{ENROLLMENT_FILE} could not be read; no pull request is opened there");
                    crate::metrics::global().consumer_update("failed");
                    consumers.refused.push(json!({
                        "repo": repo,
                        "path": ENROLLMENT_FILE,
                        "outcome": "failed",
                        "error": format!("reading {ENROLLMENT_FILE}: {error}"),
                    }));
                }
            }
        }
    }
    consumers
}

/// Whether `repo` is a consumer: configured, or enrolled by a valid enrollment file on its
/// default branch.
pub(crate) async fn is_consumer(worker: &Worker, auth: Auth, repo: &str) -> Result<bool, ApiError> {
    if worker
        .settings
        .consumers
        .iter()
        .any(|c| c.repo.eq_ignore_ascii_case(repo))
    {
        return Ok(true);
    }
    Ok(
        read_default_branch_file(&worker.github, auth, repo, ENROLLMENT_FILE)
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
    context: &JobContext<'_>,
    edit: &ButaneEdit,
    image: &Image,
    consumer: &ConsumerSettings,
) -> String {
    let result = context.result();
    let upstream = result
        .get("upstream_release")
        .and_then(|u| u.as_str())
        .map(|u| format!("- Upstream release notes: {}\n", link_or_code(u)))
        .unwrap_or_default();
    let release = result
        .get("release")
        .and_then(|u| u.as_str())
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
         - Image: {url}\n\
         - Checksum: {checksum}\n\
         {upstream}{release}",
        path = code_span(&consumer.path),
        from = edit.previous.version,
        from_hash = table_code_span(&edit.previous.sha256),
        to = context.version,
        to_hash = table_code_span(&image.sha256),
        url = link_or_code(&image.url),
        checksum = link_or_code(&format!("{}.sha256", image.url)),
    )
}

async fn update_consumer(
    context: &JobContext<'_>,
    consumer: &ConsumerSettings,
    is_enrolled: bool,
    images: &[Image],
) -> Result<Value, StepError> {
    let worker = context.worker;
    let api = &worker.github;
    let repo = &consumer.repo;
    let auth = context.auth_for(repo).await?;
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
        match update_alloy_pin(
            &text,
            &worker.settings.image.name,
            image.arch,
            &context.version,
            &image.sha256,
        ) {
            Ok(edit) => {
                found = Some((edit, image));
                break;
            }
            Err(error) => last_error = last_error.filter(|e| !e.is_no_entry()).or(Some(error)),
        }
    }
    let Some((edit, image)) = found else {
        return Err(StepError::Permanent(format!(
            "{} in {repo}: {}",
            consumer.path,
            last_error.map(|e| e.to_string()).unwrap_or_default()
        )));
    };
    let mut outcome = json!({
        "repo": repo,
        "path": consumer.path,
        "from": edit.previous.version.to_string(),
        "image": image.file,
    });
    if !edit.changed {
        outcome["outcome"] = json!("up to date");
        return Ok(outcome);
    }
    if edit.previous.version > context.version {
        // A build of an older version (a late /build or /rebuild) never downgrades hosts.
        outcome["outcome"] = json!("pins a newer version");
        return Ok(outcome);
    }
    let branch = context.update_branch();
    // The branch is reset from the base only when it does not hold the wanted file yet, so
    // a second run adds no commit.
    let on_branch = match branch_head(api, auth, repo, &branch).await? {
        Some(head) => read_file(api, auth, repo, &head, &consumer.path).await?,
        None => None,
    };
    let mut committed = false;
    if on_branch.as_ref().map(|f| f.content.as_slice()) != Some(edit.text.as_bytes()) {
        reset_branch(api, auth, repo, &branch, &base_head).await?;
        let message = format!("chore: update Grafana Alloy sysext to {}", context.version);
        match write_file(
            api,
            auth,
            FileTarget {
                repo,
                branch: &branch,
                path: &consumer.path,
            },
            edit.text.as_bytes(),
            Some(&base_file),
            &message,
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
    let title = format!("Update Grafana Alloy sysext to {}", context.version);
    let mut body = pull_body(context, &edit, image, consumer);
    body.extend(edit.yaml_check.review_note());
    let pull: PullRequest = match open_pull_for_branch(api, auth, repo, &branch).await? {
        Some(existing) => {
            if existing.title != title || existing.body.as_deref() != Some(body.as_str()) {
                update_pull(api, auth, repo, existing.number, &title, &body).await?;
                outcome["outcome"] = json!("updated");
            } else {
                outcome["outcome"] = json!(if committed { "updated" } else { "unchanged" });
            }
            existing
        }
        None => {
            let opened =
                match open_pull(api, auth, repo, &branch, &consumer.base, &title, &body).await {
                    Ok(pull) => pull,
                    // Opened by an earlier attempt whose answer was lost.
                    Err(error) if error.status() == Some(422) => {
                        open_pull_for_branch(api, auth, repo, &branch)
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
            outcome["outcome"] = json!("opened");
            opened
        }
    };
    outcome["pull_request"] = json!(pull.html_url);
    tracing::info!(job = context.job.id, %repo, pull = %pull.html_url, outcome = %outcome["outcome"], "consumer updated");
    Ok(outcome)
}
