//! Finding an upstream release's asset and downloading it with its integrity checked.
//!
//! GitHub lists a `digest` (`sha256:<hex>`) for each asset, and Alloy releases also carry a
//! `SHA256SUMS` asset. A download is accepted only when it matches every one of these that
//! exists, and refused when none does.

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::api::{ApiError, Auth, GitHubApi};
use super::releases::{Release, ReleaseAsset, public_release_by_tag};
use super::url::escape_repo;
use crate::provenance::AssetCheck;

/// The largest zip accepted.
pub const MAX_ASSET_SIZE: u64 = 2 * 1024 * 1024 * 1024;

/// A public repository whose releases are downloaded (upstream), and who reads it: the
/// client, with the credentials of [`GitHubApi::get_public_with_headers`].
#[derive(Clone, Copy)]
pub struct PublicReleases<'a> {
    pub api: &'a GitHubApi,
    pub auth: Auth,
    /// The installation's repository whose read-only token reads it, for
    /// [`Auth::Installation`].
    pub acting_repository: &'a str,
    /// `owner/name`.
    pub repo: &'a str,
}

/// A downloaded, checked asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedAsset {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// What the sha256 was checked against.
    pub checked_against: Vec<AssetCheck>,
}

/// Why the asset could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("GitHub has no release {tag} in {repo}")]
    ReleaseNotFound { repo: String, tag: String },
    #[error("looking up release {tag} of {repo} failed: {source}")]
    ReleaseLookup {
        repo: String,
        tag: String,
        source: ApiError,
    },
    #[error("release {tag} of {repo} has no asset {name}; it has: {available}")]
    AssetNotFound {
        repo: String,
        tag: String,
        name: String,
        available: String,
    },
    #[error("downloading {name} from {repo}: {source}")]
    Download {
        repo: String,
        name: String,
        source: ApiError,
    },
    #[error("writing the download to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{name} is larger than {limit} bytes; refusing it")]
    TooLarge { name: String, limit: u64 },
    #[error("{name}: the asset digest {digest:?} is not of the form sha256:<64 hex>")]
    BadDigest { name: String, digest: String },
    #[error(
        "{name} has sha256 {actual}, but {source_name} says {expected}: the download is corrupt or was tampered with; nothing was built"
    )]
    Mismatch {
        name: String,
        actual: String,
        expected: String,
        source_name: String,
    },
    #[error(
        "{name} in {repo} {tag} has no digest and the release has no SHA256SUMS asset that lists it, so its integrity cannot be checked; download it yourself, check it, and pass it with --zip"
    )]
    Unverifiable {
        repo: String,
        tag: String,
        name: String,
    },
}

