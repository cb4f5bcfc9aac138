//! A withdraw job's steps (`JobKind::Withdraw`): what `/withdraw X.Y.Z` and the CLI's
//! `withdraw` ask for.
//!
//! 1. `manifest`: the version is recorded as withdrawn, its lines leave `SHA256SUMS`
//!    (signed, put in storage, committed, as a build's change), and its files are scheduled
//!    to leave storage after `publish.withdrawn_grace_days`;
//! 2. `release`: the version's release says it is withdrawn, who withdrew it and why;
//! 3. `consumers`: open pull requests for the version are closed with a comment, and
//!    consumers whose file pins it get a pull request to the newest version still listed;
//! 4. `report`: the reply to whoever asked, as a build's.
//!
//! Each step is idempotent, as a build's are: a step run again finds its work done.

mod consumers;
mod manifest;
mod release;

use super::{Step, StepContext, StepError};

/// Runs `step` of a withdraw job.
pub async fn run_step(step: Step, context: &mut StepContext<'_>) -> Result<(), StepError> {
    match step {
        Step::Manifest => manifest::run(context).await,
        Step::Release => release::run(context).await,
        Step::Consumers => consumers::run(context).await,
        Step::Report => super::report::reply(context).await,
        Step::Download | Step::Build | Step::Upload | Step::Prune | Step::Tracking => Err(
            StepError::Permanent(format!("a withdraw job has no step {step}")),
        ),
    }
}

/// The asker's reason, as one line for commit messages and logs.
fn reason_line(context: &StepContext<'_>) -> Option<String> {
    context
        .job
        .trigger
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|reason| !reason.is_empty())
        .map(|reason| reason.split_whitespace().collect::<Vec<_>>().join(" "))
}
