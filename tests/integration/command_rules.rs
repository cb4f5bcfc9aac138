//! Who may start a build, and how the App answers: the permission on the build repository,
//! one reply per comment, refusals answered at most once an hour, the queue's joining rules,
//! `/status` outside the build repository, workflow run reports, escaping, and replays.
//! The real server against the fake GitHub; assertions on the fake's comments and the
//! server's jobs, deliveries and metrics.

use std::time::Duration;

use serde_json::{Value, json};

use crate::app_server::{
    BUILD_REPO, INSTALLATION, comment_payload, github_with_app, jobs, replies, start_app_server,
    wait_for_job_state, wait_for_replies,
};
use crate::fake_github::FakeGitHub;
use crate::serve_process::{Server, free_port};
use crate::test_app::add_upstream_alloy;

const CONSUMER: &str = "noahwhite/edge-hosts";
const CONSUMER_ISSUE: u64 = 3;

/// A comment in `repo` (not the build repository) on issue [`CONSUMER_ISSUE`].
fn comment_in(repo: &str, comment_id: u64, user: &str, body: &str) -> Vec<u8> {
    let mut payload: Value =
        serde_json::from_slice(&comment_payload(comment_id, user, body)).unwrap();
    payload["issue"]["number"] = json!(CONSUMER_ISSUE);
    payload["repository"] = json!({"full_name": repo});
    serde_json::to_vec(&payload).unwrap()
}

/// Makes `repo` a consumer by its enrollment file.
fn enroll(github: &FakeGitHub, repo: &str) {
    github.set_file(
        repo,
        "main",
        ".github/alloy-sysext.toml",
        "path = \"hosts/edge.bu\"\nbase = \"main\"\nassignees = []\n",
    );
}

/// The branch of the App's update pull requests for Alloy 1.17.1.
const UPDATE_BRANCH: &str = "feature/update-alloy-sysext-to-1.17.1";

/// Enrolls [`CONSUMER`] and opens the App's own update pull request there from
/// [`UPDATE_BRANCH`]: its head commit and its number.
fn consumer_with_update_pull(github: &FakeGitHub) -> (String, u64) {
    github.add_repo(CONSUMER, "main");
    enroll(github, CONSUMER);
    let head_sha = github.set_file(
        CONSUMER,
        UPDATE_BRANCH,
        "hosts/edge.bu",
        "variant: flatcar\n",
    );
    let pull = github.add_pull(
        CONSUMER,
        "alloy-sysext-test[bot]",
        UPDATE_BRANCH,
        "main",
        "Update",
        "",
    );
    (head_sha, pull)
}

/// A `repository_dispatch` asking the build repository to build `version`.
fn dispatch(version: &str) -> String {
    json!({"action": "alloy-sysext-build", "client_payload": {"version": version}, "repository": {"full_name": BUILD_REPO}, "installation": {"id": INSTALLATION}, "sender": {"login": "noahwhite", "type": "User"}}).to_string()
}

/// A completed run of the workflow "Validate" in `repo` on `branch` at `sha`, from `repo`
/// itself, concluded `failure`; tests change its fields to make other runs.
fn completed_run_json(id: u64, repo: &str, branch: &str, sha: &str) -> Value {
    json!({
        "action": "completed",
        "workflow_run": {
            "id": id,
            "name": "Validate",
            "head_branch": branch,
            "head_sha": sha,
            "head_repository": {"full_name": repo},
            "conclusion": "failure",
            "html_url": format!("https://github.com/{repo}/actions/runs/{id}"),
        },
        "repository": {"full_name": repo},
        "sender": {"login": "noahwhite", "type": "User"},
        "installation": {"id": INSTALLATION},
    })
}

/// [`completed_run_json`] as a body to deliver.
fn completed_run(id: u64, repo: &str, branch: &str, sha: &str) -> String {
    completed_run_json(id, repo, branch, sha).to_string()
}

fn delivery(server: &Server, id: &str) -> Value {
    server.get(&format!("/api/deliveries/{id}")).json()
}

fn wait_handled(server: &Server, id: &str) -> Value {
    server.wait_for(
        &format!("delivery {id} to be handled"),
        Duration::from_secs(60),
        || delivery(server, id)["state"] != "pending",
    );
    delivery(server, id)
}

