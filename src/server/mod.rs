//! The HTTP server: GitHub's webhooks in, status out.

pub mod images;
pub mod jobs_api;
pub mod listener;
pub mod signature;
pub mod signing_key;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::ServerConfig;
use crate::database::Database;
use crate::database::deliveries::{NewDelivery, Stored};
use crate::github::api::GitHubApi;
use crate::github::app_jwt::AppKey;
use crate::github::rate_limit::RetryPolicy;
use crate::secret::Secret;
use crate::settings::Settings;
use crate::storage::Storage;
use crate::worker::{Worker, WorkerParts};
use webhook::{MAX_BODY_BYTES, VerifiedDelivery};

/// How long requests in flight may take to finish once a shutdown is asked for.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub database: Database,
    pub webhook_secrets: Arc<Vec<Secret>>,
    /// Why the server cannot act on deliveries, if it cannot.
    pub cannot_act: Option<&'static str>,
    /// Woken when a delivery is stored, so that the worker handles it at once.
    pub deliveries_stored: Arc<tokio::sync::Notify>,
    /// The directory served at `/images/`, when storage is local.
    pub images_dir: Option<Arc<std::path::PathBuf>>,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/github/webhooks", post(receive_webhook))
        .route("/api/deliveries/{id}", get(delivery_status))
        .route("/api/jobs", get(jobs_api::list_jobs))
        .route("/api/jobs/{id}", get(jobs_api::show_job))
        .route("/images/{file}", get(images::serve_image))
        .route("/healthz", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Opens the database and serves until `shutdown` completes.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("creating DATA_DIR {}: {e}", config.data_dir.display()))?;
    let database = Database::open(config.database_url.as_deref(), &config.data_dir).await?;
    let app_key = config
        .app
        .as_ref()
        .map(|app| AppKey::from_pem(app.app_id, app.private_key.expose()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cannot_act = app_key
        .is_none()
        .then_some("no App credentials (set APP_ID and PRIVATE_KEY or PRIVATE_KEY_PATH)");
    if let Some(reason) = cannot_act {
        tracing::warn!(
            reason,
            "deliveries are stored, but the server cannot act on them"
        );
    }
    if config.webhook_secrets.is_empty() {
        tracing::warn!("WEBHOOK_SECRET is not set: every webhook delivery will be refused");
    }
    let settings = Arc::new(Settings::load(config.config_file.as_deref())?);
    let storage = Storage::from_env(|name| std::env::var(name).ok(), &config.data_dir)?;
    tracing::info!(storage = %storage.describe(), build_repo = %settings.build_repo.repo, "publishing");
    let images_dir = match &storage {
        Storage::Local(local) => Some(Arc::new(local.root().to_owned())),
        Storage::S3(_) => None,
    };
    let deliveries_stored = Arc::new(tokio::sync::Notify::new());
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    if let Some(app_key) = app_key {
        let (key, origin) =
            signing_key::server_signing_key(&config.data_dir, |name| std::env::var(name).ok())?;
        match &origin {
            signing_key::KeyOrigin::Configured(source) => {
                tracing::info!(source = %source, fingerprint = %key.fingerprint(), "signing with the configured key")
            }
            signing_key::KeyOrigin::Generated { public_key, new } => tracing::warn!(
                public_key = %public_key.display(),
                fingerprint = %key.fingerprint(),
                new,
                "no GPG_PRIVATE_KEY or SIGNING_KEY_PATH: signing with a key kept in DATA_DIR; give hosts its public key"
            ),
        }
        let github = GitHubApi::new(
            &config.github_api_url,
            Some(app_key),
            RetryPolicy::default(),
        )?;
        let worker = Worker::new(WorkerParts {
            database: database.clone(),
            github,
            settings,
            data_dir: config.data_dir.clone(),
            signing_key: Arc::new(key),
            storage,
            deliveries_stored: deliveries_stored.clone(),
            job_retry_delay: config.job_retry_delay,
        });
        workers = worker.spawn(stopping.clone());
    }
    let state = AppState {
        database,
        webhook_secrets: Arc::new(config.webhook_secrets.clone()),
        cannot_act,
        deliveries_stored,
        images_dir,
    };
    let address = SocketAddr::from(([0, 0, 0, 0], config.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("listening on port {}: {e}", config.port))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, data_dir = %config.data_dir.display(), "listening");
    // In-flight requests get a few seconds to finish after the signal; a client that
    // never finishes its request does not keep the process alive.
    let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
    let listener =
        listener::BoundedListener::new(listener, listener::MAX_CONNECTIONS, listener::IDLE_TIMEOUT);
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = signalled.send(true);
        let _ = stopping_tx.send(true);
    });
    let deadline = async move {
        let _ = on_signal.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served?,
        () = deadline => tracing::warn!("requests still open at the shutdown deadline were cut off"),
    }
    // The loops stop between steps; a build in the middle of a step is left to resume on
    // the next start.
    for worker in workers {
        worker.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// `POST /api/github/webhooks`: a verified delivery is committed to the inbox before the
/// 2xx, so an acknowledged delivery is never lost; a redelivery is acknowledged again and
/// not stored twice.
async fn receive_webhook(State(state): State<AppState>, delivery: VerifiedDelivery) -> Response {
    let received_at = crate::timestamp::now();
    let new = NewDelivery {
        id: &delivery.id,
        event: &delivery.event,
        action: delivery.action(),
        installation_id: delivery.installation_id(),
        repository: delivery.repository(),
        payload: &delivery.body,
        received_at: &received_at,
    };
    match state.database.store_delivery(&new).await {
        Ok(Stored::New) => {
            tracing::info!(delivery = %delivery.id, event = %delivery.event, action = ?delivery.action(), "delivery stored");
            state.deliveries_stored.notify_one();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "delivery": delivery.id, "status": "stored" })),
            )
                .into_response()
        }
        Ok(Stored::AlreadyStored) => {
            tracing::info!(delivery = %delivery.id, "redelivery of a stored delivery");
            (
                StatusCode::OK,
                Json(json!({ "delivery": delivery.id, "status": "already stored" })),
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(delivery = %delivery.id, %error, "could not store the delivery");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "the delivery could not be stored; redeliver it" })),
            )
                .into_response()
        }
    }
}

/// `GET /api/deliveries/{id}`: did GitHub's delivery arrive, and how far is it handled?
async fn delivery_status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.database.delivery(&id).await {
        Ok(Some(delivery)) => Json(delivery).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no delivery {id:?} has been received") })),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "reading a delivery");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "database unavailable" })),
            )
                .into_response()
        }
    }
}

/// `GET /healthz`: the process is alive; says whether it can act on deliveries.
async fn health(State(state): State<AppState>) -> Response {
    Json(json!({
        "status": "ok",
        "can_act": state.cannot_act.is_none(),
        "cannot_act_because": state.cannot_act,
        "webhook_secret_configured": !state.webhook_secrets.is_empty(),
    }))
    .into_response()
}
