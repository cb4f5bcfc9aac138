//! `/status`: replies with the published images (the manifest hosts read) and the latest
//! build jobs.

use super::CommandAnswer;
use super::request::CommandRequest;
use crate::database::DatabaseError;
use crate::worker::replies;

/// How many of the latest jobs the answer lists.
const JOBS_SHOWN: i64 = 5;

/// The answer to `/status`.
pub(crate) async fn run(request: &CommandRequest<'_>) -> Result<CommandAnswer, DatabaseError> {
    let worker = request.worker;
    let jobs = worker.database.recent_jobs(JOBS_SHOWN).await?;
    // What hosts see: the published manifest.
    let manifest = worker
        .storage
        .get(crate::artifacts::MANIFEST_FILE)
        .await
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    Ok(CommandAnswer::Text(replies::status(
        &jobs,
        manifest.as_deref(),
        &worker.settings.image.name,
        request.audience,
    )))
}
