//! Pull requests between branches of one repository, refused as GitHub refuses them: a second
//! open one for the same head and base, or one whose head has no commits the base lacks.
//! Listing by `head` needs `owner:branch`: a bare branch name is silently ignored.

use std::time::SystemTime;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use super::answers::{ApiError, rfc3339, string_field, user, user_json, validation_failed};
use super::diff::line_diff;
use super::issues::{Issue, assignees_json, change_state, labels_json, time_or_null};
use super::pagination::Params;
use super::repos::{Repo, changed_paths};
use super::resource::{self, Numbered};
use super::{FakeGitHub, Shared};

/// A pull request, as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakePull {
    pub number: u64,
    pub title: String,
    /// Empty when it has none.
    pub body: String,
    /// The head branch (without `owner:`).
    pub head: String,
    pub base: String,
    /// "open" or "closed".
    pub state: String,
    pub merged: bool,
    pub draft: bool,
    pub assignees: Vec<String>,
    pub labels: Vec<String>,
    /// The author's login.
    pub user: String,
    pub html_url: String,
    /// The head commit (the branch's, while open).
    pub head_sha: String,
}

/// What makes an issue a pull request.
pub(super) struct Pull {
    pub(super) id: u64,
    pub(super) head: String,
    pub(super) base: String,
    /// The heads when it closed (while open, the branches' are current).
    pub(super) head_sha: String,
    pub(super) base_sha: String,
    pub(super) draft: bool,
    pub(super) merged_at: Option<SystemTime>,
    pub(super) merge_commit_sha: Option<String>,
}

/// The head and base commits of a pull request now.
fn heads(repo: &Repo, issue: &Issue) -> (String, String) {
    let pull = issue.pull.as_ref().unwrap();
    if !issue.is_open() {
        return (pull.head_sha.clone(), pull.base_sha.clone());
    }
    let current =
        |branch: &String, known: &String| repo.branches.get(branch).unwrap_or(known).clone();
    (
        current(&pull.head, &pull.head_sha),
        current(&pull.base, &pull.base_sha),
    )
}

fn pull_json(base_url: &str, repo: &Repo, issue: &Issue, comments: usize) -> Value {
    let pull = issue.pull.as_ref().unwrap();
    let full_name = repo.full_name();
    let api = format!("{base_url}/repos/{full_name}");
    let n = issue.number;
    let html = format!("https://github.com/{full_name}/pull/{n}");
    let (head_sha, base_sha) = heads(repo, issue);
    let side = |branch: &str, sha: &str| {
        json!({
            "label": format!("{}:{branch}", repo.owner),
            "ref": branch,
            "sha": sha,
            "user": user_json(&repo.owner, "User"),
            "repo": repo.json(base_url),
        })
    };
    let (assignee, assignees) = assignees_json(&issue.assignees);
    let ahead = repo
        .ancestors(&head_sha)
        .difference(&repo.ancestors(&base_sha))
        .count();
    json!({
        "url": format!("{api}/pulls/{n}"),
        "id": pull.id,
        "node_id": format!("PR_fake{}", pull.id),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": format!("{api}/issues/{n}"),
        "commits_url": format!("{api}/pulls/{n}/commits"),
        "review_comments_url": format!("{api}/pulls/{n}/comments"),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{api}/issues/{n}/comments"),
        "statuses_url": format!("{api}/statuses/{head_sha}"),
        "number": n,
        "state": issue.state,
        "locked": false,
        "title": issue.title,
        "user": user(&issue.user),
        "body": issue.body,
        "labels": labels_json(base_url, repo, &issue.labels),
        "milestone": null,
        "active_lock_reason": null,
        "created_at": rfc3339(issue.created_at),
        "updated_at": rfc3339(issue.updated_at),
        "closed_at": time_or_null(issue.closed_at),
        "merged_at": time_or_null(pull.merged_at),
        "merge_commit_sha": pull.merge_commit_sha,
        "assignee": assignee,
        "assignees": assignees,
        "requested_reviewers": [],
        "requested_teams": [],
        "head": side(&pull.head, &head_sha),
        "base": side(&pull.base, &base_sha),
        "author_association": "NONE",
        "auto_merge": null,
        "draft": pull.draft,
        "merged": pull.merged_at.is_some(),
        "mergeable": if issue.is_open() { json!(true) } else { Value::Null },
        "mergeable_state": if issue.is_open() { "clean" } else { "unknown" },
        "comments": comments,
        "review_comments": 0,
        "commits": ahead,
    })
}

