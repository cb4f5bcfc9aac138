//! Step 2 of a withdraw: the version's release says it is withdrawn, by whom and why, above
//! what it said before. A `/rebuild` that publishes the version again takes the note out
//! (`super::super::release`).

use super::super::release::{marked_withdrawn, release_name};
use super::super::{StepContext, StepError};
use crate::database::job_result::WithdrawalDone;
use crate::github::releases::{release_by_tag, update_release};

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let github = context.github;
    let repo = context.settings.build_repo.repo.clone();
    let auth = context.auth_for(&repo).await?;
    let version = context.job.version.clone();
    let Some(release) = release_by_tag(github, auth, &repo, &version.tag()).await? else {
        tracing::info!(job = context.job.id, %version, "the version has no release to mark");
        return record(context, None, false).await;
    };
    let withdrawal = context.database.withdrawal(&version).await?.ok_or_else(|| {
        StepError::Permanent(format!(
            "{version} is no longer withdrawn (a `/rebuild` published it again); its release is left as it is"
        ))
    })?;
    let body = release.body.clone().unwrap_or_default();
    let (name, marked_body) = marked_withdrawn(&release_name(&version), &body, &withdrawal);
    if release.name.as_deref() != Some(name.as_str()) || body != marked_body {
        update_release(github, auth, &repo, release.id, &name, &marked_body).await?;
    }
    record(context, Some(release.html_url), true).await
}

async fn record(
    context: &mut StepContext<'_>,
    url: Option<Option<String>>,
    marked: bool,
) -> Result<(), StepError> {
    context
        .record(|result| {
            if let Some(url) = url {
                result.release = Some(url);
            }
            result
                .withdrawal
                .get_or_insert_with(WithdrawalDone::default)
                .release_marked = Some(marked);
        })
        .await?;
    Ok(())
}
