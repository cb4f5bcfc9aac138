//! `check`: the upstream check, once, from the command line.

use std::sync::Arc;

use alloy_sysext_automation::database::Database;
use alloy_sysext_automation::github::api::GitHubApi;
use alloy_sysext_automation::github::app_jwt::AppKey;
use alloy_sysext_automation::github::rate_limit::RetryPolicy;
use alloy_sysext_automation::server::config::ServerConfig;
use alloy_sysext_automation::settings::Settings;
use alloy_sysext_automation::worker::upstream::watch::UpstreamWatch;
use anyhow::Context;
use clap::Args;

/// Check upstream once: is there a stable Alloy release newer than the newest one in the
/// build repository's SHA256SUMS? If so, open the tracking issue (unless an open one has
/// its title) and queue the build in the server's database, where `serve` picks it up.
///
/// Reads the same environment as `serve`: APP_ID with PRIVATE_KEY or PRIVATE_KEY_PATH,
/// GITHUB_API_URL, CONFIG_FILE, DATA_DIR and DATABASE_URL.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Only say what would be done: no issue is opened and no build is queued.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let config = ServerConfig::from_env(|name| std::env::var(name).ok())?;
    let settings = Settings::load(config.config_file.as_deref())?;
    let app = config
        .app
        .as_ref()
        .context("check acts as the GitHub App: set APP_ID and PRIVATE_KEY or PRIVATE_KEY_PATH")?;
    let key = AppKey::from_pem(app.app_id, app.private_key.expose())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating DATA_DIR {}", config.data_dir.display()))?;
        let database = Database::open(config.database_url.as_deref(), &config.data_dir).await?;
        let github = GitHubApi::new(&config.github_api_url, Some(key), RetryPolicy::default())?;
        let watch = UpstreamWatch::new(github, database, Arc::new(settings));
        let outcome = watch.check(args.dry_run).await?;
        println!("{outcome}");
        anyhow::Ok(())
    })
}
