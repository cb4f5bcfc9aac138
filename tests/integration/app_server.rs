//! `serve` acting as the GitHub App against a stateful fake GitHub: commands, permissions,
//! jobs, rate limits, token renewal, restarts and redelivery. Assertions look at the fake's
//! state (comments, reactions, tokens, requests) and at the server's files and API.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::fake_github::{Failure, FakeGitHub};
use crate::http::request_with_headers;
use crate::serve_process::{SECRET, Server, fixtures, free_port};
use crate::test_app::{APP_SLUG, add_upstream_alloy, app_env, install_app};

pub(crate) const INSTALLATION: u64 = 77;
pub(crate) const BUILD_REPO: &str = "noahwhite/alloy-sysext-build";
pub(crate) const ISSUE: u64 = 12;

/// A fake GitHub that knows the App, its installation, and Alloy 1.17.1 upstream.
pub(crate) fn github_with_app() -> FakeGitHub {
    let github = FakeGitHub::start();
    install_app(&github, &[(INSTALLATION, "noahwhite")]);
    github.add_repo(BUILD_REPO, "main");
    add_upstream_alloy(&github, "1.17.1");
    github
}

pub(crate) fn start_app_server(github: &FakeGitHub, data_dir: &Path, port: u16) -> Server {
    start_app_server_with(github, data_dir, port, "")
}

/// [`start_app_server`] with `settings` (whole TOML tables, such as `[publish]` and its
/// keys) added to its settings file.
pub(crate) fn start_app_server_with(
    github: &FakeGitHub,
    data_dir: &Path,
    port: u16,
    settings: &str,
) -> Server {
    // No consumer repositories and no schedule: these tests are about the server itself.
    let config = data_dir.join("settings.toml");
    fs::write(
        &config,
        format!("consumers = []\n[schedule]\ncheck_upstream = \"off\"\n{settings}"),
    )
    .unwrap();
    let env = app_env(github, &config);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_on(port, data_dir, &env)
}

pub(crate) fn comment_payload(comment_id: u64, user: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "created",
        "issue": {"number": ISSUE, "title": "Release tracking"},
        "comment": {"id": comment_id, "body": body, "user": {"login": user, "type": "User"}},
        "repository": {"full_name": BUILD_REPO, "name": "alloy-sysext-build", "owner": {"login": "noahwhite"}},
        "sender": {"login": user, "type": "User"},
        "installation": {"id": INSTALLATION},
    }))
    .unwrap()
}

pub(crate) fn jobs(server: &Server) -> Vec<Value> {
    server.get("/api/jobs").json()["jobs"]
        .as_array()
        .unwrap()
        .clone()
}

pub(crate) fn wait_for_job_state(server: &Server, id: i64, state: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    server.wait_for(&format!("job {id} to be {state}"), limit, || {
        last = server.get(&format!("/api/jobs/{id}")).json();
        last["state"] == state
    });
    last
}

pub(crate) fn replies(github: &FakeGitHub) -> Vec<String> {
    github
        .comments(BUILD_REPO, ISSUE)
        .into_iter()
        .map(|c| c.body)
        .collect()
}

pub(crate) fn wait_for_replies(server: &Server, github: &FakeGitHub, count: usize) -> Vec<String> {
    server.wait_for(&format!("{count} replies"), Duration::from_secs(60), || {
        replies(github).len() >= count
    });
    replies(github)
}

#[test]
fn rebuild_by_a_read_user_is_refused_with_a_reply_and_nothing_runs() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "reader", "read");
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let response = server.deliver(
        "d-read",
        "issue_comment",
        &comment_payload(501, "reader", "/rebuild 1.17.1"),
    );
    assert_eq!(response.status, 202);
    let replies = wait_for_replies(&server, &github, 1);
    assert!(replies[0].contains("@reader"), "{}", replies[0]);
    assert!(replies[0].contains("write permission"), "{}", replies[0]);
    assert!(replies[0].contains("`read`"), "{}", replies[0]);
    assert!(jobs(&server).is_empty());
    assert!(github.reactions(BUILD_REPO, 501).is_empty());
    assert!(!data.path().join("images").exists());
    server.wait_for(
        "the delivery to be processed",
        Duration::from_secs(10),
        || server.get("/api/deliveries/d-read").json()["state"] == "processed",
    );
}

