//! A build job's steps: download the upstream asset with its digest checked, build and sign
//! the image into `DATA_DIR/images`, and report to whoever asked.
//!
//! The job's step is recorded before each step runs, so a job whose process was killed
//! resumes at the step it was in. Every step can run twice without harm: downloads land
//! under their final name only once checked, and builds are reproducible.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::Worker;
use super::replies;
use crate::arch::Arch;
use crate::artifacts::{BuildProgress, BuildRequest, BuildStep, MANIFEST_FILE, build_into_dir};
use crate::database::DatabaseError;
use crate::database::jobs::Job;
use crate::github::client::api_client;
use crate::github::release_asset::{AssetError, download_checked, get_release};
use crate::manifest::{Manifest, Upsert};
use crate::sysext::squashfs::SquashfsOptions;
use crate::version::Version;

/// A job that keeps failing transiently fails for good after this many attempts.
pub const MAX_JOB_ATTEMPTS: i64 = 5;
/// The first retry waits this long; each later one twice as long as the one before.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The steps, in order.
const STEPS: [&str; 3] = ["download", "build", "report"];

/// How a step failed.
#[derive(Debug)]
enum StepError {
    /// Worth trying again later (network, rate limits, GitHub's 5xx).
    Transient(String),
    /// Trying again cannot help (no such release, a corrupt download, a bad build).
    Permanent(String),
    /// The server is shutting down; the job resumes from this step on the next start.
    Interrupted,
}

impl From<DatabaseError> for StepError {
    fn from(error: DatabaseError) -> Self {
        StepError::Transient(error.to_string())
    }
}

/// Logs the build's steps.
struct LogProgress(i64);

impl BuildProgress for LogProgress {
    fn step(&self, step: BuildStep) {
        tracing::info!(job = self.0, step = step.name(), "{}", step.describe());
    }
}

