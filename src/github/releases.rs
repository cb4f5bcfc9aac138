//! Releases: the build repository's own, and upstream's, which the watch lists and downloads
//! come from.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::{escape_component, escape_repo};

/// A release, as far as the pipeline, the watch and downloads need it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Release {
    /// GitHub's id of the release; an update names it.
    #[serde(default)]
    pub id: u64,
    pub tag_name: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub prerelease: bool,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub assets: Vec<ReleaseAsset>,
}

/// One asset of a release.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ReleaseAsset {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub size: u64,
    /// `sha256:<hex>`, on releases GitHub has computed it for.
    #[serde(default)]
    pub digest: Option<String>,
}

fn tag_path(repo: &str, tag: &str) -> String {
    format!(
        "/repos/{}/releases/tags/{}",
        escape_repo(repo),
        escape_component(tag)
    )
}

/// The release tagged `tag` in `repo`, an installation's repository, if any.
pub async fn release_by_tag(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    tag: &str,
) -> Result<Option<Release>, ApiError> {
    api.get_optional_json(
        &tag_path(repo, tag),
        auth,
        &format!("reading release {tag} of {repo}"),
    )
    .await
}

/// The release tagged `tag` in `repo`, a public repository outside the installation
/// (upstream), read as [`GitHubApi::get_public_with_headers`] reads, if any.
pub async fn public_release_by_tag(
    api: &GitHubApi,
    auth: Auth,
    acting_repository: &str,
    repo: &str,
    tag: &str,
) -> Result<Option<Release>, ApiError> {
    api.get_public_optional_json(
        &tag_path(repo, tag),
        auth,
        acting_repository,
        &format!("reading release {tag} of {repo}"),
    )
    .await
}

/// One page of a repository's releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleasesPage {
    /// `304`: the page is as it was when it had the `etag` asked with.
    NotModified,
    Releases {
        releases: Vec<Release>,
        /// The page's `ETag`, for asking again with `If-None-Match`.
        etag: Option<String>,
        /// Whether a next page follows (`Link: rel="next"`).
        has_next: bool,
    },
}

/// Page `page` (up to 100 releases, newest first) of the releases of `repo`, a public
/// repository outside the installation, read as [`GitHubApi::get_public_with_headers`]
/// reads; asked with `If-None-Match: etag` when given.
pub async fn public_releases_page(
    api: &GitHubApi,
    auth: Auth,
    acting_repository: &str,
    repo: &str,
    page: u32,
    etag: Option<&str>,
) -> Result<ReleasesPage, ApiError> {
    let headers: Vec<(&'static str, String)> = etag
        .map(|etag| ("if-none-match", etag.to_owned()))
        .into_iter()
        .collect();
    let response = api
        .get_public_with_headers(
            &format!(
                "/repos/{}/releases?per_page=100&page={page}",
                escape_repo(repo)
            ),
            auth,
            acting_repository,
            &headers,
        )
        .await?;
    if response.status == 304 {
        return Ok(ReleasesPage::NotModified);
    }
    if !response.is_success() {
        return Err(response.into_error(&format!("listing the releases of {repo}")));
    }
    let header = |name| {
        response
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok(ReleasesPage::Releases {
        etag: header(http::header::ETAG),
        has_next: header(http::header::LINK).is_some_and(|link| link.contains("rel=\"next\"")),
        releases: response.json()?,
    })
}

/// Creates release `tag` on `target` (a branch). Returns `None` when GitHub says the tag
/// has a release already (made by an earlier attempt).
pub async fn create_release(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    tag: &str,
    target: &str,
    name: &str,
    body: &str,
) -> Result<Option<Release>, ApiError> {
    let response = api
        .request(
            Method::POST,
            &format!("/repos/{}/releases", escape_repo(repo)),
            auth,
            Some(&json!({
                "tag_name": tag,
                "target_commitish": target,
                "name": name,
                "body": body,
                "draft": false,
                "prerelease": false,
            })),
        )
        .await?;
    if response.status == 422 && response.body.contains("already_exists") {
        return Ok(None);
    }
    if !response.is_success() {
        return Err(response.into_error(&format!("creating release {tag} in {repo}")));
    }
    response.json().map(Some)
}

/// Sets the name and body of release `id`.
pub async fn update_release(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    id: u64,
    name: &str,
    body: &str,
) -> Result<Release, ApiError> {
    api.send_json(
        Method::PATCH,
        &format!("/repos/{}/releases/{id}", escape_repo(repo)),
        auth,
        &json!({"name": name, "body": body}),
    )
    .await
}
