//! Step 1: the upstream release's assets, each checked against its digest.

use serde_json::json;

use super::{JobContext, StepError};
use crate::arch::Arch;
use crate::github::api::Auth;
use crate::github::release_asset::{AssetError, PublicReleases};

/// Release notes carried into the build repository's release: at most this many lines.
const NOTES_LINES: usize = 100;

/// Where the asset for `arch` is kept once checked.
pub fn zip_path(context: &JobContext<'_>, arch: Arch) -> std::path::PathBuf {
    context
        .work_dir()
        .join(context.worker.settings.upstream.asset_name(arch))
}

pub async fn run(context: &mut JobContext<'_>) -> Result<(), StepError> {
    let worker = context.worker;
    let settings = &worker.settings;
    // The upstream repository is public: a read-only token of the build repository's
    // installation raises the rate limit, and reaches nothing else. Without one, upstream is
    // read anonymously.
    let auth = match context.auth_for(&settings.build_repo.repo).await {
        Ok(auth @ Auth::Installation(_)) => auth,
        Ok(_) => Auth::Anonymous,
        Err(error) => {
            tracing::warn!(job = context.job.id, error = ?error, "no installation token for reading upstream; reading it anonymously");
            Auth::Anonymous
        }
    };
    let upstream = PublicReleases {
        api: &worker.github,
        auth,
        acting_repository: &settings.build_repo.repo,
        repo: &settings.upstream.repo,
    };
    let release = upstream
        .release(&context.version.tag())
        .await
        .map_err(classify)?;
    let dir = context.work_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| StepError::Transient(format!("creating {}: {e}", dir.display())))?;
    let mut checked = Vec::new();
    for arch in &settings.image.arches {
        let name = settings.upstream.asset_name(*arch);
        let dest = zip_path(context, *arch);
        if dest.is_file() {
            continue;
        }
        // Downloads land under their final name only once checked.
        let partial = dir.join(format!(".{name}.partial"));
        let downloaded = upstream
            .download_checked(&release, &name, &partial, &|_, _| {})
            .await
            .map_err(classify)?;
        std::fs::rename(&partial, &dest).map_err(|e| {
            StepError::Transient(format!("keeping the download {}: {e}", dest.display()))
        })?;
        tracing::info!(job = context.job.id, asset = %name, size = downloaded.size, sha256 = %downloaded.sha256, checked_against = ?downloaded.checked_against, "downloaded and checked");
        checked.push(json!({
            "asset": name,
            "sha256": downloaded.sha256,
            "checked_against": downloaded.checked_against,
        }));
    }
    let notes: String = release
        .body
        .as_deref()
        .unwrap_or("")
        .lines()
        .take(NOTES_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    let mut fields = json!({
        "upstream_release": release.html_url,
        "upstream_notes": notes,
    });
    if !checked.is_empty() {
        fields["downloads"] = json!(checked);
    }
    context.record(fields).await?;
    Ok(())
}

fn classify(error: AssetError) -> StepError {
    match error {
        AssetError::ReleaseLookup { .. }
        | AssetError::Download { .. }
        | AssetError::Write { .. } => StepError::Transient(error.to_string()),
        other => StepError::Permanent(other.to_string()),
    }
}
