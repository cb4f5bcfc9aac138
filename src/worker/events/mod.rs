//! The webhook events the App handles, as typed payloads: one file per event family, each
//! with the fields the routing (`super::routing`) reads.
//!
//! The `X-GitHub-Event` header is not part of what GitHub signs, so a signed body could be
//! sent again under another event name. Before a payload is read as its event, its shape
//! must match the event: each handled event has top-level fields that mark its payloads (an
//! `issue_comment` has `comment` and `issue`, a `release` has `release`, …), and a payload
//! with another handled event's marks is not read at all.
//!
//! Fields are read leniently (see [`shared`]): a payload with a missing or oddly typed field
//! still parses, and the routing says what it lacks.

pub mod dispatch;
pub mod installation;
pub mod issue_comment;
pub mod release;
pub mod shared;
pub mod workflow_run;

use serde_json::Value;

pub use dispatch::{DispatchInputs, RepositoryDispatchPayload, WorkflowDispatchPayload};
pub use installation::{InstallationPayload, InstallationRepositoriesPayload};
pub use issue_comment::IssueCommentPayload;
pub use release::ReleasePayload;
pub use shared::{Account, Envelope, Repository};
pub use workflow_run::WorkflowRunPayload;

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

/// A delivery's payload, read as its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The fields every payload may carry.
    pub envelope: Envelope,
    pub payload: EventPayload,
}

/// The event-specific part of a payload, by `X-GitHub-Event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPayload {
    Ping,
    Release(ReleasePayload),
    RepositoryDispatch(RepositoryDispatchPayload),
    WorkflowDispatch(WorkflowDispatchPayload),
    IssueComment(IssueCommentPayload),
    Installation(InstallationPayload),
    InstallationRepositories(InstallationRepositoriesPayload),
    WorkflowRun(WorkflowRunPayload),
}

/// Why a delivery was not read as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// The App does not handle this event.
    Unhandled,
    /// The payload's shape is another event's (see [`shape_mismatch`]).
    WrongShape(String),
}

impl Event {
    /// Reads `payload` as a payload of the event named `name` (its `X-GitHub-Event`).
    pub fn parse(name: &str, payload: &Value) -> Result<Event, Unreadable> {
        let handled = SUBSCRIBED_EVENTS.contains(&name) || ALWAYS_DELIVERED_EVENTS.contains(&name);
        if !handled {
            return Err(Unreadable::Unhandled);
        }
        if let Some(reason) = shape_mismatch(name, payload) {
            return Err(Unreadable::WrongShape(reason));
        }
        let event_payload = match name {
            "ping" => EventPayload::Ping,
            "release" => EventPayload::Release(shared::read(payload)),
            "repository_dispatch" => EventPayload::RepositoryDispatch(shared::read(payload)),
            "workflow_dispatch" => EventPayload::WorkflowDispatch(shared::read(payload)),
            "issue_comment" => EventPayload::IssueComment(shared::read(payload)),
            "installation" => EventPayload::Installation(shared::read(payload)),
            "installation_repositories" => {
                EventPayload::InstallationRepositories(shared::read(payload))
            }
            "workflow_run" => EventPayload::WorkflowRun(shared::read(payload)),
            _ => return Err(Unreadable::Unhandled),
        };
        Ok(Event {
            envelope: shared::read(payload),
            payload: event_payload,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payload_is_read_as_its_event() {
        let event = Event::parse(
            "release",
            &json!({
                "action": "published",
                "release": {"id": 42, "tag_name": "v1.17.1", "draft": false, "author": {"login": "u"}},
                "repository": {"full_name": "o/r"},
                "installation": {"id": 9},
            }),
        )
        .unwrap();
        assert_eq!(event.envelope.action.as_deref(), Some("published"));
        assert_eq!(event.envelope.repository(), Some("o/r"));
        assert_eq!(event.envelope.installation_id(), Some(9));
        let EventPayload::Release(payload) = event.payload else {
            panic!("{:?}", event.payload);
        };
        let release = payload.release.unwrap();
        assert_eq!(release.id, Some(42));
        assert_eq!(release.tag_name.as_deref(), Some("v1.17.1"));
        assert_eq!(release.prerelease, None);
    }

    #[test]
    fn repository_lists_keep_the_objects_only() {
        let event = Event::parse(
            "installation_repositories",
            &json!({
                "repositories_added": [{"full_name": "o/a"}, "o/b", {"name": "c"}, 5],
                "repositories_removed": {"full_name": "o/d"},
            }),
        )
        .unwrap();
        let EventPayload::InstallationRepositories(payload) = event.payload else {
            panic!("{:?}", event.payload);
        };
        assert_eq!(
            payload.repositories_added,
            vec![
                Repository {
                    full_name: Some("o/a".into())
                },
                Repository { full_name: None }
            ]
        );
        assert!(payload.repositories_removed.is_empty());
    }

    #[test]
    fn other_events_and_other_shapes_are_not_read() {
        assert_eq!(
            Event::parse("push", &json!({"ref": "x"})),
            Err(Unreadable::Unhandled)
        );
        let Err(Unreadable::WrongShape(reason)) =
            Event::parse("workflow_run", &json!({"release": {}}))
        else {
            panic!("a release was read as a workflow run");
        };
        assert_eq!(
            reason,
            "X-GitHub-Event is workflow_run, but the payload has no workflow_run field"
        );
    }
}
