//! Comments on issues and pull requests (one number space), and reactions to them.
//!
//! Comments are accepted on any number, even one with no issue behind it: the scenario tests
//! comment on issues they never create.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::answers::{
    Answer, created, error, json_body, ok, rfc3339, user, user_json, validation_failed,
};
use super::issues::parse_number;
use super::pagination::{Page, Params};
use super::resource::RepoRoute;
use super::{FakeGitHub, Shared};

const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

/// A comment created through the API (or [`FakeGitHub::add_comment`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    pub body: String,
    /// The author's login: `<slug>[bot]` for the App.
    pub user: String,
}

pub(super) struct StoredComment {
    comment: FakeComment,
    created_at: SystemTime,
}

impl StoredComment {
    pub(super) fn public(&self) -> FakeComment {
        self.comment.clone()
    }
}

struct Reaction {
    id: u64,
    user: String,
    content: String,
}

pub(super) struct CommentState {
    /// (repo lowercased, issue) -> comments, oldest first
    pub(super) comments: HashMap<(String, u64), Vec<StoredComment>>,
    next_comment_id: u64,
    /// (repo lowercased, comment id) -> reactions
    reactions: HashMap<(String, u64), Vec<Reaction>>,
    next_reaction_id: u64,
    /// (repo lowercased, issue) of locked issues: comments on them are refused.
    locked: std::collections::HashSet<(String, u64)>,
}

impl Default for CommentState {
    fn default() -> Self {
        CommentState {
            comments: HashMap::new(),
            next_comment_id: 2_000_000_000,
            reactions: HashMap::new(),
            next_reaction_id: 300_000_000,
            locked: std::collections::HashSet::new(),
        }
    }
}

impl CommentState {
    fn add(&mut self, repo: &str, number: u64, login: &str, body: &str) -> u64 {
        self.next_comment_id += 1;
        let id = self.next_comment_id;
        self.comments
            .entry((repo.to_lowercase(), number))
            .or_default()
            .push(StoredComment {
                comment: FakeComment {
                    id,
                    body: body.to_owned(),
                    user: login.to_owned(),
                },
                created_at: SystemTime::now(),
            });
        id
    }
}

fn comment_json(base_url: &str, repo: &str, number: u64, stored: &StoredComment) -> Value {
    let comment = &stored.comment;
    let id = comment.id;
    let at = rfc3339(stored.created_at);
    let api = format!("{base_url}/repos/{repo}");
    json!({
        "id": id,
        "node_id": format!("IC_fake{id}"),
        "url": format!("{api}/issues/comments/{id}"),
        "html_url": format!("https://github.com/{repo}/issues/{number}#issuecomment-{id}"),
        "issue_url": format!("{api}/issues/{number}"),
        "body": comment.body,
        "user": user(&comment.user),
        "author_association": "NONE",
        "created_at": at,
        "updated_at": at,
        "performed_via_github_app": null,
    })
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
            post(create_reaction),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(list_comments).post(create_comment),
        )
}

impl FakeGitHub {
    /// The comments on issue or pull request `issue` of `repo`, oldest first.
    pub fn comments(&self, repo: &str, issue: u64) -> Vec<FakeComment> {
        self.model()
            .comments
            .comments
            .get(&(repo.to_lowercase(), issue))
            .map(|comments| comments.iter().map(StoredComment::public).collect())
            .unwrap_or_default()
    }

    /// Comments on issue or pull request `issue` of `repo` as `user`, as someone would in the
    /// web UI (no webhook is sent), and gives the comment's id.
    pub fn add_comment(&self, repo: &str, issue: u64, user: &str, body: &str) -> u64 {
        self.model().comments.add(repo, issue, user, body)
    }

    /// Locks issue `issue` of `repo`: like GitHub, the API then refuses comments on it
    /// (403) from anyone but collaborators, the App included.
    pub fn lock_issue(&self, repo: &str, issue: u64) {
        self.model()
            .comments
            .locked
            .insert((repo.to_lowercase(), issue));
    }

    /// The reactions on comment `comment_id` of `repo`, oldest first. Like GitHub, a user's
    /// second identical reaction is not a new one (see [`Self::requests`] for attempts).
    pub fn reactions(&self, repo: &str, comment_id: u64) -> Vec<String> {
        self.model()
            .comments
            .reactions
            .get(&(repo.to_lowercase(), comment_id))
            .map(|reactions| reactions.iter().map(|r| r.content.clone()).collect())
            .unwrap_or_default()
    }
}

async fn list_comments(route: RepoRoute, Query(query): Query<Params>) -> Answer {
    let (model, _) = route.authorized()?;
    let number = parse_number(&route.item)?;
    let full_name = format!("{}/{}", route.owner, route.repo);
    let items = model
        .comments
        .comments
        .get(&(full_name.to_lowercase(), number))
        .map(|comments| {
            comments
                .iter()
                .map(|c| comment_json(&model.base_url, &full_name, number, c))
                .collect()
        })
        .unwrap_or_default();
    let path = format!("/repos/{full_name}/issues/{number}/comments");
    Ok(Page::of(&model.base_url, &path, &query, items).into_response())
}

async fn create_comment(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, installation) = route.authorized()?;
    let number = parse_number(&route.item)?;
    let request = json_body(&body)?;
    let Some(text) = request["body"].as_str() else {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"body\" wasn't supplied.",
        ));
    };
    let full_name = format!("{}/{}", route.owner, route.repo);
    if model
        .comments
        .locked
        .contains(&(full_name.to_lowercase(), number))
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Unable to create comment because issue is locked.",
        ));
    }
    model
        .comments
        .add(&full_name, number, &installation.bot, text);
    let stored = model.comments.comments[&(full_name.to_lowercase(), number)]
        .last()
        .unwrap();
    created(comment_json(&model.base_url, &full_name, number, stored))
}

async fn create_reaction(route: RepoRoute, body: Bytes) -> Answer {
    let (mut model, installation) = route.authorized()?;
    let comment_id = parse_number(&route.item)?;
    let request = json_body(&body)?;
    let Some(content) = request["content"]
        .as_str()
        .filter(|c| REACTIONS.contains(c))
    else {
        return Err(validation_failed(json!([
            {"resource": "Reaction", "code": "invalid", "field": "content"}
        ])));
    };
    let reaction_json = |id: u64| {
        json!({
            "id": id,
            "node_id": format!("REA_fake{id}"),
            "user": user_json(&installation.bot, "Bot"),
            "content": content,
            "created_at": rfc3339(SystemTime::now()),
        })
    };
    let state = &mut model.comments;
    let key = (
        format!("{}/{}", route.owner, route.repo).to_lowercase(),
        comment_id,
    );
    // A user's second identical reaction is the first one again: 200, not 201.
    if let Some(existing) = state.reactions.get(&key).and_then(|reactions| {
        reactions
            .iter()
            .find(|r| r.user == installation.bot && r.content == content)
    }) {
        return ok(reaction_json(existing.id));
    }
    state.next_reaction_id += 1;
    let id = state.next_reaction_id;
    state.reactions.entry(key).or_default().push(Reaction {
        id,
        user: installation.bot.clone(),
        content: content.to_owned(),
    });
    created(reaction_json(id))
}