#[test]
fn rebuild_by_a_write_user_builds_signs_and_replies_once() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "writer", "write");
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let body = comment_payload(502, "writer", "Thanks!\n\n/rebuild 1.17.1\n");
    assert_eq!(
        server.deliver("d-write", "issue_comment", &body).status,
        202
    );

    server.wait_for("the eyes reaction", Duration::from_secs(30), || {
        github.reactions(BUILD_REPO, 502) == ["eyes"]
    });
    let replies = wait_for_replies(&server, &github, 1);
    let all_jobs = jobs(&server);
    assert_eq!(all_jobs.len(), 1);
    let job = wait_for_job_state(
        &server,
        all_jobs[0]["id"].as_i64().unwrap(),
        "succeeded",
        Duration::from_secs(30),
    );
    assert_eq!(job["version"], "1.17.1");
    assert_eq!(job["rebuild"], true);
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["step"], "report");
    // Published to the local storage directory and committed to the build repository.
    assert_eq!(
        github.file(BUILD_REPO, "main", "SHA256SUMS").unwrap(),
        fs::read(data.path().join("images/SHA256SUMS")).unwrap()
    );
    assert_eq!(github.releases(BUILD_REPO).len(), 1);
    // The server itself serves what it published, as a systemd-sysupdate source.
    let served = request_with_headers(server.port, "GET", "/images/SHA256SUMS", &[], b"").unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(
        served.body.as_bytes(),
        fs::read(data.path().join("images/SHA256SUMS")).unwrap()
    );
    assert_eq!(served.header("cache-control"), Some("public, max-age=300"));
    let image_head = request_with_headers(
        server.port,
        "HEAD",
        "/images/alloy-1.17.1-amd64.raw",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(image_head.status, 200);
    assert_eq!(
        image_head.header("content-length").unwrap(),
        fs::metadata(data.path().join("images/alloy-1.17.1-amd64.raw"))
            .unwrap()
            .len()
            .to_string()
    );
    assert!(
        image_head
            .header("cache-control")
            .unwrap()
            .contains("immutable")
    );
    for hostile in [
        "/images/..%2Falloy-sysext.db",
        "/images/.signing-key.asc",
        "/images/nothing.raw",
    ] {
        assert_eq!(server.get(hostile).status, 404, "{hostile}");
    }
    assert_eq!(job["trigger"]["user"], "writer");
    assert!(job["error"].is_null());

    // The image is in DATA_DIR, listed in a SHA256SUMS that gpg verifies as hosts do.
    let images = data.path().join("images");
    let image = images.join("alloy-1.17.1-amd64.raw");
    let sha256 = hex::encode(Sha256::digest(fs::read(&image).unwrap()));
    let manifest = fs::read_to_string(images.join("SHA256SUMS")).unwrap();
    assert!(
        manifest.contains(&format!("{sha256}  alloy-1.17.1-amd64.raw")),
        "{manifest}"
    );
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&ed25519_keys().public());
    assert!(gpg.sysupdate_verify(
        &keyring,
        &images.join("SHA256SUMS.gpg"),
        &images.join("SHA256SUMS")
    ));

    // The reply says what was built, with the image's hash.
    assert!(
        replies[0].contains("Alloy 1.17.1 is built, signed and published"),
        "{}",
        replies[0]
    );
    assert!(replies[0].contains(&sha256), "{}", replies[0]);
    assert!(replies[0].contains("@writer"), "{}", replies[0]);

    // A redelivery of the same delivery is acknowledged and changes nothing.
    let again = server.deliver("d-write", "issue_comment", &body);
    assert_eq!(again.status, 200);
    let delivery = server.get("/api/deliveries/d-write").json();
    assert_eq!(delivery["state"], "processed");
    assert_eq!(delivery["job_id"], job["id"]);
    // The same comment replayed under a new delivery id starts no second job.
    assert_eq!(
        server.deliver("d-replay", "issue_comment", &body).status,
        202
    );
    server.wait_for("the replay to be handled", Duration::from_secs(30), || {
        server.get("/api/deliveries/d-replay").json()["state"] != "pending"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(jobs(&server).len(), 1);
    assert_eq!(self::replies(&github).len(), 1);
    assert_eq!(github.unauthorized_responses(), 0);
}

#[test]
fn a_rate_limit_is_waited_out_and_the_command_still_runs() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "writer", "admin");
    let permission_path = format!("/repos/{BUILD_REPO}/collaborators/writer/permission");
    github.fail_next(
        "GET",
        &permission_path,
        Failure::RateLimited {
            reset_in: Duration::from_secs(2),
        },
    );
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    assert_eq!(
        server
            .deliver(
                "d-limit",
                "issue_comment",
                &comment_payload(503, "writer", "/build 1.17.1")
            )
            .status,
        202
    );
    let replies = wait_for_replies(&server, &github, 1);
    assert!(
        replies[0].contains("built, signed and published"),
        "{}",
        replies[0]
    );
    let permission_requests: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|r| r.path == permission_path)
        .collect();
    assert_eq!(permission_requests.len(), 2, "one refused, one retried");
    assert_eq!(permission_requests[0].status, 403);
    assert_eq!(permission_requests[1].status, 200);
    let waited = permission_requests[1]
        .at
        .duration_since(permission_requests[0].at)
        .unwrap();
    assert!(
        waited >= Duration::from_secs(1),
        "retried after only {waited:?}"
    );
    let log = server.log();
    assert!(log.contains("retrying a GitHub request"), "{log}");
}

