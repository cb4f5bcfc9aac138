//! Step 5: release `vX.Y.Z` in the build repository, made only once the images and the
//! manifest are published; an existing release is left as it is.

use serde_json::json;

use super::{JobContext, StepError};
use crate::github::releases::{create_release, release_by_tag};
use crate::markdown::{code_block, code_span, safe_url, table_code_span};

pub async fn run(context: &mut JobContext<'_>) -> Result<(), StepError> {
    let worker = context.worker;
    let repo = worker.settings.build_repo.repo.clone();
    let auth = context.auth_for(&repo).await?;
    let tag = context.version.tag();
    if let Some(existing) = release_by_tag(&worker.github, auth, &repo, &tag).await? {
        context
            .record(json!({ "release": existing.html_url, "release_created": false }))
            .await?;
        return Ok(());
    }
    let result = context.result();
    let mut body = String::new();
    if let Some(notes) = result.get("upstream_notes").and_then(|n| n.as_str())
        && !notes.trim().is_empty()
    {
        // Upstream's Markdown would mention its contributors and link in the App's name:
        // shown as text.
        body.push_str("Upstream release notes:\n\n");
        body.push_str(&code_block(notes));
        body.push('\n');
    }
    if let Some(url) = result.get("upstream_release").and_then(|n| n.as_str()) {
        let shown = safe_url(url).map_or_else(|| code_span(url), str::to_owned);
        body.push_str(&format!("Upstream release: {shown}\n"));
    }
    if let Some(images) = result.get("images").and_then(|i| i.as_array()) {
        body.push_str("\n| image | sha256 |\n|---|---|\n");
        for image in images {
            let file = table_code_span(image["file"].as_str().unwrap_or("?"));
            let name = match image["url"].as_str().and_then(safe_url) {
                Some(url) => format!("[{file}]({url})"),
                None => file,
            };
            body.push_str(&format!(
                "| {name} | {} |\n",
                table_code_span(image["sha256"].as_str().unwrap_or("?")),
            ));
        }
    }
    let name = format!("Alloy Sysext {}", context.version);
    let created = create_release(
        &worker.github,
        auth,
        &repo,
        &tag,
        &worker.settings.build_repo.branch,
        &name,
        &body,
    )
    .await?;
    let url = match created {
        Some(release) => release.html_url,
        // Made by an earlier attempt whose answer was lost.
        None => release_by_tag(&worker.github, auth, &repo, &tag)
            .await?
            .and_then(|r| r.html_url),
    };
    context
        .record(json!({ "release": url, "release_created": true }))
        .await?;
    Ok(())
}
