//! The Contents API: files read as line-broken base64 (or raw), and written one commit per PUT,
//! guarded by the blob sha.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Value, json};

use super::Shared;
use super::answers::{
    Answer, error, json_body, not_found, not_supplied, ok, string_field, unprocessable,
};
use super::pagination::Params;
use super::repos::{Repo, Tree};
use super::resource::RepoRoute;
use super::sha1::{blob_sha, tree_sha};

/// Files larger than this are listed without their content, as on GitHub.
const MAX_INLINE: usize = 1024 * 1024;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/repos/{owner}/{repo}/contents", get(get_contents))
        .route(
            "/repos/{owner}/{repo}/contents/{*path}",
            get(get_contents).put(put_contents),
        )
}

/// Base64 as GitHub (Ruby's `Base64.encode64`) writes it: a `\n` after every 60 characters
/// and at the end.
pub(super) fn line_broken_base64(bytes: &[u8]) -> String {
    let encoded = STANDARD.encode(bytes);
    let mut lines = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for line in encoded.as_bytes().chunks(60) {
        lines.push_str(std::str::from_utf8(line).unwrap());
        lines.push('\n');
    }
    lines
}

fn file_json(
    base_url: &str,
    repo: &Repo,
    reference: &str,
    path: &str,
    content: &[u8],
    with_content: bool,
) -> Value {
    let sha = blob_sha(content);
    let links = links(base_url, repo, reference, path, "blob", &sha);
    let mut file = json!({
        "type": "file",
        "name": path.rsplit('/').next().unwrap_or(path),
        "path": path,
        "sha": sha,
        "size": content.len(),
        "url": links["self"],
        "html_url": links["html"],
        "git_url": links["git"],
        "download_url": format!("https://raw.githubusercontent.com/{}/{reference}/{path}", repo.full_name()),
        "_links": links,
    });
    if with_content {
        let inline = content.len() <= MAX_INLINE;
        file["encoding"] = json!(if inline { "base64" } else { "none" });
        file["content"] = json!(if inline {
            line_broken_base64(content)
        } else {
            String::new()
        });
    }
    file
}

fn links(base_url: &str, repo: &Repo, reference: &str, path: &str, kind: &str, sha: &str) -> Value {
    let full_name = repo.full_name();
    let html_kind = if kind == "blob" { "blob" } else { "tree" };
    json!({
        "self": format!("{base_url}/repos/{full_name}/contents/{path}?ref={reference}"),
        "git": format!("{base_url}/repos/{full_name}/git/{kind}s/{sha}"),
        "html": format!("https://github.com/{full_name}/{html_kind}/{reference}/{path}"),
    })
}

/// The entries of directory `path` ("" for the root), or `None` if there is no such directory.
fn directory_json(
    base_url: &str,
    repo: &Repo,
    reference: &str,
    tree: &Tree,
    path: &str,
) -> Option<Value> {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut files = Vec::new();
    let mut directories: std::collections::BTreeMap<&str, Tree> = Default::default();
    for (file, content) in tree.range(prefix.clone()..) {
        let Some(rest) = file.strip_prefix(&prefix) else {
            break;
        };
        match rest.split_once('/') {
            Some((directory, inner)) => {
                directories
                    .entry(directory)
                    .or_default()
                    .insert(inner.to_owned(), content.clone());
            }
            None => files.push(file_json(base_url, repo, reference, file, content, false)),
        }
    }
    if files.is_empty() && directories.is_empty() && !path.is_empty() {
        return None;
    }
    for (name, inner) in directories {
        let full = format!("{prefix}{name}");
        let sha = tree_sha(&inner);
        let links = links(base_url, repo, reference, &full, "tree", &sha);
        files.push(json!({
            "type": "dir",
            "name": name,
            "path": full,
            "sha": sha,
            "size": 0,
            "url": links["self"],
            "html_url": links["html"],
            "git_url": links["git"],
            "download_url": null,
            "_links": links,
        }));
    }
    files.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Some(Value::Array(files))
}

/// A file or a directory (the root on the route without a path).
async fn get_contents(route: RepoRoute, Query(query): Query<Params>) -> Answer {
    let (model, _) = route.authorized()?;
    let repo = model.repo(&route.owner, &route.repo)?;
    let headers = &route.headers;
    let path = &route.item;
    let reference = query
        .get("ref")
        .filter(|r| !r.is_empty())
        .cloned()
        .unwrap_or_else(|| repo.default_branch.clone());
    let Some(sha) = repo.resolve(&reference) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("No commit found for the ref {reference}"),
        ));
    };
    let tree = repo.tree(sha);
    let path = path.trim_matches('/');
    let raw = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept.contains("application/vnd.github.raw") || accept.contains(".raw")
        });
    if let Some(content) = tree.get(path) {
        if raw {
            return Ok((
                [(header::CONTENT_TYPE, "application/vnd.github.raw")],
                content.clone(),
            )
                .into_response());
        }
        return ok(file_json(
            &model.base_url,
            repo,
            &reference,
            path,
            content,
            true,
        ));
    }
    match directory_json(&model.base_url, repo, &reference, &tree, path) {
        Some(listing) => ok(listing),
        None => Err(not_found()),
    }
}

