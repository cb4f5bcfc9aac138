//! Repositories: branches and tags pointing at commits, commits holding a tree of files. Object
//! ids are git's (see `sha1`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use super::answers::{Answer, ApiError, not_found, ok, rfc3339, user_id, user_json};
use super::issues::Issue;
use super::resource::RepoRoute;
use super::sha1::{commit_sha, tree_sha};
use super::{FakeGitHub, Model, Shared};

/// The login that commits made by the test setup are authored by.
pub(super) const SETUP: &str = "setup";

/// A commit, as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeCommit {
    pub sha: String,
    pub message: String,
    /// The author's login: `<slug>[bot]` for the App, `setup` for [`FakeGitHub::set_file`].
    pub author: String,
    /// The paths whose content differs from the first parent's (sorted; empty for a commit
    /// that changed nothing).
    pub changed_paths: Vec<String>,
    pub parents: Vec<String>,
}

/// Files: path -> content.
pub(super) type Tree = BTreeMap<String, Vec<u8>>;

pub(super) struct Commit {
    pub(super) sha: String,
    pub(super) parents: Vec<String>,
    pub(super) message: String,
    pub(super) author: String,
    pub(super) at: SystemTime,
    pub(super) tree: Arc<Tree>,
    pub(super) tree_sha: String,
    pub(super) changed_paths: Vec<String>,
}

impl Commit {
    fn public(&self) -> FakeCommit {
        FakeCommit {
            sha: self.sha.clone(),
            message: self.message.clone(),
            author: self.author.clone(),
            changed_paths: self.changed_paths.clone(),
            parents: self.parents.clone(),
        }
    }
}

pub(super) struct Repo {
    pub(super) id: u64,
    pub(super) owner: String,
    pub(super) name: String,
    pub(super) default_branch: String,
    /// branch -> commit sha
    pub(super) branches: BTreeMap<String, String>,
    /// tag -> commit sha
    pub(super) tags: BTreeMap<String, String>,
    pub(super) commits: HashMap<String, Commit>,
    /// Issues and pull requests, which share one number space.
    pub(super) issues: BTreeMap<u64, Issue>,
    /// `public`, `private` or `internal`, as GitHub's `visibility` names it.
    pub(super) visibility: &'static str,
}

/// Repositories by lowercased `owner/name` (GitHub's names are case-insensitive).
pub(super) type Repos = HashMap<String, Repo>;

pub(super) fn repo_key(owner: &str, name: &str) -> String {
    format!("{owner}/{name}").to_lowercase()
}

/// `owner/name` split in two.
fn split(repo: &str) -> (&str, &str) {
    repo.split_once('/')
        .unwrap_or_else(|| panic!("{repo:?} is not owner/name"))
}

/// The e-mail address GitHub gives `login`'s commits.
fn email(login: &str) -> String {
    format!("{}+{login}@users.noreply.github.com", user_id(login))
}

/// The paths whose content differs between two trees.
pub(super) fn changed_paths(old: &Tree, new: &Tree) -> Vec<String> {
    let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    paths
        .into_iter()
        .filter(|path| old.get(*path) != new.get(*path))
        .cloned()
        .collect()
}

impl Repo {
    pub(super) fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The commit a branch, a tag or a full commit sha names.
    pub(super) fn resolve(&self, reference: &str) -> Option<&str> {
        let reference = reference
            .strip_prefix("refs/heads/")
            .or_else(|| reference.strip_prefix("heads/"))
            .unwrap_or(reference);
        if let Some(sha) = self.branches.get(reference) {
            return Some(sha);
        }
        let tag = reference
            .strip_prefix("refs/tags/")
            .or_else(|| reference.strip_prefix("tags/"))
            .unwrap_or(reference);
        if let Some(sha) = self.tags.get(tag) {
            return Some(sha);
        }
        self.commits
            .get(reference)
            .map(|commit| commit.sha.as_str())
    }

    /// The files at commit `sha`.
    pub(super) fn tree(&self, sha: &str) -> Arc<Tree> {
        self.commits[sha].tree.clone()
    }

