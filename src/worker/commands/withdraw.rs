//! `/withdraw X.Y.Z [reason]`: takes a published version out of `SHA256SUMS` (a
//! `JobKind::Withdraw` job, see `crate::worker::pipeline`). It is asked for like a
//! `/build`, and joins a queued withdrawal of the same version.

use super::CommandAnswer;
use super::build::{AskedJob, queue};
use super::request::CommandRequest;
use crate::database::jobs::JobKind;
use crate::version::Version;
use crate::worker::inbox::HandlingError;

/// Asks for the withdrawal of `version`, for `reason`.
pub(crate) async fn run(
    request: &CommandRequest<'_>,
    version: &Version,
    reason: Option<&str>,
) -> Result<CommandAnswer, HandlingError> {
    queue(
        request,
        AskedJob {
            word: "withdraw",
            kind: JobKind::Withdraw,
            version,
            rebuild: false,
            reason,
        },
    )
    .await
}
