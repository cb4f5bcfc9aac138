//! What a delivery asks for, decided from its event and payload alone.
//!
//! The `X-GitHub-Event` header is not part of what GitHub signs, so a signed body could be
//! sent again under another event name. Before anything else, the payload's shape must
//! match the event: each handled event has top-level fields that mark its payloads (an
//! `issue_comment` has `comment` and `issue`, a `release` has `release`, …), and a payload
//! with another handled event's marks is ignored, with the reason kept on the delivery.

use serde_json::Value;

use crate::database::jobs::Trigger;
use crate::version::Version;

/// The events the App subscribes to and acts on (its manifest's `default_events`).
pub const SUBSCRIBED_EVENTS: [&str; 5] = [
    "issue_comment",
    "release",
    "repository_dispatch",
    "workflow_dispatch",
    "workflow_run",
];

/// The events GitHub sends every App without a subscription, which it acts on too.
pub const ALWAYS_DELIVERED_EVENTS: [&str; 3] =
    ["installation", "installation_repositories", "ping"];

/// The `repository_dispatch` event type that asks for a build.
pub const DISPATCH_EVENT_TYPE: &str = "alloy-sysext-build";

/// What the routing needs to know about this deployment.
#[derive(Debug, Clone)]
pub struct RoutingContext<'a> {
    /// `owner/name` of the build repository (releases, commands, SHA256SUMS).
    pub build_repo: &'a str,
    /// The App's own bot login (`<slug>[bot]`), when known.
    pub app_login: Option<&'a str>,
}

/// A build asked for by an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildAsked {
    pub version: Version,
    pub dedupe_key: String,
    /// For dispatches: what is asked (`dispatch:build:{version}`), so that a replay under a
    /// new delivery id finds the job it started.
    pub request_key: Option<String>,
    pub trigger: Trigger,
    pub installation_id: Option<i64>,
}

/// A comment that may hold commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentPosted {
    pub repository: String,
    pub issue_number: u64,
    pub comment_id: u64,
    pub user: String,
    pub body: String,
    pub installation_id: i64,
}

