//! Starting the server's work as the App: at start when credentials are configured, or
//! later, when the setup flow has just received them from GitHub — without a restart.

use crate::worker::replica::LeaseTimes;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::signing_key;
use crate::database::Database;
use crate::ddi::VeritySigner;
use crate::github::api::GitHubApi;
use crate::github::app_jwt::AppKey;
use crate::github::rate_limit::RetryPolicy;
use crate::secret::Secret;
use crate::settings::Settings;
use crate::settings::public_base_url::PublicBaseUrl;
use crate::storage::Storage;
use crate::worker::{Services, Worker};

/// What the webhook route checks deliveries with, and whether the server can act.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Every secret that may sign a delivery (several during a rotation).
    pub webhook_secrets: Vec<Secret>,
    /// Why the server cannot act on deliveries, if it cannot.
    pub cannot_act: Option<&'static str>,
}

/// Everything needed to start the worker once App credentials are there.
pub struct Activation {
    pub database: Database,
    pub settings: Arc<Settings>,
    pub storage: Storage,
    /// Where the published files are downloaded from, decided at start.
    pub public_base_url: PublicBaseUrl,
    /// Signs the DDIs' root hashes; `None` unless `image.formats` includes `ddi`.
    pub verity_signer: Option<Arc<VeritySigner>>,
    pub data_dir: PathBuf,
    pub github_api_url: String,
    pub deliveries_stored: Arc<Notify>,
    pub job_retry_delay: Duration,
    pub lease_times: LeaseTimes,
    pub stopping: watch::Receiver<bool>,
    pub credentials: Arc<RwLock<Credentials>>,
    worker: Mutex<Option<Arc<Worker>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Activation {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        database: Database,
        settings: Arc<Settings>,
        storage: Storage,
        public_base_url: PublicBaseUrl,
        verity_signer: Option<Arc<VeritySigner>>,
        data_dir: PathBuf,
        github_api_url: String,
        deliveries_stored: Arc<Notify>,
        job_retry_delay: Duration,
        lease_times: LeaseTimes,
        stopping: watch::Receiver<bool>,
        credentials: Arc<RwLock<Credentials>>,
    ) -> Arc<Activation> {
        Arc::new(Activation {
            database,
            settings,
            storage,
            public_base_url,
            verity_signer,
            data_dir,
            github_api_url,
            deliveries_stored,
            job_retry_delay,
            lease_times,
            stopping,
            credentials,
            worker: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The worker, once the server acts as the App.
    pub fn worker(&self) -> Option<Arc<Worker>> {
        self.worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts acting as the App `key`. Does nothing when already acting.
    pub fn activate(&self, key: AppKey) -> anyhow::Result<()> {
        if self.worker().is_some() {
            return Ok(());
        }
        let (signing, origin) =
            signing_key::server_signing_key(&self.data_dir, |name| std::env::var(name).ok())?;
        match &origin {
            signing_key::KeyOrigin::Configured(source) => {
                tracing::info!(source = %source, fingerprint = %signing.fingerprint(), "signing with the configured key")
            }
            signing_key::KeyOrigin::Generated { public_key, new } => tracing::warn!(
                public_key = %public_key.display(),
                fingerprint = %signing.fingerprint(),
                new,
                "no GPG_PRIVATE_KEY or SIGNING_KEY_PATH: signing with a key kept in DATA_DIR; give hosts its public key"
            ),
        }
        let app_id = key.app_id();
        let mut github = GitHubApi::new(&self.github_api_url, Some(key), RetryPolicy::default())?;
        if self.database.backend() == crate::database::Backend::Postgres {
            // Other replicas write to the same repositories.
            github = github.with_shared_write_locks(Arc::new(
                crate::worker::repository_locks::RepositoryWriteLocks::new(self.database.clone()),
            ));
        }
        let services = Services {
            database: self.database.clone(),
            github,
            settings: self.settings.clone(),
            signing_key: Arc::new(signing),
            verity_signer: self.verity_signer.clone(),
            storage: self.storage.clone(),
            public_base_url: self.public_base_url.clone(),
        };
        let worker = Arc::new(Worker::new(
            services,
            self.data_dir.clone(),
            self.deliveries_stored.clone(),
            self.job_retry_delay,
            self.lease_times,
        ));
        let tasks = worker.spawn(self.stopping.clone());
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tasks);
        *self.worker.lock().unwrap_or_else(|p| p.into_inner()) = Some(worker);
        self.credentials
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .cannot_act = None;
        tracing::info!(app_id, "acting as the GitHub App");
        // Deliveries stored while the server could not act are handled now.
        self.deliveries_stored.notify_one();
        Ok(())
    }

    /// Stops the worker's loops (at shutdown, once requests are answered).
    ///
    /// Then the leases this replica holds are given up, so that the other replicas take its
    /// job (at its step) and the inbox over at once rather than when the leases lapse: once
    /// the loops are stopped, nothing more is written under them here.
    pub async fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(worker) = worker {
            let released = worker.release_leases();
            if tokio::time::timeout(Duration::from_secs(3), released)
                .await
                .is_err()
            {
                tracing::warn!(
                    "could not give up this replica's leases in time; they lapse by themselves"
                );
            }
        }
    }
}
