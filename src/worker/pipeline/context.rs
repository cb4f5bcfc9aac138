//! What a step works with: the job, its work directory, and the few services a step needs
//! (GitHub, storage, the settings and the images' public address, the signing key, the
//! database to record the result in).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use super::StepError;
use crate::database::job_result::JobResult;
use crate::database::jobs::Job;
use crate::database::{Database, DatabaseError};
use crate::ddi::VeritySigner;
use crate::github::api::{Auth, GitHubApi};
use crate::settings::Settings;
use crate::settings::channels::Channel;
use crate::settings::public_base_url::PublicBaseUrl;
use crate::signing::SigningKey;
use crate::storage::Storage;

/// How the App may act on a repository: as the installation that has it.
pub trait RepositoryAccess: Sync {
    fn auth_for<'a>(
        &'a self,
        repo: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Auth, StepError>> + Send + 'a>>;
}

/// One job, as its steps see it.
pub struct StepContext<'a> {
    pub github: &'a GitHubApi,
    pub storage: &'a Storage,
    pub settings: &'a Settings,
    /// Where hosts download the published files from.
    pub public_base_url: &'a PublicBaseUrl,
    pub signing_key: &'a Arc<SigningKey>,
    /// Signs the DDIs' root hashes; `None` unless `image.formats` includes `ddi`.
    pub verity_signer: Option<&'a Arc<VeritySigner>>,
    pub database: &'a Database,
    pub access: &'a dyn RepositoryAccess,
    pub job: Job,
    /// Where this job keeps its downloads and build output.
    pub work_dir: PathBuf,
}

impl StepContext<'_> {
    /// Where the build writes its files.
    pub fn out_dir(&self) -> PathBuf {
        self.work_dir.join("out")
    }

    /// The job's result so far.
    pub fn result(&self) -> &JobResult {
        static NOTHING_YET: JobResult = JobResult::NOTHING_YET;
        self.job.result.as_ref().unwrap_or(&NOTHING_YET)
    }

    /// Changes the result with `change` and stores it whole.
    pub async fn record(
        &mut self,
        change: impl FnOnce(&mut JobResult),
    ) -> Result<(), DatabaseError> {
        let mut result = self.result().clone();
        change(&mut result);
        self.database.set_job_result(&self.job, &result).await?;
        self.job.result = Some(result);
        Ok(())
    }

    /// The channel this job publishes to: a promotion's target, once its first step has
    /// decided it; a build's, the first channel.
    pub fn publish_channel(&self) -> Result<Channel, StepError> {
        let channels = self.settings.publish.channels();
        match &self.result().promotion {
            Some(promotion) => channels.get(&promotion.to).cloned().ok_or_else(|| {
                StepError::Permanent(format!(
                    "the channel {} this promotion goes to is no longer in publish.channels ({})",
                    promotion.to,
                    channels.names()
                ))
            }),
            None => Ok(channels.first().clone()),
        }
    }

    /// How the job acts on `repo`: the installation that has it.
    pub async fn auth_for(&self, repo: &str) -> Result<Auth, StepError> {
        self.access.auth_for(repo).await
    }
}
