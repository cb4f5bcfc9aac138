//! The worker: handles stored deliveries, runs the job queue one job at a time, and asks
//! GitHub to redeliver what the server missed.

pub mod build_job;
pub mod inbox;
pub mod redelivery;
pub mod replies;
pub mod routing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::database::Database;
use crate::github::api::{Auth, GitHubApi};
use crate::settings::Settings;
use crate::signing::SigningKey;

/// How often the loops look for work when nothing wakes them.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Everything the worker's loops share.
pub struct Worker {
    pub database: Database,
    pub github: GitHubApi,
    pub settings: Arc<Settings>,
    pub data_dir: PathBuf,
    pub signing_key: Arc<SigningKey>,
    /// Woken when a delivery is stored.
    pub deliveries_stored: Arc<Notify>,
    /// Woken when a job is queued.
    jobs_queued: Notify,
    /// The App's bot login (`<slug>[bot]`), learned at start.
    app_login: tokio::sync::OnceCell<Option<String>>,
}

impl Worker {
    pub fn new(
        database: Database,
        github: GitHubApi,
        settings: Arc<Settings>,
        data_dir: PathBuf,
        signing_key: Arc<SigningKey>,
        deliveries_stored: Arc<Notify>,
    ) -> Arc<Worker> {
        Arc::new(Worker {
            database,
            github,
            settings,
            data_dir,
            signing_key,
            deliveries_stored,
            jobs_queued: Notify::new(),
            app_login: tokio::sync::OnceCell::new(),
        })
    }

    /// Where built images and `SHA256SUMS` are kept.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// Where a job keeps its downloads.
    pub fn work_dir(&self, job_id: i64) -> PathBuf {
        self.data_dir.join("work").join(format!("job-{job_id}"))
    }

    /// The App's bot login, asked of GitHub once.
    pub async fn app_login(&self) -> Option<&str> {
        self.app_login
            .get_or_init(|| async {
                #[derive(serde::Deserialize)]
                struct App {
                    slug: String,
                }
                match self.github.get_json::<App>("/app", Auth::App).await {
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
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
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
        let sweep = {
            let worker = self.clone();
            tokio::spawn(async move { worker.redelivery_loop(shutdown).await })
        };
        vec![inbox, jobs, sweep]
    }

    async fn inbox_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let delay = match self.handle_pending_deliveries(&shutdown).await {
                Ok(()) => IDLE_POLL,
                Err(error) => {
                    tracing::error!(%error, "reading the inbox");
                    IDLE_POLL
                }
            };
            tokio::select! {
                () = self.deliveries_stored.notified() => {}
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn job_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.database.next_runnable_job().await {
                Ok(Some(job)) => {
                    self.run_job(job, &shutdown).await;
                    continue;
                }
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "reading the job queue"),
            }
            tokio::select! {
                () = self.jobs_queued.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn redelivery_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(error) = self.redeliver_missed().await {
                tracing::warn!(%error, "asking GitHub to redeliver missed deliveries");
            }
            tokio::select! {
                () = tokio::time::sleep(redelivery::SWEEP_INTERVAL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