    /// Makes a commit object (moving no branch) and gives its sha.
    pub(super) fn make_commit(
        &mut self,
        parents: Vec<String>,
        tree: Tree,
        message: &str,
        author: &str,
    ) -> String {
        let at = SystemTime::now();
        let empty = Tree::new();
        let parent_tree = parents
            .first()
            .map(|parent| self.commits[parent].tree.clone());
        let changed = changed_paths(parent_tree.as_deref().unwrap_or(&empty), &tree);
        let tree_id = tree_sha(&tree);
        let sha = commit_sha(
            &tree_id,
            &parents,
            author,
            &email(author),
            at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            message,
        );
        self.commits.insert(
            sha.clone(),
            Commit {
                sha: sha.clone(),
                parents,
                message: message.to_owned(),
                author: author.to_owned(),
                at,
                tree: Arc::new(tree),
                tree_sha: tree_id,
                changed_paths: changed,
            },
        );
        sha
    }

    /// Commits `tree` on top of `branch` (which must exist) and moves the branch to it.
    pub(super) fn commit_on(
        &mut self,
        branch: &str,
        tree: Tree,
        message: &str,
        author: &str,
    ) -> String {
        let parent = self.branches[branch].clone();
        let sha = self.make_commit(vec![parent], tree, message, author);
        self.branches.insert(branch.to_owned(), sha.clone());
        sha
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub(super) fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        self.ancestors(descendant).contains(ancestor)
    }

    /// `sha` and all its ancestors.
    pub(super) fn ancestors(&self, sha: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([sha.to_owned()]);
        while let Some(sha) = queue.pop_front() {
            if let Some(commit) = self.commits.get(&sha)
                && seen.insert(sha)
            {
                queue.extend(commit.parents.iter().cloned());
            }
        }
        seen
    }

    /// The newest common ancestor of two commits.
    pub(super) fn merge_base(&self, a: &str, b: &str) -> Option<String> {
        let of_a = self.ancestors(a);
        let mut queue = VecDeque::from([b.to_owned()]);
        let mut seen = BTreeSet::new();
        while let Some(sha) = queue.pop_front() {
            if of_a.contains(&sha) {
                return Some(sha);
            }
            if let Some(commit) = self.commits.get(&sha)
                && seen.insert(sha)
            {
                queue.extend(commit.parents.iter().cloned());
            }
        }
        None
    }

    /// The first-parent history of `sha`, newest first.
    pub(super) fn history(&self, sha: &str) -> Vec<&Commit> {
        let mut commits = Vec::new();
        let mut next = Some(sha);
        while let Some(commit) = next.and_then(|sha| self.commits.get(sha)) {
            commits.push(commit);
            next = commit.parents.first().map(String::as_str);
        }
        commits
    }

    /// The number the next issue or pull request gets.
    pub(super) fn next_number(&self) -> u64 {
        self.issues.keys().next_back().map_or(1, |n| n + 1)
    }

    /// The repository object, as `GET /repos/{owner}/{repo}` gives it.
    pub(super) fn json(&self, base_url: &str) -> Value {
        let full_name = self.full_name();
        let api = format!("{base_url}/repos/{full_name}");
        json!({
            "id": self.id,
            "node_id": format!("R_fake{}", self.id),
            "name": self.name,
            "full_name": full_name,
            "owner": user_json(&self.owner, "User"),
            "private": self.visibility != "public",
            "visibility": self.visibility,
            "html_url": format!("https://github.com/{full_name}"),
            "description": null,
            "fork": false,
            "url": api,
            "git_refs_url": format!("{api}/git/refs{{/sha}}"),
            "contents_url": format!("{api}/contents/{{+path}}"),
            "pulls_url": format!("{api}/pulls{{/number}}"),
            "issues_url": format!("{api}/issues{{/number}}"),
            "releases_url": format!("{api}/releases{{/id}}"),
            "clone_url": format!("https://github.com/{full_name}.git"),
            "default_branch": self.default_branch,
            "archived": false,
            "disabled": false,
            "has_issues": true,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "pushed_at": "2024-01-01T00:00:00Z",
        })
    }

