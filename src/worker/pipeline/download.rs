//! Step 1: the upstream release's assets, each checked against its digest. Beside each
//! checked asset in the work directory, what it was checked against (`<asset>.checked.json`),
//! which the build step writes into the image's provenance record; an asset without it is
//! downloaded again.

use std::path::{Path, PathBuf};

use super::{RepositoryAccess, StepContext, StepError};
use crate::arch::Arch;
use crate::database::job_result::Download;
use crate::github::api::{Auth, GitHubApi};
use crate::github::release_asset::PublicReleases;
use crate::provenance::CheckedAsset;
use crate::settings::Settings;
use crate::version::Version;

/// Release notes carried into the build repository's release: at most this many lines.
const NOTES_LINES: usize = 100;

/// Where the asset for `arch` is kept once checked in the work directory `dir`.
pub fn zip_path_in(dir: &Path, settings: &Settings, arch: Arch) -> PathBuf {
    dir.join(settings.upstream.asset_name(arch))
}

/// Where what the asset for `arch` was checked against is kept, beside it in `dir`.
pub fn checked_path_in(dir: &Path, settings: &Settings, arch: Arch) -> PathBuf {
    dir.join(format!(
        "{}.checked.json",
        settings.upstream.asset_name(arch)
    ))
}

/// What the asset for `arch` in `dir` was checked against when it was downloaded.
pub fn checked_asset_in(
    dir: &Path,
    settings: &Settings,
    arch: Arch,
) -> Result<CheckedAsset, StepError> {
    let path = checked_path_in(dir, settings, arch);
    let text = std::fs::read(&path).map_err(StepError::work_dir("reading", &path))?;
    serde_json::from_slice(&text).map_err(|error| {
        StepError::work_dir("reading", &path)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            error,
        ))
    })
}

/// Whether the asset for `arch` is in `dir`, checked, with what it was checked against.
pub fn is_checked_in(dir: &Path, settings: &Settings, arch: Arch) -> bool {
    zip_path_in(dir, settings, arch).is_file() && checked_asset_in(dir, settings, arch).is_ok()
}

/// What the download read of the upstream release.
pub struct Fetched {
    /// The upstream release's page.
    pub release_url: Option<String>,
    /// The first lines of its notes.
    pub notes: String,
    /// The assets downloaded now (those in the directory already are not).
    pub checked: Vec<Download>,
}

/// Downloads every configured architecture's asset of upstream `version` into `dir`,
/// checked against its digest, unless it is there already.
pub async fn fetch_assets(
    github: &GitHubApi,
    access: &dyn RepositoryAccess,
    settings: &Settings,
    version: &Version,
    dir: &Path,
) -> Result<Fetched, StepError> {
    // The upstream repository is public: a read-only token of the build repository's
    // installation raises the rate limit, and reaches nothing else. Without one, upstream is
    // read anonymously.
    let auth = match access.auth_for(&settings.build_repo.repo).await {
        Ok(auth @ Auth::Installation(_)) => auth,
        Ok(_) => Auth::Anonymous,
        Err(error) => {
            tracing::warn!(error = ?error, "no installation token for reading upstream; reading it anonymously");
            Auth::Anonymous
        }
    };
    let upstream = PublicReleases {
        api: github,
        auth,
        acting_repository: &settings.build_repo.repo,
        repo: &settings.upstream.repo,
    };
    let release = upstream.release(&version.tag()).await?;
    std::fs::create_dir_all(dir).map_err(StepError::work_dir("creating", dir))?;
    let mut checked = Vec::new();
    for arch in &settings.image.arches {
        let name = settings.upstream.asset_name(*arch);
        let dest = zip_path_in(dir, settings, *arch);
        if is_checked_in(dir, settings, *arch) {
            continue;
        }
        // Downloads land under their final name only once checked, and count as there only
        // with what they were checked against beside them.
        let checked_path = checked_path_in(dir, settings, *arch);
        remove_if_there(&checked_path)?;
        let partial = dir.join(format!(".{name}.partial"));
        let downloaded = upstream
            .download_checked(&release, &name, &partial, &|_, _| {})
            .await?;
        std::fs::rename(&partial, &dest)
            .map_err(StepError::work_dir("keeping the download", &dest))?;
        tracing::info!(asset = %name, size = downloaded.size, sha256 = %downloaded.sha256, checked_against = ?downloaded.checked_against, "downloaded and checked");
        let asset = CheckedAsset {
            asset: name.clone(),
            sha256: downloaded.sha256.clone(),
            checked_against: downloaded.checked_against.clone(),
        };
        let partial = dir.join(format!(".{name}.checked.partial"));
        let json = serde_json::to_vec(&asset).expect("a checked asset always serializes");
        std::fs::write(&partial, json)
            .and_then(|()| std::fs::rename(&partial, &checked_path))
            .map_err(StepError::work_dir("writing", &checked_path))?;
        checked.push(Download {
            asset: name,
            sha256: downloaded.sha256,
            checked_against: downloaded
                .checked_against
                .iter()
                .map(|check| check.describe().to_owned())
                .collect(),
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
    Ok(Fetched {
        release_url: release.html_url,
        notes,
        checked,
    })
}

fn remove_if_there(path: &Path) -> Result<(), StepError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(StepError::work_dir("removing", path)(error))
        }
        _ => Ok(()),
    }
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let fetched = fetch_assets(
        context.github,
        context.access,
        context.settings,
        &context.job.version,
        &context.work_dir,
    )
    .await?;
    context
        .record(|result| {
            result.upstream_release = Some(fetched.release_url);
            result.upstream_notes = Some(fetched.notes);
            if !fetched.checked.is_empty() {
                result.downloads = Some(fetched.checked);
            }
        })
        .await?;
    Ok(())
}
