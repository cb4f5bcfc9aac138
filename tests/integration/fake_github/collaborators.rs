//! Collaborators' roles on repositories.

use std::collections::HashMap;

use axum::Router;
use axum::routing::get;
use serde_json::json;

use super::answers::{Answer, ok, user_json};
use super::resource::RepoRoute;
use super::{FakeGitHub, Shared};

/// (repo, user), lowercased -> role
pub(super) type Permissions = HashMap<(String, String), String>;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route(
        "/repos/{owner}/{repo}/collaborators/{user}/permission",
        get(collaborator_permission),
    )
}

impl FakeGitHub {
    /// Gives `user` role `permission` on `repo` ("admin", "maintain", "write", "triage",
    /// "read" or "none"; users not set have "read", as on a public repository).
    pub fn set_permission(&self, repo: &str, user: &str, permission: &str) {
        self.model().permissions.insert(
            (repo.to_lowercase(), user.to_lowercase()),
            permission.to_owned(),
        );
    }
}

async fn collaborator_permission(route: RepoRoute) -> Answer {
    let (model, _) = route.authorized()?;
    let user = &route.item;
    let role = model
        .permissions
        .get(&(
            format!("{}/{}", route.owner, route.repo).to_lowercase(),
            user.to_lowercase(),
        ))
        .map_or("read", String::as_str);
    // `permission` is the legacy base role; `role_name` the role itself.
    let permission = match role {
        "maintain" => "write",
        "triage" => "read",
        other => other,
    };
    let rank = |r: &str| match r {
        "admin" => 5,
        "maintain" => 4,
        "write" => 3,
        "triage" => 2,
        "read" => 1,
        _ => 0,
    };
    let level = rank(role);
    let mut user_json = user_json(user, "User");
    user_json["permissions"] = json!({
        "admin": level >= 5,
        "maintain": level >= 4,
        "push": level >= 3,
        "triage": level >= 2,
        "pull": level >= 1,
    });
    user_json["role_name"] = json!(role);
    ok(json!({"permission": permission, "role_name": role, "user": user_json}))
}