    /// A commit, as the Git database API gives it (and the Contents API after a write).
    pub(super) fn commit_json(&self, base_url: &str, sha: &str) -> Value {
        let commit = &self.commits[sha];
        let full_name = self.full_name();
        let api = format!("{base_url}/repos/{full_name}/git");
        let signature = json!({
            "name": commit.author,
            "email": email(&commit.author),
            "date": rfc3339(commit.at),
        });
        let parents: Vec<Value> = commit
            .parents
            .iter()
            .map(|parent| {
                json!({
                    "sha": parent,
                    "url": format!("{api}/commits/{parent}"),
                    "html_url": format!("https://github.com/{full_name}/commit/{parent}"),
                })
            })
            .collect();
        json!({
            "sha": sha,
            "node_id": format!("C_fake{}", &sha[..12]),
            "url": format!("{api}/commits/{sha}"),
            "html_url": format!("https://github.com/{full_name}/commit/{sha}"),
            "author": signature,
            "committer": signature,
            "message": commit.message,
            "tree": {"sha": commit.tree_sha, "url": format!("{api}/trees/{}", commit.tree_sha)},
            "parents": parents,
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null},
        })
    }
}

impl Model {
    /// A repository added with [`FakeGitHub::add_repo`], or 404.
    pub(super) fn repo(&self, owner: &str, name: &str) -> Result<&Repo, ApiError> {
        self.repos.get(&repo_key(owner, name)).ok_or_else(not_found)
    }

    pub(super) fn repo_mut(&mut self, owner: &str, name: &str) -> Result<&mut Repo, ApiError> {
        self.repos
            .get_mut(&repo_key(owner, name))
            .ok_or_else(not_found)
    }

    /// A repository for the test API, which panics on a typo.
    pub(super) fn known_repo(&mut self, repo: &str) -> &mut Repo {
        let (owner, name) = split(repo);
        self.repo_mut(owner, name)
            .unwrap_or_else(|_| panic!("no repository {repo}: add it with add_repo"))
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/repos/{owner}/{repo}", get(get_repo))
}

async fn get_repo(route: RepoRoute) -> Answer {
    let (model, _) = route.authorized()?;
    ok(model.repo(&route.owner, &route.repo)?.json(&model.base_url))
}

impl FakeGitHub {
    /// Creates repository `repo` (`owner/name`, public) whose default branch is
    /// `default_branch`, holding one empty commit ("Initial commit", by `setup`). Its routes
    /// need an installation token of `owner` (see [`Self::add_installation`]).
    pub fn add_repo(&self, repo: &str, default_branch: &str) {
        let (owner, name) = split(repo);
        let mut model = self.model();
        let id = model.next_id();
        let mut created = Repo {
            id,
            owner: owner.to_owned(),
            name: name.to_owned(),
            default_branch: default_branch.to_owned(),
            branches: BTreeMap::new(),
            tags: BTreeMap::new(),
            commits: HashMap::new(),
            issues: BTreeMap::new(),
            visibility: "public",
        };
        let initial = created.make_commit(Vec::new(), Tree::new(), "Initial commit", SETUP);
        created.branches.insert(default_branch.to_owned(), initial);
        model.repos.insert(repo_key(owner, name), created);
    }

    /// Makes `repo` `public`, `private` or `internal`, as `GET /repos/{owner}/{repo}`
    /// reports it.
    pub fn set_visibility(&self, repo: &str, visibility: &'static str) {
        assert!(
            ["public", "private", "internal"].contains(&visibility),
            "{visibility:?} is no visibility GitHub has"
        );
        self.model().known_repo(repo).visibility = visibility;
    }

    /// Commits `content` at `path` on `branch` as `setup` (creating the branch from the
    /// default branch first if needed), and gives the commit's sha.
    pub fn set_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        content: impl AsRef<[u8]>,
    ) -> String {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        if !repo.branches.contains_key(branch) {
            let start = repo.branches[&repo.default_branch].clone();
            repo.branches.insert(branch.to_owned(), start);
        }
        let mut tree = (*repo.tree(&repo.branches[branch])).clone();
        tree.insert(path.to_owned(), content.as_ref().to_vec());
        repo.commit_on(branch, tree, &format!("Set {path}"), SETUP)
    }

    /// The content of `path` on `branch` (a branch, tag or commit sha), if it is there.
    pub fn file(&self, repo: &str, branch: &str, path: &str) -> Option<Vec<u8>> {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        let sha = repo.resolve(branch)?.to_owned();
        repo.tree(&sha).get(path).cloned()
    }

    /// The branches of `repo`, sorted.
    pub fn branches(&self, repo: &str) -> Vec<String> {
        self.model()
            .known_repo(repo)
            .branches
            .keys()
            .cloned()
            .collect()
    }