#[test]
fn a_comment_handled_again_after_a_failure_part_way_answers_each_command_once() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "writer", "write");
    let permission_path = format!("/repos/{BUILD_REPO}/collaborators/writer/permission");
    // A wait longer than the client ever does: it gives up at once, after `/help` was
    // answered, and the whole comment is handled again on a later round.
    github.fail_next(
        "GET",
        &permission_path,
        Failure::SecondaryRateLimit { retry_after: 7200 },
    );
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let response = server.deliver(
        "d-part-way",
        "issue_comment",
        &comment_payload(507, "writer", "/help\n/build 1.17.1\n/status"),
    );
    assert_eq!(response.status, 202);

    // One reply with `/help` and `/status`, and the build's own report when its job ends.
    wait_for_replies(&server, &github, 2);
    let job = jobs(&server)[0].clone();
    wait_for_job_state(
        &server,
        job["id"].as_i64().unwrap(),
        "succeeded",
        Duration::from_secs(60),
    );
    // Anything posted twice would be there by now.
    std::thread::sleep(Duration::from_secs(1));
    let answered = replies(&github);
    let count = |matches: &dyn Fn(&String) -> bool| answered.iter().filter(|r| matches(r)).count();
    let help = count(&|r| r.contains("Commands are written"));
    let status = count(&|r| r.contains("**Alloy sysext status**"));
    let built = count(&|r| r.contains("built, signed and published"));
    let both = count(&|r| {
        r.starts_with("@writer ")
            && r.contains("Commands are written")
            && r.contains("**Alloy sysext status**")
    });
    assert_eq!(
        (answered.len(), help, status, built, both),
        (2, 1, 1, 1, 1),
        "{answered:#?}"
    );
    assert_eq!(jobs(&server).len(), 1);
    assert_eq!(github.reactions(BUILD_REPO, 507).len(), 1);

    let statuses: Vec<u16> = github
        .requests()
        .into_iter()
        .filter(|r| r.path == permission_path)
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [403, 200],
        "refused once, then asked again on the next round"
    );
    let delivery = server.get("/api/deliveries/d-part-way").json();
    assert_eq!(delivery["state"], "processed", "{delivery}");
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let github = github_with_app();
    let comments_path = format!("/repos/{BUILD_REPO}/issues/{ISSUE}/comments");
    github.fail_next("POST", &comments_path, Failure::ServerError(502));
    github.fail_next("POST", &comments_path, Failure::ServerError(503));
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    server.deliver(
        "d-help",
        "issue_comment",
        &comment_payload(504, "anyone", "/help"),
    );
    let replies = wait_for_replies(&server, &github, 1);
    assert!(replies[0].contains("/rebuild X.Y.Z"), "{}", replies[0]);
    // The fake logs a request as it arrives and its status once answered.
    let statuses = || -> Vec<u16> {
        github
            .requests()
            .into_iter()
            .filter(|r| r.path == comments_path)
            .map(|r| r.status)
            .collect()
    };
    server.wait_for("the reply's status", Duration::from_secs(10), || {
        !statuses().contains(&0)
    });
    assert_eq!(statuses(), [502, 503, 201]);
}

