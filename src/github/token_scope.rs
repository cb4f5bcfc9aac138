//! What one installation token may reach: one repository, with the one permission the
//! request it is made for needs (and `metadata: read`, which every token has). A token
//! leaked from a call on one consumer's repository cannot touch the build repository or
//! another consumer, and one made for reading cannot write.
//!
//! The scope comes from the request itself: the repository in its `/repos/{owner}/{name}/`
//! path, and the permission GitHub's REST reference names for that route, read for `GET`,
//! write otherwise.

use http::Method;
use serde_json::{Value, json};

/// A repository permission of a GitHub App, as GitHub names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Files, commits, branches (git refs) and releases.
    Contents,
    Issues,
    PullRequests,
    /// Workflow runs.
    Actions,
    /// Collaborators and the repository itself; every token has it (read).
    Metadata,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::Contents => "contents",
            Permission::Issues => "issues",
            Permission::PullRequests => "pull_requests",
            Permission::Actions => "actions",
            Permission::Metadata => "metadata",
        }
    }
}

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// One repository, one permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenScope {
    /// `owner/name`, lowercased: GitHub's names ignore case.
    repository: String,
    permission: Permission,
    access: Access,
}

/// A request whose scope is not known: a route outside `/repos/{owner}/{name}/`, or one
/// the table below does not name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{method} {path}: no installation token scope is known for this route (only repository routes are made with an installation token)"
)]
pub struct UnknownScope {
    pub method: String,
    pub path: String,
}

impl TokenScope {
    pub fn new(repository: &str, permission: Permission, access: Access) -> TokenScope {
        TokenScope {
            repository: repository.to_ascii_lowercase(),
            permission,
            access,
        }
    }

    /// The scope `method path` needs.
    pub fn for_request(method: &Method, path: &str) -> Result<TokenScope, UnknownScope> {
        let unknown = || UnknownScope {
            method: method.to_string(),
            path: path.to_owned(),
        };
        let rest = path.strip_prefix("/repos/").ok_or_else(unknown)?;
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let mut segments = rest.split('/');
        let (Some(owner), Some(name)) = (segments.next(), segments.next()) else {
            return Err(unknown());
        };
        if owner.is_empty() || name.is_empty() {
            return Err(unknown());
        }
        let reading = *method == Method::GET || *method == Method::HEAD;
        let access = if reading { Access::Read } else { Access::Write };
        let permission = match segments.next().unwrap_or_default() {
            "contents" | "git" | "releases" | "commits" | "branches" | "tags" | "compare" => {
                Permission::Contents
            }
            "pulls" => Permission::PullRequests,
            // Comments, reactions and assignees of pull requests too: GitHub takes `issues`
            // for them.
            "issues" => Permission::Issues,
            "actions" => Permission::Actions,
            "" | "collaborators" if reading => Permission::Metadata,
            _ => return Err(unknown()),
        };
        Ok(TokenScope::new(
            &format!("{owner}/{name}"),
            permission,
            access,
        ))
    }

    /// For reading public data of a repository outside the installation (upstream's
    /// releases): a read-only token of `repository`, one the installation has, which raises
    /// the rate limit above an anonymous client's.
    pub fn reading_public_data_as(repository: &str) -> TokenScope {
        TokenScope::new(repository, Permission::Contents, Access::Read)
    }

    /// `owner/name`, lowercased.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The body of `POST /app/installations/{id}/access_tokens` for this scope, for the
    /// installation on `account`. The request names the repository by its name alone, which
    /// GitHub looks up among the account's repositories: a repository of another owner is
    /// refused rather than confused with the account's repository of the same name.
    pub fn request_body(&self, account: &str) -> Result<Value, ForeignRepository> {
        let (owner, name) = self
            .repository
            .split_once('/')
            .unwrap_or(("", self.repository.as_str()));
        if !owner.eq_ignore_ascii_case(account) {
            return Err(ForeignRepository {
                repository: self.repository.clone(),
                account: account.to_owned(),
            });
        }
        Ok(json!({ "repositories": [name], "permissions": self.permissions() }))
    }

