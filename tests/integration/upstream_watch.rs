//! The upstream watch: `check` against a fake GitHub holding upstream releases, and the
//! library's watch reading the release list with conditional requests.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use alloy_sysext_automation::database::Database;
use alloy_sysext_automation::github::api::GitHubApi;
use alloy_sysext_automation::github::app_jwt::AppKey;
use alloy_sysext_automation::github::rate_limit::RetryPolicy;
use alloy_sysext_automation::settings::Settings;
use alloy_sysext_automation::worker::upstream::watch::{CheckAction, UpstreamWatch};

use crate::common::{cli, run_fail, run_ok};
use crate::fake_github::{Failure, FakeGitHub};
use crate::serve_process::Server;
use crate::test_app::{APP_ID, app_env, app_key_path, install_app};

const BUILD_REPO: &str = "noahwhite/alloy-sysext-build";
const TITLE: &str = "Alloy 1.10.0 sysext build triggered";

const DAY: Duration = Duration::from_secs(86_400);

/// A moment before which upstream's releases were made.
fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// The App on the build repository, which has published 1.9.3; upstream has no release yet.
fn published_1_9_3() -> FakeGitHub {
    let github = FakeGitHub::start();
    install_app(&github, &[(77, "noahwhite")]);
    github.add_repo(BUILD_REPO, "main");
    github.set_file(
        BUILD_REPO,
        "main",
        "SHA256SUMS",
        format!("{}  alloy-1.9.3-amd64.raw\n", "a".repeat(64)),
    );
    github
}

/// Upstream has 1.9.3, 1.10.0, a newer prerelease and 1.9.4; 1.9.3 is published.
fn github() -> FakeGitHub {
    let github = published_1_9_3();
    // Listed newest first by date: a patch of the older line came out last.
    for (tag, prerelease, age) in [
        ("v1.9.3", false, 30),
        ("v1.10.0", false, 20),
        ("v1.11.0-rc.1", true, 10),
        ("v1.9.4", false, 5),
    ] {
        github.add_upstream_release(
            "grafana/alloy",
            tag,
            prerelease,
            false,
            start() - DAY * age,
            Vec::new(),
        );
    }
    github
}

fn check(github: &FakeGitHub, data: &Path, dry_run: bool) -> std::process::Command {
    let mut command = cli();
    command
        .arg("check")
        .env("APP_ID", APP_ID.to_string())
        .env("PRIVATE_KEY_PATH", app_key_path())
        .env("GITHUB_API_URL", &github.url)
        .env("DATA_DIR", data);
    if dry_run {
        command.arg("--dry-run");
    }
    command
}

#[test]
fn check_finds_the_newest_stable_release_and_opens_one_tracking_issue() {
    let github = github();
    let data = tempfile::tempdir().unwrap();

    let dry = run_ok(&mut check(&github, data.path(), true));
    // 1.9.4 came out upstream but was never published: the manifest lists 1.9.3.
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout),
        "newest upstream release: 1.10.0; newest published: 1.9.3; would build 1.10.0 and open the tracking issue (dry run: nothing was changed)\n"
    );
    assert!(
        github.issues(BUILD_REPO).is_empty(),
        "a dry run changes nothing"
    );

    let first = run_ok(&mut check(&github, data.path(), false));
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        said.contains("queued a build of 1.10.0 as job #1"),
        "{said}"
    );
    assert!(said.contains("(opened)"), "{said}");
    let second = run_ok(&mut check(&github, data.path(), false));
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(
        said.contains("a build was already queued for 1.10.0 as job #1"),
        "{said}"
    );
    assert!(said.contains("(already open)"), "{said}");

    let issues = github.issues(BUILD_REPO);
    assert_eq!(issues.len(), 1, "no second tracking issue: {issues:?}");
    assert_eq!(issues[0].title, TITLE);
    assert_eq!(issues[0].labels, ["RTB"]);
    assert_eq!(issues[0].state, "open");
}

#[test]
fn the_newest_release_is_found_past_the_first_page_of_the_list() {
    let github = published_1_9_3();
    // 1.12.0 came out first; a hundred and ten patches of an older line since push it
    // past the first page of a hundred, which alone says 1.9.3 is up to date.
    github.add_upstream_release(
        "grafana/alloy",
        "v1.12.0",
        false,
        false,
        start() - DAY * 400,
        Vec::new(),
    );
    for patch in 0..110u64 {
        github.add_upstream_release(
            "grafana/alloy",
            &format!("v1.8.{patch}"),
            false,
            false,
            start() - DAY * 300 + Duration::from_secs(patch),
            Vec::new(),
        );
    }
    let data = tempfile::tempdir().unwrap();
    let dry = run_ok(&mut check(&github, data.path(), true));
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout),
        "newest upstream release: 1.12.0; newest published: 1.9.3; would build 1.12.0 and open the tracking issue (dry run: nothing was changed)\n"
    );
    // Two pages of the list as GitHub gives them, the second found by the first's `Link`.
    let pages: Vec<(String, u16)> = github
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/repos/grafana/alloy/releases")
        .map(|r| (r.query, r.status))
        .collect();
    assert_eq!(
        pages,
        [
            ("per_page=100&page=1".to_owned(), 200),
            ("per_page=100&page=2".to_owned(), 200)
        ]
    );
}

