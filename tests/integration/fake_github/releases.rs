//! Releases: found by tag, listed newest first by creation (not by version), a page at a time
//! with an `ETag` (a matching `If-None-Match` is a 304 that costs no rate limit), created once
//! per tag.
//!
//! The releases of an upstream repository (one not added with [`FakeGitHub::add_repo`]) are
//! public: no credentials or any valid ones. Those of a repository added with `add_repo` need
//! an installation token of its account. Drafts are listed only to tokens of the owner's
//! account, and are never found by tag. An upstream repository without releases does not
//! exist (404), so a misspelt one is not an empty list.

use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::answers::{
    Answer, ApiError, created, json_body, not_found, ok, rfc3339, string_field, user,
    validation_failed,
};
use super::assets::{Asset, asset_json};
use super::auth::{can_push, optional_auth, repo_auth};
use super::issues::time_or_null;
use super::pagination::{Page, Params};
use super::repos::repo_key;
use super::resource::RepoRoute;
use super::{FakeGitHub, Model, Shared};

/// Who publishes the releases tests add.
const UPSTREAM_AUTHOR: &str = "github-actions[bot]";

/// A release, as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRelease {
    pub id: u64,
    pub tag: String,
    /// Empty when it has none.
    pub name: String,
    /// Empty when it has none.
    pub body: String,
    /// The author's login: `<slug>[bot]` for the App.
    pub author: String,
    pub draft: bool,
    pub prerelease: bool,
    pub target_commitish: String,
    /// The names of its assets.
    pub assets: Vec<String>,
}

struct ReleaseRecord {
    id: u64,
    /// `owner/name` as first given.
    repo: String,
    tag: String,
    name: Option<String>,
    body: Option<String>,
    target_commitish: String,
    draft: bool,
    prerelease: bool,
    created_at: SystemTime,
    published_at: Option<SystemTime>,
    author: String,
    assets: Vec<u64>,
}

impl ReleaseRecord {
    fn public(&self, model: &Model) -> FakeRelease {
        FakeRelease {
            id: self.id,
            tag: self.tag.clone(),
            name: self.name.clone().unwrap_or_default(),
            body: self.body.clone().unwrap_or_default(),
            author: self.author.clone(),
            draft: self.draft,
            prerelease: self.prerelease,
            target_commitish: self.target_commitish.clone(),
            assets: self
                .assets
                .iter()
                .map(|id| model.assets.assets[id].name.clone())
                .collect(),
        }
    }

    fn is_in(&self, key: &str) -> bool {
        self.repo.to_lowercase() == key
    }

    fn json(&self, model: &Model) -> Value {
        let base_url = &model.base_url;
        let (repo, id, tag) = (&self.repo, self.id, &self.tag);
        let api = format!("{base_url}/repos/{repo}");
        let html = if self.draft {
            format!("https://github.com/{repo}/releases/tag/untagged-{id:x}")
        } else {
            format!("https://github.com/{repo}/releases/tag/{tag}")
        };
        let assets: Vec<Value> = self
            .assets
            .iter()
            .map(|asset| {
                asset_json(
                    base_url,
                    repo,
                    tag,
                    *asset,
                    &model.assets.assets[asset],
                    self.created_at,
                )
            })
            .collect();
        json!({
            "url": format!("{api}/releases/{id}"),
            "assets_url": format!("{api}/releases/{id}/assets"),
            "upload_url": format!("https://uploads.github.com/repos/{repo}/releases/{id}/assets{{?name,label}}"),
            "html_url": html,
            "id": id,
            "node_id": format!("RE_fake{id}"),
            "tag_name": tag,
            "target_commitish": self.target_commitish,
            "name": self.name,
            "body": self.body,
            "draft": self.draft,
            "prerelease": self.prerelease,
            "immutable": false,
            "created_at": rfc3339(self.created_at),
            "published_at": time_or_null(self.published_at),
            "author": user(&self.author),
            "assets": assets,
            "tarball_url": format!("{api}/tarball/{tag}"),
            "zipball_url": format!("{api}/zipball/{tag}"),
        })
    }
}

#[derive(Default)]
pub(super) struct ReleaseState {
    /// Every repository's, in creation order.
    list: Vec<ReleaseRecord>,
}