/// The value of the metric sample `series` (name and labels) at `/metrics`, 0 when absent.
fn metric(server: &Server, series: &str) -> f64 {
    server
        .get("/metrics")
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// How many command refusals for `reason` the server counted at `/metrics`, answered or
/// left unanswered.
fn refusals(server: &Server, reason: &str, answered: bool) -> f64 {
    metric(
        server,
        &format!(
            r#"alloy_sysext_command_refusals_total{{reason="{reason}",answered="{answered}"}}"#
        ),
    )
}

/// Has `user` ask for a build of 1.18.0 in comment `comment_id` (delivery `delivery_id`),
/// and waits until that job's download has started, held back by a delay it started with;
/// later downloads are not held.
fn start_held_build(
    server: &Server,
    github: &FakeGitHub,
    delivery_id: &str,
    comment_id: u64,
    user: &str,
) {
    github.set_asset_delay(Duration::from_secs(20));
    server.deliver(
        delivery_id,
        "issue_comment",
        &comment_payload(comment_id, user, "/build 1.18.0"),
    );
    server.wait_for("the first job to download", Duration::from_secs(60), || {
        !github.downloads().is_empty()
    });
    github.set_asset_delay(Duration::ZERO);
}

fn consumer_replies(github: &FakeGitHub) -> Vec<String> {
    github
        .comments(CONSUMER, CONSUMER_ISSUE)
        .into_iter()
        .map(|c| c.body)
        .collect()
}

#[test]
fn write_on_a_consumer_but_read_on_the_build_repository_is_refused_and_status_there_shows_no_errors()
 {
    let github = github_with_app();
    github.add_repo(CONSUMER, "main");
    github.set_permission(CONSUMER, "writer", "write");
    github.set_permission(BUILD_REPO, "writer", "read");
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());

    // A failed job whose error names a repository: a dispatch for a version upstream lacks.
    server.deliver(
        "d-missing",
        "repository_dispatch",
        dispatch("1.0.1").as_bytes(),
    );
    let failed = wait_for_job_state(&server, 1, "failed", Duration::from_secs(60));
    let error = failed["error"].as_str().unwrap().to_owned();
    assert!(!error.is_empty());

    server.deliver(
        "d-consumer",
        "issue_comment",
        &comment_in(CONSUMER, 601, "writer", "/build 1.17.1\n/status"),
    );
    server.wait_for("the reply", Duration::from_secs(60), || {
        !consumer_replies(&github).is_empty()
    });
    let handled = wait_handled(&server, "d-consumer");
    assert_eq!(handled["state"], "processed", "{handled}");
    let answered = consumer_replies(&github);
    assert_eq!(
        answered.len(),
        1,
        "one reply for both commands: {answered:#?}"
    );
    let reply = &answered[0];
    assert!(reply.starts_with("@writer "), "{reply}");
    assert!(reply.contains("`/build 1.17.1`"), "{reply}");
    assert!(reply.contains("write permission"), "{reply}");
    assert!(
        reply.contains("`read`"),
        "the build repository's permission: {reply}"
    );
    // The status part: the failed job, without its error or any repository's name.
    assert!(reply.contains("**Alloy sysext status**"), "{reply}");
    assert!(reply.contains("build 1.0.1: **failed**"), "{reply}");
    assert!(!reply.contains(&error), "{reply}");
    assert!(!reply.contains(BUILD_REPO), "{reply}");
    assert!(!reply.contains("grafana/alloy"), "{reply}");

    // Nothing ran, and the permission asked was the build repository's.
    assert_eq!(jobs(&server).len(), 1);
    assert!(github.reactions(CONSUMER, 601).is_empty());
    let asked: Vec<String> = github
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/collaborators/writer/permission"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        asked,
        [format!(
            "/repos/{BUILD_REPO}/collaborators/writer/permission"
        )]
    );
}