/// A change to where the App is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationEvent {
    pub id: i64,
    pub account: Option<String>,
    pub state: Option<&'static str>,
    pub repositories: Option<Vec<String>>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// A finished workflow run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRunCompleted {
    pub id: i64,
    /// 1 for the first run, one more for each re-run (which keeps the run's id).
    pub attempt: i64,
    /// The workflow's name.
    pub name: Option<String>,
    pub repository: String,
    pub head_branch: Option<String>,
    /// The commit the run ran on.
    pub head_sha: Option<String>,
    /// `owner/name` of the repository the head commit came from: another one for a run on
    /// a fork's pull request.
    pub head_repository: Option<String>,
    pub conclusion: Option<String>,
    pub html_url: Option<String>,
}

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Ping,
    Build(BuildAsked),
    Comment(CommentPosted),
    Installation(InstallationEvent),
    WorkflowRun(WorkflowRunCompleted),
    /// Stored, nothing to do; the reason is kept with the delivery.
    Ignore(String),
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn full_names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|r| r.get("full_name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The top-level fields that mark each handled event's payloads; `installation` payloads
/// have none of them.
const SHAPE_MARKS: [(&str, &[&str]); 7] = [
    ("issue_comment", &["comment", "issue"]),
    ("release", &["release"]),
    ("repository_dispatch", &["client_payload"]),
    ("workflow_dispatch", &["inputs"]),
    ("workflow_run", &["workflow_run"]),
    (
        "installation_repositories",
        &["repositories_added", "repositories_removed"],
    ),
    ("ping", &["zen", "hook_id"]),
];

/// Why `payload` cannot be a payload of `event`, if it cannot: it lacks the event's own
/// marks, or has another event's.
pub fn shape_mismatch(event: &str, payload: &Value) -> Option<String> {
    let object = payload.as_object()?;
    let has = |field: &&str| object.contains_key(*field);
    if let Some((_, own)) = SHAPE_MARKS.iter().find(|(name, _)| *name == event) {
        // Some fixtures of real events leave out one of two marks: one is enough.
        if !own.iter().any(has) {
            return Some(format!(
                "X-GitHub-Event is {event}, but the payload has no {} field",
                own.join(" or ")
            ));
        }
    }
    SHAPE_MARKS
        .iter()
        .filter(|(name, _)| *name != event)
        .find(|(_, marks)| marks.iter().any(has))
        .map(|(other, marks)| {
            let found: Vec<&str> = marks.iter().copied().filter(|m| has(m)).collect();
            format!(
                "X-GitHub-Event is {event}, but the payload has the {} field of a {other} payload",
                found.join(" and ")
            )
        })
}

/// Decides what the delivery `delivery_id` of `event` asks for.
pub fn route(event: &str, delivery_id: &str, payload: &Value, context: &RoutingContext) -> Route {
    let handled = SUBSCRIBED_EVENTS.contains(&event) || ALWAYS_DELIVERED_EVENTS.contains(&event);
    if handled && let Some(reason) = shape_mismatch(event, payload) {
        return Route::Ignore(reason);
    }
    let action = text(payload, "/action");
    let repository = text(payload, "/repository/full_name");
    let installation_id = payload.pointer("/installation/id").and_then(Value::as_i64);
    let sender = text(payload, "/sender/login");
    let in_build_repo = repository.is_some_and(|r| r.eq_ignore_ascii_case(context.build_repo));
    let not_build_repo = || {
        Route::Ignore(format!(
            "{event} in {}, not in the build repository {}",
            repository.unwrap_or("no repository"),
            context.build_repo
        ))
    };
    match event {
        "ping" => Route::Ping,
        "release" => {
            if action != Some("published") {
                return Route::Ignore(format!(
                    "release {}: only published releases start builds",
                    action.unwrap_or("without action")
                ));
            }
            if !in_build_repo {
                return not_build_repo();
            }
            let author = text(payload, "/release/author/login");
            if context
                .app_login
                .is_some_and(|app| sender == Some(app) || author == Some(app))
            {
                // The App publishes this release itself at the end of a build: building
                // again would loop.
                return Route::Ignore("release published by this App".into());
            }
            if payload.pointer("/release/draft").and_then(Value::as_bool) == Some(true)
                || payload
                    .pointer("/release/prerelease")
                    .and_then(Value::as_bool)
                    == Some(true)
            {
                return Route::Ignore("draft or prerelease".into());
            }
            let Some(tag) = text(payload, "/release/tag_name") else {
                return Route::Ignore("release without tag_name".into());
            };
            let version = match tag.parse::<Version>() {
                Ok(version) => version,
                Err(error) => return Route::Ignore(format!("release tag: {error}")),
            };
            let release_id = payload.pointer("/release/id").and_then(Value::as_i64);
            Route::Build(BuildAsked {
                dedupe_key: match release_id {
                    Some(id) => format!("release:{id}"),
                    None => format!("delivery:{delivery_id}"),
                },
                request_key: None,
                version,
                trigger: Trigger {
                    source: "release".into(),
                    delivery_id: Some(delivery_id.into()),
                    repository: repository.map(str::to_owned),
                    user: sender.map(str::to_owned),
                    ..Trigger::default()
                },
                installation_id,
            })
        }
        "repository_dispatch" => {
            // GitHub puts the API's `event_type` in `action`.
            if action != Some(DISPATCH_EVENT_TYPE) {
                return Route::Ignore(format!(
                    "repository_dispatch {:?}: only {DISPATCH_EVENT_TYPE} starts builds",
                    action.unwrap_or("")
                ));
            }
            if !in_build_repo {
                return not_build_repo();
            }
            dispatched_build(
                "repository_dispatch",
                payload.pointer("/client_payload/version"),
                "client_payload.version",
                delivery_id,
                repository,
                sender,
                installation_id,
            )
        }
        "workflow_dispatch" => {
            if !in_build_repo {
                return not_build_repo();
            }
            dispatched_build(
                "workflow_dispatch",
                payload.pointer("/inputs/version"),
                "inputs.version",
                delivery_id,
                repository,
                sender,
                installation_id,
            )
        }
        "issue_comment" => {
            if action != Some("created") {
                return Route::Ignore(format!(
                    "issue_comment {}: only new comments hold commands",
                    action.unwrap_or("without action")
                ));
            }
            let user = text(payload, "/comment/user/login");
            let is_bot = text(payload, "/comment/user/type") == Some("Bot")
                || text(payload, "/sender/type") == Some("Bot")
                || user.is_some_and(|u| u.ends_with("[bot]"))
                || (context.app_login.is_some() && user == context.app_login);
            if is_bot {
                return Route::Ignore("comment by a bot".into());
            }
            let (Some(repository), Some(issue_number), Some(comment_id), Some(user), Some(body)) = (
                repository,
                payload.pointer("/issue/number").and_then(Value::as_u64),
                payload.pointer("/comment/id").and_then(Value::as_u64),
                user,
                text(payload, "/comment/body"),
            ) else {
                return Route::Ignore(
                    "issue_comment without repository, issue, comment or user".into(),
                );
            };
            let Some(installation_id) = installation_id else {
                return Route::Ignore(
                    "issue_comment without an installation: the App cannot act on it".into(),
                );
            };
            Route::Comment(CommentPosted {
                repository: repository.to_owned(),
                issue_number,
                comment_id,
                user: user.to_owned(),
                body: body.to_owned(),
                installation_id,
            })
        }
        "installation" => {
            let Some(id) = payload.pointer("/installation/id").and_then(Value::as_i64) else {
                return Route::Ignore("installation event without an installation id".into());
            };
            let account = text(payload, "/installation/account/login").map(str::to_owned);
            let (state, repositories) = match action {
                Some("created") => (
                    Some("active"),
                    Some(full_names(payload.get("repositories"))),
                ),
                Some("deleted") => (Some("deleted"), Some(Vec::new())),
                Some("suspend") => (Some("suspended"), None),
                Some("unsuspend") | Some("new_permissions_accepted") => (Some("active"), None),
                other => {
                    return Route::Ignore(format!(
                        "installation {}: nothing to keep",
                        other.unwrap_or("without action")
                    ));
                }
            };
            Route::Installation(InstallationEvent {
                id,
                account,
                state,
                repositories,
                added: Vec::new(),
                removed: Vec::new(),
            })
        }
        "installation_repositories" => {
            let Some(id) = payload.pointer("/installation/id").and_then(Value::as_i64) else {
                return Route::Ignore(
                    "installation_repositories without an installation id".into(),
                );
            };
            Route::Installation(InstallationEvent {
                id,
                account: text(payload, "/installation/account/login").map(str::to_owned),
                state: None,
                repositories: None,
                added: full_names(payload.get("repositories_added")),
                removed: full_names(payload.get("repositories_removed")),
            })
        }
        "workflow_run" => {
            if action != Some("completed") {
                return Route::Ignore(format!(
                    "workflow_run {}: only completed runs are kept",
                    action.unwrap_or("without action")
                ));
            }
            let (Some(id), Some(repository)) = (
                payload.pointer("/workflow_run/id").and_then(Value::as_i64),
                repository,
            ) else {
                return Route::Ignore("workflow_run without id or repository".into());
            };
            Route::WorkflowRun(WorkflowRunCompleted {
                id,
                attempt: payload
                    .pointer("/workflow_run/run_attempt")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
                name: text(payload, "/workflow_run/name").map(str::to_owned),
                repository: repository.to_owned(),
                head_branch: text(payload, "/workflow_run/head_branch").map(str::to_owned),
                head_sha: text(payload, "/workflow_run/head_sha").map(str::to_owned),
                head_repository: text(payload, "/workflow_run/head_repository/full_name")
                    .map(str::to_owned),
                conclusion: text(payload, "/workflow_run/conclusion").map(str::to_owned),
                html_url: text(payload, "/workflow_run/html_url").map(str::to_owned),
            })
        }
        other => Route::Ignore(format!("{other} events are not handled")),
    }
}

fn dispatched_build(
    source: &str,
    version: Option<&Value>,
    field: &str,
    delivery_id: &str,
    repository: Option<&str>,
    sender: Option<&str>,
    installation_id: Option<i64>,
) -> Route {
    let Some(given) = version.and_then(Value::as_str) else {
        return Route::Ignore(format!("{source} without {field}"));
    };
    match given.parse::<Version>() {
        Ok(version) => Route::Build(BuildAsked {
            // A dispatch asks for a plain build.
            request_key: Some(format!("dispatch:build:{version}")),
            version,
            dedupe_key: format!("delivery:{delivery_id}"),
            trigger: Trigger {
                source: source.into(),
                delivery_id: Some(delivery_id.into()),
                repository: repository.map(str::to_owned),
                user: sender.map(str::to_owned),
                ..Trigger::default()
            },
            installation_id,
        }),
        Err(error) => Route::Ignore(format!("{source} {field}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONTEXT: RoutingContext = RoutingContext {
        build_repo: "noahwhite/alloy-sysext-build",
        app_login: Some("alloy-sysext[bot]"),
    };

    fn release(tag: &str, sender: &str) -> Value {
        json!({
            "action": "published",
            "release": {"id": 42, "tag_name": tag, "draft": false, "prerelease": false, "author": {"login": sender}},
            "repository": {"full_name": "noahwhite/alloy-sysext-build"},
            "sender": {"login": sender, "type": "User"},
            "installation": {"id": 9},
        })
    }

    #[test]
    fn a_published_release_in_the_build_repository_asks_for_its_version() {
        let Route::Build(build) = route("release", "d", &release("v1.17.1", "noahwhite"), &CONTEXT)
        else {
            panic!("expected a build");
        };
        assert_eq!(build.version.as_str(), "1.17.1");
        assert_eq!(build.dedupe_key, "release:42");
        assert_eq!(build.installation_id, Some(9));
    }

    #[test]
    fn the_apps_own_release_does_not_loop() {
        let routed = route(
            "release",
            "d",
            &release("v1.17.1", "alloy-sysext[bot]"),
            &CONTEXT,
        );
        assert!(matches!(routed, Route::Ignore(reason) if reason.contains("this App")));
    }

    #[test]
    fn hostile_tags_and_other_repositories_are_ignored() {
        assert!(matches!(
            route("release", "d", &release("../../x", "u"), &CONTEXT),
            Route::Ignore(_)
        ));
        let mut elsewhere = release("v1.0.0", "u");
        elsewhere["repository"]["full_name"] = json!("someone/else");
        assert!(matches!(
            route("release", "d", &elsewhere, &CONTEXT),
            Route::Ignore(_)
        ));
    }

    #[test]
    fn dispatches_carry_their_version() {
        let dispatch = json!({
            "action": "alloy-sysext-build",
            "client_payload": {"version": "1.2.3"},
            "repository": {"full_name": "noahwhite/alloy-sysext-build"},
        });
        assert!(
            matches!(route("repository_dispatch", "d1", &dispatch, &CONTEXT), Route::Build(b) if b.dedupe_key == "delivery:d1")
        );
        let workflow = json!({"inputs": {"version": "1.2.3;rm"}, "repository": {"full_name": "noahwhite/alloy-sysext-build"}});
        assert!(matches!(
            route("workflow_dispatch", "d2", &workflow, &CONTEXT),
            Route::Ignore(_)
        ));
    }

    #[test]
    fn the_event_header_must_match_the_payloads_shape() {
        // A signed release body sent again as a comment, a dispatch or a workflow run.
        let body = release("v1.17.1", "noahwhite");
        for event in [
            "issue_comment",
            "repository_dispatch",
            "workflow_dispatch",
            "workflow_run",
        ] {
            assert!(
                matches!(route(event, "d", &body, &CONTEXT), Route::Ignore(reason) if reason.contains(&format!("X-GitHub-Event is {event}"))),
                "{event}"
            );
        }
        // A comment body that also carries a dispatch's fields is no comment.
        let mixed = json!({
            "action": "created",
            "issue": {"number": 3},
            "comment": {"id": 5, "body": "/help", "user": {"login": "u", "type": "User"}},
            "client_payload": {"version": "1.2.3"},
            "repository": {"full_name": "noahwhite/alloy-sysext-build"},
            "installation": {"id": 1},
        });
        let Route::Ignore(reason) = route("issue_comment", "d", &mixed, &CONTEXT) else {
            panic!("a mixed payload was routed");
        };
        assert!(reason.contains("client_payload"), "{reason}");
        assert!(matches!(
            route("repository_dispatch", "d", &mixed, &CONTEXT),
            Route::Ignore(_)
        ));
        // An installation event with a comment's fields is ignored too.
        assert!(matches!(
            route("installation", "d", &mixed, &CONTEXT),
            Route::Ignore(reason) if reason.contains("issue_comment")
        ));
        assert_eq!(shape_mismatch("release", &body), None);
    }

    #[test]
    fn dispatches_are_keyed_by_what_they_ask() {
        let dispatch = |id: &str| {
            let body = json!({
                "action": "alloy-sysext-build",
                "client_payload": {"version": "v1.2.3"},
                "repository": {"full_name": "noahwhite/alloy-sysext-build"},
            });
            match route("repository_dispatch", id, &body, &CONTEXT) {
                Route::Build(build) => build.request_key,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(dispatch("d1"), Some("dispatch:build:1.2.3".into()));
        assert_eq!(dispatch("d1"), dispatch("d2"));
        let Route::Build(release) = route("release", "d", &release("v1.2.3", "u"), &CONTEXT) else {
            panic!("expected a build");
        };
        assert_eq!(release.request_key, None);
    }

    #[test]
    fn comments_by_bots_are_ignored() {
        let comment = |login: &str, kind: &str| {
            json!({
                "action": "created",
                "issue": {"number": 3},
                "comment": {"id": 5, "body": "/help", "user": {"login": login, "type": kind}},
                "repository": {"full_name": "o/r"},
                "sender": {"login": login, "type": kind},
                "installation": {"id": 1},
            })
        };
        assert!(matches!(
            route("issue_comment", "d", &comment("octocat", "User"), &CONTEXT),
            Route::Comment(_)
        ));
        assert!(matches!(
            route(
                "issue_comment",
                "d",
                &comment("alloy-sysext[bot]", "Bot"),
                &CONTEXT
            ),
            Route::Ignore(_)
        ));
        assert!(matches!(
            route(
                "issue_comment",
                "d",
                &comment("dependabot[bot]", "User"),
                &CONTEXT
            ),
            Route::Ignore(_)
        ));
    }

    #[test]
    fn exactly_the_listed_events_are_handled() {
        let unhandled = |event: &str| matches!(route(event, "d", &json!({}), &CONTEXT), Route::Ignore(reason) if reason.ends_with("events are not handled"));
        for event in SUBSCRIBED_EVENTS.iter().chain(&ALWAYS_DELIVERED_EVENTS) {
            assert!(!unhandled(event), "{event}");
        }
        for event in ["push", "pull_request", "star", "check_run"] {
            assert!(unhandled(event), "{event}");
        }
    }

    #[test]
    fn payloads_with_missing_fields_are_ignored_not_fatal() {
        for event in [
            "release",
            "issue_comment",
            "installation",
            "installation_repositories",
            "workflow_run",
            "repository_dispatch",
            "workflow_dispatch",
            "ping",
            "star",
        ] {
            for payload in [
                json!({}),
                json!({"action": "created"}),
                json!({"action": 5, "repository": []}),
            ] {
                let _ = route(event, "d", &payload, &CONTEXT);
            }
        }
    }
}