fn pull_error(field: &str, code: &str) -> ApiError {
    validation_failed(json!([{"resource": "PullRequest", "field": field, "code": code}]))
}

fn pull_custom_error(message: String) -> ApiError {
    validation_failed(json!([{"resource": "PullRequest", "code": "custom", "message": message}]))
}

/// Opens a pull request from `head` (`branch` or `owner:branch`) into `base`, or refuses it as
/// GitHub does.
#[allow(clippy::too_many_arguments)]
fn open_pull(
    repo: &mut Repo,
    id: u64,
    author: &str,
    head: &str,
    base: &str,
    title: &str,
    body: Option<&str>,
    draft: bool,
) -> Result<u64, ApiError> {
    let (head_owner, head_branch) = head.split_once(':').unwrap_or((&repo.owner, head));
    // Forks are not modelled: a head in another account does not exist.
    if !head_owner.eq_ignore_ascii_case(&repo.owner) {
        return Err(pull_error("head", "invalid"));
    }
    let Some(head_sha) = repo.branches.get(head_branch).cloned() else {
        return Err(pull_error("head", "invalid"));
    };
    let Some(base_sha) = repo.branches.get(base).cloned() else {
        return Err(pull_error("base", "invalid"));
    };
    let duplicate = repo.issues.values().any(|issue| {
        issue.is_open()
            && issue
                .pull
                .as_ref()
                .is_some_and(|p| p.head == head_branch && p.base == base)
    });
    if duplicate {
        return Err(pull_custom_error(format!(
            "A pull request already exists for {}:{head_branch}.",
            repo.owner
        )));
    }
    if repo.is_ancestor(&head_sha, &base_sha) {
        return Err(pull_custom_error(format!(
            "No commits between {base} and {head}"
        )));
    }
    let number = repo.next_number();
    let mut issue = Issue::new(id, number, title, body, author);
    issue.pull = Some(Pull {
        id: id + 1_000_000_000,
        head: head_branch.to_owned(),
        base: base.to_owned(),
        head_sha,
        base_sha,
        draft,
        merged_at: None,
        merge_commit_sha: None,
    });
    repo.issues.insert(number, issue);
    Ok(number)
}

/// Deletes `branch`, closing the open pull requests from or into it, as GitHub does.
pub(super) fn delete_branch(repo: &mut Repo, branch: &str) {
    let affected: Vec<u64> = repo
        .issues
        .values()
        .filter(|issue| {
            issue.is_open()
                && issue
                    .pull
                    .as_ref()
                    .is_some_and(|p| p.head == branch || p.base == branch)
        })
        .map(|issue| issue.number)
        .collect();
    for number in affected {
        change_state(repo, number, "closed", None).unwrap();
    }
    repo.branches.remove(branch);
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/pulls",
            get(resource::list::<Pulls>).post(resource::create::<Pulls>),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}",
            get(resource::get::<Pulls>).patch(resource::update::<Pulls>),
        )
}

/// The pull request routes, which do not reach issues.
pub(super) struct Pulls;

/// What opening a pull request asks for, besides its title.
pub(super) struct PullOpening {
    head: String,
    base: String,
    body: Option<String>,
    draft: bool,
}

impl Numbered for Pulls {
    const RESOURCE: &'static str = "PullRequest";
    const ROUTE: &'static str = "pulls";
    type Opening = PullOpening;

    fn reaches(issue: &Issue) -> bool {
        issue.pull.is_some()
    }

