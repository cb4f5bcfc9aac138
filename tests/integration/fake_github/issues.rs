//! Issues, which share their number space with pull requests: the issue routes see both (a
//! pull request has a `pull_request` key), as GitHub's do.

use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::answers::{
    Answer, ApiError, created, json_body, not_found, rfc3339, stable_hash, string_field,
    unprocessable, user, validation_failed,
};
use super::comments::FakeComment;
use super::pagination::Params;
use super::pulls::Pull;
use super::repos::{Repo, repo_key};
use super::resource::{self, Numbered, RepoRoute};
use super::{FakeGitHub, Model, Shared};

/// An issue, as tests see it (pull requests are in [`FakeGitHub::pulls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeIssue {
    pub number: u64,
    pub title: String,
    /// Empty when it has none.
    pub body: String,
    /// "open" or "closed".
    pub state: String,
    /// "completed", "not_planned", "reopened"…
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    /// The author's login.
    pub user: String,
    /// Oldest first.
    pub comments: Vec<FakeComment>,
}

pub(super) struct Issue {
    pub(super) id: u64,
    pub(super) number: u64,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) user: String,
    /// "open" or "closed".
    pub(super) state: String,
    pub(super) state_reason: Option<String>,
    pub(super) labels: Vec<String>,
    pub(super) assignees: Vec<String>,
    pub(super) created_at: SystemTime,
    pub(super) updated_at: SystemTime,
    pub(super) closed_at: Option<SystemTime>,
    /// What makes it a pull request.
    pub(super) pull: Option<Pull>,
}

