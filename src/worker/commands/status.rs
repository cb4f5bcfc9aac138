//! `/status`: replies with the published images (the manifest hosts read at the root), the
//! release channels and their planned promotions, the withdrawn versions and the latest
//! jobs.

use super::CommandAnswer;
use super::request::CommandRequest;
use crate::database::DatabaseError;
use crate::worker::promotions::Rollout;
use crate::worker::replies::{self, PublishedManifest};

/// How many of the latest jobs the answer lists.
const JOBS_SHOWN: i64 = 5;

/// The answer to `/status`.
pub(crate) async fn run(request: &CommandRequest<'_>) -> Result<CommandAnswer, DatabaseError> {
    let worker = request.worker;
    let jobs = worker.services.database.recent_jobs(JOBS_SHOWN).await?;
    let withdrawals = worker.services.database.withdrawals().await?;
    let rollout = Rollout::read(
        &worker.services.database,
        &worker.services.storage,
        &worker.services.settings,
    )
    .await?;
    // What hosts see: the published manifest; a storage failure is not "nothing published".
    let stored = worker
        .services
        .storage
        .get(crate::artifacts::MANIFEST_FILE)
        .await;
    let published = match &stored {
        Ok(Some(bytes)) => std::str::from_utf8(bytes)
            .map(PublishedManifest::Read)
            .unwrap_or_else(|_| PublishedManifest::Unreadable("it is not UTF-8 text".into())),
        Ok(None) => PublishedManifest::Missing,
        Err(error) => {
            tracing::warn!(%error, "/status could not read the published manifest");
            PublishedManifest::Unreadable(error.to_string())
        }
    };
    Ok(CommandAnswer::Text(replies::status(
        &jobs,
        published,
        &withdrawals,
        rollout.as_ref(),
        &worker.services.settings.image.name,
        request.audience,
    )))
}
