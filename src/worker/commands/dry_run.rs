//! `/build X.Y.Z --dry-run` (and `/rebuild X.Y.Z --dry-run`): replies with what that job
//! would do, as the `plan` command reports it, doing none of it: no job is queued and
//! nothing is written to GitHub or storage. It runs in the build repository only, one per
//! comment, and while it downloads and builds the images in a temporary directory under
//! `DATA_DIR/work` (removed afterwards) the inbox waits for it.
//!
//! The reply is read by everyone who can read the build repository, so a consumer
//! repository is shown with its diff only when those readers may see it: a public one, or
//! one of the build repository's owner at least as visible as it; the others get a line
//! saying whether a pull request would be opened, updated or skipped. A dry run is given
//! 20 minutes; its errors stay in the log.

use std::collections::HashSet;

use super::request::CommandRequest;
use super::{Command, CommandAnswer};
use crate::github::repos::{Visibility, visibility};
use crate::provenance::{StartEvent, StartedBy};
use crate::version::Version;
use crate::worker::Worker;
use crate::worker::inbox::HandlingError;
use crate::worker::pipeline::plan::{ConsumerPlan, Plan, PlanRequest, PlanServices, plan_job};
use crate::worker::pipeline::plan_markdown::render_markdown;
use crate::worker::replies::{self, Audience};

/// The longest a dry run may take: the comment's handling, and with it the inbox, waits
/// for it.
const DRY_RUN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20 * 60);

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
    let started_by = StartedBy {
        event: StartEvent::Comment,
        repository: Some(request.comment.repository.clone()),
        issue: Some(request.comment.issue_number),
        comment: Some(request.comment.comment_id),
        user: Some(request.comment.user.clone()),
        rebuild,
    };
    let planned = plan(worker, version, rebuild, started_by).await;
    Ok(CommandAnswer::Text(match planned {
        Ok(plan) => {
            let shown = shown_consumers(worker, &plan).await;
            let shows = |consumer: &ConsumerPlan| shown.contains(&consumer.repo.to_lowercase());
            render_markdown(&plan, &shows, PLAN_MAX_CHARS)
        }
        Err(error) => {
            // The reason stays in the log: it can name the server's paths and storage.
            tracing::warn!(%error, %version, rebuild, "a dry run failed");
            replies::dry_run_failed(&command)
        }
    }))
}

/// The plan, built in a temporary directory that is removed afterwards.
async fn plan(
    worker: &Worker,
    version: &Version,
    rebuild: bool,
    started_by: StartedBy,
) -> Result<Plan, String> {
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
        verity_signer: worker.services.verity_signer.as_ref(),
        started_by,
    };
    let planned = match tokio::time::timeout(DRY_RUN_DEADLINE, plan_job(&services, &request)).await
    {
        Ok(planned) => planned.map_err(|error| error.to_string()),
        Err(_) => Err(format!(
            "the dry run took longer than {} minutes",
            DRY_RUN_DEADLINE.as_secs() / 60
        )),
    };
    if let Err(error) = work.close() {
        tracing::warn!(%error, "removing a dry run's directory");
    }
    planned
}

/// The consumers (lowercased `owner/name`) whose diff the build repository's readers may
/// see ([`is_shown`]). A visibility GitHub does not tell is taken as the narrowest for a
/// consumer and the widest for the build repository, so that nothing is shown too widely.
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
        let seen = repository_visibility(worker, &consumer.repo)
            .await
            .unwrap_or(Visibility::Private);
        if is_shown(build_repo, build, &consumer.repo, seen) {
            shown.insert(key);
        }
    }
    shown
}

/// Whether the readers of `build_repo` (of visibility `build`) may see `consumer` (of
/// visibility `seen`): a public consumer, or one of the same owner that is at least as
/// visible. Another owner's private or internal repository has readers of its own, whoever
/// reads the build repository.
fn is_shown(build_repo: &str, build: Visibility, consumer: &str, seen: Visibility) -> bool {
    let owner = |repo: &str| repo.split('/').next().unwrap_or("").to_ascii_lowercase();
    seen == Visibility::Public || (owner(consumer) == owner(build_repo) && seen >= build)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_build_repository_readers_may_see_is_shown() {
        use Visibility::*;
        let build = "Owner/build";
        // A public build repository: its readers are everyone.
        assert!(is_shown(build, Public, "stranger/app", Public));
        assert!(!is_shown(build, Public, "owner/infra", Private));
        assert!(!is_shown(build, Public, "owner/infra", Internal));
        // A private one: its own owner's repositories, but not a stranger's.
        assert!(is_shown(build, Private, "owner/infra", Private));
        assert!(is_shown(build, Private, "OWNER/infra", Internal));
        assert!(!is_shown(build, Private, "stranger/app", Private));
        assert!(!is_shown(build, Private, "stranger/app", Internal));
        assert!(is_shown(build, Private, "stranger/app", Public));
        // An internal one: not another owner's internal repository.
        assert!(is_shown(build, Internal, "owner/infra", Internal));
        assert!(!is_shown(build, Internal, "owner/infra", Private));
        assert!(!is_shown(build, Internal, "other-org/infra", Internal));
    }
}