impl Issue {
    pub(super) fn new(id: u64, number: u64, title: &str, body: Option<&str>, user: &str) -> Issue {
        let now = SystemTime::now();
        Issue {
            id,
            number,
            title: title.to_owned(),
            body: body.map(str::to_owned),
            user: user.to_owned(),
            state: "open".to_owned(),
            state_reason: None,
            labels: Vec::new(),
            assignees: Vec::new(),
            created_at: now,
            updated_at: now,
            closed_at: None,
            pull: None,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.state == "open"
    }

    /// Gives it `title` if one, and `text` as its body if `request` has a `body` (`null`
    /// removes it).
    pub(super) fn edit(&mut self, request: &Value, title: Option<&str>, text: Option<&str>) {
        if let Some(title) = title {
            self.title = title.to_owned();
        }
        if request.as_object().unwrap().contains_key("body") {
            self.body = text.map(str::to_owned);
        }
    }
}

pub(super) fn labels_json(base_url: &str, repo: &Repo, labels: &[String]) -> Value {
    labels
        .iter()
        .map(|name| {
            let id = 5_000_000_000 + stable_hash(name) % 1_000_000_000;
            json!({
                "id": id,
                "node_id": format!("LA_fake{id}"),
                "url": format!("{base_url}/repos/{}/labels/{name}", repo.full_name()),
                "name": name,
                "description": null,
                "color": "ededed",
                "default": false,
            })
        })
        .collect()
}

pub(super) fn assignees_json(assignees: &[String]) -> (Value, Value) {
    let first = assignees.first().map_or(Value::Null, |login| user(login));
    (first, assignees.iter().map(|login| user(login)).collect())
}

pub(super) fn time_or_null(at: Option<SystemTime>) -> Value {
    at.map_or(Value::Null, |at| json!(rfc3339(at)))
}

/// An issue (or the issue side of a pull request), as the issue routes give it.
pub(super) fn issue_json(base_url: &str, repo: &Repo, issue: &Issue, comments: usize) -> Value {
    let full_name = repo.full_name();
    let api = format!("{base_url}/repos/{full_name}");
    let n = issue.number;
    let kind = if issue.pull.is_some() {
        "pull"
    } else {
        "issues"
    };
    let html = format!("https://github.com/{full_name}/{kind}/{n}");
    let (assignee, assignees) = assignees_json(&issue.assignees);
    let mut body = json!({
        "id": issue.id,
        "node_id": format!("I_fake{}", issue.id),
        "url": format!("{api}/issues/{n}"),
        "repository_url": api,
        "labels_url": format!("{api}/issues/{n}/labels{{/name}}"),
        "comments_url": format!("{api}/issues/{n}/comments"),
        "events_url": format!("{api}/issues/{n}/events"),
        "html_url": html,
        "number": n,
        "state": issue.state,
        "state_reason": issue.state_reason,
        "title": issue.title,
        "body": issue.body,
        "user": user(&issue.user),
        "labels": labels_json(base_url, repo, &issue.labels),
        "assignee": assignee,
        "assignees": assignees,
        "milestone": null,
        "locked": false,
        "active_lock_reason": null,
        "comments": comments,
        "closed_at": time_or_null(issue.closed_at),
        "created_at": rfc3339(issue.created_at),
        "updated_at": rfc3339(issue.updated_at),
        "author_association": "NONE",
    });
    if let Some(pull) = &issue.pull {
        body["pull_request"] = json!({
            "url": format!("{api}/pulls/{n}"),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "merged_at": time_or_null(pull.merged_at),
        });
    }
    body
}

/// Opens or closes issue or pull request `number`, as GitHub allows it.
pub(super) fn change_state(
    repo: &mut Repo,
    number: u64,
    state: &str,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let now = SystemTime::now();
    let issue = &repo.issues[&number];
    match state {
        "closed" if issue.is_open() => {
            let (head, base) = match &issue.pull {
                Some(pull) => (
                    repo.branches.get(&pull.head).cloned(),
                    repo.branches.get(&pull.base).cloned(),
                ),
                None => (None, None),
            };
            let issue = repo.issues.get_mut(&number).unwrap();
            issue.state = "closed".to_owned();
            issue.closed_at = Some(now);
            issue.state_reason = match &issue.pull {
                Some(_) => None,
                None => Some(reason.unwrap_or("completed").to_owned()),
            };
            if let Some(pull) = &mut issue.pull {
                // A closed pull request keeps the heads it had.
                pull.head_sha = head.unwrap_or(pull.head_sha.clone());
                pull.base_sha = base.unwrap_or(pull.base_sha.clone());
            }
        }
        "open" if !issue.is_open() => {
            if let Some(pull) = &issue.pull {
                let refuse = |message: &str| {
                    validation_failed(json!([{
                        "resource": "PullRequest", "code": "custom", "field": "state", "message": message,
                    }]))
                };
                if pull.merged_at.is_some() {
                    return Err(refuse(
                        "state cannot be changed. The pull request has been merged.",
                    ));
                }
                if !repo.branches.contains_key(&pull.head)
                    || !repo.branches.contains_key(&pull.base)
                {
                    return Err(refuse(
                        "state cannot be changed. The head or base branch has been deleted.",
                    ));
                }
                let duplicate = repo.issues.values().any(|other| {
                    other.is_open()
                        && other
                            .pull
                            .as_ref()
                            .is_some_and(|o| o.head == pull.head && o.base == pull.base)
                });
                if duplicate {
                    return Err(refuse(&format!(
                        "A pull request already exists for {}:{}.",
                        repo.owner, pull.head
                    )));
                }
            }
            let issue = repo.issues.get_mut(&number).unwrap();
            issue.state = "open".to_owned();
            issue.closed_at = None;
            if issue.pull.is_none() {
                issue.state_reason = Some("reopened".to_owned());
            }
        }
        "open" | "closed" => {}
        _ => {
            return Err(validation_failed(json!([{
                "resource": "Issue", "code": "invalid", "field": "state",
            }])));
        }
    }
    repo.issues.get_mut(&number).unwrap().updated_at = now;
    Ok(())
}

/// A list of strings (labels, assignees), names of label objects accepted too.
fn names(request: &Value, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match &request[field] {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .or_else(|| item["name"].as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        unprocessable(format!(
                            "Invalid request.\n\nFor '{field}', {item} is not a string."
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(unprocessable(format!(
            "Invalid request.\n\nFor '{field}', {other} is not an array."
        ))),
    }
}

fn add_assignees(issue: &mut Issue, logins: Vec<String>) {
    for login in logins {
        if issue.assignees.len() < 10
            && !issue
                .assignees
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&login))
        {
            issue.assignees.push(login);
        }
    }
}

/// Number `number` of a path, or 404.
pub(super) fn parse_number(number: &str) -> Result<u64, ApiError> {
    number.parse().map_err(|_| not_found())
}

impl Model {
    pub(super) fn comment_count(&self, repo: &Repo, number: u64) -> usize {
        self.comments
            .comments
            .get(&(repo_key(&repo.owner, &repo.name), number))
            .map_or(0, Vec::len)
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/issues",
            get(resource::list::<Issues>).post(resource::create::<Issues>),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}",
            get(resource::get::<Issues>).patch(resource::update::<Issues>),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/assignees",
            post(add_issue_assignees),
        )
}

/// The issue routes, which reach pull requests too.
pub(super) struct Issues;

/// What opening an issue asks for, besides its title.
pub(super) struct IssueOpening {
    body: Option<String>,
    labels: Vec<String>,
    assignees: Vec<String>,
}

impl Numbered for Issues {
    const RESOURCE: &'static str = "Issue";
    const ROUTE: &'static str = "issues";
    type Opening = IssueOpening;

