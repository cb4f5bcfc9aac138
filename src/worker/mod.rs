//! The worker: what the server does with what it stored.
//!
//! A stored delivery is read as a typed event ([`events`]), [`routing`] decides what it asks
//! for, and [`inbox`] does it: a comment's commands run through their handlers in
//! [`commands`], and a build becomes a job in the queue. [`job_loop`] runs the queue one job
//! at a time through the steps in [`pipeline`], and [`replies`] words what is told to whoever
//! asked. Beside them: the upstream watch ([`upstream`]), asking GitHub to redeliver what
//! the server missed ([`redelivery`]), the retention sweep ([`retention`]), and the sweep
//! that deletes published files once their grace period is over ([`storage_removals`], run
//! by the job loop between jobs).
//!
//! Each loop lives in the file of what it does; this file holds what they share: the
//! [`Services`] they act through, and the worker's private state.

pub mod commands;
pub mod events;
pub mod inbox;
pub mod job_lease;
pub mod job_loop;
pub mod leadership;
pub mod pipeline;
pub mod promotions;
pub mod redelivery;
pub mod replica;
pub mod replies;
pub mod repository_locks;
pub mod retention;
pub mod routing;
pub mod storage_removals;
pub mod upstream;
pub mod work_dir;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell, watch};

use crate::database::Database;
use crate::ddi::VeritySigner;
use crate::github::api::{Auth, GitHubApi};
use crate::settings::Settings;
use crate::settings::public_base_url::PublicBaseUrl;
use crate::signing::SigningKey;
use crate::storage::Storage;

/// The services the worker acts through, made by the server when it starts acting as the
/// App.
pub struct Services {
    pub database: Database,
    pub github: GitHubApi,
    pub settings: Arc<Settings>,
    pub signing_key: Arc<SigningKey>,
    /// Signs the DDIs' root hashes; `None` unless `image.formats` includes `ddi`.
    pub verity_signer: Option<Arc<VeritySigner>>,
    pub storage: Storage,
    /// Where hosts download the published files from.
    pub public_base_url: PublicBaseUrl,
}

/// Everything the worker's loops share.
pub struct Worker {
    services: Services,
    data_dir: PathBuf,
    /// Woken when a delivery is stored.
    deliveries_stored: Arc<Notify>,
    /// The wait before a failed job's first retry.
    job_retry_delay: Duration,
    /// Who this replica is, among those sharing the database.
    replica: replica::ReplicaId,
    /// How long its leases last.
    lease_times: replica::LeaseTimes,
    /// What the loops learn and signal while they run; empty at start.
    state: WorkerState,
}

/// The worker's own runtime state, shared by its loops and never given from outside.
#[derive(Default)]
struct WorkerState {
    /// Woken when a job is queued.
    jobs_queued: Notify,
    /// The App's bot login (`<slug>[bot]`), learned at start.
    app_login: OnceCell<Option<String>>,
    /// Which installation acts on which repository, as GitHub said.
    installation_of: Mutex<HashMap<String, i64>>,
    /// The scheduled upstream check's last result and next run.
    upstream: Mutex<upstream::schedule::UpstreamSchedule>,
    /// Whether this replica leads; set when the loops start.
    leadership: std::sync::OnceLock<leadership::Leadership>,
}

impl Worker {
    /// A worker that keeps job downloads under `data_dir/work`, is woken by
    /// `deliveries_stored`, waits `job_retry_delay` before a failed job's first retry, and
    /// holds its leases for `lease_times`.
    pub fn new(
        services: Services,
        data_dir: PathBuf,
        deliveries_stored: Arc<Notify>,
        job_retry_delay: Duration,
        lease_times: replica::LeaseTimes,
    ) -> Self {
        Self {
            services,
            data_dir,
            deliveries_stored,
            job_retry_delay,
            replica: replica::ReplicaId::of_this_process(),
            lease_times,
            state: WorkerState::default(),
        }
    }