    fn listed(repo: &Repo, issue: &Issue, query: &Params) -> bool {
        // `head` filters only as `owner:branch`; GitHub ignores anything else, silently.
        let head = query
            .get("head")
            .and_then(|head| head.split_once(':'))
            .filter(|(_, branch)| !branch.is_empty());
        let base = query.get("base");
        let pull = issue.pull.as_ref().unwrap();
        head.is_none_or(|(owner, branch)| {
            owner.eq_ignore_ascii_case(&repo.owner) && pull.head == branch
        }) && base.is_none_or(|base| pull.base == *base)
    }

    fn json(base_url: &str, repo: &Repo, issue: &Issue, comments: usize) -> Value {
        pull_json(base_url, repo, issue, comments)
    }

    fn opening(request: &Value) -> Result<PullOpening, ApiError> {
        let head =
            string_field(request, "head")?.ok_or_else(|| pull_error("head", "missing_field"))?;
        let base =
            string_field(request, "base")?.ok_or_else(|| pull_error("base", "missing_field"))?;
        Ok(PullOpening {
            head: head.to_owned(),
            base: base.to_owned(),
            body: string_field(request, "body")?.map(str::to_owned),
            draft: request["draft"].as_bool().unwrap_or(false),
        })
    }

    fn open(
        repo: &mut Repo,
        id: u64,
        author: &str,
        title: &str,
        opening: PullOpening,
    ) -> Result<u64, ApiError> {
        open_pull(
            repo,
            id,
            author,
            &opening.head,
            &opening.base,
            title,
            opening.body.as_deref(),
            opening.draft,
        )
    }

    fn update(
        repo: &mut Repo,
        number: u64,
        request: &Value,
        state: Option<&str>,
    ) -> Result<(), ApiError> {
        let base = string_field(request, "base")?;
        if let Some(base) = base
            && !repo.branches.contains_key(base)
        {
            return Err(pull_error("base", "invalid"));
        }
        if let Some(state) = state {
            if !matches!(state, "open" | "closed") {
                return Err(pull_error("state", "invalid"));
            }
            change_state(repo, number, state, None)?;
        }
        if let Some(base) = base {
            let issue = repo.issues.get_mut(&number).unwrap();
            issue.pull.as_mut().unwrap().base = base.to_owned();
        }
        Ok(())
    }
}

impl FakeGitHub {
    /// The pull requests of `repo`, by number.
    pub fn pulls(&self, repo: &str) -> Vec<FakePull> {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        let full_name = repo.full_name();
        repo.issues
            .values()
            .filter_map(|issue| {
                let pull = issue.pull.as_ref()?;
                Some(FakePull {
                    number: issue.number,
                    title: issue.title.clone(),
                    body: issue.body.clone().unwrap_or_default(),
                    head: pull.head.clone(),
                    base: pull.base.clone(),
                    state: issue.state.clone(),
                    merged: pull.merged_at.is_some(),
                    draft: pull.draft,
                    assignees: issue.assignees.clone(),
                    labels: issue.labels.clone(),
                    user: issue.user.clone(),
                    html_url: format!("https://github.com/{full_name}/pull/{}", issue.number),
                    head_sha: heads(repo, issue).0,
                })
            })
            .collect()
    }

    /// What pull request `number` changes: for each file that differs between the head of its
    /// base branch and its head, the lines removed and the lines added, by path.
    pub fn pull_diff(&self, repo: &str, number: u64) -> Vec<(String, Vec<String>, Vec<String>)> {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        let issue = &repo.issues[&number];
        let pull = issue.pull.as_ref().expect("not a pull request");
        let (head_sha, known_base) = heads(repo, issue);
        let base_sha = repo.branches.get(&pull.base).unwrap_or(&known_base);
        let (old, new) = (repo.tree(base_sha), repo.tree(&head_sha));
        let text = |content: Option<&Vec<u8>>| {
            content.map_or(String::new(), |c| String::from_utf8_lossy(c).into_owned())
        };
        changed_paths(&old, &new)
            .into_iter()
            .map(|path| {
                let (removed, added) = line_diff(&text(old.get(&path)), &text(new.get(&path)));
                (path, removed, added)
            })
            .collect()
    }

