//! `/build 1.18.0 --dry-run` in a comment, against the pipeline's world and the real server:
//! one reply holding the plan (a public consumer's exact diff, a private consumer of the
//! public build repository only as "would open"), the `eyes` reaction, and nothing else
//! changed in the fake GitHub, the bucket or the job queue; a second dry run in the same
//! comment is answered, not run. Outside the build repository, and for a user who may not
//! build, the reply says why nothing was run.

use std::time::Duration;

use serde_json::{Value, json};

use crate::pipeline::{BUILD_REPO, GHOST, GHOST_PATH, INFISICAL, INFISICAL_PATH, VERSION, World};
use crate::plan::{everything, ghost_diff};
use crate::serve_process::Server;

/// The issue the comments are on.
const ISSUE: u64 = 12;

/// An `issue_comment` delivery: `user` comments `body` on issue [`ISSUE`] of `repo`.
fn comment(comment_id: u64, repo: &str, user: &str, body: &str) -> Vec<u8> {
    let (owner, name) = repo.split_once('/').unwrap();
    serde_json::to_vec(&json!({
        "action": "created",
        "issue": {"number": ISSUE, "title": "Next release"},
        "comment": {"id": comment_id, "body": body, "user": {"login": user, "type": "User"}},
        "repository": {"full_name": repo, "name": name, "owner": {"login": owner}},
        "sender": {"login": user, "type": "User"},
        "installation": {"id": 77},
    }))
    .unwrap()
}

/// Delivers `body` and waits until the server has handled it; gives the comments on
/// [`ISSUE`] of `repo` then.
fn deliver_and_wait(
    server: &Server,
    world: &World,
    delivery: &str,
    repo: &str,
    body: &[u8],
) -> Vec<String> {
    assert_eq!(server.deliver(delivery, "issue_comment", body).status, 202);
    server.wait_for(
        "the delivery to be handled",
        Duration::from_secs(300),
        || server.get(&format!("/api/deliveries/{delivery}")).json()["state"] != "pending",
    );
    assert_eq!(
        server.get(&format!("/api/deliveries/{delivery}")).json()["state"],
        "processed"
    );
    world
        .github
        .comments(repo, ISSUE)
        .into_iter()
        .map(|c| c.body)
        .collect()
}

/// The sha256 of `file` as the reply's build section lists it.
fn built_sha256(reply: &str, file: &str) -> String {
    let start = format!("- `{file}` ");
    let line = reply
        .lines()
        .find(|line| line.starts_with(&start))
        .unwrap_or_else(|| panic!("{file} is listed: {reply}"));
    let sha = line
        .rsplit("sha256 `")
        .next()
        .unwrap()
        .trim_end_matches('`');
    assert_eq!(sha.len(), 64, "{line}");
    sha.to_owned()
}

#[test]
fn a_dry_run_comment_replies_with_the_plan_and_changes_nothing_else() {
    let world = World::new();
    world.github.set_permission(BUILD_REPO, "writer", "write");
    world.github.set_visibility(INFISICAL, "private");
    let server = world.start_server();
    let before = everything(&world);
    // What a server stopped during an earlier dry run left behind.
    let stale = world.data.path().join("work/dry-run-stale");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("alloy-linux-amd64.zip"), b"partial").unwrap();

    let replies = deliver_and_wait(
        &server,
        &world,
        "d-dry-run",
        BUILD_REPO,
        &comment(
            801,
            BUILD_REPO,
            "writer",
            "Before the release:\n\n/build 1.18.0 --dry-run\n/rebuild 1.18.0 --dry-run\n",
        ),
    );

    assert_eq!(replies.len(), 1, "{replies:?}");
    // A comment gets one dry run: the second is answered, not run.
    let (reply, second) = replies[0].rsplit_once("\n\n---\n\n").unwrap();
    assert_eq!(
        second,
        "`/rebuild 1.18.0 --dry-run` was not run: a comment gets one dry run. Ask for it in a comment of its own."
    );
    assert_eq!(world.github.reactions(BUILD_REPO, 801), ["eyes"]);
    assert_eq!(
        everything(&world),
        before,
        "the dry run changed GitHub or the bucket"
    );
    assert_eq!(
        server.get("/api/jobs").json()["jobs"],
        json!([]),
        "a job was queued"
    );
    let work = world.data.path().join("work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|dir| dir.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "the build was left in {}: {left:?}",
        work.display()
    );

    assert!(
        reply.starts_with(
            "@writer Dry run of `/build 1.18.0 --dry-run`: what the job would do. Nothing was published or committed, and no job was queued.\n"
        ),
        "{reply}"
    );
    let sha256 = built_sha256(reply, &format!("alloy-{VERSION}-amd64.raw"));
    assert!(
        reply.contains(&format!(
            "**Manifest**: `SHA256SUMS` in `{BUILD_REPO}` on `main`\n```diff\n"
        )),
        "{reply}"
    );
    assert!(
        reply.contains(&format!("\n+{sha256}  alloy-1.18.0-amd64.raw\n```\n")),
        "{reply}"
    );
    assert!(
        reply.contains(&format!(
            "**Release**: would create `v1.18.0` `Alloy Sysext 1.18.0` in `{BUILD_REPO}` on `main`\n"
        )),
        "{reply}"
    );
    // The public consumer with its exact diff; the private one as one line, unnamed.
    let ghost = format!(
        "**Consumers**\n\n- `{GHOST}` (configured) `{GHOST_PATH}`, branch `feature/update-alloy-sysext-to-1.18.0` onto `develop`\n  would open a pull request: 1.14.2 → 1.18.0\n\n```diff\n{}\n```\n\n- a repository this comment's readers may not see: would open a pull request\n\n**Prune**: off (`publish.keep_versions = 0`)\n",
        ghost_diff(GHOST_PATH, &sha256).join("\n")
    );
    assert!(reply.ends_with(&ghost), "{reply:?}\n{ghost:?}");
    for hidden in [INFISICAL, INFISICAL_PATH, "officina-pub", "infisical"] {
        assert!(!reply.contains(hidden), "{hidden} is shown: {reply}");
    }
}

#[test]
fn a_dry_run_is_refused_to_readers_and_outside_the_build_repository() {
    let world = World::new();
    world.github.set_permission(BUILD_REPO, "reader", "read");
    world.github.set_permission(BUILD_REPO, "writer", "write");
    let server = world.start_server();
    let before = everything(&world);

    let replies = deliver_and_wait(
        &server,
        &world,
        "d-reader",
        BUILD_REPO,
        &comment(802, BUILD_REPO, "reader", "/build 1.18.0 --dry-run"),
    );
    assert_eq!(
        replies,
        [format!(
            "@reader `/build 1.18.0 --dry-run` publishes from the build repository `{BUILD_REPO}`, so it needs admin, maintain or write permission there; yours is `read`. Nothing was run."
        )]
    );
    assert_eq!(
        world.github.reactions(BUILD_REPO, 802),
        Vec::<String>::new()
    );

    let replies = deliver_and_wait(
        &server,
        &world,
        "d-consumer",
        GHOST,
        &comment(803, GHOST, "writer", "/build 1.18.0 --dry-run"),
    );
    assert_eq!(
        replies,
        [
            "@writer `/build 1.18.0 --dry-run` works in the build repository only: comment it on an issue or pull request there. Nothing was run."
        ]
    );
    assert_eq!(world.github.reactions(GHOST, 803), Vec::<String>::new());

    assert_eq!(everything(&world), before);
    assert_eq!(server.get("/api/jobs").json()["jobs"], Value::Array(vec![]));
}