    /// The permissions a token for this scope is asked for.
    pub fn permissions(&self) -> Value {
        let mut permissions = json!({ "metadata": "read" });
        if self.permission != Permission::Metadata {
            permissions[self.permission.name()] = json!(self.access.name());
        }
        permissions
    }
}

/// A token asked for a repository that the installation's account does not own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a token for {repository} cannot come from the installation on {account}: an installation reaches only its own account's repositories (install the App on the repository's owner)"
)]
pub struct ForeignRepository {
    pub repository: String,
    pub account: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(method: Method, path: &str) -> (String, &'static str, &'static str) {
        let scope = TokenScope::for_request(&method, path).unwrap();
        (
            scope.repository.clone(),
            scope.permission.name(),
            scope.access.name(),
        )
    }

    #[test]
    fn each_route_needs_its_own_permission_on_its_own_repository() {
        let o = |p: &'static str, a: &'static str| ("o/r".to_owned(), p, a);
        assert_eq!(
            scope(Method::GET, "/repos/O/R/contents/a%20b?ref=x"),
            o("contents", "read")
        );
        assert_eq!(
            scope(Method::PUT, "/repos/o/r/contents/x"),
            o("contents", "write")
        );
        assert_eq!(
            scope(Method::PATCH, "/repos/o/r/git/refs/heads/x"),
            o("contents", "write")
        );
        assert_eq!(
            scope(Method::GET, "/repos/o/r/releases/tags/v1"),
            o("contents", "read")
        );
        assert_eq!(
            scope(Method::GET, "/repos/o/r/pulls?head=o:x"),
            o("pull_requests", "read")
        );
        assert_eq!(
            scope(Method::POST, "/repos/o/r/pulls"),
            o("pull_requests", "write")
        );
        assert_eq!(
            scope(Method::POST, "/repos/o/r/issues/3/comments"),
            o("issues", "write")
        );
        assert_eq!(
            scope(Method::GET, "/repos/o/r/collaborators/u/permission"),
            o("metadata", "read")
        );
        assert_eq!(
            scope(Method::GET, "/repos/o/r/actions/runs/1"),
            o("actions", "read")
        );
    }

    #[test]
    fn routes_outside_one_repository_have_no_installation_scope() {
        for (method, path) in [
            (Method::GET, "/app"),
            (Method::GET, "/installation/repositories"),
            (Method::GET, "/repos/o"),
            (Method::DELETE, "/repos/o/r"),
            (Method::POST, "/repos/o/r/hooks"),
        ] {
            assert!(TokenScope::for_request(&method, path).is_err(), "{path}");
        }
    }

    #[test]
    fn the_token_request_names_the_repository_and_the_permission() {
        let scope = TokenScope::for_request(&Method::PUT, "/repos/Owner/Repo/contents/x").unwrap();
        assert_eq!(
            scope.request_body("owner").unwrap(),
            json!({"repositories": ["repo"], "permissions": {"metadata": "read", "contents": "write"}})
        );
        let scope =
            TokenScope::for_request(&Method::GET, "/repos/o/r/collaborators/u/permission").unwrap();
        assert_eq!(
            scope.request_body("O").unwrap(),
            json!({"repositories": ["r"], "permissions": {"metadata": "read"}})
        );
    }

    #[test]
    fn a_token_is_never_asked_for_another_owners_repository_of_the_same_name() {
        // The request names `site` alone: GitHub would give a token for `mine/site`.
        let scope = TokenScope::for_request(&Method::PUT, "/repos/theirs/site/contents/x").unwrap();
        let refused = scope.request_body("mine").unwrap_err();
        assert_eq!(
            refused,
            ForeignRepository {
                repository: "theirs/site".into(),
                account: "mine".into()
            }
        );
        let message = refused.to_string();
        assert!(message.contains("theirs/site"), "{message}");
        assert!(message.contains("installation on mine"), "{message}");
        // A prefix of the account is not the account.
        assert!(
            TokenScope::new("mine-too/site", Permission::Contents, Access::Read)
                .request_body("mine")
                .is_err()
        );
    }
}