impl Worker {
    /// Runs `job` from the step it is at until it ends, waits for a retry, or the server
    /// stops.
    pub(super) async fn run_job(self: &Arc<Self>, job: Job, shutdown: &watch::Receiver<bool>) {
        let id = job.id;
        if let Err(error) = self.database.start_job_attempt(id).await {
            tracing::error!(job = id, %error, "could not start the job");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
        let resumed_at = job.step.clone();
        tracing::info!(job = id, version = %job.version, attempt = job.attempts + 1, resumed_at = ?resumed_at, "job started");
        let outcome = self.run_steps(id, resumed_at.as_deref(), shutdown).await;
        let result = match outcome {
            Ok(()) => self.database.finish_job(id, None).await.map(|()| {
                tracing::info!(job = id, "job succeeded");
            }),
            Err(StepError::Interrupted) => {
                tracing::info!(job = id, "stopping; the job resumes on the next start");
                Ok(())
            }
            Err(StepError::Transient(error)) if job.attempts + 1 < MAX_JOB_ATTEMPTS => {
                let delay = FIRST_RETRY_DELAY * 2u32.pow((job.attempts as u32).min(10));
                tracing::warn!(job = id, %error, retry_in_seconds = delay.as_secs(), "job failed; it will be retried");
                self.database
                    .retry_job_later(id, &error, &crate::timestamp::after(delay))
                    .await
            }
            Err(StepError::Transient(error)) | Err(StepError::Permanent(error)) => {
                tracing::error!(job = id, %error, "job failed");
                self.fail_job(id, &error).await
            }
        };
        if let Err(error) = result {
            tracing::error!(job = id, %error, "could not record the job's outcome");
        }
    }

    async fn run_steps(
        &self,
        id: i64,
        resume_at: Option<&str>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), StepError> {
        let first = resume_at
            .and_then(|step| STEPS.iter().position(|s| *s == step))
            .unwrap_or(0);
        for step in &STEPS[first..] {
            if *shutdown.borrow() {
                return Err(StepError::Interrupted);
            }
            self.database.set_job_step(id, step).await?;
            let job = self
                .database
                .job(id)
                .await?
                .ok_or_else(|| StepError::Permanent(format!("job {id} vanished")))?;
            match *step {
                "download" => self.download_step(&job).await?,
                "build" => {
                    if !self.downloads_present(&job) {
                        // Resumed without its downloads (the work directory was cleaned).
                        self.download_step(&job).await?;
                    }
                    self.build_step(&job).await?
                }
                "report" => self.report_step(&job).await?,
                other => return Err(StepError::Permanent(format!("unknown step {other}"))),
            }
        }
        let _ = std::fs::remove_dir_all(self.work_dir(id));
        Ok(())
    }

    fn zip_path(&self, job: &Job, arch: Arch) -> PathBuf {
        self.work_dir(job.id)
            .join(self.settings.upstream.asset_name(arch))
    }

    fn downloads_present(&self, job: &Job) -> bool {
        self.settings
            .image
            .arches
            .iter()
            .all(|arch| self.zip_path(job, *arch).is_file())
    }

    /// True when the images of this version are built and listed already.
    fn already_built(&self, version: &Version) -> bool {
        let images = self.images_dir();
        let Ok(text) = std::fs::read_to_string(images.join(MANIFEST_FILE)) else {
            return false;
        };
        let Ok(manifest) = Manifest::parse(&text) else {
            return false;
        };
        self.settings.image.arches.iter().all(|arch| {
            let file = format!("{}-{version}-{arch}.raw", self.settings.image.name);
            manifest.get(&file).is_some() && images.join(&file).is_file()
        })
    }

    async fn download_step(&self, job: &Job) -> Result<(), StepError> {
        let version: Version = job
            .version
            .parse()
            .map_err(|e| StepError::Permanent(format!("{e}")))?;
        if !job.rebuild && self.already_built(&version) {
            return Ok(());
        }
        let token = match job.installation_id {
            Some(installation) => Some(
                self.github
                    .installation_token(installation)
                    .await
                    .map_err(|e| {
                        if e.is_transient() {
                            StepError::Transient(e.to_string())
                        } else {
                            StepError::Permanent(e.to_string())
                        }
                    })?,
            ),
            None => None,
        };
        let client = api_client(self.github.base_url(), token.as_ref().map(|t| t.expose()))
            .map_err(|e| StepError::Permanent(e.to_string()))?;
        let repo = &self.settings.upstream.repo;
        let release = get_release(&client, repo, &version.tag())
            .await
            .map_err(classify_asset_error)?;
        let dir = self.work_dir(job.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StepError::Transient(format!("creating {}: {e}", dir.display())))?;
        for arch in &self.settings.image.arches {
            let name = self.settings.upstream.asset_name(*arch);
            let dest = self.zip_path(job, *arch);
            if dest.is_file() {
                continue;
            }
            let partial = dir.join(format!(".{name}.partial"));
            let downloaded = download_checked(&client, repo, &release, &name, &partial, &|_, _| {})
                .await
                .map_err(classify_asset_error)?;
            std::fs::rename(&partial, &dest).map_err(|e| {
                StepError::Transient(format!("keeping the download {}: {e}", dest.display()))
            })?;
            tracing::info!(job = job.id, asset = %name, size = downloaded.size, sha256 = %downloaded.sha256, checked_against = ?downloaded.checked_against, "downloaded and checked");
        }
        Ok(())
    }

    async fn build_step(&self, job: &Job) -> Result<(), StepError> {
        let version: Version = job
            .version
            .parse()
            .map_err(|e| StepError::Permanent(format!("{e}")))?;
        if !job.rebuild && self.already_built(&version) {
            self.database
                .set_job_result(
                    job.id,
                    &json!({
                        "note": format!("Alloy {version} was built before; nothing changed. Comment `/rebuild {version}` to build it again."),
                        "manifest": "unchanged",
                    }),
                )
                .await?;
            return Ok(());
        }
        let mut images = Vec::new();
        let mut manifest_change = "unchanged";
        for arch in self.settings.image.arches.clone() {
            let request = BuildRequest {
                binary_entry: self.settings.upstream.binary_name(arch),
                image_name: self.settings.image.name.clone(),
                squashfs: SquashfsOptions {
                    compression: self.settings.image.compression,
                    ..SquashfsOptions::default()
                },
                compat_name: self.settings.image.compat_name,
                ..BuildRequest::new(version.clone(), arch, self.zip_path(job, arch))
            };
            let out_dir = self.images_dir();
            let key = self.signing_key.clone();
            let job_id = job.id;
            let output = tokio::task::spawn_blocking(move || {
                build_into_dir(&request, &out_dir, Some(&key), &LogProgress(job_id))
                    .map(|output| (output, request.image_file_name()))
            })
            .await
            .map_err(|e| StepError::Permanent(format!("the build stopped unexpectedly: {e}")))?;
            let (output, image_file) =
                output.map_err(|e| StepError::Permanent(format!("building for {arch}: {e}")))?;
            if output.manifest_change != Upsert::Unchanged {
                manifest_change = match output.manifest_change {
                    Upsert::Added => "added",
                    Upsert::Replaced => "replaced",
                    Upsert::Unchanged => "unchanged",
                };
            }
            let size = output.file(&image_file).map(|f| f.size).unwrap_or(0);
            images.push(json!({
                "arch": arch.to_string(),
                "file": image_file,
                "size": size,
                "sha256": output.image_sha256,
                "binary_sha256": output.binary_sha256,
            }));
        }
        self.database
            .set_job_result(
                job.id,
                &json!({ "images": images, "manifest": manifest_change }),
            )
            .await?;
        Ok(())
    }

    async fn report_step(&self, job: &Job) -> Result<(), StepError> {
        let (Some(repository), Some(issue), Some(installation)) = (
            &job.trigger.repository,
            job.trigger.issue_number,
            job.installation_id,
        ) else {
            return Ok(());
        };
        if job.trigger.source != "comment" {
            return Ok(());
        }
        self.post_comment(
            installation,
            repository,
            issue,
            &replies::job_succeeded(job),
        )
        .await
        .map_err(|e| {
            if e.is_transient() {
                StepError::Transient(e.to_string())
            } else {
                StepError::Permanent(format!("posting the reply: {e}"))
            }
        })
    }

    /// Ends the job as failed and tells whoever asked.
    async fn fail_job(&self, id: i64, error: &str) -> Result<(), DatabaseError> {
        self.database.finish_job(id, Some(error)).await?;
        let Some(job) = self.database.job(id).await? else {
            return Ok(());
        };
        if let (Some(repository), Some(issue), Some(installation), "comment") = (
            &job.trigger.repository,
            job.trigger.issue_number,
            job.installation_id,
            job.trigger.source.as_str(),
        ) && let Err(reply_error) = self
            .post_comment(
                installation,
                repository,
                issue,
                &replies::job_failed(&job, error),
            )
            .await
        {
            tracing::error!(job = id, error = %reply_error, "could not reply about the failed job");
        }
        Ok(())
    }
}

fn classify_asset_error(error: AssetError) -> StepError {
    match error {
        AssetError::ReleaseLookup { .. }
        | AssetError::Download { .. }
        | AssetError::Write { .. } => StepError::Transient(error.to_string()),
        other => StepError::Permanent(other.to_string()),
    }
}