#[test]
fn a_tracking_issue_is_opened_once_even_when_github_loses_the_answer() {
    let github = github();
    // GitHub opens the issue, then answers 502: the check must not open a second one.
    github.fail_next(
        "POST",
        &format!("/repos/{BUILD_REPO}/issues"),
        Failure::AnswerLost(502),
    );
    let data = tempfile::tempdir().unwrap();
    let done = run_ok(&mut check(&github, data.path(), false));
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(said.contains("queued"), "{said}");
    let titled: Vec<_> = github
        .issues(BUILD_REPO)
        .into_iter()
        .filter(|i| i.title == TITLE)
        .collect();
    assert_eq!(titled.len(), 1, "{titled:?}");
    let posts = github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == format!("/repos/{BUILD_REPO}/issues"))
        .count();
    assert_eq!(
        posts, 1,
        "the lost answer was not followed by a second POST"
    );
}

#[test]
fn an_open_issue_with_the_title_counts_whatever_its_labels() {
    let github = github();
    // Opened by hand, without the tracking label.
    github.add_issue(BUILD_REPO, "noahwhite", TITLE, "by hand", &[]);
    let data = tempfile::tempdir().unwrap();
    let done = run_ok(&mut check(&github, data.path(), false));
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(said.contains("queued"), "{said}");
    let titled = github
        .issues(BUILD_REPO)
        .into_iter()
        .filter(|i| i.title == TITLE)
        .count();
    assert_eq!(titled, 1);
}

#[test]
fn check_without_app_credentials_says_what_is_missing() {
    let github = github();
    let data = tempfile::tempdir().unwrap();
    let stderr = run_fail(
        check(&github, data.path(), true)
            .env_remove("APP_ID")
            .env_remove("PRIVATE_KEY_PATH"),
    );
    assert!(stderr.contains("APP_ID"), "{stderr}");
}

#[test]
fn an_unchanged_release_list_is_read_with_a_conditional_request() {
    let github = github();
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = AppKey::from_pem(APP_ID, &fs::read_to_string(app_key_path()).unwrap()).unwrap();
    let outcomes = runtime.block_on(async {
        let database = Database::open(None, data.path()).await.unwrap();
        let api = GitHubApi::new(&github.url, Some(key), RetryPolicy::default()).unwrap();
        let watch = UpstreamWatch::new(api, database, Arc::new(Settings::default()));
        let first = watch.check(false).await.unwrap();
        let second = watch.check(false).await.unwrap();
        (first, second)
    });
    for outcome in [&outcomes.0, &outcomes.1] {
        assert!(
            matches!(&outcome.action, CheckAction::Queued { version, .. } if version.to_string() == "1.10.0"),
            "{outcome}"
        );
    }
    let lists = github.releases_list_requests();
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert_eq!(lists[0], (200, false));
    assert_eq!(
        lists[1],
        (304, true),
        "the second read is conditional and unchanged"
    );
    assert_eq!(github.issues(BUILD_REPO).len(), 1);
}

/// `serve` with the daily schedule against `github`.
fn serve_with_schedule(github: &FakeGitHub, data: &Path) -> Server {
    let config = data.join("settings.toml");
    fs::write(
        &config,
        "consumers = []\n[schedule]\ncheck_upstream = \"0 0 * * *\"\n",
    )
    .unwrap();
    let env = app_env(github, &config);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(data, &env)
}

#[test]
fn serve_checks_upstream_at_start_and_queues_the_newer_release() {
    let github = github();
    let data = tempfile::tempdir().unwrap();
    let server = serve_with_schedule(&github, data.path());
    let mut jobs = Vec::new();
    server.wait_for("the start-up check's job", Duration::from_secs(30), || {
        jobs = server.get("/api/jobs").json()["jobs"]
            .as_array()
            .unwrap()
            .clone();
        !jobs.is_empty()
    });
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["version"], "1.10.0");
    assert_eq!(jobs[0]["trigger"]["source"], "schedule");
    let page = server.get("/").body;
    assert!(page.contains("last upstream check"), "{page}");
    assert!(page.contains("newest upstream release: 1.10.0"), "{page}");
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("alloy_sysext_upstream_checks_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_failed_scheduled_check_is_shown_and_tried_again_within_minutes() {
    let github = github();
    // A wait longer than the client ever does: the check fails at once.
    github.fail_next(
        "GET",
        "/repos/grafana/alloy/releases",
        Failure::SecondaryRateLimit { retry_after: 7200 },
    );
    let data = tempfile::tempdir().unwrap();
    let server = serve_with_schedule(&github, data.path());
    server.wait_for("the failed check", Duration::from_secs(30), || {
        server
            .get("/metrics")
            .body
            .contains("alloy_sysext_upstream_checks_total{outcome=\"failed\"} 1")
    });
    let page = server.get("/").body;
    assert!(page.contains("last upstream check"), "{page}");
    assert!(page.contains(">failed<"), "{page}");
    // The next check is the retry, five minutes on, not tomorrow's scheduled one.
    let next = page
        .split("next upstream check")
        .nth(1)
        .and_then(|rest| rest.split("<td>").nth(1))
        .and_then(|cell| cell.get(..20))
        .unwrap_or_default()
        .to_owned();
    let next = chrono::DateTime::parse_from_rfc3339(&next)
        .unwrap_or_else(|e| panic!("{next:?}: {e}\n{page}"));
    let now = chrono::Utc::now();
    let in_minutes = (next.with_timezone(&chrono::Utc) - now).num_minutes();
    // Five minutes on, or the scheduled midnight if that comes first.
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let expected = (midnight - now).num_minutes().min(5);
    assert!(
        (expected - 2..=expected).contains(&in_minutes),
        "next check in {in_minutes} min, expected about {expected}"
    );
    assert!(
        server.get("/api/jobs").json()["jobs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