#[test]
fn an_installation_token_that_expires_mid_job_is_renewed() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "writer", "maintain");
    // Tokens live 3 s; the download takes 4 s, so the reply needs a new token.
    github.set_token_lifetime(Duration::from_secs(3));
    github.set_asset_delay(Duration::from_secs(4));
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    server.deliver(
        "d-token",
        "issue_comment",
        &comment_payload(505, "writer", "/build v1.17.1"),
    );
    let replies = wait_for_replies(&server, &github, 1);
    assert!(
        replies[0].contains("built, signed and published"),
        "{}",
        replies[0]
    );
    assert!(
        github.tokens_issued() >= 2,
        "only {} tokens",
        github.tokens_issued()
    );
    assert_eq!(
        github.unauthorized_responses(),
        0,
        "an expired token was used"
    );
}

#[test]
fn a_job_killed_mid_download_resumes_after_restart() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "writer", "write");
    github.set_asset_delay(Duration::from_secs(5));
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    server.deliver(
        "d-kill",
        "issue_comment",
        &comment_payload(506, "writer", "/build 1.17.1"),
    );
    server.wait_for("the job to be downloading", Duration::from_secs(30), || {
        jobs(&server)
            .first()
            .is_some_and(|job| job["state"] == "running" && job["step"] == "download")
    });
    let data_dir = server.kill();
    github.set_asset_delay(Duration::ZERO);
    let restarted = start_app_server(&github, &data_dir, free_port());
    let job = wait_for_job_state(&restarted, 1, "succeeded", Duration::from_secs(60));
    assert_eq!(job["attempts"], 2, "{job}");
    assert!(data_dir.join("images/alloy-1.17.1-amd64.raw").is_file());
    // The step runs: the download cut short by the kill (never finished), then every step
    // of the second attempt, each with how long it took.
    let runs: Vec<(String, i64, String)> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["step"].as_str().unwrap().to_owned(),
                run["attempt"].as_i64().unwrap(),
                run["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        runs[0],
        ("download".to_owned(), 1, "running".to_owned()),
        "{job}"
    );
    let second: Vec<&str> = runs[1..]
        .iter()
        .map(|(step, attempt, outcome)| {
            assert_eq!((*attempt, outcome.as_str()), (2, "ok"), "{job}");
            step.as_str()
        })
        .collect();
    assert_eq!(
        second,
        alloy_sysext_automation::worker::pipeline::Step::ALL.map(|step| step.as_str())
    );
    assert!(
        job["steps"][1]["seconds"]
            .as_f64()
            .is_some_and(|s| s >= 0.0),
        "{job}"
    );
    let replies = wait_for_replies(&restarted, &github, 1);
    assert_eq!(replies.len(), 1);
    assert_eq!(github.reactions(BUILD_REPO, 506), ["eyes"]);
}

#[test]
fn a_delivery_stored_before_a_kill_is_handled_after_the_restart() {
    let github = github_with_app();
    let data = tempfile::tempdir().unwrap();
    // Without App credentials the server stores deliveries but does not act on them.
    let plain = Server::with_secret(data.path());
    assert_eq!(
        plain
            .deliver(
                "d-stored",
                "issue_comment",
                &comment_payload(507, "someone", "/help")
            )
            .status,
        202
    );
    let data_dir = plain.kill();
    assert!(replies(&github).is_empty());
    let server = start_app_server(&github, &data_dir, free_port());
    let replies = wait_for_replies(&server, &github, 1);
    assert!(replies[0].contains("/build X.Y.Z"), "{}", replies[0]);
    // The reply goes out just before the delivery is marked handled.
    server.wait_for(
        "the delivery to be processed",
        Duration::from_secs(10),
        || server.get("/api/deliveries/d-stored").json()["state"] == "processed",
    );
}

