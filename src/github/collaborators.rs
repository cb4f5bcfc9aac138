//! Who may change a repository: a collaborator's permission on it, as GitHub reports it.

use http::Method;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::{escape_component, escape_repo};

/// True when `login` may push to `repo` (write, maintain or admin). Anyone else, and a login
/// GitHub does not know, is `false`.
pub async fn can_write(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    login: &str,
) -> Result<bool, ApiError> {
    let path = format!(
        "/repos/{}/collaborators/{}/permission",
        escape_repo(repo),
        escape_component(login)
    );
    let response = api.request(Method::GET, &path, auth, None).await?;
    if response.status == 404 {
        return Ok(false);
    }
    if !response.is_success() {
        return Err(response.into_error(&format!("checking {login}'s permission on {repo}")));
    }
    // Read as plain strings: the fields hold values that typed clients fail on. `permission`
    // is the legacy base role (maintain shows as write), `role_name` the role itself.
    let value: serde_json::Value = response.json()?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("");
    Ok(is_writer(field("permission")) || is_writer(field("role_name")))
}

fn is_writer(role: &str) -> bool {
    matches!(role, "admin" | "maintain" | "write")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_are_admins_maintainers_and_writers() {
        for role in ["admin", "maintain", "write"] {
            assert!(is_writer(role), "{role}");
        }
        for role in ["triage", "read", "none", "", "Write"] {
            assert!(!is_writer(role), "{role}");
        }
    }
}
