//! Who may change a repository: a collaborator's permission on it, as GitHub reports it.

use http::Method;
use serde::Deserialize;

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
    Ok(response.json::<PermissionAnswer>()?.into())
}

/// GitHub's answer, as far as it is read. The fields are plain strings, not enums: they hold
/// values (custom role names, roles added later) that typed clients fail on.
#[derive(Debug, Deserialize)]
struct PermissionAnswer {
    permission: Option<String>,
    role_name: Option<String>,
}

impl From<PermissionAnswer> for Permission {
    fn from(answer: PermissionAnswer) -> Permission {
        Permission {
            permission: answer.permission.unwrap_or_else(|| "none".into()),
            role_name: answer.role_name.unwrap_or_default(),
        }
    }
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

    fn read(answer: &str) -> Permission {
        serde_json::from_str::<PermissionAnswer>(answer)
            .unwrap()
            .into()
    }

    #[test]
    fn any_role_name_is_read_as_given() {
        let found = read(
            r#"{"permission": "write", "role_name": "release-manager", "user": {"login": "ann"}}"#,
        );
        assert_eq!(
            found,
            Permission {
                permission: "write".into(),
                role_name: "release-manager".into(),
            }
        );
    }

    #[test]
    fn an_answer_without_roles_is_no_permission() {
        let none = Permission {
            permission: "none".into(),
            role_name: String::new(),
        };
        assert_eq!(read("{}"), none);
        assert_eq!(read(r#"{"permission": null, "role_name": null}"#), none);
    }

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
