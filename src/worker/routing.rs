//! What a delivery asks for, decided from its event (read by [`super::events`]) alone: a
//! short `match` on the event, one function per event that says what it asks for or why
//! it is ignored. A payload whose shape is another event's is ignored, with the reason kept
//! on the delivery.

use super::events::shared::Account;
use super::events::{
    DispatchInputs, Envelope, Event, EventPayload, InstallationPayload,
    InstallationRepositoriesPayload, IssueCommentPayload, ReleasePayload, Repository,
    RepositoryDispatchPayload, Unreadable, WorkflowDispatchPayload, WorkflowRunPayload,
};
use crate::database::installations::InstallationState;
use crate::database::jobs::{Trigger, TriggerSource};
use crate::version::Version;

pub use super::events::{ALWAYS_DELIVERED_EVENTS, SUBSCRIBED_EVENTS};

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
    pub state: Option<InstallationState>,
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

/// Decides what the delivery `delivery_id` of `event` asks for.
pub fn route(
    event: &str,
    delivery_id: &str,
    payload: &serde_json::Value,
    context: &RoutingContext,
) -> Route {
    let Event { envelope, payload } = match Event::parse(event, payload) {
        Ok(parsed) => parsed,
        Err(Unreadable::WrongShape(reason)) => return Route::Ignore(reason),
        Err(Unreadable::Unhandled) => {
            return Route::Ignore(format!("{event} events are not handled"));
        }
    };
    let delivery = Delivery {
        event,
        id: delivery_id,
        envelope: &envelope,
        context,
    };
    match payload {
        EventPayload::Ping => Route::Ping,
        EventPayload::Release(release) => delivery.release(release),
        EventPayload::RepositoryDispatch(dispatch) => delivery.repository_dispatch(dispatch),
        EventPayload::WorkflowDispatch(dispatch) => delivery.workflow_dispatch(dispatch),
        EventPayload::IssueComment(comment) => delivery.issue_comment(comment),
        EventPayload::Installation(installation) => delivery.installation(installation),
        EventPayload::InstallationRepositories(change) => {
            delivery.installation_repositories(change)
        }
        EventPayload::WorkflowRun(run) => delivery.workflow_run(run),
    }
}

/// A delivery being routed: what every event's routing reads besides its own payload.
struct Delivery<'a> {
    event: &'a str,
    id: &'a str,
    envelope: &'a Envelope,
    context: &'a RoutingContext<'a>,
}

