//! A build job's steps, SPEC §1's steps 1–7 with pruning and the reply to whoever asked
//! ([`Step`] names them, in order):
//!
//! 1. `download`: the upstream asset, its digest checked;
//! 2. `build`: the images, signed, reproducibly;
//! 3. `upload`: images, `.sha256` and `.asc` to storage, unless the build repository's
//!    `SHA256SUMS` lists them with the same hash already;
//! 4. `manifest`: the merged, signed `SHA256SUMS` uploaded, then committed;
//! 5. `release`: `vX.Y.Z` in the build repository;
//! 6. `consumers`: a pull request per consumer repository;
//! 7. `prune`: versions beyond `publish.keep_versions` that no consumer pins leave
//!    `SHA256SUMS`, each in a commit of its own, their files scheduled to leave storage;
//! 8. `tracking`: the tracking issue gets the outcome and is closed;
//! 9. `report`: the reply to whoever asked in a comment.
//!
//! Each step sees the job through a [`StepContext`] and adds what it produced to the job's
//! [`JobResult`](crate::database::job_result::JobResult). The job loop
//! ([`crate::worker::job_loop`]) records the step before it runs, so a job whose process
//! was killed resumes at the step it was in. Every step is idempotent: a step that runs
//! again finds its work done (same content in storage, the manifest already merged, the
//! release or the pull request already there) and changes nothing.

mod build;
mod build_repository;
mod consumers;
mod context;
mod download;
mod error;
mod installation;
mod manifest;
pub mod plan;
pub mod plan_markdown;
pub mod plan_text;
mod promote;
pub mod prune;
mod put;
mod release;
mod removals;
mod report;
mod upload;
mod withdraw;
pub mod withdrawn;

pub use build_repository::{PublishedManifestError, read_published_manifest};
pub use consumers::UPDATE_BRANCH_PREFIX;
pub(crate) use consumers::is_consumer;
pub use context::{RepositoryAccess, StepContext};
pub use error::StepError;
pub use installation::{InstallationLookupError, installation_of};
pub use report::report_failure;

pub use crate::database::job_steps::Step;
use crate::database::jobs::JobKind;

/// A job that keeps failing transiently fails for good after this many attempts.
pub const MAX_JOB_ATTEMPTS: i64 = 5;

/// A job claimed more often than this fails instead of starting again. Retries stop at
/// [`MAX_JOB_ATTEMPTS`]; the other claims come from a process that stopped or died while
/// running it, or a lease another replica took over. So many of those mean the job itself
/// kills whatever runs it (out of memory, say), and starting it again would only take
/// every replica down in turn.
pub const MAX_JOB_STARTS: i64 = 2 * MAX_JOB_ATTEMPTS;

/// Runs `step` of the job in `context`.
pub async fn run_step(step: Step, context: &mut StepContext<'_>) -> Result<(), StepError> {
    match context.job.kind {
        JobKind::Withdraw => return withdraw::run_step(step, context).await,
        JobKind::Promote => return promote::run_step(step, context).await,
        JobKind::Build => {}
    }
    // A version withdrawn while the build waited publishes nothing more; its report still
    // goes out.
    if step != Step::Report {
        withdrawn::refuse_unless_rebuild(context).await?;
    }
    match step {
        Step::Download => download::run(context).await,
        Step::Build => build::run(context).await,
        Step::Upload => upload::run(context).await,
        Step::Manifest => manifest::run(context).await,
        Step::Release => release::run(context).await,
        Step::Consumers => consumers::run(context).await,
        Step::Prune => prune::run(context).await,
        Step::Tracking => report::close_tracking_issue(context).await,
        Step::Report => report::reply(context).await,
    }
}

/// Whether what `step` reads from the work directory is there: the downloads for `build`,
/// the build output for `upload` and `manifest`. A build resumed without it (the directory
/// was cleaned, or lost with the machine) starts again at `download`.
pub fn has_inputs(step: Step, context: &StepContext<'_>) -> bool {
    // Only a build reads its work directory; the other kinds read GitHub, storage and their
    // recorded result.
    if context.job.kind != JobKind::Build {
        return true;
    }
    match step {
        Step::Build => context
            .settings
            .image
            .arches
            .iter()
            .all(|arch| download::is_checked_in(&context.work_dir, context.settings, *arch)),
        Step::Upload | Step::Manifest => build::manifest_path(context).is_file(),
        Step::Download
        | Step::Release
        | Step::Consumers
        | Step::Prune
        | Step::Tracking
        | Step::Report => true,
    }
}