    /// Gives up every lease this replica holds (its running job's and the leader's), once
    /// its loops are stopped.
    pub async fn release_leases(&self) {
        match self
            .services
            .database
            .release_leases_of(self.replica.as_str())
            .await
        {
            Ok(()) => tracing::info!(replica = %self.replica, "leases given up"),
            Err(error) => {
                tracing::warn!(%error, "could not give up this replica's leases; they lapse by themselves")
            }
        }
    }

    /// Whether this replica leads (the inbox and the scheduled tasks run on the leader).
    fn leadership(&self) -> &leadership::Leadership {
        self.state
            .leadership
            .get()
            .expect("the leadership is set before the loops start")
    }

    /// The App this worker acts as.
    pub fn app_id(&self) -> Option<u64> {
        self.services.github.app_id()
    }

    /// The fingerprint of the key the worker signs with.
    pub fn signing_fingerprint(&self) -> String {
        self.services.signing_key.fingerprint()
    }

    /// Where a job keeps its downloads.
    fn work_dir(&self, job_id: i64) -> PathBuf {
        self.data_dir.join("work").join(format!("job-{job_id}"))
    }

    /// A fresh directory under `data_dir/work` for a dry run's downloads and build,
    /// removed when dropped. Dry runs run one at a time (in the inbox), so any other dry
    /// run's directory there was left by a process that stopped during one, and is removed.
    fn dry_run_dir(&self) -> std::io::Result<tempfile::TempDir> {
        const PREFIX: &str = "dry-run-";
        let work = self.data_dir.join("work");
        std::fs::create_dir_all(&work)?;
        for entry in std::fs::read_dir(&work)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(PREFIX)
                && let Err(error) = std::fs::remove_dir_all(entry.path())
            {
                tracing::warn!(%error, path = %entry.path().display(), "removing a dry run's directory left behind");
            }
        }
        tempfile::Builder::new().prefix(PREFIX).tempdir_in(work)
    }

    /// How to act on `repo`: as the installation that has it, from the installation events
    /// stored, else as GitHub answers (`GET /repos/{repo}/installation`).
    async fn auth_for_repository(&self, repo: &str) -> Result<Auth, pipeline::StepError> {
        let key = repo.to_ascii_lowercase();
        if let Some(id) = self
            .state
            .installation_of
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Auth::Installation(*id));
        }
        let id =
            pipeline::installation_of(&self.services.database, &self.services.github, repo).await?;
        self.state
            .installation_of
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, id);
        Ok(Auth::Installation(id))
    }

    /// The App's bot login, asked of GitHub once.
    async fn app_login(&self) -> Option<&str> {
        self.state
            .app_login
            .get_or_init(|| async {
                match crate::github::app::authenticated_app(&self.services.github).await {
                    Ok(app) => {
                        tracing::info!(slug = %app.slug, "acting as this GitHub App");
                        Some(format!("{}[bot]", app.slug))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not learn the App's name; its own comments and releases are recognised by bot type only");
                        None
                    }
                }
            })
            .await
            .as_deref()
    }

    /// Starts the loops; they stop when `shutdown` turns true. A job in the middle of a
    /// step finishes that step's work in the background only if the process lives on; if
    /// not, it resumes from that step on the next start.
    ///
    /// With SQLite the server is the only replica: the leases its previous run held are
    /// given up first (by the leader loop and the job loop), so what it was doing resumes at
    /// once.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let database = &self.services.database;
        let (leadership, leading) = leadership::Leadership::start(
            database.clone(),
            self.replica.clone(),
            self.lease_times.leader,
            shutdown.clone(),
        );
        let _ = self.state.leadership.set(leadership);
        tracing::info!(replica = %self.replica, database = database.backend().as_str(), "worker starting");
        let inbox = {
            let worker = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { worker.inbox_loop(shutdown).await })
        };
        let jobs = {
            let worker = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { worker.job_loop(shutdown).await })
        };
        let sweep = tokio::spawn(redelivery::sweep_loop(
            self.services.github.clone(),
            self.services.database.clone(),
            self.leadership().clone(),
            shutdown.clone(),
        ));
        let watch = {
            let worker = self.clone();
            tokio::spawn(async move { worker.upstream_loop(shutdown).await })
        };
        vec![leading, inbox, jobs, sweep, watch]
    }
}
