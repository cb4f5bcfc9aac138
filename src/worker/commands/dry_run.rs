//! `/build X.Y.Z --dry-run` (and `/rebuild X.Y.Z --dry-run`): replies with what that job
//! would do, as the `plan` command reports it, doing none of it: no job is queued and
//! nothing is written to GitHub or storage. It runs in the build repository only, one per
//! comment, and while it downloads and builds the images in a temporary directory under
//! `DATA_DIR/work` (removed afterwards) the inbox waits for it.
//!
//! The reply is read by everyone who can read the build repository, so a consumer
//! repository is shown with its diff only when it is at least as visible as the build
//! repository; the others get a line saying whether a pull request would be opened,
//! updated or skipped.

use std::collections::HashSet;

use super::request::CommandRequest;
use super::{Command, CommandAnswer};
use crate::github::repos::{Visibility, visibility};
use crate::version::Version;
use crate::worker::Worker;
use crate::worker::inbox::HandlingError;
use crate::worker::pipeline::plan::{ConsumerPlan, Plan, PlanRequest, PlanServices, plan_job};
use crate::worker::pipeline::plan_markdown::render_markdown;
use crate::worker::replies::{self, Audience};

/// The most characters of the plan in the reply: GitHub takes comments of up to 65536, and
/// the rest of the reply (the mention, the answers to the comment's other commands) needs
/// room too.
pub const PLAN_MAX_CHARS: usize = 50_000;

/// Plans the job `/build version` (or `/rebuild version`) would run, and answers with the
/// plan.
pub(crate) async fn run(
    request: &CommandRequest<'_>,
    version: &Version,
    rebuild: bool,
) -> Result<CommandAnswer, HandlingError> {
    let command = Command::DryRun {
        version: version.clone(),
        rebuild,
    }
    .to_string();
    if request.audience != Audience::BuildRepository {
        return Ok(CommandAnswer::Text(replies::dry_run_elsewhere(&command)));
    }
    if !request.start_dry_run() {
        return Ok(CommandAnswer::Text(replies::one_dry_run_per_comment(
            &command,
        )));
    }
    super::build::react_with_eyes(request).await;
    let worker = request.worker;
    let planned = plan(worker, version, rebuild).await;
    Ok(CommandAnswer::Text(match planned {
        Ok(plan) => {
            let shown = shown_consumers(worker, &plan).await;
            let shows = |consumer: &ConsumerPlan| shown.contains(&consumer.repo.to_lowercase());
            render_markdown(&plan, &shows, PLAN_MAX_CHARS)
        }
        Err(error) => {
            tracing::warn!(%error, %version, rebuild, "a dry run failed");
            replies::dry_run_failed(&command, &error)
        }
    }))
}

/// The plan, built in a temporary directory that is removed afterwards.
async fn plan(worker: &Worker, version: &Version, rebuild: bool) -> Result<Plan, String> {
    let work = worker
        .dry_run_dir()
        .map_err(|error| format!("making a directory for the build under DATA_DIR: {error}"))?;
    let services = PlanServices {
        github: &worker.services.github,
        storage: &worker.services.storage,
        settings: &worker.services.settings,
        public_base_url: &worker.services.public_base_url,
        database: &worker.services.database,
        access: worker,
    };
    let request = PlanRequest {
        version: version.clone(),
        rebuild,
        work_dir: work.path().to_owned(),
        signing_key: Some(&worker.services.signing_key),
    };
    let planned = plan_job(&services, &request).await;
    if let Err(error) = work.close() {
        tracing::warn!(%error, "removing a dry run's directory");
    }
    planned.map_err(|error| error.to_string())
}

/// The consumers (lowercased `owner/name`) at least as visible as the build repository.
/// A visibility GitHub does not tell is taken as the narrowest for a consumer and the
/// widest for the build repository, so that nothing is shown too widely.
async fn shown_consumers(worker: &Worker, plan: &Plan) -> HashSet<String> {
    let build_repo = &worker.services.settings.build_repo.repo;
    let build = repository_visibility(worker, build_repo)
        .await
        .unwrap_or(Visibility::Public);
    let mut shown = HashSet::new();
    for consumer in plan.consumers.iter().flatten() {
        let key = consumer.repo.to_lowercase();
        if shown.contains(&key) {
            continue;
        }
        let seen = if build == Visibility::Private {
            Visibility::Private
        } else {
            repository_visibility(worker, &consumer.repo)
                .await
                .unwrap_or(Visibility::Private)
        };
        if seen >= build {
            shown.insert(key);
        }
    }
    shown
}

/// `repo`'s visibility, or `None` when GitHub cannot be asked (logged).
async fn repository_visibility(worker: &Worker, repo: &str) -> Option<Visibility> {
    let asked = match worker.auth_for_repository(repo).await {
        Ok(auth) => visibility(&worker.services.github, auth, repo)
            .await
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    asked
        .inspect_err(
            |error| tracing::warn!(%repo, %error, "could not learn a repository's visibility"),
        )
        .ok()
}
