//! A promote job's steps (`JobKind::Promote`): what `/promote X.Y.Z` and the automatic
//! promotion after `publish.promote_after_hours` ask for. The version moves from the last
//! channel that lists it to the next one.
//!
//! 1. `upload`: the channels are read, the move is decided and recorded (from, to, the
//!    version's lines), and the version's files are copied within storage into the target
//!    channel's place;
//! 2. `manifest`: the lines are added to the target channel's `SHA256SUMS` (signed, put in
//!    storage, committed, as a build's), and the version's time there starts;
//! 3. `consumers`: consumers that follow the target channel get their pull requests, as
//!    after a build;
//! 4. `prune`: the target channel is pruned, as after a build;
//! 5. `report`: the reply to whoever asked.
//!
//! A withdrawn version is never promoted. Each step is idempotent, as a build's are.

mod copy;
mod manifest;

use super::{Step, StepContext, StepError};

/// Runs `step` of a promote job.
pub async fn run_step(step: Step, context: &mut StepContext<'_>) -> Result<(), StepError> {
    if step != Step::Report {
        super::withdrawn::refuse_unless_rebuild(context).await?;
    }
    match step {
        Step::Upload => copy::run(context).await,
        Step::Manifest => manifest::run(context).await,
        Step::Consumers => super::consumers::run(context).await,
        Step::Prune => super::prune::run(context).await,
        Step::Report => super::report::reply(context).await,
        Step::Download | Step::Build | Step::Release | Step::Tracking => Err(StepError::Permanent(
            format!("a promote job has no step {step}"),
        )),
    }
}