/// Reading a repository's releases: an upstream one is public, one added with `add_repo`
/// needs a token of its account. Gives whether the reader may see drafts.
pub(super) fn read_access(
    model: &Model,
    headers: &HeaderMap,
    owner: &str,
    repo: &str,
) -> Result<bool, ApiError> {
    let key = repo_key(owner, repo);
    if model.repos.contains_key(&key) {
        repo_auth(model, headers, owner, repo)?;
        return Ok(true);
    }
    optional_auth(model, headers)?;
    // An upstream repository exists as far as it has releases: a typo is a 404.
    if !model.releases.list.iter().any(|r| r.is_in(&key)) {
        return Err(not_found());
    }
    Ok(can_push(model, headers, owner))
}

impl Model {
    /// The releases of `key` (lowercased `owner/name`), newest first by creation.
    fn releases_of(&self, key: &str) -> Vec<&ReleaseRecord> {
        let mut releases: Vec<&ReleaseRecord> =
            self.releases.list.iter().filter(|r| r.is_in(key)).collect();
        releases.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        releases
    }

    #[allow(clippy::too_many_arguments)]
    fn add_release_record(
        &mut self,
        repo: &str,
        tag: &str,
        name: Option<&str>,
        body: Option<&str>,
        draft: bool,
        prerelease: bool,
        created_at: SystemTime,
        author: &str,
        assets: Vec<Asset>,
    ) -> u64 {
        let mut ids = Vec::new();
        for asset in assets {
            let id = self.next_id();
            self.assets.assets.insert(id, asset);
            ids.push(id);
        }
        let id = self.next_id();
        let (owner, name_part) = repo.split_once('/').unwrap_or((repo, ""));
        let mut target_commitish = "main".to_owned();
        if let Ok(managed) = self.repo_mut(owner, name_part) {
            target_commitish = managed.default_branch.clone();
            let head = managed.branches[&target_commitish].clone();
            if !draft {
                managed.tags.entry(tag.to_owned()).or_insert(head);
            }
        }
        self.releases.list.push(ReleaseRecord {
            id,
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            name: name.map(str::to_owned),
            body: body.map(str::to_owned),
            target_commitish,
            draft,
            prerelease,
            created_at,
            published_at: (!draft).then_some(created_at),
            author: author.to_owned(),
            assets: ids,
        });
        id
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/releases",
            get(list_releases).post(create_release),
        )
        .route("/repos/{owner}/{repo}/releases/latest", get(latest_release))
        .route(
            "/repos/{owner}/{repo}/releases/{id}",
            axum::routing::patch(update_release),
        )
        .route(
            "/repos/{owner}/{repo}/releases/tags/{tag}",
            get(release_by_tag),
        )
}

impl FakeGitHub {
    /// Publishes release `tag` in `repo` with `assets` (replacing one with that tag), now.
    pub fn add_release(&self, repo: &str, tag: &str, assets: Vec<Asset>) {
        let mut model = self.model();
        let key = repo.to_lowercase();
        model
            .releases
            .list
            .retain(|r| !(r.is_in(&key) && r.tag == tag));
        model.add_release_record(
            repo,
            tag,
            Some(tag),
            Some("release notes"),
            false,
            false,
            SystemTime::now(),
            UPSTREAM_AUTHOR,
            assets,
        );
    }

    /// Adds release `tag` to `repo` as created at `created_at` (which orders the list: GitHub
    /// lists newest first by creation, so a backport made after a newer version comes first),
    /// published then unless it is a `draft`. Gives its id.
    pub fn add_upstream_release(
        &self,
        repo: &str,
        tag: &str,
        prerelease: bool,
        draft: bool,
        created_at: SystemTime,
        assets: Vec<Asset>,
    ) -> u64 {
        self.model().add_release_record(
            repo,
            tag,
            Some(tag),
            Some("release notes"),
            draft,
            prerelease,
            created_at,
            UPSTREAM_AUTHOR,
            assets,
        )
    }

    /// The releases of `repo`, drafts included, newest first by creation (as listed).
    pub fn releases(&self, repo: &str) -> Vec<FakeRelease> {
        let model = self.model();
        model
            .releases_of(&repo.to_lowercase())
            .into_iter()
            .map(|r| r.public(&model))
            .collect()
    }

    /// The requests that listed releases (`GET /repos/{o}/{r}/releases`), in order: the status
    /// answered and whether the request was conditional (`If-None-Match`).
    pub fn releases_list_requests(&self) -> Vec<(u16, bool)> {
        self.model()
            .observe
            .requests
            .iter()
            .filter(|r| {
                let parts: Vec<&str> = r.path.trim_end_matches('/').split('/').collect();
                r.method == "GET" && matches!(parts[..], ["", "repos", _, _, "releases"])
            })
            .map(|r| (r.status, r.conditional))
            .collect()
    }
}