impl PublicReleases<'_> {
    /// The release tagged `tag`.
    pub async fn release(&self, tag: &str) -> Result<Release, AssetError> {
        public_release_by_tag(self.api, self.auth, self.acting_repository, self.repo, tag)
            .await
            .map_err(|source| AssetError::ReleaseLookup {
                repo: self.repo.to_owned(),
                tag: tag.to_owned(),
                source,
            })?
            .ok_or_else(|| AssetError::ReleaseNotFound {
                repo: self.repo.to_owned(),
                tag: tag.to_owned(),
            })
    }

    /// Downloads asset `name` of `release` into `dest` through the asset API (`Accept:
    /// application/octet-stream`), calling `on_bytes` with the running total, and checks it
    /// against the asset's digest and the release's `SHA256SUMS`, when present.
    pub async fn download_checked(
        &self,
        release: &Release,
        name: &str,
        dest: &Path,
        on_bytes: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<DownloadedAsset, AssetError> {
        let repo = self.repo;
        let asset = release
            .assets
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| AssetError::AssetNotFound {
                repo: repo.to_owned(),
                tag: release.tag_name.clone(),
                name: name.to_owned(),
                available: release
                    .assets
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if asset.size > MAX_ASSET_SIZE {
            return Err(AssetError::TooLarge {
                name: name.to_owned(),
                limit: MAX_ASSET_SIZE,
            });
        }
        let mut expectations = Vec::new();
        if let Some(digest) = &asset.digest {
            let hex = digest
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| AssetError::BadDigest {
                    name: name.to_owned(),
                    digest: digest.clone(),
                })?;
            expectations.push((hex.to_ascii_lowercase(), AssetCheck::AssetDigest));
        }
        if let Some(sums) = release.assets.iter().find(|a| a.name == "SHA256SUMS") {
            let text = self.download_small(sums).await?;
            if let Some(hex) = sums_entry(&text, name) {
                expectations.push((hex, AssetCheck::ReleaseSha256Sums));
            }
        }
        if expectations.is_empty() {
            return Err(AssetError::Unverifiable {
                repo: repo.to_owned(),
                tag: release.tag_name.clone(),
                name: name.to_owned(),
            });
        }

        let (sha256, size) = self.stream_to_file(asset, dest, on_bytes).await?;
        for (expected, check) in &expectations {
            if *expected != sha256 {
                return Err(AssetError::Mismatch {
                    name: name.to_owned(),
                    actual: sha256,
                    expected: expected.clone(),
                    source_name: check.describe().to_owned(),
                });
            }
        }
        Ok(DownloadedAsset {
            name: name.to_owned(),
            size,
            sha256,
            checked_against: expectations.into_iter().map(|(_, s)| s).collect(),
        })
    }

    async fn stream_to_file(
        &self,
        asset: &ReleaseAsset,
        dest: &Path,
        on_bytes: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(String, u64), AssetError> {
        let write_error = |source| AssetError::Write {
            path: dest.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(write_error)?;
        let downloaded = self
            .stream_asset(asset, MAX_ASSET_SIZE, &mut file, on_bytes)
            .await
            .map_err(|e| match e {
                AssetError::Write { source, .. } => write_error(source),
                other => other,
            })?;
        file.flush().await.map_err(write_error)?;
        file.sync_all().await.map_err(write_error)?;
        Ok(downloaded)
    }

    /// A small text asset such as `SHA256SUMS`.
    async fn download_small(&self, asset: &ReleaseAsset) -> Result<String, AssetError> {
        let mut bytes = Vec::new();
        self.stream_asset(asset, 1024 * 1024, &mut bytes, &|_, _| {})
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Streams `asset` into `dest`, refusing more than `limit` bytes; returns its sha256 and
    /// size.
    async fn stream_asset(
        &self,
        asset: &ReleaseAsset,
        limit: u64,
        dest: &mut (impl tokio::io::AsyncWrite + Unpin),
        on_bytes: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(String, u64), AssetError> {
        let download_error = |source| AssetError::Download {
            repo: self.repo.to_owned(),
            name: asset.name.clone(),
            source,
        };
        let path = format!(
            "/repos/{}/releases/assets/{}",
            escape_repo(self.repo),
            asset.id
        );
        let mut download = self
            .api
            .download_public(
                &path,
                self.auth,
                self.acting_repository,
                &format!("GET {path}"),
            )
            .await
            .map_err(download_error)?;
        if download.length().is_some_and(|length| length > limit) {
            return Err(AssetError::TooLarge {
                name: asset.name.clone(),
                limit,
            });
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = download.chunk().await.map_err(download_error)? {
            size += chunk.len() as u64;
            if size > limit {
                return Err(AssetError::TooLarge {
                    name: asset.name.clone(),
                    limit,
                });
            }
            hasher.update(&chunk);
            dest.write_all(&chunk)
                .await
                .map_err(|source| AssetError::Write {
                    path: asset.name.clone(),
                    source,
                })?;
            on_bytes(size, asset.size);
        }
        Ok((hex::encode(hasher.finalize()), size))
    }
}

/// The hash that a `sha256sum`-style listing gives for `name`.
fn sums_entry(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (hash, file) = line.split_once(char::is_whitespace)?;
        let file = file.trim_start().trim_start_matches('*');
        (file == name && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hash.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_entries_in_upstream_sums() {
        let hash = "ab".repeat(32);
        let text = format!(
            "{hash}  alloy-linux-amd64.zip\n{}  other.zip\n",
            "cd".repeat(32)
        );
        assert_eq!(
            sums_entry(&text, "alloy-linux-amd64.zip"),
            Some(hash.clone())
        );
        assert_eq!(sums_entry(&format!("{hash} *x.zip\n"), "x.zip"), Some(hash));
        assert_eq!(sums_entry(&text, "missing.zip"), None);
    }
}