#[test]
fn hostile_commands_get_replies_and_start_nothing() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "writer", "write");
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    server.deliver(
        "d-h1",
        "issue_comment",
        &comment_payload(508, "writer", "/rebuild ../../x"),
    );
    // Another user: a malformed command is answered once an hour per user and repository.
    server.deliver(
        "d-h2",
        "issue_comment",
        &comment_payload(509, "other-writer", "/build 1.0.0;rm -rf /"),
    );
    server.deliver(
        "d-h3",
        "issue_comment",
        &comment_payload(510, "writer", "```\n/build 1.17.1\n```\n> /build 1.17.1"),
    );
    // A comment payload with its fields missing is stored and ignored.
    server.deliver(
        "d-h4",
        "issue_comment",
        br#"{"action":"created","installation":{"id":77}}"#,
    );
    let replies = wait_for_replies(&server, &github, 2);
    for reply in &replies {
        assert!(
            reply.contains("1.17.1"),
            "the accepted form is shown: {reply}"
        );
        assert!(reply.contains("Nothing was run"), "{reply}");
    }
    assert!(replies.iter().any(|r| r.contains("../../x")));
    server.wait_for(
        "every delivery to be handled",
        Duration::from_secs(30),
        || {
            ["d-h3", "d-h4"]
                .iter()
                .all(|id| server.get(&format!("/api/deliveries/{id}")).json()["state"] == "ignored")
        },
    );
    assert!(jobs(&server).is_empty());
    assert_eq!(self::replies(&github).len(), 2);
    assert_eq!(server.get("/healthz").json()["can_act"], true);
}

#[test]
fn comments_by_bots_and_the_app_itself_are_ignored() {
    let github = github_with_app();
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let mut body: Value =
        serde_json::from_slice(&comment_payload(511, &format!("{APP_SLUG}[bot]"), "/help"))
            .unwrap();
    body["comment"]["user"]["type"] = json!("Bot");
    body["sender"]["type"] = json!("Bot");
    server.deliver(
        "d-bot",
        "issue_comment",
        &serde_json::to_vec(&body).unwrap(),
    );
    server.wait_for(
        "the bot comment to be handled",
        Duration::from_secs(30),
        || server.get("/api/deliveries/d-bot").json()["state"] == "ignored",
    );
    assert!(replies(&github).is_empty());
}

#[test]
fn dispatches_and_releases_in_the_build_repository_start_builds() {
    let github = github_with_app();
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let repository = json!({"full_name": BUILD_REPO});
    let installation = json!({"id": INSTALLATION});
    let dispatch = json!({"action": "alloy-sysext-build", "client_payload": {"version": "1.17.1"}, "repository": repository, "installation": installation, "sender": {"login": "noahwhite", "type": "User"}});
    server.deliver(
        "d-dispatch",
        "repository_dispatch",
        dispatch.to_string().as_bytes(),
    );
    let workflow = json!({"inputs": {"version": "v1.17.1"}, "ref": "refs/heads/main", "repository": repository, "installation": installation, "sender": {"login": "noahwhite", "type": "User"}});
    server.deliver(
        "d-workflow",
        "workflow_dispatch",
        workflow.to_string().as_bytes(),
    );
    let app_bot = format!("{APP_SLUG}[bot]");
    let own_release = json!({"action": "published", "release": {"id": 9, "tag_name": "v1.17.1", "author": {"login": app_bot}}, "repository": repository, "installation": installation, "sender": {"login": app_bot, "type": "Bot"}});
    server.deliver(
        "d-own-release",
        "release",
        own_release.to_string().as_bytes(),
    );
    // A release someone publishes by hand starts a build too.
    let release = json!({"action": "published", "release": {"id": 10, "tag_name": "v1.17.1", "author": {"login": "noahwhite"}}, "repository": repository, "installation": installation, "sender": {"login": "noahwhite", "type": "User"}});
    server.deliver("d-release", "release", release.to_string().as_bytes());
    server.wait_for("two jobs to finish", Duration::from_secs(60), || {
        let all = jobs(&server);
        all.len() == 2 && all.iter().all(|j| j["state"] == "succeeded")
    });
    let all = jobs(&server);
    let mut sources: Vec<&str> = all
        .iter()
        .map(|j| j["trigger"]["source"].as_str().unwrap())
        .collect();
    sources.sort();
    assert_eq!(sources, ["release", "repository_dispatch"]);
    // Both dispatches asked for the same build of 1.17.1: the second found the first's job.
    let dispatched = all
        .iter()
        .find(|j| j["trigger"]["source"] == "repository_dispatch")
        .unwrap();
    let workflow_delivery = server.get("/api/deliveries/d-workflow").json();
    assert_eq!(workflow_delivery["state"], "processed");
    assert_eq!(workflow_delivery["job_id"], dispatched["id"]);
    // The release's build of the same version found it built and changed nothing.
    assert!(
        all.iter().any(|j| j["result"]["published"] == "unchanged"),
        "{all:?}"
    );
    let own = server.get("/api/deliveries/d-own-release").json();
    assert_eq!(own["state"], "ignored");
    assert!(own["error"].as_str().unwrap().contains("this App"), "{own}");
}

