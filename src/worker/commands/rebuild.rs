//! `/rebuild X.Y.Z`: builds and publishes the images again, replacing the published ones.
//! It is asked for like a `/build` (`build::queue_job`); joining a queued build of
//! the version makes that job a rebuild.

use super::CommandAnswer;
use super::request::CommandRequest;
use crate::version::Version;
use crate::worker::inbox::HandlingError;

/// Asks for a rebuild of `version`.
pub(crate) async fn run(
    request: &CommandRequest<'_>,
    version: &Version,
) -> Result<CommandAnswer, HandlingError> {
    super::build::queue_job(request, "rebuild", version, true).await
}