    /// Opens a pull request from `head` into `base` as `user`, as someone would in the web UI
    /// (GitHub's refusals panic), and gives its number.
    pub fn add_pull(
        &self,
        repo: &str,
        user: &str,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> u64 {
        let mut model = self.model();
        let id = model.next_id();
        let repo = model.known_repo(repo);
        open_pull(repo, id, user, head, base, title, Some(body), false).unwrap_or_else(|e| {
            panic!(
                "cannot open the pull request: {} {}",
                e.message,
                e.errors.unwrap_or_default()
            )
        })
    }

    /// Merges open pull request `number` as a maintainer would: a merge commit on its base
    /// (panicking on a conflict), and the pull request closed as merged. Gives the merge
    /// commit's sha.
    pub fn merge_pull(&self, repo: &str, number: u64) -> String {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        let issue = &repo.issues[&number];
        assert!(issue.is_open(), "#{number} is not open");
        let pull = issue.pull.as_ref().expect("not a pull request");
        let (head_sha, base_sha) = heads(repo, issue);
        let (head, base, title) = (pull.head.clone(), pull.base.clone(), issue.title.clone());
        let ancestor = repo
            .merge_base(&head_sha, &base_sha)
            .expect("the branches share no history");
        let (ours, theirs, common) = (
            repo.tree(&base_sha),
            repo.tree(&head_sha),
            repo.tree(&ancestor),
        );
        let mut tree = (*ours).clone();
        for path in changed_paths(&common, &theirs) {
            let mine = ours.get(&path);
            assert!(
                mine == common.get(&path) || mine == theirs.get(&path),
                "merging #{number} conflicts in {path}"
            );
            match theirs.get(&path) {
                Some(content) => tree.insert(path, content.clone()),
                None => tree.remove(&path),
            };
        }
        let message = format!(
            "Merge pull request #{number} from {}/{head}\n\n{title}",
            repo.owner
        );
        let sha = repo.make_commit(
            vec![base_sha.clone(), head_sha.clone()],
            tree,
            &message,
            "maintainer",
        );
        repo.branches.insert(base, sha.clone());
        let issue = repo.issues.get_mut(&number).unwrap();
        let now = SystemTime::now();
        issue.state = "closed".to_owned();
        issue.closed_at = Some(now);
        issue.updated_at = now;
        let pull = issue.pull.as_mut().unwrap();
        pull.head_sha = head_sha;
        pull.base_sha = base_sha;
        pull.merged_at = Some(now);
        pull.merge_commit_sha = Some(sha.clone());
        sha
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Failure;
    use super::super::test_support::*;

    const BRANCH: &str = "feature/update-alloy-sysext-to-1.15.0";

    #[test]
    fn pull_requests_are_refused_and_listed_as_github_does() {
        let (github, token) = github_with_repo();
        github.set_file(REPO, "main", "VERSION", "1.14.0\nkeep\n");
        github.create_branch(REPO, BRANCH, "main");
        let pulls = "/repos/acme/site/pulls";
        let open = |head: &str| {
            let body = json!({"title": "Update to 1.15.0", "head": head, "base": "main", "body": "Notes."});
            call(&github, "POST", pulls, Some(&token), &body.to_string())
        };
        // Nothing ahead of main yet.
        let empty = open(&format!("acme:{BRANCH}"));
        assert_eq!(empty.status, 422, "{}", empty.body);
        assert_eq!(empty.json()["message"], "Validation Failed");
        assert_eq!(
            empty.json()["errors"][0]["message"],
            format!("No commits between main and acme:{BRANCH}")
        );
        assert_eq!(open("acme:nope").json()["errors"][0]["field"], "head");

        github.set_file(REPO, BRANCH, "VERSION", "1.15.0\nkeep\n");
        github.fail_next("POST", pulls, Failure::ServerError(502));
        assert_eq!(open(BRANCH).status, 502);
        assert!(github.pulls(REPO).is_empty());
        let response = open(BRANCH);
        assert_eq!(response.status, 201, "{}", response.body);
        let pull: octocrab::models::pulls::PullRequest =
            serde_json::from_str(&response.body).unwrap();
        assert_eq!(pull.number, 1);
        assert_eq!(pull.head.ref_field, BRANCH);
        assert_eq!(
            pull.head.label.as_deref(),
            Some(format!("acme:{BRANCH}").as_str())
        );
        assert_eq!(pull.base.ref_field, "main");
        assert_eq!(
            pull.html_url.unwrap().as_str(),
            "https://github.com/acme/site/pull/1"
        );
        let duplicate = open(&format!("acme:{BRANCH}"));
        assert_eq!(duplicate.status, 422);
        assert_eq!(
            duplicate.json()["errors"][0]["message"],
            format!("A pull request already exists for acme:{BRANCH}.")
        );

        // Another, from a branch of its own, to see the filters.
        github.set_file(REPO, "other", "b.txt", "b\n");
        assert_eq!(open("other").status, 201);
        let numbers = |query: &str| -> Vec<u64> {
            let response = call(&github, "GET", &format!("{pulls}{query}"), Some(&token), "");
            assert_eq!(response.status, 200, "{}", response.body);
            response
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["number"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(numbers(""), [2, 1]);
        assert_eq!(numbers(&format!("?head=acme:{BRANCH}")), [1]);
        assert_eq!(
            numbers(&format!("?head=ACME%3A{}", BRANCH.replace('/', "%2F"))),
            [1]
        );
        // The pitfall: a head without its owner filters nothing.
        assert_eq!(numbers(&format!("?head={BRANCH}")), [2, 1]);
        assert_eq!(numbers("?base=main&per_page=1"), [2]);
        assert_eq!(numbers("?base=main&per_page=1&page=2"), [1]);
        assert_eq!(numbers("?state=closed"), Vec::<u64>::new());

        // Editing, closing, reopening.
        let path = "/repos/acme/site/pulls/1";
        let edited = call(
            &github,
            "PATCH",
            path,
            Some(&token),
            r#"{"title":"Update to 1.15.1","body":"New notes."}"#,
        );
        assert_eq!(edited.status, 200, "{}", edited.body);
        assert_eq!(edited.json()["title"], "Update to 1.15.1");
        let closed = call(
            &github,
            "PATCH",
            path,
            Some(&token),
            r#"{"state":"closed"}"#,
        );
        assert_eq!(closed.json()["state"], "closed");
        assert_eq!(numbers(&format!("?head=acme:{BRANCH}&state=closed")), [1]);
        assert_eq!(open(BRANCH).status, 201, "a closed one is no duplicate");
        let reopen = call(&github, "PATCH", path, Some(&token), r#"{"state":"open"}"#);
        assert_eq!(reopen.status, 422, "{}", reopen.body);

        let fake = github.pulls(REPO);
        assert_eq!(fake.len(), 3);
        assert_eq!(
            (
                fake[0].title.as_str(),
                fake[0].body.as_str(),
                fake[0].state.as_str()
            ),
            ("Update to 1.15.1", "New notes.", "closed")
        );
        assert_eq!(
            (fake[2].head.as_str(), fake[2].user.as_str()),
            (BRANCH, "alloy-bot[bot]")
        );
        assert_eq!(
            github.pull_diff(REPO, 3),
            [(
                "VERSION".to_owned(),
                vec!["1.14.0".to_owned()],
                vec!["1.15.0".to_owned()]
            )]
        );

        // Deleting the head branch closes its pull request; merging closes it as merged.
        github.delete_branch(REPO, "other");
        assert_eq!(github.pulls(REPO)[1].state, "closed");
        let merge = github.merge_pull(REPO, 3);
        assert_eq!(
            github.file(REPO, "main", "VERSION").unwrap(),
            b"1.15.0\nkeep\n"
        );
        assert_eq!(github.commits(REPO, "main")[0].sha, merge);
        let merged = call(&github, "GET", "/repos/acme/site/pulls/3", Some(&token), "").json();
        assert_eq!(
            (merged["merged"].clone(), merged["state"].clone()),
            (json!(true), json!("closed"))
        );
        assert_eq!(numbers(""), Vec::<u64>::new());
    }
}
