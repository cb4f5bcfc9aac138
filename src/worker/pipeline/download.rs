//! Step 1: the upstream release's assets, each checked against its digest.

use super::{StepContext, StepError};
use crate::arch::Arch;
use crate::database::job_result::Download;
use crate::github::api::Auth;
use crate::github::release_asset::PublicReleases;

/// Release notes carried into the build repository's release: at most this many lines.
const NOTES_LINES: usize = 100;

/// Where the asset for `arch` is kept once checked.
pub fn zip_path(context: &StepContext<'_>, arch: Arch) -> std::path::PathBuf {
    context
        .work_dir
        .join(context.settings.upstream.asset_name(arch))
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let settings = context.settings;
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
        api: context.github,
        auth,
        acting_repository: &settings.build_repo.repo,
        repo: &settings.upstream.repo,
    };
    let release = upstream.release(&context.job.version.tag()).await?;
    let dir = context.work_dir.clone();
    std::fs::create_dir_all(&dir).map_err(StepError::work_dir("creating", &dir))?;
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
            .await?;
        std::fs::rename(&partial, &dest)
            .map_err(StepError::work_dir("keeping the download", &dest))?;
        tracing::info!(job = context.job.id, asset = %name, size = downloaded.size, sha256 = %downloaded.sha256, checked_against = ?downloaded.checked_against, "downloaded and checked");
        checked.push(Download {
            asset: name,
            sha256: downloaded.sha256,
            checked_against: downloaded.checked_against,
        });
    }
    let notes: String = release
        .body
        .as_deref()
        .unwrap_or("")
        .lines()
        .take(NOTES_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    context
        .record(|result| {
            result.upstream_release = Some(release.html_url);
            result.upstream_notes = Some(notes);
            if !checked.is_empty() {
                result.downloads = Some(checked);
            }
        })
        .await?;
    Ok(())
}
