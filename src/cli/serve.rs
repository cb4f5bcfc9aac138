//! `serve`: the GitHub App server.

use std::io::IsTerminal;

use alloy_sysext_automation::server::config::{LogFormat, ServerConfig};
use alloy_sysext_automation::server::data_dir;
use anyhow::Context;
use clap::Args;
use tracing_subscriber::EnvFilter;

/// Run the GitHub App server: verify GitHub's webhook deliveries, store them durably, and
/// act on them as the App (builds, comment commands).
///
/// Configuration comes from the environment (see the README): PORT (3000), DATA_DIR
/// (./data), DATABASE_URL (SQLite in DATA_DIR), APP_ID with PRIVATE_KEY or
/// PRIVATE_KEY_PATH, WEBHOOK_SECRET (comma-separated for rotation), GITHUB_API_URL,
/// LOG_LEVEL (info) and LOG_FORMAT (json or pretty). Without App credentials the server
/// still stores deliveries and says on /healthz that it cannot act; without WEBHOOK_SECRET
/// it refuses every delivery.
///
/// With DATABASE_URL=postgres://… (a database several replicas share) it starts only when
/// what must be the same on every replica comes from the environment: the signing key
/// (GPG_PRIVATE_KEY or SIGNING_KEY_PATH), the R2 bucket (R2_ENDPOINT, R2_BUCKET,
/// R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY), APP_ID with PRIVATE_KEY or PRIVATE_KEY_PATH, and
/// WEBHOOK_SECRET; otherwise it exits naming each one missing.
#[derive(Debug, Args)]
pub struct ServeArgs {}

pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::from_env(|name| std::env::var(name).ok())?;
    init_logging(&config)?;
    // Before any thread starts or anything is written: the umask is the process's.
    let tightened = data_dir::prepare(&config.data_dir)?;
    if let Some(mode) = tightened.directory_was {
        tracing::warn!(data_dir = %config.data_dir.display(), was = format!("{mode:o}"), "DATA_DIR was open to others; it is now 0700 (owner only)");
    }
    if let Some(reason) = &tightened.directory_left_open {
        tracing::warn!(data_dir = %config.data_dir.display(), reason = %reason, "DATA_DIR (root's, readable by others) could not be made 0700 (owner only); the files the server writes in it are 0600 all the same");
    }
    if tightened.entries > 0 {
        tracing::warn!(data_dir = %config.data_dir.display(), count = tightened.entries, "the server's files in DATA_DIR were readable by others; they are now the owner's only");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(alloy_sysext_automation::server::serve(
        config,
        shutdown_signal(),
    ));
    // A build in the middle of a step runs on a blocking thread that cannot be
    // interrupted; the process exits without waiting for it, and the job resumes from that
    // step on the next start.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

fn init_logging(config: &ServerConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_level).with_context(|| {
        format!(
            "LOG_LEVEL={:?} is not a valid level or filter",
            config.log_level
        )
    })?;
    let format = config
        .log_format
        .unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
    Ok(())
}

/// Completes on SIGTERM (how containers are stopped) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