#[test]
fn a_comment_gets_one_reply_and_refusals_are_answered_once_an_hour() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "reader", "read");
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());

    server.deliver(
        "d-many",
        "issue_comment",
        &comment_payload(
            611,
            "reader",
            "/help\n/status\n/build 1.2\n/build 1.17.1\n/rebuild 1.17.1",
        ),
    );
    let first = wait_for_replies(&server, &github, 1);
    assert_eq!(wait_handled(&server, "d-many")["state"], "processed");
    let reply = &first[0];
    for part in [
        "Commands are written",
        "**Alloy sysext status**",
        "`1.2` is not one",
        "`/build 1.17.1` publishes from the build repository",
        "`/rebuild 1.17.1` publishes from the build repository",
    ] {
        assert!(reply.contains(part), "{part:?} missing from {reply}");
    }
    assert_eq!(reply.matches("@reader").count(), 1, "{reply}");

    // Refused again within the hour, in the same repository: recorded, not answered.
    server.deliver(
        "d-again",
        "issue_comment",
        &comment_payload(612, "reader", "/rebuild 1.17.1"),
    );
    let again = wait_handled(&server, "d-again");
    assert_eq!(again["state"], "ignored", "{again}");
    let note = again["error"].as_str().unwrap();
    assert!(note.contains("not answered"), "{note}");
    assert!(note.contains("reader"), "{note}");
    // Another user's refusal is answered; and a /help from the first one still is.
    github.set_permission(BUILD_REPO, "other", "triage");
    server.deliver(
        "d-other",
        "issue_comment",
        &comment_payload(613, "other", "/build 1.17.1"),
    );
    server.deliver(
        "d-help",
        "issue_comment",
        &comment_payload(614, "reader", "/help\n/build 1.17.1"),
    );
    let all = wait_for_replies(&server, &github, 3);
    wait_handled(&server, "d-help");
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all[1].starts_with("@other ") && all[1].contains("`read`"),
        "{}",
        all[1]
    );
    assert!(
        all[2].starts_with("@reader Commands are written"),
        "{}",
        all[2]
    );
    assert!(!all[2].contains("publishes from"), "{}", all[2]);
    assert!(jobs(&server).is_empty());
    // A comment's refusal is counted once, under its first refused command's reason: the
    // malformed `/build 1.2` for the first comment.
    assert_eq!(refusals(&server, "malformed", true), 1.0);
    assert_eq!(refusals(&server, "permission", true), 1.0);
    assert_eq!(refusals(&server, "permission", false), 2.0);
}

#[test]
fn requests_join_a_queued_job_a_running_one_is_left_alone_and_a_user_has_three_queued() {
    let github = github_with_app();
    add_upstream_alloy(&github, "1.18.0");
    for user in ["ann", "bob", "cy"] {
        github.set_permission(BUILD_REPO, user, "write");
    }
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    // The first job stays in its download while the others are asked for.
    start_held_build(&server, &github, "d-1", 621, "ann");
    let ask = |id: &str, comment: u64, user: &str, body: &str| {
        server.deliver(id, "issue_comment", &comment_payload(comment, user, body));
        wait_handled(&server, id)
    };
    // Queued behind the running one; then joined, and made a rebuild.
    ask("d-2", 622, "ann", "/build 1.17.1");
    let joined = ask("d-3", 623, "bob", "/rebuild 1.17.1");
    // A rebuild of the running job's version queues after it.
    ask("d-4", 624, "cy", "/rebuild 1.18.0");
    // Ann's queued jobs: 1.17.1, then two that will fail (no such release upstream); a
    // fourth is refused.
    ask("d-5", 625, "ann", "/build 1.0.1");
    ask("d-6", 626, "ann", "/build 1.0.2");
    let refused = ask("d-7", 627, "ann", "/build 1.0.3");
    assert_eq!(refused["state"], "processed", "{refused}");

    let queued = jobs(&server);
    assert_eq!(queued.len(), 5, "{queued:#?}");
    let by_version = |version: &str| -> Vec<Value> {
        queued
            .iter()
            .filter(|j| j["version"] == version)
            .cloned()
            .collect()
    };
    let running = &by_version("1.18.0");
    assert_eq!(running.len(), 2, "{running:#?}");
    let shared = &by_version("1.17.1")[0];
    assert_eq!(shared["rebuild"], true, "{shared}");
    assert_eq!(joined["job_id"], shared["id"]);
    assert!(by_version("1.0.3").is_empty());

    for job in jobs(&server) {
        let id = job["id"].as_i64().unwrap();
        server.wait_for(
            &format!("job {id} to end"),
            Duration::from_secs(120),
            || {
                let state = server.get(&format!("/api/jobs/{id}")).json()["state"].clone();
                state == "succeeded" || state == "failed"
            },
        );
    }
    // The first job was left alone: a build, and its report names only ann.
    let first = wait_for_job_state(&server, 1, "succeeded", Duration::from_secs(10));
    assert_eq!(first["rebuild"], false);

    // The reply to bob, ann's refusal, and a report per job (each posted after its job
    // ends).
    let answered = wait_for_replies(&server, &github, 7);
    let about = |job: &Value| -> Vec<&String> {
        let tag = format!("(job #{},", job["id"]);
        answered.iter().filter(|r| r.contains(&tag)).collect()
    };
    // Bob's reply says he joined; ann's refusal says why; each job reports once.
    let bob: Vec<&String> = answered.iter().filter(|r| r.starts_with("@bob ")).collect();
    assert_eq!(bob.len(), 1, "{answered:#?}");
    assert!(
        bob[0].contains(&format!("joins job #{}", shared["id"])) && bob[0].contains("rebuild now"),
        "{}",
        bob[0]
    );
    let limit: Vec<&String> = answered
        .iter()
        .filter(|r| r.starts_with("@ann ") && r.contains("3 jobs that are still queued"))
        .collect();
    assert_eq!(limit.len(), 1, "{answered:#?}");
    let shared_report = about(shared);
    assert_eq!(shared_report.len(), 1, "{answered:#?}");
    assert!(
        shared_report[0].contains("asked by @ann and @bob"),
        "{}",
        shared_report[0]
    );
    let first_report = about(&first);
    assert_eq!(first_report.len(), 1, "{answered:#?}");
    assert!(
        first_report[0].contains("asked by @ann)"),
        "{}",
        first_report[0]
    );
    // Every job reported once, and nothing else was said: the reply to bob, the refusal,
    // and five reports.
    assert_eq!(answered.len(), 7, "{answered:#?}");
    assert_eq!(refusals(&server, "queue_limit", true), 1.0);
}

