//! Step 5: release `vX.Y.Z` in the build repository, made only once the images and the
//! manifest are published; an existing release is left as it is.

use super::{StepContext, StepError};
use crate::database::job_result::JobResult;
use crate::github::markdown::{code_block, code_span, safe_url, table_code_span};
use crate::github::releases::{create_release, release_by_tag};
use crate::version::Version;

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let github = context.github;
    let repo = context.settings.build_repo.repo.clone();
    let auth = context.auth_for(&repo).await?;
    let tag = context.job.version.tag();
    if let Some(existing) = release_by_tag(github, auth, &repo, &tag).await? {
        context
            .record(|result| {
                result.release = Some(existing.html_url);
                result.release_created = Some(false);
            })
            .await?;
        return Ok(());
    }
    let body = release_body(context.result());
    let name = release_name(&context.job.version);
    let created = create_release(
        github,
        auth,
        &repo,
        &tag,
        &context.settings.build_repo.branch,
        &name,
        &body,
    )
    .await?;
    let url = match created {
        Some(release) => release.html_url,
        // Made by an earlier attempt whose answer was lost.
        None => release_by_tag(github, auth, &repo, &tag)
            .await?
            .and_then(|r| r.html_url),
    };
    context
        .record(|result| {
            result.release = Some(url);
            result.release_created = Some(true);
        })
        .await?;
    Ok(())
}

/// The release's name: `Alloy Sysext X.Y.Z`.
pub fn release_name(version: &Version) -> String {
    format!("Alloy Sysext {version}")
}

/// The release's body, from what the job recorded: upstream's notes and page, and the
/// images with their hashes.
pub fn release_body(result: &JobResult) -> String {
    let mut body = String::new();
    if let Some(notes) = &result.upstream_notes
        && !notes.trim().is_empty()
    {
        // Upstream's Markdown would mention its contributors and link in the App's name:
        // shown as text.
        body.push_str("Upstream release notes:\n\n");
        body.push_str(&code_block(notes));
        body.push('\n');
    }
    if let Some(url) = result.upstream_release.as_ref().and_then(Option::as_deref) {
        let shown = safe_url(url).map_or_else(|| code_span(url), str::to_owned);
        body.push_str(&format!("Upstream release: {shown}\n"));
    }
    if let Some(images) = &result.images {
        body.push_str("\n| image | sha256 |\n|---|---|\n");
        for image in images {
            let file = table_code_span(&image.file);
            let name = match safe_url(&image.url) {
                Some(url) => format!("[{file}]({url})"),
                None => file,
            };
            body.push_str(&format!(
                "| {name} | {} |\n",
                table_code_span(&image.sha256),
            ));
        }
    }
    body
}
