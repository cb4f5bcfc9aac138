//! The Git refs API: branches (`heads/...`) and tags (`tags/...`), whose names may contain
//! slashes.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Shared;
use super::answers::{
    Answer, ApiError, created, json_body, no_content, not_found, not_supplied, ok, string_field,
    unprocessable,
};
use super::repos::Repo;
use super::resource::RepoRoute;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/repos/{owner}/{repo}/git/ref/{*ref}", get(get_ref))
        .route("/repos/{owner}/{repo}/git/refs", post(create_ref))
        .route(
            "/repos/{owner}/{repo}/git/refs/{*ref}",
            get(matching_refs).patch(update_ref).delete(delete_ref),
        )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Branch,
    Tag,
}

/// `heads/x` or `tags/x` (after `refs/`, which the routes leave out).
fn parse(reference: &str) -> Option<(Kind, &str)> {
    let reference = reference.trim_start_matches('/');
    let (kind, name) = if let Some(name) = reference.strip_prefix("heads/") {
        (Kind::Branch, name)
    } else {
        (Kind::Tag, reference.strip_prefix("tags/")?)
    };
    (!name.is_empty()).then_some((kind, name))
}

fn refs(repo: &Repo, kind: Kind) -> &BTreeMap<String, String> {
    match kind {
        Kind::Branch => &repo.branches,
        Kind::Tag => &repo.tags,
    }
}

fn refs_mut(repo: &mut Repo, kind: Kind) -> &mut BTreeMap<String, String> {
    match kind {
        Kind::Branch => &mut repo.branches,
        Kind::Tag => &mut repo.tags,
    }
}

fn full_ref(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Branch => format!("refs/heads/{name}"),
        Kind::Tag => format!("refs/tags/{name}"),
    }
}

fn ref_json(base_url: &str, repo: &Repo, kind: Kind, name: &str) -> Value {
    let sha = &refs(repo, kind)[name];
    let full = full_ref(kind, name);
    let api = format!("{base_url}/repos/{}/git", repo.full_name());
    json!({
        "ref": full,
        "node_id": format!("REF_fake{}", super::answers::stable_hash(&full)),
        "url": format!("{api}/{full}"),
        "object": {
            "sha": sha,
            "type": "commit",
            "url": format!("{api}/commits/{sha}"),
        },
    })
}

/// The commit `sha` names in `repo`, or GitHub's 422.
fn known_commit(repo: &Repo, request: &Value) -> Result<String, ApiError> {
    let sha = string_field(request, "sha")?.ok_or_else(|| not_supplied("sha"))?;
    if repo.commits.contains_key(sha) {
        Ok(sha.to_owned())
    } else {
        Err(unprocessable("Object does not exist"))
    }
}

async fn get_ref(route: RepoRoute) -> Answer {
    let (model, _) = route.authorized()?;
    let repo = model.repo(&route.owner, &route.repo)?;
    match parse(&route.item) {
        Some((kind, name)) if refs(repo, kind).contains_key(name) => {
            ok(ref_json(&model.base_url, repo, kind, name))
        }
        _ => Err(not_found()),
    }
}

/// The older `GET /git/refs/{ref}`: the ref itself when one matches exactly, else the refs
/// it is a prefix of (an array), else 404.
async fn matching_refs(route: RepoRoute) -> Answer {
    let (model, _) = route.authorized()?;
    let repo = model.repo(&route.owner, &route.repo)?;
    let reference = &route.item;
    if let Some((kind, name)) = parse(reference)
        && refs(repo, kind).contains_key(name)
    {
        return ok(ref_json(&model.base_url, repo, kind, name));
    }
    let prefix = format!("refs/{}", reference.trim_start_matches('/'));
    let matching: Vec<Value> = [Kind::Branch, Kind::Tag]
        .into_iter()
        .flat_map(|kind| refs(repo, kind).keys().map(move |name| (kind, name)))
        .filter(|(kind, name)| full_ref(*kind, name).starts_with(&prefix))
        .map(|(kind, name)| ref_json(&model.base_url, repo, kind, name))
        .collect();
    if matching.is_empty() {
        return Err(not_found());
    }
    ok(Value::Array(matching))
}

async fn create_ref(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, _) = route.authorized()?;
    let base_url = model.base_url.clone();
    let repo = model.repo_mut(&route.owner, &route.repo)?;
    let request = json_body(&body)?;
    let reference = string_field(&request, "ref")?.ok_or_else(|| not_supplied("ref"))?;
    // GitHub wants the full name: refs/ and at least two slashes.
    let Some((kind, name)) = reference.strip_prefix("refs/").and_then(parse) else {
        return Err(unprocessable("Reference name is invalid"));
    };
    let sha = known_commit(repo, &request)?;
    if refs(repo, kind).contains_key(name) {
        return Err(unprocessable("Reference already exists"));
    }
    refs_mut(repo, kind).insert(name.to_owned(), sha);
    created(ref_json(&base_url, repo, kind, name))
}

async fn update_ref(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, _) = route.authorized()?;
    let base_url = model.base_url.clone();
    let repo = model.repo_mut(&route.owner, &route.repo)?;
    let request = json_body(&body)?;
    let Some((kind, name)) =
        parse(&route.item).filter(|(kind, name)| refs(repo, *kind).contains_key(*name))
    else {
        return Err(unprocessable("Reference does not exist"));
    };
    let sha = known_commit(repo, &request)?;
    let force = request["force"].as_bool().unwrap_or(false);
    let current = &refs(repo, kind)[name];
    if !force && !repo.is_ancestor(current, &sha) {
        return Err(unprocessable("Update is not a fast forward"));
    }
    refs_mut(repo, kind).insert(name.to_owned(), sha);
    ok(ref_json(&base_url, repo, kind, name))
}

