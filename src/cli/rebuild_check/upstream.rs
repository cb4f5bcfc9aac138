//! The upstream asset a record names, downloaded from the one repository `rebuild-check`
//! trusts and checked twice: against the sha256 the signed record names, and against the
//! `digest` GitHub gives for the asset (or, for an asset GitHub has no digest for, the
//! release's `SHA256SUMS`), before a byte of it is used.

use std::path::Path;

use alloy_sysext_automation::github::api::{Auth, GitHubApi};
use alloy_sysext_automation::github::release_asset::{AssetError, DownloadedAsset, PublicReleases};
use alloy_sysext_automation::provenance::read::UpstreamAsset;

use crate::cli::progress::TerminalProgress;

/// Why the recorded asset cannot be had, or is not the one the record names.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(
        "the record names the upstream repository {named}, but only {trusted} is trusted (--upstream-repo): nothing was downloaded"
    )]
    Untrusted { named: String, trusted: String },
    #[error(transparent)]
    Asset(Box<AssetError>),
    #[error(
        "GitHub gives the digest {digest} for {asset} of {repository} {tag}, but the record names sha256 {recorded}: the release's asset is not the one the image was built from; nothing was downloaded"
    )]
    DigestDiffers {
        repository: String,
        tag: String,
        asset: String,
        digest: String,
        recorded: String,
    },
    #[error(
        "{asset} downloaded from {repository} {tag} has sha256 {downloaded}, but the record names sha256 {recorded}: it is not the asset the image was built from"
    )]
    RecordedDiffers {
        repository: String,
        tag: String,
        asset: String,
        downloaded: String,
        recorded: String,
    },
}

impl From<AssetError> for UpstreamError {
    fn from(error: AssetError) -> Self {
        UpstreamError::Asset(Box::new(error))
    }
}

/// Refuses a record whose upstream repository is not `trusted` (`owner/name`, compared as
/// GitHub compares names, without regard to case).
pub fn check_trusted(asset: &UpstreamAsset, trusted: &str) -> Result<(), UpstreamError> {
    if asset.repository.eq_ignore_ascii_case(trusted) {
        Ok(())
    } else {
        Err(UpstreamError::Untrusted {
            named: asset.repository.clone(),
            trusted: trusted.to_owned(),
        })
    }
}

/// Downloads `asset` (already checked with [`check_trusted`]) into `dest` and checks it
/// against the record and GitHub's digest. A digest that differs from the record refuses
/// the asset before it is downloaded.
pub async fn download_recorded(
    api: &GitHubApi,
    asset: &UpstreamAsset,
    dest: &Path,
    progress: &TerminalProgress,
) -> Result<DownloadedAsset, UpstreamError> {
    let downloaded = download(api, asset, dest, progress).await;
    progress.finish();
    downloaded
}

async fn download(
    api: &GitHubApi,
    asset: &UpstreamAsset,
    dest: &Path,
    progress: &TerminalProgress,
) -> Result<DownloadedAsset, UpstreamError> {
    let releases = PublicReleases {
        api,
        auth: Auth::Personal,
        acting_repository: &asset.repository,
        repo: &asset.repository,
    };
    progress.spinner(&format!("looking up {} {}", asset.repository, asset.tag));
    let release = releases.release(&asset.tag).await?;
    let listed = release.assets.iter().find(|a| a.name == asset.asset);
    if let Some(digest) = listed.and_then(|a| a.digest.as_deref())
        && let Some(hex) = digest.strip_prefix("sha256:")
        && !hex.eq_ignore_ascii_case(&asset.sha256)
    {
        return Err(UpstreamError::DigestDiffers {
            repository: asset.repository.clone(),
            tag: asset.tag.clone(),
            asset: asset.asset.clone(),
            digest: digest.to_owned(),
            recorded: asset.sha256.clone(),
        });
    }
    progress.download(&format!("downloading {}", asset.asset), 0);
    let downloaded = releases
        .download_checked(&release, &asset.asset, dest, &|done, total| {
            progress.bytes(done, total)
        })
        .await?;
    if downloaded.sha256 != asset.sha256 {
        return Err(UpstreamError::RecordedDiffers {
            repository: asset.repository.clone(),
            tag: asset.tag.clone(),
            asset: asset.asset.clone(),
            downloaded: downloaded.sha256,
            recorded: asset.sha256.clone(),
        });
    }
    Ok(downloaded)
}