/// `W/"…"` over what a list answer holds.
fn etag(body: &str, link: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(body.as_bytes());
    hasher.update(link.unwrap_or("").as_bytes());
    format!("W/\"{}\"", hex::encode(&hasher.finalize()[..16]))
}

/// Whether an `If-None-Match` header names `etag` (weak comparison, as GitHub does).
fn matches(if_none_match: Option<&str>, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    if_none_match.is_some_and(|header| {
        header
            .split(',')
            .any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
    })
}

async fn list_releases(route: RepoRoute, Query(query): Query<Params>) -> Answer {
    let model = route.model();
    let (owner, repo) = (&route.owner, &route.repo);
    let drafts = read_access(&model, &route.headers, owner, repo)?;
    let items: Vec<Value> = model
        .releases_of(&repo_key(owner, repo))
        .into_iter()
        .filter(|r| drafts || !r.draft)
        .map(|r| r.json(&model))
        .collect();
    let path = format!("/repos/{owner}/{repo}/releases");
    let page = Page::of(&model.base_url, &path, &query, items);
    let body = serde_json::to_string(&page.items).unwrap();
    let tag = etag(&body, page.link.as_deref());
    let if_none_match = route
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let mut response = if matches(if_none_match, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        page.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, tag.parse().unwrap());
    headers.insert(
        header::CACHE_CONTROL,
        "private, max-age=60, s-maxage=60".parse().unwrap(),
    );
    headers.insert(
        header::VARY,
        "Accept, Authorization, Cookie, X-GitHub-OTP"
            .parse()
            .unwrap(),
    );
    Ok(response)
}

/// The newest release of the route's repository, by creation, that `wanted` picks, or 404.
fn newest_release(route: &RepoRoute, wanted: impl Fn(&ReleaseRecord) -> bool) -> Answer {
    let model = route.model();
    read_access(&model, &route.headers, &route.owner, &route.repo)?;
    let release = model
        .releases_of(&repo_key(&route.owner, &route.repo))
        .into_iter()
        .find(|r| wanted(r))
        .ok_or_else(not_found)?;
    ok(release.json(&model))
}

/// A published release by its tag (drafts have none yet).
async fn release_by_tag(route: RepoRoute) -> Answer {
    newest_release(&route, |r| r.tag == route.item && !r.draft)
}

/// The newest published release that is not a pre-release, by creation.
async fn latest_release(route: RepoRoute) -> Answer {
    newest_release(&route, |r| !r.draft && !r.prerelease)
}

async fn create_release(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, installation) = route.authorized()?;
    let (owner, repo) = (&route.owner, &route.repo);
    let managed = model.repo(owner, repo)?;
    let full_name = managed.full_name();
    let request = json_body(&body)?;
    let Some(tag) = string_field(&request, "tag_name")?.filter(|t| !t.is_empty()) else {
        return Err(validation_failed(json!([
            {"resource": "Release", "code": "missing_field", "field": "tag_name"}
        ])));
    };
    let name = string_field(&request, "name")?;
    let text = string_field(&request, "body")?;
    let draft = request["draft"].as_bool().unwrap_or(false);
    let prerelease = request["prerelease"].as_bool().unwrap_or(false);
    let target = string_field(&request, "target_commitish")?
        .map(str::to_owned)
        .unwrap_or_else(|| managed.default_branch.clone());
    let key = repo_key(owner, repo);
    let taken = model
        .releases
        .list
        .iter()
        .any(|r| r.is_in(&key) && r.tag == tag && !r.draft);
    if taken {
        return Err(validation_failed(json!([
            {"resource": "Release", "code": "already_exists", "field": "tag_name"}
        ])));
    }
    let managed = model.repo_mut(owner, repo)?;
    // An existing tag is the release's; a new one is made at the target when published.
    let Some(sha) = managed
        .tags
        .get(tag)
        .cloned()
        .or_else(|| managed.resolve(&target).map(str::to_owned))
    else {
        return Err(validation_failed(json!([
            {"resource": "Release", "code": "invalid", "field": "target_commitish"}
        ])));
    };
    if !draft {
        managed.tags.entry(tag.to_owned()).or_insert(sha);
    }
    let id = model.next_id();
    let now = SystemTime::now();
    model.releases.list.push(ReleaseRecord {
        id,
        repo: full_name,
        tag: tag.to_owned(),
        name: name.map(str::to_owned),
        body: text.map(str::to_owned),
        target_commitish: target,
        draft,
        prerelease,
        created_at: now,
        published_at: (!draft).then_some(now),
        author: installation.bot,
        assets: Vec::new(),
    });
    let release = model.releases.list.last().unwrap();
    created(release.json(&model))
}