#[test]
fn workflow_runs_are_reported_only_for_the_update_pull_requests_own_head_and_inject_nothing() {
    let github = github_with_app();
    let (head_sha, pull) = consumer_with_update_pull(&github);
    assert_eq!(github.pulls(CONSUMER)[0].head_sha, head_sha);
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());

    let hostile = "CI @noahwhite/admins ![x](https://evil.example/x.png) <img src=x> [y](https://evil.example) `";
    let run = |id: u64, head_repository: &str, sha: &str| {
        let mut run = completed_run_json(id, CONSUMER, UPDATE_BRANCH, sha);
        run["workflow_run"]["name"] = json!(hostile);
        run["workflow_run"]["head_repository"] = json!({"full_name": head_repository});
        run.to_string()
    };
    // A fork's pull request from a branch of the same name, and a run on an older commit.
    server.deliver(
        "run-fork",
        "workflow_run",
        run(701, "mallory/edge-hosts", &head_sha).as_bytes(),
    );
    server.deliver(
        "run-old",
        "workflow_run",
        run(702, CONSUMER, &"0".repeat(40)).as_bytes(),
    );
    server.deliver(
        "run-own",
        "workflow_run",
        run(703, CONSUMER, &head_sha).as_bytes(),
    );
    server.wait_for("the CI report", Duration::from_secs(60), || {
        !github.comments(CONSUMER, pull).is_empty()
    });
    for id in ["run-fork", "run-old", "run-own"] {
        assert_eq!(wait_handled(&server, id)["state"], "processed");
    }
    // The reported run's body again, under a new delivery id.
    server.deliver(
        "run-own-replayed",
        "workflow_run",
        run(703, CONSUMER, &head_sha).as_bytes(),
    );
    assert_eq!(
        wait_handled(&server, "run-own-replayed")["state"],
        "processed"
    );
    let comments = github.comments(CONSUMER, pull);
    assert_eq!(
        comments.len(),
        1,
        "only the pull request's own run, once: {comments:#?}"
    );
    let body = &comments[0].body;
    assert!(body.contains("actions/runs/703"), "{body}");
    assert!(body.contains("**failure**"), "{body}");
    // The name is one code span: no mention, image, link or HTML outside it.
    let span = format!("`` {hostile} ``");
    assert!(body.contains(&span), "{body}");
    let outside = body.replace(&span, "");
    for injected in ["@noahwhite/admins", "![", "](", "<img", "evil.example"] {
        assert!(
            !outside.contains(injected),
            "{injected} outside the span: {body}"
        );
    }
}

