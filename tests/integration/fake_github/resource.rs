//! What the routes of stored resources have in common.
//!
//! Every repository route starts alike: the token must reach the repository (401, 404)
//! before anything else is looked at ([`RepoRoute`]). Issues and pull requests, which share
//! one number space, are listed, opened, read and edited by the same handlers
//! ([`Numbered`]): a list filtered by `state` and newest first unless `direction=asc`, a page
//! at a time; a `title` required to open one; 404 for a number that is not of the kind.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::answers::{
    Answer, ApiError, created, json_body, not_found, ok, string_field, validation_failed,
};
use super::auth::{Installation, repo_auth};
use super::issues::{Issue, parse_number};
use super::pagination::{Page, Params};
use super::repos::Repo;
use super::{Model, Shared, lock};

/// A request on a repository route (`/repos/{owner}/{repo}/...`).
pub(super) struct RepoRoute {
    pub(super) owner: String,
    pub(super) repo: String,
    /// The route's own parameter after the repository (a number, a ref, a path), empty on
    /// routes without one.
    pub(super) item: String,
    pub(super) headers: HeaderMap,
    model: Shared,
}

impl FromRequestParts<Shared> for RepoRoute {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, model: &Shared) -> Result<Self, Response> {
        let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, model)
            .await
            .map_err(IntoResponse::into_response)?;
        let owner = params.remove("owner").unwrap_or_default();
        let repo = params.remove("repo").unwrap_or_default();
        Ok(RepoRoute {
            owner,
            repo,
            item: params.into_values().next().unwrap_or_default(),
            headers: parts.headers.clone(),
            model: model.clone(),
        })
    }
}

impl RepoRoute {
    /// The model, for routes that check credentials their own way.
    pub(super) fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    /// The model, once the request's token is found to reach the repository, and who the
    /// token speaks for.
    pub(super) fn authorized(&self) -> Result<(MutexGuard<'_, Model>, Installation), ApiError> {
        let model = self.model();
        let installation = repo_auth(&model, &self.headers, &self.owner, &self.repo)?;
        Ok((model, installation))
    }
}

/// `open`, `closed` or `all` (the default: `open`), or GitHub's 422 naming `resource`.
pub(super) fn state_filter<'a>(query: &'a Params, resource: &str) -> Result<&'a str, ApiError> {
    let state = query.get("state").map_or("open", String::as_str);
    if !matches!(state, "open" | "closed" | "all") {
        return Err(validation_failed(
            json!([{"resource": resource, "code": "invalid", "field": "state"}]),
        ));
    }
    Ok(state)
}

/// What is kept in a repository's number space: issues, or pull requests.
pub(super) trait Numbered: 'static {
    /// GitHub's name for it in validation errors: `Issue`, `PullRequest`.
    const RESOURCE: &'static str;
    /// Its routes below the repository: `issues`, `pulls`.
    const ROUTE: &'static str;
    /// What a request to open one asks for, besides its title.
    type Opening;

    /// Whether its routes reach `issue`.
    fn reaches(issue: &Issue) -> bool;
    /// Whether `issue` passes the list's own filters in `query`.
    fn listed(repo: &Repo, issue: &Issue, query: &Params) -> bool;
    /// `issue` as its routes give it, with the number of its comments.
    fn json(base_url: &str, repo: &Repo, issue: &Issue, comments: usize) -> Value;
    /// What `request` asks for, or GitHub's refusal of it.
    fn opening(request: &Value) -> Result<Self::Opening, ApiError>;
    /// Opens one with id `id` as `author`, or refuses it as GitHub does; gives its number.
    fn open(
        repo: &mut Repo,
        id: u64,
        author: &str,
        title: &str,
        opening: Self::Opening,
    ) -> Result<u64, ApiError>;
    /// Changes one as `request` asks, its `state` (read already) included, or refuses it as
    /// GitHub does; its title, body and update time are changed after.
    fn update(
        repo: &mut Repo,
        number: u64,
        request: &Value,
        state: Option<&str>,
    ) -> Result<(), ApiError>;
}

/// `issue` as `R`'s routes give it, its comments counted.
fn numbered_json<R: Numbered>(model: &Model, repo: &Repo, issue: &Issue) -> Value {
    R::json(
        &model.base_url,
        repo,
        issue,
        model.comment_count(repo, issue.number),
    )
}

/// Number `number` of `repo`, if `R`'s routes reach it, or 404.
fn find<'a, R: Numbered>(repo: &'a Repo, number: &str) -> Result<&'a Issue, ApiError> {
    repo.issues
        .get(&parse_number(number)?)
        .filter(|issue| R::reaches(issue))
        .ok_or_else(not_found)
}

pub(super) async fn list<R: Numbered>(route: RepoRoute, Query(query): Query<Params>) -> Answer {
    let (model, _) = route.authorized()?;
    let repo = model.repo(&route.owner, &route.repo)?;
    let state = state_filter(&query, R::RESOURCE)?;
    let mut listed: Vec<&Issue> = repo
        .issues
        .values()
        .filter(|issue| R::reaches(issue))
        .filter(|issue| state == "all" || issue.state == state)
        .filter(|issue| R::listed(repo, issue, &query))
        .collect();
    if query.get("direction").map(String::as_str) != Some("asc") {
        listed.reverse();
    }
    let items = listed
        .into_iter()
        .map(|issue| numbered_json::<R>(&model, repo, issue))
        .collect();
    let path = format!("/repos/{}/{}", repo.full_name(), R::ROUTE);
    Ok(Page::of(&model.base_url, &path, &query, items).into_response())
}

pub(super) async fn create<R: Numbered>(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, installation) = route.authorized()?;
    model.repo(&route.owner, &route.repo)?;
    let request = json_body(&body)?;
    let Some(title) = string_field(&request, "title")?.filter(|t| !t.is_empty()) else {
        return Err(validation_failed(json!([
            {"resource": R::RESOURCE, "code": "missing_field", "field": "title"}
        ])));
    };
    let opening = R::opening(&request)?;
    let id = model.next_id();
    let base_url = model.base_url.clone();
    let repo = model.repo_mut(&route.owner, &route.repo)?;
    let number = R::open(repo, id, &installation.bot, title, opening)?;
    created(R::json(&base_url, repo, &repo.issues[&number], 0))
}

pub(super) async fn get<R: Numbered>(route: RepoRoute) -> Answer {
    let (model, _) = route.authorized()?;
    let repo = model.repo(&route.owner, &route.repo)?;
    let issue = find::<R>(repo, &route.item)?;
    ok(numbered_json::<R>(&model, repo, issue))
}

pub(super) async fn update<R: Numbered>(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, _) = route.authorized()?;
    let repo = model.repo_mut(&route.owner, &route.repo)?;
    let number = find::<R>(repo, &route.item)?.number;
    let request = json_body(&body)?;
    let title = string_field(&request, "title")?;
    let text = string_field(&request, "body")?;
    let state = string_field(&request, "state")?;
    R::update(repo, number, &request, state)?;
    let issue = repo.issues.get_mut(&number).unwrap();
    issue.edit(&request, title, text);
    issue.updated_at = SystemTime::now();
    let repo = model.repo(&route.owner, &route.repo)?;
    ok(numbered_json::<R>(&model, repo, &repo.issues[&number]))
}