async fn delete_ref(route: RepoRoute) -> Answer {
    let (mut model, _) = route.authorized()?;
    let repo = model.repo_mut(&route.owner, &route.repo)?;
    match parse(&route.item) {
        Some((Kind::Branch, name)) if repo.branches.contains_key(name) => {
            super::pulls::delete_branch(repo, name);
            no_content()
        }
        Some((Kind::Tag, name)) if repo.tags.remove(name).is_some() => no_content(),
        _ => Err(unprocessable("Reference does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    const BRANCH: &str = "feature/update-alloy-sysext-to-1.15.0";

    #[test]
    fn branches_with_slashes_are_created_moved_and_deleted() {
        let (github, token) = github_with_repo();
        let main = github.commits(REPO, "main")[0].sha.clone();
        let refs = "/repos/acme/site/git/refs";
        let branch_ref = format!("/repos/acme/site/git/ref/heads/{BRANCH}");

        assert_eq!(
            call(&github, "GET", &branch_ref, Some(&token), "").status,
            404
        );
        let create = |sha: &str| {
            let body = format!(r#"{{"ref":"refs/heads/{BRANCH}","sha":"{sha}"}}"#);
            call(&github, "POST", refs, Some(&token), &body)
        };
        let response = create(&main);
        assert_eq!(response.status, 201, "{}", response.body);
        let created: octocrab::models::repos::Ref = serde_json::from_str(&response.body).unwrap();
        assert_eq!(created.ref_field, format!("refs/heads/{BRANCH}"));
        let again = create(&main);
        assert_eq!(again.status, 422);
        assert_eq!(again.json()["message"], "Reference already exists");
        let unknown = create(&"0".repeat(40));
        assert_eq!(unknown.status, 422);
        assert_eq!(unknown.json()["message"], "Object does not exist");
        let short = call(
            &github,
            "POST",
            refs,
            Some(&token),
            &format!(r#"{{"ref":"heads/x","sha":"{main}"}}"#),
        );
        assert_eq!(short.status, 422);

        let response = call(&github, "GET", &branch_ref, Some(&token), "");
        assert_eq!(response.status, 200, "{}", response.body);
        let got = response.json();
        assert_eq!(got["ref"], format!("refs/heads/{BRANCH}"));
        assert_eq!(got["object"]["sha"], main);
        assert_eq!(got["object"]["type"], "commit");
        // Percent-encoded slashes name the same branch.
        let encoded = format!(
            "/repos/acme/site/git/ref/heads/{}",
            BRANCH.replace('/', "%2F")
        );
        assert_eq!(call(&github, "GET", &encoded, Some(&token), "").json(), got);
        assert_eq!(github.branches(REPO), [BRANCH, "main"]);
        let legacy = format!("/repos/acme/site/git/refs/heads/{BRANCH}");
        assert_eq!(call(&github, "GET", &legacy, Some(&token), "").json(), got);
        let prefixed = call(
            &github,
            "GET",
            "/repos/acme/site/git/refs/heads/feature",
            Some(&token),
            "",
        );
        assert_eq!(prefixed.json()[0]["ref"], format!("refs/heads/{BRANCH}"));

        // A commit on main; the branch fast-forwards to it, and cannot go back without force.
        let ahead = github.set_file(REPO, "main", "b.txt", "b\n");
        let patch = format!("/repos/acme/site/git/refs/heads/{BRANCH}");
        let move_to = |sha: &str, force: bool| {
            let body = format!(r#"{{"sha":"{sha}","force":{force}}}"#);
            call(&github, "PATCH", &patch, Some(&token), &body)
        };
        let response = move_to(&ahead, false);
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.json()["object"]["sha"], ahead);
        let back = move_to(&main, false);
        assert_eq!(back.status, 422);
        assert_eq!(back.json()["message"], "Update is not a fast forward");
        assert_eq!(move_to(&main, true).status, 200);
        assert_eq!(github.commits(REPO, BRANCH)[0].sha, main);
        assert_eq!(
            call(
                &github,
                "PATCH",
                "/repos/acme/site/git/refs/heads/nope",
                Some(&token),
                &format!(r#"{{"sha":"{main}"}}"#)
            )
            .json()["message"],
            "Reference does not exist"
        );

        let response = call(&github, "DELETE", &patch, Some(&token), "");
        assert_eq!(response.status, 204, "{}", response.body);
        assert_eq!(github.branches(REPO), ["main"]);
        let again = call(&github, "DELETE", &patch, Some(&token), "");
        assert_eq!(again.status, 422);
        assert_eq!(again.json()["message"], "Reference does not exist");
        assert_eq!(
            call(&github, "GET", &branch_ref, Some(&token), "").status,
            404
        );

        // Tokens of another account do not see the repository; no token is refused.
        assert_eq!(call(&github, "GET", &branch_ref, None, "").status, 401);
        // Every write is in the request log, with its body.
        let writes: Vec<(String, u16)> = github
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET" && r.path.contains("/git/refs"))
            .map(|r| (r.method, r.status))
            .collect();
        let expected = [
            ("POST", 201),
            ("POST", 422),
            ("POST", 422),
            ("POST", 422),
            ("PATCH", 200),
            ("PATCH", 422),
            ("PATCH", 200),
            ("PATCH", 422),
            ("DELETE", 204),
            ("DELETE", 422),
        ];
        assert_eq!(writes, expected.map(|(m, s)| (m.to_owned(), s)));
        let first = github
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/git/refs"))
            .unwrap();
        assert_eq!(first.json()["sha"], main);
    }
}