    fn reaches(_: &Issue) -> bool {
        true
    }

    /// `labels`: only those with every label named (case-insensitively).
    fn listed(_: &Repo, issue: &Issue, query: &Params) -> bool {
        let Some(wanted) = query.get("labels") else {
            return true;
        };
        wanted
            .split(',')
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty())
            .all(|label| issue.labels.iter().any(|l| l.to_lowercase() == label))
    }

    fn json(base_url: &str, repo: &Repo, issue: &Issue, comments: usize) -> Value {
        issue_json(base_url, repo, issue, comments)
    }

    fn opening(request: &Value) -> Result<IssueOpening, ApiError> {
        Ok(IssueOpening {
            body: string_field(request, "body")?.map(str::to_owned),
            labels: names(request, "labels")?.unwrap_or_default(),
            assignees: names(request, "assignees")?.unwrap_or_default(),
        })
    }

    fn open(
        repo: &mut Repo,
        id: u64,
        author: &str,
        title: &str,
        opening: IssueOpening,
    ) -> Result<u64, ApiError> {
        let number = repo.next_number();
        let mut issue = Issue::new(id, number, title, opening.body.as_deref(), author);
        for label in opening.labels {
            if !issue.labels.contains(&label) {
                issue.labels.push(label);
            }
        }
        add_assignees(&mut issue, opening.assignees);
        repo.issues.insert(number, issue);
        Ok(number)
    }

    fn update(
        repo: &mut Repo,
        number: u64,
        request: &Value,
        state: Option<&str>,
    ) -> Result<(), ApiError> {
        let reason = string_field(request, "state_reason")?;
        if let Some(reason) = reason
            && !matches!(
                reason,
                "completed" | "not_planned" | "reopened" | "duplicate"
            )
        {
            return Err(validation_failed(
                json!([{"resource": "Issue", "code": "invalid", "field": "state_reason"}]),
            ));
        }
        let labels = names(request, "labels")?;
        let assignees = names(request, "assignees")?;
        if let Some(state) = state {
            change_state(repo, number, state, reason)?;
        }
        let issue = repo.issues.get_mut(&number).unwrap();
        if let Some(labels) = labels {
            issue.labels = labels;
        }
        if let Some(assignees) = assignees {
            issue.assignees.clear();
            add_assignees(issue, assignees);
        }
        if state.is_none()
            && let Some(reason) = reason
            && !issue.is_open()
        {
            issue.state_reason = Some(reason.to_owned());
        }
        Ok(())
    }
}

async fn add_issue_assignees(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, _) = route.authorized()?;
    let number = parse_number(&route.item)?;
    let base_url = model.base_url.clone();
    let repo = model.repo_mut(&route.owner, &route.repo)?;
    let issue = repo.issues.get_mut(&number).ok_or_else(not_found)?;
    let request = json_body(&body)?;
    let assignees = names(&request, "assignees")?.unwrap_or_default();
    add_assignees(issue, assignees);
    issue.updated_at = SystemTime::now();
    let repo = model.repo(&route.owner, &route.repo)?;
    created(issue_json(
        &base_url,
        repo,
        &repo.issues[&number],
        model.comment_count(repo, number),
    ))
}

