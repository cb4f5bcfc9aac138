//! What a scoped installation token may reach, enforced as GitHub does before any route
//! runs: a token made for some repositories answers 404 on the installation's other ones,
//! and one made with some permissions answers 403 on routes that need more. Unscoped tokens
//! (no `repositories`, no `permissions`) reach what their installation reaches.
//!
//! Routes of repositories outside the token's account are left to their handlers (public
//! data, or 404).

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::answers::{ApiError, error, not_found, unprocessable};
use super::auth::authorization;
use super::{Shared, lock};

/// What a token was made for, from the body of its request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenScope {
    /// Repository names (without owner, lowercased); `None`: every repository of the
    /// installation.
    pub repositories: Option<Vec<String>>,
    /// permission → `read` or `write`; `None`: all the App's permissions.
    pub permissions: Option<BTreeMap<String, String>>,
}

/// The permissions the fake App has.
pub(super) fn app_permissions() -> BTreeMap<String, String> {
    [
        ("actions", "read"),
        ("contents", "write"),
        ("issues", "write"),
        ("metadata", "read"),
        ("pull_requests", "write"),
    ]
    .into_iter()
    .map(|(name, access)| (name.to_owned(), access.to_owned()))
    .collect()
}

fn rank(access: &str) -> u8 {
    match access {
        "read" => 1,
        "write" => 2,
        _ => 0,
    }
}

/// The scope asked for in `body`, or GitHub's 422.
pub(super) fn requested_scope(body: &[u8]) -> Result<TokenScope, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TokenScope::default());
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "Problems parsing JSON"))?;
    let repositories = match &request["repositories"] {
        Value::Null => None,
        Value::Array(names) => Some(
            names
                .iter()
                .map(|name| name.as_str().map(str::to_lowercase))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| unprocessable("repositories must be names"))?,
        ),
        _ => return Err(unprocessable("repositories must be an array")),
    };
    let granted = app_permissions();
    let permissions = match &request["permissions"] {
        Value::Null => None,
        Value::Object(asked) => {
            let mut permissions = BTreeMap::new();
            for (name, access) in asked {
                let access = access.as_str().unwrap_or_default();
                let allowed = granted.get(name).map_or(0, |a| rank(a));
                if rank(access) == 0 || rank(access) > allowed {
                    return Err(unprocessable(
                        "The permissions requested are not granted to this installation.",
                    ));
                }
                permissions.insert(name.clone(), access.to_owned());
            }
            Some(permissions)
        }
        _ => return Err(unprocessable("permissions must be an object")),
    };
    Ok(TokenScope {
        repositories,
        permissions,
    })
}

/// The permission GitHub's REST reference names for `method` on `rest` (the path after
/// `/repos/{owner}/{repo}/`), with the ones it also takes; `None` for App routes.
fn needed(method: &Method, rest: &str) -> Option<(Vec<&'static str>, &'static str)> {
    let access = if method == Method::GET || method == Method::HEAD {
        "read"
    } else {
        "write"
    };
    let permissions = match rest.split('/').next().unwrap_or_default() {
        "installation" => return None,
        "contents" | "git" | "releases" | "commits" | "branches" | "tags" | "compare" => {
            vec!["contents"]
        }
        "pulls" => vec!["pull_requests"],
        // Comments, assignees and reactions on pull requests take either.
        "issues" => vec!["issues", "pull_requests"],
        "actions" => vec!["actions"],
        _ => vec!["metadata"],
    };
    Some((permissions, access))
}

/// Refuses a request whose scoped token does not reach its repository (404) or lacks the
/// permission its route needs (403).
pub(super) async fn enforce(State(model): State<Shared>, request: Request, next: Next) -> Response {
    let refusal = {
        let model = lock(&model);
        check(&model, &request)
    };
    match refusal {
        Some(refusal) => refusal.into_response(),
        None => next.run(request).await,
    }
}

fn check(model: &super::Model, request: &Request) -> Option<ApiError> {
    let path = request.uri().path();
    let rest = path.strip_prefix("/repos/")?;
    let mut parts = rest.splitn(3, '/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    let rest = parts.next().unwrap_or_default();
    let token = authorization(request.headers())?
        .split_once(' ')
        .map(|(_, token)| token.trim())?;
    let issued = model.app.tokens.get(token)?;
    let account = model.app.installations.get(&issued.installation_id)?;
    if !owner.eq_ignore_ascii_case(account) {
        return None;
    }
    if let Some(repositories) = &issued.scope.repositories
        && !repositories.contains(&repo.to_lowercase())
    {
        eprintln!(
            "fake GitHub: a token scoped to {repositories:?} was used on {owner}/{repo}: 404"
        );
        return Some(not_found());
    }
    let (permissions, access) = needed(request.method(), rest)?;
    let granted = issued.scope.permissions.as_ref()?;
    let has = |name: &str| {
        let held = if name == "metadata" {
            // Every token can read metadata.
            granted.get(name).map_or(1, |a| rank(a))
        } else {
            granted.get(name).map_or(0, |a| rank(a))
        };
        held >= rank(access)
    };
    if permissions.iter().any(|name| has(name)) {
        return None;
    }
    eprintln!(
        "fake GitHub: a token with {granted:?} was used for {} {path}, which needs {permissions:?} {access}: 403",
        request.method()
    );
    Some(error(
        StatusCode::FORBIDDEN,
        "Resource not accessible by integration",
    ))
}