impl Delivery<'_> {
    fn action(&self) -> Option<&str> {
        self.envelope.action.as_deref()
    }

    /// `None` when the delivery's action is `wanted`; else the route that ignores it, and
    /// `why`.
    fn unless_action(&self, wanted: &str, why: &str) -> Option<Route> {
        let action = self.action();
        (action != Some(wanted)).then(|| {
            Route::Ignore(format!(
                "{} {}: {why}",
                self.event,
                action.unwrap_or("without action")
            ))
        })
    }

    /// The event happened in the build repository.
    fn in_build_repo(&self) -> bool {
        self.envelope
            .repository()
            .is_some_and(|r| r.eq_ignore_ascii_case(self.context.build_repo))
    }

    fn not_build_repo(&self) -> Route {
        Route::Ignore(format!(
            "{} in {}, not in the build repository {}",
            self.event,
            self.envelope.repository().unwrap_or("no repository"),
            self.context.build_repo
        ))
    }

    /// Who asked for a build, and through which delivery.
    fn trigger(&self, source: TriggerSource) -> Trigger {
        Trigger {
            source,
            delivery_id: Some(self.id.into()),
            repository: self.envelope.repository().map(str::to_owned),
            user: self.envelope.sender_login().map(str::to_owned),
            ..Trigger::default()
        }
    }

    fn release(&self, payload: ReleasePayload) -> Route {
        if let Some(ignored) =
            self.unless_action("published", "only published releases start builds")
        {
            return ignored;
        }
        if !self.in_build_repo() {
            return self.not_build_repo();
        }
        let release = payload.release.unwrap_or_default();
        let sender = self.envelope.sender_login();
        let author = release.author.as_ref().and_then(|a| a.login.as_deref());
        if self
            .context
            .app_login
            .is_some_and(|app| sender == Some(app) || author == Some(app))
        {
            // The App publishes this release itself at the end of a build: building
            // again would loop.
            return Route::Ignore("release published by this App".into());
        }
        if release.draft == Some(true) || release.prerelease == Some(true) {
            return Route::Ignore("draft or prerelease".into());
        }
        let Some(tag) = release.tag_name else {
            return Route::Ignore("release without tag_name".into());
        };
        let version = match tag.parse::<Version>() {
            Ok(version) => version,
            Err(error) => return Route::Ignore(format!("release tag: {error}")),
        };
        Route::Build(BuildAsked {
            dedupe_key: match release.id {
                Some(id) => format!("release:{id}"),
                None => format!("delivery:{}", self.id),
            },
            request_key: None,
            version,
            trigger: self.trigger(TriggerSource::Release),
            installation_id: self.envelope.installation_id(),
        })
    }

    fn repository_dispatch(&self, payload: RepositoryDispatchPayload) -> Route {
        // GitHub puts the API's `event_type` in `action`.
        if self.action() != Some(DISPATCH_EVENT_TYPE) {
            return Route::Ignore(format!(
                "repository_dispatch {:?}: only {DISPATCH_EVENT_TYPE} starts builds",
                self.action().unwrap_or("")
            ));
        }
        if !self.in_build_repo() {
            return self.not_build_repo();
        }
        self.dispatched_build(
            payload.client_payload,
            "client_payload.version",
            TriggerSource::RepositoryDispatch,
        )
    }

    fn workflow_dispatch(&self, payload: WorkflowDispatchPayload) -> Route {
        if !self.in_build_repo() {
            return self.not_build_repo();
        }
        self.dispatched_build(
            payload.inputs,
            "inputs.version",
            TriggerSource::WorkflowDispatch,
        )
    }

    /// The build a dispatch asks for with the version in `inputs` (named `field`).
    fn dispatched_build(
        &self,
        inputs: Option<DispatchInputs>,
        field: &str,
        asked_by: TriggerSource,
    ) -> Route {
        let source = self.event;
        let Some(given) = inputs.and_then(|inputs| inputs.version) else {
            return Route::Ignore(format!("{source} without {field}"));
        };
        match given.parse::<Version>() {
            Ok(version) => Route::Build(BuildAsked {
                // A dispatch asks for a plain build.
                request_key: Some(format!("dispatch:build:{version}")),
                version,
                dedupe_key: format!("delivery:{}", self.id),
                trigger: self.trigger(asked_by),
                installation_id: self.envelope.installation_id(),
            }),
            Err(error) => Route::Ignore(format!("{source} {field}: {error}")),
        }
    }

    fn issue_comment(&self, payload: IssueCommentPayload) -> Route {
        if let Some(ignored) = self.unless_action("created", "only new comments hold commands") {
            return ignored;
        }
        let comment = payload.comment.unwrap_or_default();
        let author = comment.user.unwrap_or_default();
        let user = author.login.as_deref();
        let is_bot =
            |account: Option<&Account>| account.is_some_and(|a| a.kind.as_deref() == Some("Bot"));
        if is_bot(Some(&author))
            || is_bot(self.envelope.sender.as_ref())
            || user.is_some_and(|u| u.ends_with("[bot]"))
            || (self.context.app_login.is_some() && user == self.context.app_login)
        {
            return Route::Ignore("comment by a bot".into());
        }
        let (Some(repository), Some(issue_number), Some(comment_id), Some(user), Some(body)) = (
            self.envelope.repository(),
            payload.issue.and_then(|issue| issue.number),
            comment.id,
            user,
            comment.body,
        ) else {
            return Route::Ignore(
                "issue_comment without repository, issue, comment or user".into(),
            );
        };
        let Some(installation_id) = self.envelope.installation_id() else {
            return Route::Ignore(
                "issue_comment without an installation: the App cannot act on it".into(),
            );
        };
        Route::Comment(CommentPosted {
            repository: repository.to_owned(),
            issue_number,
            comment_id,
            user: user.to_owned(),
            body,
            installation_id,
        })
    }

    /// The installation's account, as the envelope names it.
    fn installation_account(&self) -> Option<String> {
        self.envelope
            .installation
            .as_ref()?
            .account
            .as_ref()?
            .login
            .clone()
    }

    fn installation(&self, payload: InstallationPayload) -> Route {
        let Some(id) = self.envelope.installation_id() else {
            return Route::Ignore("installation event without an installation id".into());
        };
        let (state, repositories) = match self.action() {
            Some("created") => (
                Some(InstallationState::Active),
                Some(full_names(payload.repositories)),
            ),
            Some("deleted") => (Some(InstallationState::Deleted), Some(Vec::new())),
            Some("suspend") => (Some(InstallationState::Suspended), None),
            Some("unsuspend") | Some("new_permissions_accepted") => {
                (Some(InstallationState::Active), None)
            }
            other => {
                return Route::Ignore(format!(
                    "installation {}: nothing to keep",
                    other.unwrap_or("without action")
                ));
            }
        };
        Route::Installation(InstallationEvent {
            id,
            account: self.installation_account(),
            state,
            repositories,
            added: Vec::new(),
            removed: Vec::new(),
        })
    }

    fn installation_repositories(&self, payload: InstallationRepositoriesPayload) -> Route {
        let Some(id) = self.envelope.installation_id() else {
            return Route::Ignore("installation_repositories without an installation id".into());
        };
        Route::Installation(InstallationEvent {
            id,
            account: self.installation_account(),
            state: None,
            repositories: None,
            added: full_names(payload.repositories_added),
            removed: full_names(payload.repositories_removed),
        })
    }

    fn workflow_run(&self, payload: WorkflowRunPayload) -> Route {
        if let Some(ignored) = self.unless_action("completed", "only completed runs are kept") {
            return ignored;
        }
        let run = payload.workflow_run.unwrap_or_default();
        let (Some(id), Some(repository)) = (run.id, self.envelope.repository()) else {
            return Route::Ignore("workflow_run without id or repository".into());
        };
        Route::WorkflowRun(WorkflowRunCompleted {
            id,
            attempt: run.run_attempt.unwrap_or(1),
            name: run.name,
            repository: repository.to_owned(),
            head_branch: run.head_branch,
            head_sha: run.head_sha,
            head_repository: run.head_repository.and_then(|r| r.full_name),
            conclusion: run.conclusion,
            html_url: run.html_url,
        })
    }
}

/// The names of the repositories that have one.
fn full_names(repositories: Vec<Repository>) -> Vec<String> {
    repositories
        .into_iter()
        .filter_map(|r| r.full_name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::events::shape_mismatch;
    use super::*;
    use serde_json::{Value, json};

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