impl FakeGitHub {
    /// The issues of `repo` (not its pull requests), by number, with their comments.
    pub fn issues(&self, repo: &str) -> Vec<FakeIssue> {
        let mut model = self.model();
        let key = {
            let repo = model.known_repo(repo);
            repo_key(&repo.owner, &repo.name)
        };
        let model = &*model;
        let repo = &model.repos[&key];
        repo.issues
            .values()
            .filter(|issue| issue.pull.is_none())
            .map(|issue| FakeIssue {
                number: issue.number,
                title: issue.title.clone(),
                body: issue.body.clone().unwrap_or_default(),
                state: issue.state.clone(),
                state_reason: issue.state_reason.clone(),
                labels: issue.labels.clone(),
                assignees: issue.assignees.clone(),
                user: issue.user.clone(),
                comments: model
                    .comments
                    .comments
                    .get(&(key.clone(), issue.number))
                    .map(|comments| comments.iter().map(|c| c.public()).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Opens an issue in `repo` as `user`, as someone would in the web UI, and gives its
    /// number.
    pub fn add_issue(
        &self,
        repo: &str,
        user: &str,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> u64 {
        let mut model = self.model();
        let id = model.next_id();
        let repo = model.known_repo(repo);
        let number = repo.next_number();
        let mut issue = Issue::new(id, number, title, Some(body), user);
        issue.labels = labels.iter().map(|l| (*l).to_owned()).collect();
        repo.issues.insert(number, issue);
        number
    }

    /// Closes (`"closed"`, with `reason` such as "completed" or "not_planned") or reopens
    /// (`"open"`) issue or pull request `number`, as someone would in the web UI.
    pub fn set_issue_state(&self, repo: &str, number: u64, state: &str, reason: Option<&str>) {
        let mut model = self.model();
        let repo = model.known_repo(repo);
        assert!(repo.issues.contains_key(&number), "no issue #{number}");
        if let Err(e) = change_state(repo, number, state, reason) {
            panic!("cannot make #{number} {state}: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::*;

    #[test]
    fn issues_and_pull_requests_share_numbers_and_the_issue_routes() {
        let (github, token) = github_with_repo();
        github.set_file(REPO, "feature/x", "a.txt", "a\n");
        let issues = "/repos/acme/site/issues";
        let new_issue = |title: &str, labels: &[&str]| {
            let body = json!({"title": title, "body": "Details.", "labels": labels}).to_string();
            call(&github, "POST", issues, Some(&token), &body)
        };
        let first = new_issue("Alloy 1.15.0 failed", &["release-failure", "alloy"]);
        assert_eq!(first.status, 201, "{}", first.body);
        let first: octocrab::models::issues::Issue = serde_json::from_str(&first.body).unwrap();
        assert_eq!(first.number, 1);
        assert_eq!(first.user.login, "alloy-bot[bot]");
        assert!(first.html_url.as_str().ends_with("/acme/site/issues/1"));
        let pull = call(
            &github,
            "POST",
            "/repos/acme/site/pulls",
            Some(&token),
            r#"{"title":"Update","head":"feature/x","base":"main","body":"b"}"#,
        );
        assert_eq!(pull.status, 201, "{}", pull.body);
        assert_eq!(pull.json()["number"], 2);
        let third = new_issue("Another", &["alloy"]).json();
        assert_eq!(third["number"], 3);
        assert_eq!(
            call(&github, "POST", issues, Some(&token), r#"{"body":"x"}"#).status,
            422
        );

        // Listing: newest first, pull requests included with a `pull_request` key.
        let listed = call(&github, "GET", issues, Some(&token), "");
        let listed: Vec<octocrab::models::issues::Issue> =
            serde_json::from_str(&listed.body).unwrap();
        let numbers: Vec<u64> = listed.iter().map(|i| i.number).collect();
        assert_eq!(numbers, [3, 2, 1]);
        assert!(listed[1].pull_request.is_some());
        assert!(listed[0].pull_request.is_none());
        let labelled = call(
            &github,
            "GET",
            &format!("{issues}?labels=release-failure,alloy"),
            Some(&token),
            "",
        )
        .json();
        assert_eq!(labelled.as_array().unwrap().len(), 1);
        assert_eq!(labelled[0]["labels"][0]["name"], "release-failure");
        let paged = call(
            &github,
            "GET",
            &format!("{issues}?per_page=2&page=2"),
            Some(&token),
            "",
        );
        assert_eq!(paged.json().as_array().unwrap().len(), 1);
        assert_eq!(paged.json()[0]["number"], 1);
        assert_eq!(
            crate::fake_github::pagination::link_page(paged.header("link"), "prev"),
            Some(1)
        );

        // The issue routes reach pull requests, comments too; the pull routes do not reach issues.
        let as_issue = call(
            &github,
            "GET",
            "/repos/acme/site/issues/2",
            Some(&token),
            "",
        )
        .json();
        assert_eq!(
            as_issue["pull_request"]["html_url"],
            "https://github.com/acme/site/pull/2"
        );
        assert_eq!(
            call(&github, "GET", "/repos/acme/site/pulls/1", Some(&token), "").status,
            404
        );
        let commented = call(
            &github,
            "POST",
            "/repos/acme/site/issues/2/comments",
            Some(&token),
            r#"{"body":"Built."}"#,
        );
        assert_eq!(commented.status, 201);
        let assigned = call(
            &github,
            "POST",
            "/repos/acme/site/issues/2/assignees",
            Some(&token),
            r#"{"assignees":["noahwhite"]}"#,
        );
        assert_eq!(assigned.status, 201, "{}", assigned.body);
        assert_eq!(assigned.json()["assignees"][0]["login"], "noahwhite");
        assert_eq!(assigned.json()["comments"], 1);
        assert_eq!(github.pulls(REPO)[0].assignees, ["noahwhite"]);
        let comments = call(
            &github,
            "GET",
            "/repos/acme/site/issues/2/comments",
            Some(&token),
            "",
        );
        let comments: Vec<octocrab::models::issues::Comment> =
            serde_json::from_str(&comments.body).unwrap();
        assert_eq!(comments.len(), 1);
        assert_eq!(comments[0].body.as_deref(), Some("Built."));

        // Closing.
        let closed = call(
            &github,
            "PATCH",
            "/repos/acme/site/issues/1",
            Some(&token),
            r#"{"state":"closed","state_reason":"not_planned"}"#,
        );
        assert_eq!(closed.status, 200, "{}", closed.body);
        assert_eq!(closed.json()["state_reason"], "not_planned");
        assert!(closed.json()["closed_at"].is_string());
        let open_now = call(&github, "GET", issues, Some(&token), "").json();
        assert_eq!(open_now.as_array().unwrap().len(), 2);
        let all = call(
            &github,
            "GET",
            &format!("{issues}?state=all"),
            Some(&token),
            "",
        )
        .json();
        assert_eq!(all.as_array().unwrap().len(), 3);

        let number = github.add_issue(REPO, "noahwhite", "By hand", "", &["alloy"]);
        assert_eq!(number, 4);
        let id = github.add_comment(REPO, 4, "noahwhite", "Any news?");
        github.set_issue_state(REPO, 3, "closed", Some("completed"));
        github.set_issue_state(REPO, 3, "open", None);
        let fake = github.issues(REPO);
        assert_eq!(fake[2].comments[0].id, id);
        assert_eq!(fake[2].comments[0].user, "noahwhite");
        assert_eq!(fake[1].state_reason.as_deref(), Some("reopened"));
        let summary: Vec<(u64, &str, &str)> = fake
            .iter()
            .map(|i| (i.number, i.title.as_str(), i.state.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, "Alloy 1.15.0 failed", "closed"),
                (3, "Another", "open"),
                (4, "By hand", "open")
            ]
        );
        assert_eq!(fake[0].labels, ["release-failure", "alloy"]);
        assert_eq!(fake[0].state_reason.as_deref(), Some("not_planned"));
        assert_eq!(
            call(
                &github,
                "GET",
                "/repos/acme/site/issues/9",
                Some(&token),
                ""
            )
            .status,
            404
        );
        assert_eq!(call(&github, "GET", issues, None, "").status, 401);
    }
}
