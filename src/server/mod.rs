//! The HTTP server: GitHub's webhooks in, status out.
//!
//! Its edge serves connections under deadlines and caps ([`listener`], [`connections`],
//! [`per_client`]) and checks a webhook's signature as its body arrives, within a budget
//! ([`webhook`], [`signature`], [`unverified_body`]). Its start-up reads the environment
//! ([`config`]), makes `DATA_DIR` the owner's ([`data_dir`], [`private_file`]), loads the
//! signing key ([`signing_key`]) and the App's credentials ([`app_credentials_file`], or the
//! setup flow in [`app_setup`]), refuses on PostgreSQL what replicas would not share
//! ([`replica_requirements`]) and starts the worker once it can act ([`activation`]). It
//! shows the status page, `/api/jobs` and the images ([`status_page`], [`jobs_api`],
//! [`images`]) to whom [`status_access`] allows.

pub mod activation;
pub mod app_credentials_file;
pub mod app_setup;
pub mod config;
pub mod connections;
pub mod data_dir;
pub mod images;
pub mod jobs_api;
pub mod listener;
pub mod per_client;
pub mod private_file;
pub mod replica_requirements;
pub mod signature;
pub mod signing_key;
pub mod status_access;
pub mod status_page;
pub mod unverified_body;
pub mod verity_key;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::database::Database;
use crate::database::deliveries::{NewDelivery, Stored};
use crate::secret::Secret;
use crate::server::config::ServerConfig;
use crate::settings::Settings;
use crate::settings::public_base_url::{
    BUCKET_DEFAULT_BASE_URL, NO_PUBLIC_BASE_URL, PublicBaseUrl,
};
use crate::storage::Storage;
use webhook::{MAX_BODY_BYTES, VerifiedDelivery};

/// How long requests in flight may take to finish once a shutdown is asked for.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub database: Database,
    /// The webhook secrets and whether the server can act; the setup flow changes them.
    pub credentials: Arc<std::sync::RwLock<activation::Credentials>>,
    /// Starts the worker; holds it once started.
    pub activation: Arc<activation::Activation>,
    /// The App setup flow, when the server started without App credentials.
    pub setup: Option<Arc<app_setup::SetupFlow>>,
    /// Woken when a delivery is stored, so that the worker handles it at once.
    pub deliveries_stored: Arc<tokio::sync::Notify>,
    /// The directory served at `/images/`, when storage is local.
    pub images_dir: Option<Arc<std::path::PathBuf>>,
    /// Who may read the status page, `/api/` and `/metrics`.
    pub status_access: Arc<crate::server::config::StatusAccess>,
    /// Where webhook bodies are held until their signature is checked.
    pub body_intake: unverified_body::BodyIntake,
}

