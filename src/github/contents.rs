//! Files in a repository through the Contents API: read with their blob sha, write as a
//! commit (which is how commits get verified on protected branches).

use base64::Engine;
use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::{escape_component, escape_repo, escape_segments};

/// A file as the branch holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    pub content: Vec<u8>,
    /// The blob sha, required to replace the file.
    pub sha: String,
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileWrite {
    /// A commit was made.
    Committed { commit_sha: String },
    /// The branch already held exactly this content: nothing was written (GitHub would
    /// make an empty commit).
    Unchanged,
    /// The file changed since it was read (409): read it again and redo the change.
    Stale,
}

#[derive(Deserialize)]
struct ContentsResponse {
    #[serde(default)]
    content: String,
    sha: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// `path` at `reference` of `repo` (a commit sha, or a name GitHub resolves: a branch, but a
/// tag or a full ref of that name may win), or `None` when it does not exist.
pub async fn read_file(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    reference: &str,
    path: &str,
) -> Result<Option<RepoFile>, ApiError> {
    let route = format!(
        "/repos/{}/contents/{}?ref={}",
        escape_repo(repo),
        escape_segments(path)?,
        escape_component(reference)
    );
    read_route(api, auth, repo, path, &route).await
}

/// `path` on the default branch of `repo`, or `None` when it does not exist.
pub async fn read_default_branch_file(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    path: &str,
) -> Result<Option<RepoFile>, ApiError> {
    let route = format!(
        "/repos/{}/contents/{}",
        escape_repo(repo),
        escape_segments(path)?
    );
    read_route(api, auth, repo, path, &route).await
}

async fn read_route(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    path: &str,
    route: &str,
) -> Result<Option<RepoFile>, ApiError> {
    let response = api.request(Method::GET, route, auth, None).await?;
    if response.status == 404 {
        return Ok(None);
    }
    if !response.is_success() {
        return Err(response.into_error(&format!("reading {path} in {repo}")));
    }
    let contents: ContentsResponse = response.json()?;
    if contents.kind != "file" {
        return Err(ApiError::Unexpected {
            reason: format!("{path} in {repo} is a {}, not a file", contents.kind),
            request_id: response.request_id,
        });
    }
    // GitHub breaks the base64 into lines.
    let compact: String = contents
        .content
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let content = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| ApiError::Unexpected {
            reason: format!("{path} in {repo}: the content is not base64: {e}"),
            request_id: response.request_id.clone(),
        })?;
    Ok(Some(RepoFile {
        content,
        sha: contents.sha,
    }))
}

/// Where a file is written: `path` on `branch` of `repo`.
#[derive(Debug, Clone, Copy)]
pub struct FileTarget<'a> {
    pub repo: &'a str,
    pub branch: &'a str,
    pub path: &'a str,
}

/// Writes `content` to `target` as one commit with `message`. `current` is what was read
/// before (`None` for a new file); when it already holds `content`, nothing is written.
pub async fn write_file(
    api: &GitHubApi,
    auth: Auth,
    target: FileTarget<'_>,
    content: &[u8],
    current: Option<&RepoFile>,
    message: &str,
) -> Result<FileWrite, ApiError> {
    let FileTarget { repo, branch, path } = target;
    if current.is_some_and(|file| file.content == content) {
        return Ok(FileWrite::Unchanged);
    }
    let mut body = json!({
        "message": message,
        "content": base64::engine::general_purpose::STANDARD.encode(content),
        "branch": branch,
    });
    if let Some(file) = current {
        body["sha"] = json!(file.sha);
    }
    let route = format!(
        "/repos/{}/contents/{}",
        escape_repo(repo),
        escape_segments(path)?
    );
    let response = api.request(Method::PUT, &route, auth, Some(&body)).await?;
    // 409: the sha is stale; 422 "sha wasn't supplied": the file appeared since it was read.
    if response.status == 409 || (response.status == 422 && current.is_none()) {
        return Ok(FileWrite::Stale);
    }
    if !response.is_success() {
        return Err(response.into_error(&format!("committing {path} to {repo}@{branch}")));
    }
    #[derive(Deserialize)]
    struct Written {
        commit: Commit,
    }
    #[derive(Deserialize)]
    struct Commit {
        sha: String,
    }
    let written: Written = response.json()?;
    Ok(FileWrite::Committed {
        commit_sha: written.commit.sha,
    })
}