async fn put_contents(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, installation) = route.authorized()?;
    let base_url = model.base_url.clone();
    let repo = model.repo_mut(&route.owner, &route.repo)?;
    let path = &route.item;
    let request = json_body(&body)?;
    let message = string_field(&request, "message")?.ok_or_else(|| not_supplied("message"))?;
    let encoded = string_field(&request, "content")?.ok_or_else(|| not_supplied("content"))?;
    let encoded: String = encoded
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let Ok(content) = STANDARD
        .decode(&encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(&encoded))
    else {
        return Err(unprocessable("content is not valid Base64"));
    };
    let branch = match string_field(&request, "branch")? {
        Some(branch) => branch
            .strip_prefix("refs/heads/")
            .unwrap_or(branch)
            .to_owned(),
        None => repo.default_branch.clone(),
    };
    let Some(head) = repo.branches.get(&branch).cloned() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("Branch {branch} not found"),
        ));
    };
    let path = path.trim_matches('/').to_owned();
    let mut tree = (*repo.tree(&head)).clone();
    let existed = match tree.get(&path) {
        Some(current) => {
            // An existing file needs its current blob sha: GitHub's optimistic lock.
            match string_field(&request, "sha")? {
                None => return Err(not_supplied("sha")),
                Some(sha) if sha != blob_sha(current) => {
                    return Err(error(
                        StatusCode::CONFLICT,
                        format!("{path} does not match {sha}"),
                    ));
                }
                Some(_) => true,
            }
        }
        None => {
            let inside_file = path
                .match_indices('/')
                .any(|(at, _)| tree.contains_key(&path[..at]));
            let is_directory = tree.keys().any(|p| p.starts_with(&format!("{path}/")));
            if path.is_empty() || inside_file || is_directory {
                return Err(unprocessable(format!(
                    "Invalid request.\n\n\"path\" {path:?} is not a file that can be written."
                )));
            }
            false
        }
    };
    tree.insert(path.clone(), content.clone());
    // GitHub commits even when nothing changes.
    let commit = repo.commit_on(&branch, tree, message, &installation.bot);
    let body = json!({
        "content": file_json(&base_url, repo, &branch, &path, &content, false),
        "commit": repo.commit_json(&base_url, &commit),
    });
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    use super::super::Failure;
    use super::super::test_support::*;

    fn put(content: &[u8], sha: Option<&str>, branch: Option<&str>) -> String {
        let mut body = json!({"message": "Update", "content": STANDARD.encode(content)});
        if let Some(sha) = sha {
            body["sha"] = json!(sha);
        }
        if let Some(branch) = branch {
            body["branch"] = json!(branch);
        }
        body.to_string()
    }

    #[test]
    fn contents_round_trip_as_line_broken_base64_with_git_blob_shas() {
        let (github, token) = github_with_repo();
        github.set_file(REPO, "main", "hello.txt", "hello\n");
        github.set_file(REPO, "main", "dir/empty", "");
        let get = |path: &str| call(&github, "GET", path, Some(&token), "");

        let response = get("/repos/acme/site/contents/hello.txt");
        assert_eq!(response.status, 200, "{}", response.body);
        let file = response.json();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(file["sha"], "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(file["content"], "aGVsbG8K\n");
        assert_eq!(file["encoding"], "base64");
        assert_eq!(file["type"], "file");
        assert_eq!(
            (file["name"].clone(), file["size"].clone()),
            (json!("hello.txt"), json!(6))
        );
        let octocrab: octocrab::models::repos::Content = serde_json::from_value(file).unwrap();
        assert_eq!(octocrab.decoded_content().as_deref(), Some("hello\n"));
        let empty = get("/repos/acme/site/contents/dir/empty?ref=main").json();
        assert_eq!(empty["sha"], "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");

        // A new file through the API: 201, then read back with a newline every 60 characters.
        let text = "[Extension]\n".repeat(20);
        let path = "/repos/acme/site/contents/conf/alloy.conf";
        let response = call(
            &github,
            "PUT",
            path,
            Some(&token),
            &put(text.as_bytes(), None, None),
        );
        assert_eq!(response.status, 201, "{}", response.body);
        let update: octocrab::models::repos::FileUpdate =
            serde_json::from_str(&response.body).unwrap();
        let commit = response.json()["commit"].clone();
        assert_eq!(commit["message"], "Update");
        assert_eq!(commit["author"]["name"], "alloy-bot[bot]");
        let read = get(path).json();
        assert_eq!(read["sha"], update.content.sha);
        let content = read["content"].as_str().unwrap();
        let lines: Vec<&str> = content.split_terminator('\n').collect();
        assert!(lines.len() > 1, "{content:?}");
        assert!(
            lines[..lines.len() - 1].iter().all(|l| l.len() == 60),
            "{content:?}"
        );
        assert!(content.ends_with('\n'));
        let decoded = STANDARD.decode(content.replace('\n', "")).unwrap();
        assert_eq!(decoded, text.as_bytes());
        assert_eq!(
            github.file(REPO, "main", "conf/alloy.conf").as_deref(),
            Some(text.as_bytes())
        );

        // Raw, directories, and what is not there.
        let raw = call_with(
            &github,
            "GET",
            path,
            &[
                ("Authorization", &token),
                ("Accept", "application/vnd.github.raw+json"),
            ],
            "",
        );
        assert_eq!(raw.body, text);
        let root = get("/repos/acme/site/contents").json();
        let names: Vec<&str> = root
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["conf", "dir", "hello.txt"]);
        assert_eq!(root[0]["type"], "dir");
        assert_eq!(get("/repos/acme/site/contents/nope.txt").status, 404);
        let no_ref = get("/repos/acme/site/contents/hello.txt?ref=nope");
        assert_eq!(no_ref.status, 404);
        assert_eq!(no_ref.json()["message"], "No commit found for the ref nope");
        assert_eq!(call(&github, "GET", path, None, "").status, 401);
        assert_eq!(get("/repos/acme/other/contents/hello.txt").status, 404);
    }

    #[test]
    fn writes_are_guarded_by_the_blob_sha_and_always_commit() {
        let (github, token) = github_with_repo();
        let path = "/repos/acme/site/contents/VERSION";
        github.set_file(REPO, "main", "VERSION", "1.14.0\n");
        let current = "2e1a2c8b0d9e5b8dd1f2b4a1f9a2d2b5f0c0a1ad";
        let sha = super::blob_sha(b"1.14.0\n");

        let missing = call(
            &github,
            "PUT",
            path,
            Some(&token),
            &put(b"1.15.0\n", None, None),
        );
        assert_eq!(missing.status, 422);
        assert_eq!(
            missing.json()["message"],
            "Invalid request.\n\n\"sha\" wasn't supplied."
        );
        let stale = call(
            &github,
            "PUT",
            path,
            Some(&token),
            &put(b"1.15.0\n", Some(current), None),
        );
        assert_eq!(stale.status, 409);
        assert_eq!(
            stale.json()["message"],
            format!("VERSION does not match {current}")
        );
        let no_branch = call(
            &github,
            "PUT",
            path,
            Some(&token),
            &put(b"1.15.0\n", Some(&sha), Some("nope")),
        );
        assert_eq!(no_branch.status, 404);
        assert_eq!(no_branch.json()["message"], "Branch nope not found");
        let not_base64 = call(
            &github,
            "PUT",
            path,
            Some(&token),
            r#"{"message":"m","content":"%%%","sha":"x"}"#,
        );
        assert_eq!(not_base64.status, 422);
        let no_message = call(&github, "PUT", path, Some(&token), r#"{"content":"eA=="}"#);
        assert_eq!(no_message.status, 422);
        assert_eq!(github.commits(REPO, "main").len(), 2);

        // An injected conflict changes nothing.
        github.fail_next(
            "PUT",
            path,
            Failure::Status {
                status: 409,
                message: "refs/heads/main expected to be at x".into(),
            },
        );
        let injected = call(
            &github,
            "PUT",
            path,
            Some(&token),
            &put(b"1.15.0\n", Some(&sha), None),
        );
        assert_eq!(injected.status, 409);
        assert_eq!(github.file(REPO, "main", "VERSION").unwrap(), b"1.14.0\n");

        let updated = call(
            &github,
            "PUT",
            path,
            Some(&token),
            &put(b"1.15.0\n", Some(&sha), None),
        );
        assert_eq!(updated.status, 200, "{}", updated.body);
        let new_sha = updated.json()["content"]["sha"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(new_sha, super::blob_sha(b"1.15.0\n"));
        // The same content again: GitHub still makes a commit, which changes nothing.
        let unchanged = call(
            &github,
            "PUT",
            path,
            Some(&token),
            &put(b"1.15.0\n", Some(&new_sha), None),
        );
        assert_eq!(unchanged.status, 200, "{}", unchanged.body);
        let commits = github.commits(REPO, "main");
        assert_eq!(commits.len(), 4);
        assert_eq!(commits[0].author, "alloy-bot[bot]");
        assert_eq!(commits[0].changed_paths, Vec::<String>::new());
        assert_eq!(commits[1].changed_paths, ["VERSION"]);
        assert_eq!(commits[0].parents, [commits[1].sha.clone()]);
        assert_eq!(unchanged.json()["commit"]["sha"], commits[0].sha);
        assert_eq!(commits[3].message, "Initial commit");

        // On another branch, the default branch does not move.
        github.create_branch(REPO, "feature/x", "main");
        let on_branch = call(
            &github,
            "PUT",
            path,
            Some(&token),
            &put(b"1.16.0\n", Some(&new_sha), Some("feature/x")),
        );
        assert_eq!(on_branch.status, 200, "{}", on_branch.body);
        assert_eq!(
            github.file(REPO, "feature/x", "VERSION").unwrap(),
            b"1.16.0\n"
        );
        assert_eq!(github.file(REPO, "main", "VERSION").unwrap(), b"1.15.0\n");
        let puts = github
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .count();
        assert_eq!(puts, 9);
    }
}