/// Sets a release's name and body (each only when given), as a token that may push to the
/// repository may.
async fn update_release(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, _) = route.authorized()?;
    let (owner, repo) = (&route.owner, &route.repo);
    model.repo(owner, repo)?;
    let request = json_body(&body)?;
    let name = string_field(&request, "name")?.map(str::to_owned);
    let text = string_field(&request, "body")?.map(str::to_owned);
    let key = repo_key(owner, repo);
    let id: u64 = route.item.parse().map_err(|_| not_found())?;
    let release = model
        .releases
        .list
        .iter_mut()
        .find(|r| r.is_in(&key) && r.id == id)
        .ok_or_else(not_found)?;
    if name.is_some() {
        release.name = name;
    }
    if text.is_some() {
        release.body = text;
    }
    let index = model.releases.list.iter().position(|r| r.id == id).unwrap();
    ok(model.releases.list[index].json(&model))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use serde_json::json;

    use super::super::pagination::link_page;
    use super::super::test_support::*;
    use super::super::{Asset, FakeRelease};

    #[test]
    fn releases_are_created_once_per_tag() {
        let (github, token) = github_with_repo();
        let releases = "/repos/acme/site/releases";
        let create = |tag: &str, draft: bool| {
            let body = json!({"tag_name": tag, "name": format!("Alloy sysext {tag}"), "body": "Notes.", "draft": draft});
            call(&github, "POST", releases, Some(&token), &body.to_string())
        };
        let response = create("v1.15.0", false);
        assert_eq!(response.status, 201, "{}", response.body);
        let release: octocrab::models::repos::Release =
            serde_json::from_str(&response.body).unwrap();
        assert_eq!(release.tag_name, "v1.15.0");
        assert_eq!(release.target_commitish, "main");
        assert_eq!(release.author.unwrap().login, "alloy-bot[bot]");
        assert!(release.published_at.is_some());
        let again = create("v1.15.0", false);
        assert_eq!(again.status, 422, "{}", again.body);
        assert_eq!(again.json()["message"], "Validation Failed");
        assert_eq!(
            again.json()["errors"],
            json!([{"resource": "Release", "code": "already_exists", "field": "tag_name"}])
        );
        // The tag exists now, at main's head.
        let tag = call(
            &github,
            "GET",
            "/repos/acme/site/git/ref/tags/v1.15.0",
            Some(&token),
            "",
        );
        assert_eq!(
            tag.json()["object"]["sha"],
            github.commits(REPO, "main")[0].sha
        );
        let draft = create("v1.16.0", true);
        assert_eq!(draft.status, 201);
        assert_eq!(draft.json()["published_at"], json!(null));
        let bad_target = call(
            &github,
            "POST",
            releases,
            Some(&token),
            r#"{"tag_name":"v2","target_commitish":"nope"}"#,
        );
        assert_eq!(bad_target.status, 422);
        assert_eq!(
            call(&github, "POST", releases, Some(&token), r#"{"name":"x"}"#).status,
            422
        );

        // A repository of the App's account needs its token, even to read.
        assert_eq!(call(&github, "GET", releases, None, "").status, 401);
        let listed = call(&github, "GET", releases, Some(&token), "").json();
        let tags: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["tag_name"].as_str().unwrap())
            .collect();
        assert_eq!(tags, ["v1.16.0", "v1.15.0"]);
        let by_tag = call(
            &github,
            "GET",
            "/repos/acme/site/releases/tags/v1.15.0",
            Some(&token),
            "",
        );
        assert_eq!(by_tag.json()["name"], "Alloy sysext v1.15.0");
        // Drafts are not found by tag.
        assert_eq!(
            call(
                &github,
                "GET",
                "/repos/acme/site/releases/tags/v1.16.0",
                Some(&token),
                ""
            )
            .status,
            404
        );
        assert_eq!(
            github.releases(REPO)[1],
            FakeRelease {
                id: release.id.0,
                tag: "v1.15.0".into(),
                name: "Alloy sysext v1.15.0".into(),
                body: "Notes.".into(),
                author: "alloy-bot[bot]".into(),
                draft: false,
                prerelease: false,
                target_commitish: "main".into(),
                assets: vec![],
            }
        );
    }

    #[test]
    fn upstream_releases_are_listed_by_creation_a_page_at_a_time_with_etags() {
        let (github, token) = github_with_repo();
        let day = Duration::from_secs(86_400);
        let start = SystemTime::now() - 30 * day;
        let asset = |name: &str| Asset {
            name: name.into(),
            data: b"zip".to_vec(),
            digest: None,
        };
        // v1.9.3 is a backport published after v1.10.0.
        for (i, (tag, prerelease, draft)) in [
            ("v1.9.2", false, false),
            ("v1.10.0-rc.1", true, false),
            ("v1.10.0", false, false),
            ("v1.9.3", false, false),
            ("v1.11.0", false, true),
        ]
        .into_iter()
        .enumerate()
        {
            github.add_upstream_release(
                UPSTREAM,
                tag,
                prerelease,
                draft,
                start + day * i as u32,
                vec![asset("alloy-linux-amd64.zip")],
            );
        }
        let list = |query: &str, extra: &[(&str, &str)]| {
            let path = format!("/repos/{UPSTREAM}/releases{query}");
            call_with(&github, "GET", &path, extra, "")
        };

        // Anonymous: drafts hidden; newest by creation first, two at a time.
        let first = list("?per_page=2", &[]);
        assert_eq!(first.status, 200, "{}", first.body);
        let releases: Vec<octocrab::models::repos::Release> =
            serde_json::from_str(&first.body).unwrap();
        let tags: Vec<&str> = releases.iter().map(|r| r.tag_name.as_str()).collect();
        assert_eq!(tags, ["v1.9.3", "v1.10.0"]);
        assert_eq!(releases[0].assets[0].name, "alloy-linux-amd64.zip");
        assert_eq!(link_page(first.header("link"), "next"), Some(2));
        assert_eq!(link_page(first.header("link"), "last"), Some(2));
        let second = list("?per_page=2&page=2", &[]);
        let tags: Vec<String> = second
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["tag_name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(tags, ["v1.10.0-rc.1", "v1.9.2"]);
        assert_eq!(second.json()[0]["prerelease"], true);
        assert_eq!(link_page(second.header("link"), "next"), None);
        assert_eq!(link_page(second.header("link"), "prev"), Some(1));
        let all = list("?per_page=500", &[]);
        assert_eq!(all.json().as_array().unwrap().len(), 4);
        assert_eq!(all.header("link"), None);
        // Any valid token reads them; drafts stay hidden from another account's.
        let authorized = list("", &[("Authorization", &token)]);
        assert_eq!(authorized.json().as_array().unwrap().len(), 4);
        assert_eq!(list("", &[("Authorization", "token nope")]).status, 401);
        assert_eq!(
            call(
                &github,
                "GET",
                "/repos/grafana/alloy-typo/releases",
                None,
                ""
            )
            .status,
            404
        );
        assert_eq!(github.releases(UPSTREAM).len(), 5);
        assert_eq!(github.releases(UPSTREAM)[0].tag, "v1.11.0");
        let latest = call(
            &github,
            "GET",
            &format!("/repos/{UPSTREAM}/releases/latest"),
            None,
            "",
        );
        assert_eq!(latest.json()["tag_name"], "v1.9.3");

        // Asking again with the ETag: 304, no body, and the rate limit is not spent.
        let etag = first.header("etag").unwrap().to_owned();
        assert!(etag.starts_with("W/\""), "{etag}");
        let remaining = |r: &crate::http::HeadedResponse| -> u64 {
            r.header("x-ratelimit-remaining").unwrap().parse().unwrap()
        };
        let before = list("?per_page=2", &[]);
        assert_eq!(before.header("etag"), Some(etag.as_str()));
        let cached = list("?per_page=2", &[("If-None-Match", &etag)]);
        assert_eq!(cached.status, 304);
        assert_eq!(cached.body, "");
        assert_eq!(cached.header("etag"), Some(etag.as_str()));
        assert_eq!(remaining(&cached), remaining(&before));
        let unquoted = etag.trim_start_matches("W/");
        assert_eq!(
            list("?per_page=2", &[("If-None-Match", unquoted)]).status,
            304
        );
        // A new release changes the first page, and the ETag with it.
        github.add_upstream_release(UPSTREAM, "v1.12.0", false, false, SystemTime::now(), vec![]);
        let changed = list("?per_page=2", &[("If-None-Match", &etag)]);
        assert_eq!(changed.status, 200);
        assert_eq!(changed.json()[0]["tag_name"], "v1.12.0");
        assert_eq!(remaining(&changed), remaining(&before) - 1);
        assert_ne!(changed.header("etag"), Some(etag.as_str()));

        assert_eq!(
            github.releases_list_requests(),
            [
                (200, false),
                (200, false),
                (200, false),
                (200, false),
                (401, false),
                (404, false),
                (200, false),
                (304, true),
                (304, true),
                (200, true)
            ]
        );
    }
}
