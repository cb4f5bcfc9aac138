//! `plan`: a dry run of a whole job, from the command line.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use alloy_sysext_automation::database::Database;
use alloy_sysext_automation::github::api::{Auth, GitHubApi};
use alloy_sysext_automation::github::app_jwt::AppKey;
use alloy_sysext_automation::github::rate_limit::RetryPolicy;
use alloy_sysext_automation::provenance::StartedBy;
use alloy_sysext_automation::server::config::ServerConfig;
use alloy_sysext_automation::server::signing_key::existing_server_key;
use alloy_sysext_automation::settings::Settings;
use alloy_sysext_automation::settings::public_base_url::PublicBaseUrl;
use alloy_sysext_automation::storage::Storage;
use alloy_sysext_automation::version::Version;
use alloy_sysext_automation::worker::pipeline::plan::{PlanRequest, PlanServices, plan_job};
use alloy_sysext_automation::worker::pipeline::plan_text::render_text;
use alloy_sysext_automation::worker::pipeline::{RepositoryAccess, StepError, installation_of};
use anyhow::Context;
use clap::Args;

/// Show what a build job for a version would do, without doing it: download and build the
/// images here, then report what would be uploaded (or is in storage already), the lines
/// of SHA256SUMS that would change, the release that would be made, and for each consumer
/// repository (configured and enrolled) the diff of the pull request it would get, or why
/// it would get none. Nothing is written to GitHub, storage or the job queue.
///
/// Reads the same environment as `serve`: APP_ID with PRIVATE_KEY or PRIVATE_KEY_PATH,
/// GITHUB_API_URL, CONFIG_FILE, DATA_DIR, DATABASE_URL, the storage settings (R2_* or
/// DATA_DIR/images), and the signing key (GPG_PRIVATE_KEY or SIGNING_KEY_PATH, else the key
/// the server made in DATA_DIR; with none, the images are built unsigned).
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The Alloy version to plan, as `1.18.0` or `v1.18.0`.
    #[arg(long)]
    version: Version,
    /// Plan a rebuild (`/rebuild`): published images with other hashes would be replaced.
    #[arg(long)]
    rebuild: bool,
    /// Download and build into DIR, and keep the files (default: a temporary directory,
    /// removed afterwards). Assets downloaded there before are reused.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

/// The App acts on a repository as the installation that has it.
struct InstallationAccess<'a> {
    database: &'a Database,
    github: &'a GitHubApi,
}

impl RepositoryAccess for InstallationAccess<'_> {
    fn auth_for<'a>(
        &'a self,
        repo: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Auth, StepError>> + Send + 'a>> {
        Box::pin(async move {
            Ok(Auth::Installation(
                installation_of(self.database, self.github, repo).await?,
            ))
        })
    }
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let config = ServerConfig::from_env(|name| std::env::var(name).ok())?;
    let settings = Settings::load(config.config_file.as_deref())?;
    let app = config
        .app
        .as_ref()
        .context("plan acts as the GitHub App: set APP_ID and PRIVATE_KEY or PRIVATE_KEY_PATH")?;
    let app_key = AppKey::from_pem(app.app_id, app.private_key.expose())?;
    let storage = Storage::from_env(|name| std::env::var(name).ok(), &config.data_dir)?;
    let public_base_url =
        PublicBaseUrl::resolve(&settings.publish, &storage, config.public_url.as_deref());
    // Read but never made: `None` when the server would make one on its first start.
    let signing_key = existing_server_key(&config.data_dir, |name| std::env::var(name).ok())?
        .map(|(key, _)| Arc::new(key));
    // The DDIs are built as `serve` builds them: with ddi in image.formats, the verity key
    // is needed here too.
    let verity_signer =
        alloy_sysext_automation::server::verity_key::server_verity_signer(&settings, |name| {
            std::env::var(name).ok()
        })?
        .map(Arc::new);
    let temporary;
    let work_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::tempdir().context("making a temporary directory")?;
            temporary.path().to_owned()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let plan = runtime.block_on(async {
        if !config.data_dir.is_dir() {
            anyhow::bail!(
                "DATA_DIR {} does not exist: plan reads the server's data, so run it where `serve` runs",
                config.data_dir.display()
            );
        }
        let database =
            Database::open_read_only(config.database_url.as_deref(), &config.data_dir).await?;
        let github = GitHubApi::new(&config.github_api_url, Some(app_key), RetryPolicy::default())?;
        let access = InstallationAccess {
            database: &database,
            github: &github,
        };
        let services = PlanServices {
            github: &github,
            storage: &storage,
            settings: &settings,
            public_base_url: &public_base_url,
            database: &database,
            access: &access,
        };
        let request = PlanRequest {
            version: args.version.clone(),
            rebuild: args.rebuild,
            work_dir: work_dir.clone(),
            signing_key: signing_key.as_ref(),
            verity_signer: verity_signer.as_ref(),
            started_by: StartedBy {
                rebuild: args.rebuild,
                ..StartedBy::command_line()
            },
        };
        Ok(plan_job(&services, &request).await?)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render_text(&plan));
    }
    Ok(())
}