impl AppState {
    /// The credentials as they are now.
    pub fn credentials(&self) -> activation::Credentials {
        self.credentials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    // What the status token guards, when it is set.
    let status = Router::new()
        .route("/api/deliveries/{id}", get(delivery_status))
        .route("/api/jobs", get(jobs_api::list_jobs))
        .route("/api/jobs/{id}", get(jobs_api::show_job))
        .route("/", get(status_page::status_page))
        .route("/metrics", get(status_page::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            status_access::require_status_access,
        ));
    Router::new()
        .merge(status)
        .route("/api/github/webhooks", post(receive_webhook))
        .route("/images/{*file}", get(images::serve_image))
        .route("/healthz", get(health))
        .route("/readyz", get(status_page::readyz))
        .route("/setup", get(app_setup::setup_page))
        .route("/setup/callback", get(app_setup::setup_callback))
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
    let resolved = app_credentials_file::resolve(&config)?;
    let settings = Arc::new(Settings::load(config.config_file.as_deref())?);
    let storage = Storage::from_env(|name| std::env::var(name).ok(), &config.data_dir)?;
    // Loaded before anything else starts: with DDIs configured and no key, nothing runs.
    let verity_signer =
        verity_key::server_verity_signer(&settings, |name| std::env::var(name).ok())?.map(Arc::new);
    replica_requirements::check(&replica_requirements::StartupFacts::of(
        database.backend(),
        &config,
        &storage,
        &resolved,
        verity_signer.is_some(),
        |name| std::env::var(name).ok(),
    ))?;
    if let Some(signer) = &verity_signer {
        let expiry = verity_key::CertificateExpiry::of(signer.certificate());
        verity_key::log_at_start(&expiry, std::time::SystemTime::now());
        crate::metrics::global().verity_certificate(&expiry);
    }
    crate::worker::retention::spawn(database.clone(), config.retention);
    let app_key = resolved.app.map(|app| app.key);
    let webhook_secrets = resolved.webhook_secrets;
    if webhook_secrets.is_empty() {
        tracing::warn!("WEBHOOK_SECRET is not set: every webhook delivery will be refused");
    }
    let credentials = Arc::new(std::sync::RwLock::new(activation::Credentials {
        webhook_secrets,
        cannot_act: Some(
            "no App credentials (set APP_ID and PRIVATE_KEY or PRIVATE_KEY_PATH, or create the App at /setup)",
        ),
    }));
    let public_base_url =
        PublicBaseUrl::resolve(&settings.publish, &storage, config.public_url.as_deref());
    tracing::info!(storage = %storage.describe(), public_base_url = %public_base_url, from = public_base_url.source(), build_repo = %settings.build_repo.repo, "publishing");
    match public_base_url {
        PublicBaseUrl::None => tracing::warn!("{NO_PUBLIC_BASE_URL}"),
        // Right for the deployment the defaults describe; any other bucket is served
        // elsewhere, and links to the default would name files it does not hold.
        PublicBaseUrl::BucketDefault => tracing::warn!(
            base_url = BUCKET_DEFAULT_BASE_URL,
            "publish.base_url is not set: links to the images name the default bucket's domain; set publish.base_url in CONFIG_FILE to the address this bucket is served at"
        ),
        PublicBaseUrl::Configured(_) | PublicBaseUrl::ServedHere(_) => {}
    }
    let images_dir = match &storage {
        Storage::Local(local) => {
            match local.remove_leftovers() {
                Ok(removed) if !removed.is_empty() => {
                    tracing::info!(count = removed.len(), directory = %local.root().display(), "removed the temporary files of writes cut short by the last stop")
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, directory = %local.root().display(), "could not remove the temporary files of writes cut short")
                }
            }
            Some(Arc::new(local.root().to_owned()))
        }
        Storage::S3(_) => None,
    };
    let deliveries_stored = Arc::new(tokio::sync::Notify::new());
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let activation = activation::Activation::new(
        database.clone(),
        settings,
        storage,
        public_base_url,
        verity_signer,
        config.data_dir.clone(),
        config.github_api_url.clone(),
        deliveries_stored.clone(),
        config.job_retry_delay,
        config.lease_times,
        stopping,
        credentials.clone(),
    );
    let setup = match app_key {
        Some(key) => {
            activation.activate(key)?;
            None
        }
        None => {
            let token = Secret::new(hex::encode(rand::random::<[u8; 16]>()));
            tracing::warn!(
                reason = "no App credentials",
                "deliveries are stored, but the server cannot act on them; create the App at {}/setup?token={}",
                config.public_url.as_deref().unwrap_or(""),
                token.expose()
            );
            Some(Arc::new(app_setup::SetupFlow::new(
                token,
                config.public_url.clone(),
                config.github_url.clone(),
                config.github_organization.clone(),
                config.github_api_url.clone(),
                config.data_dir.clone(),
                activation.clone(),
            )))
        }
    };
    let body_intake = unverified_body::BodyIntake::new(
        config.data_dir.join(unverified_body::SPILL_DIR),
        unverified_body::MEMORY_BUDGET,
        unverified_body::SPILL_BUDGET,
    );
    match body_intake.prepare() {
        Ok(0) => {}
        Ok(removed) => {
            tracing::info!(count = removed, directory = %body_intake.spill_dir().display(), "removed the webhook bodies a crash left behind")
        }
        Err(error) => anyhow::bail!(
            "preparing {} for webhook bodies: {error}",
            body_intake.spill_dir().display()
        ),
    }
    let state = AppState {
        database,
        credentials,
        activation: activation.clone(),
        setup,
        deliveries_stored,
        images_dir,
        status_access: Arc::new(config.status_access.clone()),
        body_intake,
    };
    log_status_access(&config);
    let address = SocketAddr::from(([0, 0, 0, 0], config.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("listening on port {}: {e}", config.port))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, data_dir = %config.data_dir.display(), "listening");
    // In-flight requests get a few seconds to finish after the signal; a client that
    // never finishes its request does not keep the process alive.
    let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
    let per_client = per_client::PerClientLimit::new(per_client::MAX_PER_CLIENT);
    let client_address = match &config.trusted_proxy_header {
        Some(header) => {
            tracing::info!(header = %header, "client addresses are read from the trusted proxy's header");
            per_client::ClientAddressSource::ProxyHeader(header.clone())
        }
        None => per_client::ClientAddressSource::Peer,
    };
    // Directly reached, the cap counts each peer's connections as they are accepted;
    // behind a proxy every connection is the proxy's, so it counts requests per the
    // header's address instead (`connections::answer`).
    let per_peer = match client_address {
        per_client::ClientAddressSource::Peer => Some(per_client.clone()),
        per_client::ClientAddressSource::ProxyHeader(_) => None,
    };
    let listener = listener::BoundedListener::new(
        listener,
        listener::MAX_CONNECTIONS,
        per_peer,
        listener::IDLE_TIMEOUT,
    );
    let serving = connections::Serving {
        router: router(state),
        client_address,
        per_client,
        head_timeout: connections::HEAD_TIMEOUT,
        request_timeout: connections::REQUEST_TIMEOUT,
    };
    let server = connections::serve(listener, serving, async move {
        shutdown.await;
        let _ = signalled.send(true);
        let _ = stopping_tx.send(true);
    });
    let deadline = async move {
        let _ = on_signal.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => {}
        () = deadline => tracing::warn!("requests still open at the shutdown deadline were cut off"),
    }
    // The loops stop between steps; a build in the middle of a step is left to resume on
    // the next start.
    activation.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Says at start who may read the status page, `/api/` and `/metrics`, and how to change it.
fn log_status_access(config: &ServerConfig) {
    use crate::server::config::StatusAccess;
    match &config.status_access {
        StatusAccess::Token(_) => {
            tracing::info!(
                "the status page, /api/ and /metrics answer requests carrying STATUS_TOKEN"
            );
            if config.status_public_ignored {
                tracing::warn!(
                    "STATUS_PUBLIC=true is ignored: STATUS_TOKEN is set, and the status needs it"
                );
            }
        }
        StatusAccess::Open if config.public_url.is_some() => tracing::warn!(
            "STATUS_PUBLIC=true: the status page, /api/ and /metrics are open to anyone who reaches the server (job errors, repository and user names); set STATUS_TOKEN to restrict them"
        ),
        StatusAccess::Open => tracing::info!(
            "STATUS_TOKEN is not set: the status page, /api/ and /metrics are open to anyone who reaches the server; set STATUS_TOKEN to restrict them"
        ),
        StatusAccess::Closed => tracing::warn!("{}", status_access::CLOSED_EXPLANATION.trim_end()),
    }
}

/// `POST /api/github/webhooks`: a verified delivery is committed to the inbox before the
/// 2xx, so an acknowledged delivery is never lost; a redelivery is acknowledged again and
/// not stored twice.
async fn receive_webhook(State(state): State<AppState>, delivery: VerifiedDelivery) -> Response {
    let received_at = crate::database::timestamp::now();
    let new = NewDelivery {
        id: &delivery.id,
        event: &delivery.event,
        action: delivery.action(),
        installation_id: delivery.installation_id(),
        repository: delivery.repository(),
        payload: &delivery.body,
        received_at: &received_at,
    };
    let stored = state.database.store_delivery(&new).await;
    let outcome = match &stored {
        Ok(Stored::New) => "stored",
        Ok(Stored::AlreadyStored) => "duplicate",
        Err(_) => "store_failed",
    };
    crate::metrics::global().delivery(&delivery.event, outcome);
    match stored {
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
    let credentials = state.credentials();
    Json(json!({
        "status": "ok",
        "can_act": credentials.cannot_act.is_none(),
        "cannot_act_because": credentials.cannot_act,
        "webhook_secret_configured": !credentials.webhook_secrets.is_empty(),
    }))
    .into_response()
}