#[test]
fn a_replayed_dispatch_starts_no_second_build_and_the_event_must_match_the_payload() {
    let github = github_with_app();
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let body = dispatch("1.17.1");
    server.deliver("d-first", "repository_dispatch", body.as_bytes());
    // The same signed body, replayed under new delivery ids: while the job is queued or
    // running, and after it succeeded.
    server.deliver("d-replay-1", "repository_dispatch", body.as_bytes());
    let job = wait_for_job_state(&server, 1, "succeeded", Duration::from_secs(60));
    server.deliver("d-replay-2", "repository_dispatch", body.as_bytes());
    for id in ["d-first", "d-replay-1", "d-replay-2"] {
        let handled = wait_handled(&server, id);
        assert_eq!(handled["state"], "processed", "{handled}");
        assert_eq!(handled["job_id"], job["id"], "{id}: {handled}");
    }
    assert_eq!(jobs(&server).len(), 1);

    // A failed job does not block asking again.
    let missing = dispatch("1.0.1");
    server.deliver("d-missing", "repository_dispatch", missing.as_bytes());
    wait_for_job_state(&server, 2, "failed", Duration::from_secs(60));
    server.deliver("d-missing-again", "repository_dispatch", missing.as_bytes());
    let again = wait_handled(&server, "d-missing-again");
    assert_eq!(again["job_id"], 3, "{again}");

    // The dispatch body under other event names, and a comment with a dispatch's fields.
    server.deliver("d-as-comment", "issue_comment", body.as_bytes());
    server.deliver("d-as-workflow", "workflow_dispatch", body.as_bytes());
    let mut mixed: Value =
        serde_json::from_slice(&comment_payload(631, "noahwhite", "/help")).unwrap();
    mixed["client_payload"] = json!({"version": "1.17.1"});
    server.deliver(
        "d-mixed",
        "issue_comment",
        &serde_json::to_vec(&mixed).unwrap(),
    );
    for id in ["d-as-comment", "d-as-workflow", "d-mixed"] {
        let handled = wait_handled(&server, id);
        assert_eq!(handled["state"], "ignored", "{handled}");
        assert!(
            handled["error"]
                .as_str()
                .unwrap()
                .contains("X-GitHub-Event"),
            "{handled}"
        );
    }
    assert_eq!(jobs(&server).len(), 3);
    assert!(replies(&github).is_empty());
}

#[test]
fn replayed_reports_of_a_re_run_with_other_conclusions_are_posted_once_per_attempt() {
    let github = github_with_app();
    let (head_sha, pull) = consumer_with_update_pull(&github);
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let run = |attempt: u64, conclusion: &str| {
        let mut run = completed_run_json(801, CONSUMER, UPDATE_BRANCH, &head_sha);
        run["workflow_run"]["run_attempt"] = json!(attempt);
        run["workflow_run"]["conclusion"] = json!(conclusion);
        run.to_string()
    };
    // The first attempt failed; a re-run (same run id and head) succeeded.
    let failed = run(1, "failure");
    let succeeded = run(2, "success");
    server.deliver("run-1", "workflow_run", failed.as_bytes());
    assert_eq!(wait_handled(&server, "run-1")["state"], "processed");
    server.deliver("run-2", "workflow_run", succeeded.as_bytes());
    assert_eq!(wait_handled(&server, "run-2")["state"], "processed");
    assert_eq!(github.comments(CONSUMER, pull).len(), 2);
    // Both bodies replayed alternately under new delivery ids, and the first attempt's id
    // with the other conclusion: nothing more is said.
    for (n, body) in [
        &failed,
        &succeeded,
        &failed,
        &run(1, "success"),
        &run(2, "failure"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("run-replay-{n}");
        server.deliver(&id, "workflow_run", body.as_bytes());
        assert_eq!(wait_handled(&server, &id)["state"], "processed");
    }
    let comments = github.comments(CONSUMER, pull);
    assert_eq!(comments.len(), 2, "{comments:#?}");
    assert!(comments[0].body.contains("**failure**"), "{comments:#?}");
    assert!(comments[1].body.contains("**success**"), "{comments:#?}");
}

#[test]
fn a_refused_comment_replayed_after_the_commenter_gained_write_starts_nothing() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "eve", "read");
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let answered = comment_payload(901, "eve", "/build 1.17.1");
    let unanswered = comment_payload(902, "eve", "/rebuild 1.17.1");
    server.deliver("d-answered", "issue_comment", &answered);
    assert_eq!(wait_handled(&server, "d-answered")["state"], "processed");
    // Refused within the hour: recorded only, nothing stored under the comment but that.
    server.deliver("d-unanswered", "issue_comment", &unanswered);
    assert_eq!(wait_handled(&server, "d-unanswered")["state"], "ignored");
    assert_eq!(replies(&github).len(), 1);

    // Eve gains write; both signed bodies come back under new delivery ids.
    github.set_permission(BUILD_REPO, "eve", "write");
    server.deliver("d-answered-replayed", "issue_comment", &answered);
    server.deliver("d-unanswered-replayed", "issue_comment", &unanswered);
    for id in ["d-answered-replayed", "d-unanswered-replayed"] {
        let handled = wait_handled(&server, id);
        assert_eq!(handled["state"], "ignored", "{handled}");
        assert!(
            handled["error"]
                .as_str()
                .unwrap()
                .contains("handled before"),
            "{handled}"
        );
    }
    assert!(jobs(&server).is_empty(), "{:#?}", jobs(&server));
    assert!(github.reactions(BUILD_REPO, 902).is_empty());
    assert_eq!(replies(&github).len(), 1, "{:#?}", replies(&github));
}