    /// The first-parent history of `branch`, newest first (empty if there is no branch).
    pub fn commits(&self, repo: &str, branch: &str) -> Vec<FakeCommit> {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        let Some(sha) = repo.branches.get(branch) else {
            return Vec::new();
        };
        repo.history(sha).into_iter().map(Commit::public).collect()
    }

    /// Creates `branch` at the head of branch `from`, as someone pushing it would.
    pub fn create_branch(&self, repo: &str, branch: &str, from: &str) {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        let sha = repo.branches[from].clone();
        repo.branches.insert(branch.to_owned(), sha);
    }

    /// Deletes `branch`, as someone would in the web UI; its open pull requests close.
    pub fn delete_branch(&self, repo: &str, branch: &str) {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        super::pulls::delete_branch(repo, branch);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::json;

    #[test]
    fn repositories_are_found_with_the_app_and_read_with_its_tokens() {
        let (github, token) = github_with_repo();
        let jwt = format!("Bearer {}", app_jwt());

        let installation = call(
            &github,
            "GET",
            "/repos/acme/site/installation",
            Some(&jwt),
            "",
        );
        assert_eq!(installation.status, 200, "{}", installation.body);
        let parsed: octocrab::models::Installation =
            serde_json::from_str(&installation.body).unwrap();
        assert_eq!(parsed.id.0, INSTALLATION);
        assert_eq!(parsed.account.login, "acme");
        assert_eq!(
            call(
                &github,
                "GET",
                "/repos/grafana/alloy/installation",
                Some(&jwt),
                ""
            )
            .status,
            404
        );
        assert_eq!(
            call(
                &github,
                "GET",
                "/repos/acme/site/installation",
                Some(&token),
                ""
            )
            .status,
            401
        );

        let response = call(&github, "GET", "/repos/acme/site", Some(&token), "");
        assert_eq!(response.status, 200, "{}", response.body);
        let repo = response.json();
        assert_eq!(repo["full_name"], "acme/site");
        assert_eq!(repo["default_branch"], "main");
        assert_eq!(repo["private"], false);
        assert_eq!(repo["visibility"], "public");
        serde_json::from_value::<octocrab::models::Repository>(repo).unwrap();
        github.set_visibility(REPO, "private");
        let repo = call(&github, "GET", "/repos/acme/site", Some(&token), "").json();
        assert_eq!(
            (&repo["private"], &repo["visibility"]),
            (&json!(true), &json!("private"))
        );
        github.set_visibility(REPO, "internal");
        let repo = call(&github, "GET", "/repos/acme/site", Some(&token), "").json();
        assert_eq!(
            (&repo["private"], &repo["visibility"]),
            (&json!(true), &json!("internal"))
        );
        github.set_visibility(REPO, "public");
        // Names are case-insensitive; unknown repositories and other accounts' are 404.
        assert_eq!(
            call(&github, "GET", "/repos/ACME/Site", Some(&token), "").status,
            200
        );
        assert_eq!(
            call(&github, "GET", "/repos/acme/nope", Some(&token), "").status,
            404
        );
        assert_eq!(
            call(&github, "GET", "/repos/grafana/alloy", Some(&token), "").status,
            404
        );
        assert_eq!(
            call(&github, "GET", "/repos/acme/site", None, "").status,
            401
        );

        // The setup's history.
        let first = github.set_file(REPO, "main", "a.txt", "a\n");
        let second = github.set_file(REPO, "topic/x", "b.txt", "b\n");
        assert_eq!(github.branches(REPO), ["main", "topic/x"]);
        let history = github.commits(REPO, "topic/x");
        let shas: Vec<&str> = history.iter().map(|c| c.sha.as_str()).collect();
        assert_eq!(shas[..2], [second.as_str(), first.as_str()]);
        assert_eq!(history[0].changed_paths, ["b.txt"]);
        assert_eq!(history[0].author, "setup");
        assert_eq!(history.len(), 3);
        assert_eq!(github.file(REPO, "topic/x", "a.txt").unwrap(), b"a\n");
        assert_eq!(github.file(REPO, "main", "b.txt"), None);
        assert!(github.commits(REPO, "nope").is_empty());
    }
}
