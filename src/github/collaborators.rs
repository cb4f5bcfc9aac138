//! Who may change a repository: a collaborator's permission on it, as GitHub reports it.

use http::Method;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::{escape_component, escape_repo};

/// A collaborator's role on a repository, as GitHub names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// The legacy base role: `admin`, `write`, `read` or `none` (maintain shows as write,
    /// triage as read). `none` for a login GitHub does not know.
    pub permission: String,
    /// The role itself (`maintain`, `triage`, a custom role's name, …); empty when GitHub
    /// gives none.
    pub role_name: String,
}

/// `login`'s permission on `repo`.
pub async fn permission(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    login: &str,
) -> Result<Permission, ApiError> {
    let path = format!(
        "/repos/{}/collaborators/{}/permission",
        escape_repo(repo),
        escape_component(login)
    );
    let response = api.request(Method::GET, &path, auth, None).await?;
    if response.status == 404 {
        return Ok(Permission {
            permission: "none".into(),
            role_name: String::new(),
        });
    }
    if !response.is_success() {
        return Err(response.into_error(&format!("checking {login}'s permission on {repo}")));
    }
    // Read as plain strings: the fields hold values that typed clients fail on.
    let value: serde_json::Value = response.json()?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Permission {
        permission: field("permission").unwrap_or_else(|| "none".into()),
        role_name: field("role_name").unwrap_or_default(),
    })
}

/// True when `login` may push to `repo` (write, maintain or admin). Anyone else, and a login
/// GitHub does not know, is `false`.
pub async fn can_write(
    api: &GitHubApi,
    auth: Auth,
    repo: &str,
    login: &str,
) -> Result<bool, ApiError> {
    let found = permission(api, auth, repo, login).await?;
    Ok(is_writer(&found.permission) || is_writer(&found.role_name))
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
