//! `/promote X.Y.Z`: copies a published version into the next release channel and lists it
//! there (a `JobKind::Promote` job, see `crate::worker::pipeline`). It is asked for like a
//! `/build`, and joins a queued promotion of the same version.

use super::CommandAnswer;
use super::build::{AskedJob, queue};
use super::request::CommandRequest;
use crate::database::jobs::JobKind;
use crate::version::Version;
use crate::worker::inbox::HandlingError;

/// Asks for the promotion of `version` to the channel after the last one that lists it.
pub(crate) async fn run(
    request: &CommandRequest<'_>,
    version: &Version,
) -> Result<CommandAnswer, HandlingError> {
    queue(
        request,
        AskedJob {
            word: "promote",
            kind: JobKind::Promote,
            version,
            rebuild: false,
            reason: None,
        },
    )
    .await
}