/// A job asked for by `first` (in the consumer repository's issue) and joined by `second`
/// (in the build repository's issue) while another job holds the queue; both have write on
/// the build repository. Gives the shared job, once it has ended.
fn shared_job(server: &Server, github: &FakeGitHub, first: &str, second: &str) -> Value {
    add_upstream_alloy(github, "1.18.0");
    for user in ["holder", first, second] {
        github.set_permission(BUILD_REPO, user, "write");
    }
    start_held_build(server, github, "d-holder", 920, "holder");
    server.deliver(
        "d-first",
        "issue_comment",
        &comment_in(CONSUMER, 921, first, "/build 1.17.1"),
    );
    assert_eq!(wait_handled(server, "d-first")["state"], "processed");
    server.deliver(
        "d-second",
        "issue_comment",
        &comment_payload(922, second, "/build 1.17.1"),
    );
    let joined = wait_handled(server, "d-second");
    assert_eq!(joined["state"], "processed", "{joined}");
    let id = joined["job_id"].as_i64().unwrap();
    server.wait_for(
        &format!("job {id} to end"),
        Duration::from_secs(120),
        || {
            let state = server.get(&format!("/api/jobs/{id}")).json()["state"].clone();
            state == "succeeded" || state == "failed"
        },
    );
    server.get(&format!("/api/jobs/{id}")).json()
}

#[test]
fn an_issue_that_refuses_the_end_report_fails_nothing_and_the_others_get_theirs() {
    let github = github_with_app();
    github.add_repo(CONSUMER, "main");
    github.lock_issue(CONSUMER, CONSUMER_ISSUE);
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let job = shared_job(&server, &github, "bob", "ann");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        job["result"]["report_failed"],
        json!([format!("{CONSUMER}#{CONSUMER_ISSUE}")]),
        "{job}"
    );
    // Ann's issue got the success report, once, and no failure report.
    let tag = format!("(job #{},", job["id"]);
    let reports: Vec<String> = replies(&github)
        .into_iter()
        .filter(|r| r.contains(&tag))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert!(reports[0].starts_with("✅"), "{}", reports[0]);
    assert!(consumer_replies(&github).is_empty());
}

#[test]
fn an_end_report_outside_the_build_repository_names_neither_it_nor_who_asked_elsewhere() {
    let github = github_with_app();
    github.add_repo(CONSUMER, "main");
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let job = shared_job(&server, &github, "bob", "ann");
    assert_eq!(job["state"], "succeeded", "{job}");
    let tag = format!("(job #{},", job["id"]);
    let here: Vec<String> = consumer_replies(&github)
        .into_iter()
        .filter(|r| r.contains(&tag))
        .collect();
    assert_eq!(here.len(), 1, "{here:#?}");
    let report = &here[0];
    assert!(report.contains("asked by @bob)"), "{report}");
    for hidden in ["@ann", BUILD_REPO, "alloy-sysext-build", "Release:"] {
        assert!(!report.contains(hidden), "{hidden}: {report}");
    }
    // The build repository's issue has it all.
    let there: Vec<String> = replies(&github)
        .into_iter()
        .filter(|r| r.contains(&tag))
        .collect();
    assert_eq!(there.len(), 1, "{there:#?}");
    assert!(there[0].contains("asked by @bob and @ann)"), "{}", there[0]);
    assert!(
        there[0].contains(&format!(
            "Release: https://github.com/{BUILD_REPO}/releases/tag/v1.17.1"
        )),
        "{}",
        there[0]
    );
}