#[test]
fn every_fixture_payload_is_routed_or_ignored_and_none_fails() {
    let github = github_with_app();
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let mut ids = Vec::new();
    for (index, (event, file, body)) in fixtures().into_iter().enumerate() {
        let id = format!("fixture-{index}");
        assert_eq!(
            server.deliver(&id, &event, &body).status,
            202,
            "{event}/{file}"
        );
        ids.push((id, event, file));
    }
    server.wait_for(
        "every fixture to be handled",
        Duration::from_secs(60),
        || {
            ids.iter().all(|(id, _, _)| {
                server.get(&format!("/api/deliveries/{id}")).json()["state"] != "pending"
            })
        },
    );
    for (id, event, file) in &ids {
        let delivery = server.get(&format!("/api/deliveries/{id}")).json();
        let expected = match (event.as_str(), file.as_str()) {
            ("ping", _) | ("installation", _) | ("installation_repositories", _) => "processed",
            ("workflow_run", f) if f.starts_with("completed") => "processed",
            _ => "ignored",
        };
        assert_eq!(delivery["state"], expected, "{event}/{file}: {delivery}");
    }
    assert!(
        jobs(&server).is_empty(),
        "no fixture is in the build repository"
    );
}

#[test]
fn missed_deliveries_are_redelivered_on_start() {
    let github = github_with_app();
    let port = free_port();
    github.set_webhook_target(port, "/api/github/webhooks", SECRET);
    let data = tempfile::tempdir().unwrap();
    // One delivery reached the server before; two never did.
    let plain = Server::with_secret(data.path());
    let stored_before = comment_payload(512, "someone", "/help");
    plain.deliver("guid-stored", "issue_comment", &stored_before);
    let data_dir = plain.kill();
    github.add_failed_delivery(
        "guid-stored",
        "issue_comment",
        Some("created"),
        stored_before,
    );
    github.add_failed_delivery(
        "guid-missed-1",
        "issue_comment",
        Some("created"),
        comment_payload(513, "someone", "/help"),
    );
    github.add_failed_delivery(
        "guid-missed-2",
        "ping",
        None,
        br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec(),
    );

    let server = start_app_server(&github, &data_dir, port);
    server.wait_for(
        "the missed deliveries to arrive",
        Duration::from_secs(30),
        || {
            ["guid-missed-1", "guid-missed-2"]
                .iter()
                .all(|id| server.get(&format!("/api/deliveries/{id}")).status == 200)
        },
    );
    let mut asked = github.redelivery_attempts();
    asked.sort();
    assert_eq!(asked, ["guid-missed-1", "guid-missed-2"]);
    // Both /help comments get their reply: the one stored before the restart, and the
    // redelivered one.
    let replies = wait_for_replies(&server, &github, 2);
    assert_eq!(replies.len(), 2);
}

#[test]
fn an_unusable_app_key_stops_the_start_without_showing_the_key() {
    let data = tempfile::tempdir().unwrap();
    let junk = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END RSA PRIVATE KEY-----\n";
    let stderr = run_fail(
        cli()
            .arg("serve")
            .env("PORT", free_port().to_string())
            .env("DATA_DIR", data.path())
            .env("APP_ID", "1")
            .env("PRIVATE_KEY", junk)
            .env("WEBHOOK_SECRET", SECRET)
            .env("LOG_FORMAT", "json"),
    );
    assert!(stderr.contains("PRIVATE_KEY"), "{stderr}");
    assert!(!stderr.contains("c2VjcmV0LWtleS1tYXRlcmlhbA"), "{stderr}");
}

#[test]
fn a_settings_file_with_an_unknown_key_stops_the_start_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("settings.toml");
    fs::write(&config, "[image]\narchs = [\"amd64\"]\n").unwrap();
    let stderr = run_fail(
        cli()
            .arg("serve")
            .env("PORT", free_port().to_string())
            .env("DATA_DIR", data.path())
            .env("CONFIG_FILE", &config)
            .env("WEBHOOK_SECRET", SECRET)
            .env("LOG_FORMAT", "json"),
    );
    assert!(stderr.contains("archs"), "{stderr}");
    assert!(stderr.contains("settings.toml"), "{stderr}");
}