#[test]
fn malformed_commands_are_answered_once_an_hour_like_refusals() {
    let github = github_with_app();
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    server.deliver(
        "d-bad-1",
        "issue_comment",
        &comment_payload(931, "flooder", "/build 1.2"),
    );
    let first = wait_for_replies(&server, &github, 1);
    assert!(first[0].contains("`1.2` is not one"), "{}", first[0]);
    assert_eq!(wait_handled(&server, "d-bad-1")["state"], "processed");
    for (id, comment) in [("d-bad-2", 932), ("d-bad-3", 933)] {
        server.deliver(
            id,
            "issue_comment",
            &comment_payload(comment, "flooder", "/build x.y.z\n/build 1"),
        );
        let handled = wait_handled(&server, id);
        assert_eq!(handled["state"], "ignored", "{handled}");
        assert!(
            handled["error"].as_str().unwrap().contains("not answered"),
            "{handled}"
        );
    }
    // Another user's bad command is answered.
    server.deliver(
        "d-bad-other",
        "issue_comment",
        &comment_payload(934, "someone", "/build 1.2"),
    );
    let all = wait_for_replies(&server, &github, 2);
    wait_handled(&server, "d-bad-other");
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all[1].starts_with("@someone "), "{}", all[1]);
    assert_eq!(refusals(&server, "malformed", false), 2.0);
}

#[test]
fn ci_runs_are_reported_only_on_the_apps_own_pull_requests_in_consumer_repositories() {
    let github = github_with_app();
    let branch = UPDATE_BRANCH;
    // An enrolled consumer where someone else opened a pull request from an update branch.
    github.add_repo(CONSUMER, "main");
    enroll(&github, CONSUMER);
    let consumer_sha = github.set_file(CONSUMER, branch, "hosts/edge.bu", "variant: flatcar\n");
    let theirs = github.add_pull(CONSUMER, "mallory", branch, "main", "Update", "");
    // A repository the App is installed on that is no consumer, with a pull request that
    // claims to be the App's.
    let other = "noahwhite/scratch";
    github.add_repo(other, "main");
    let other_sha = github.set_file(other, branch, "x", "y\n");
    let stray = github.add_pull(
        other,
        "alloy-sysext-test[bot]",
        branch,
        "main",
        "Update",
        "",
    );
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    server.deliver(
        "run-theirs",
        "workflow_run",
        completed_run(811, CONSUMER, branch, &consumer_sha).as_bytes(),
    );
    server.deliver(
        "run-stray",
        "workflow_run",
        completed_run(812, other, branch, &other_sha).as_bytes(),
    );
    for id in ["run-theirs", "run-stray"] {
        assert_eq!(wait_handled(&server, id)["state"], "processed");
    }
    assert!(github.comments(CONSUMER, theirs).is_empty());
    assert!(github.comments(other, stray).is_empty());
}

#[test]
fn a_refusal_whose_reply_could_not_be_posted_does_not_silence_the_next_one() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "reader", "read");
    // The first comment is on a locked issue: its reply is refused for good.
    github.lock_issue(BUILD_REPO, 99);
    let mut locked: Value =
        serde_json::from_slice(&comment_payload(941, "reader", "/build 1.17.1")).unwrap();
    locked["issue"]["number"] = json!(99);
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    server.deliver(
        "d-locked",
        "issue_comment",
        &serde_json::to_vec(&locked).unwrap(),
    );
    let failed = wait_handled(&server, "d-locked");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(github.comments(BUILD_REPO, 99).is_empty());
    // The next refusal within the hour, on an open issue, is answered: nobody was yet.
    server.deliver(
        "d-open",
        "issue_comment",
        &comment_payload(942, "reader", "/build 1.17.1"),
    );
    let answered = wait_for_replies(&server, &github, 1);
    assert_eq!(wait_handled(&server, "d-open")["state"], "processed");
    assert!(answered[0].contains("`read`"), "{}", answered[0]);
    // And that answer, posted, keeps the one after it unanswered.
    server.deliver(
        "d-after",
        "issue_comment",
        &comment_payload(943, "reader", "/build 1.17.1"),
    );
    assert_eq!(wait_handled(&server, "d-after")["state"], "ignored");
    assert_eq!(replies(&github).len(), 1);
}
