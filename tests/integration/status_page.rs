//! The status page, `/readyz` and `/metrics` of a real `serve` acting as the App against
//! the fake GitHub and publishing to moto's S3: after one build that succeeds and one that
//! fails, `GET /` is rendered in headless Chromium and read as a person would read it, and
//! a screenshot is kept in `target/test-artifacts/status-page.png`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::fake_github::FakeGitHub;
use crate::http::request_with_headers;
use crate::s3_server::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};
use crate::serve_process::{SECRET, Server};
use crate::test_app::{add_upstream_alloy, app_env, app_key_path, install_app};

const INSTALLATION: u64 = 91;
const ACCOUNT: &str = "noahwhite";
const BUILD_REPO: &str = "noahwhite/alloy-sysext-build";
const ISSUE: u64 = 31;

fn github_with_app() -> FakeGitHub {
    let github = FakeGitHub::start();
    install_app(&github, &[(INSTALLATION, ACCOUNT)]);
    github.add_repo(BUILD_REPO, "main");
    add_upstream_alloy(&github, "1.17.1");
    github.set_permission(BUILD_REPO, "writer", "write");
    github
}

fn comment(comment_id: u64, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "created",
        "issue": {"number": ISSUE, "title": "Release tracking"},
        "comment": {"id": comment_id, "body": body, "user": {"login": "writer", "type": "User"}},
        "repository": {"full_name": BUILD_REPO, "name": "alloy-sysext-build", "owner": {"login": ACCOUNT}},
        "sender": {"login": "writer", "type": "User"},
        "installation": {"id": INSTALLATION},
    }))
    .unwrap()
}

/// Waits until the job of `version` is in `state`, and returns it; a job that ends in the
/// other final state fails the test at once, with the job.
pub(crate) fn wait_for_job(server: &Server, version: &str, state: &str) -> Value {
    let mut found = Value::Null;
    server.wait_for(
        &format!("the {version} job to be {state}"),
        Duration::from_secs(120),
        || {
            let jobs = server.get("/api/jobs").json()["jobs"].clone();
            found = jobs
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["version"] == version)
                .cloned()
                .unwrap_or(Value::Null);
            let ended = found["state"] == "succeeded" || found["state"] == "failed";
            assert!(
                !ended || found["state"] == state,
                "the {version} job ended otherwise: {found}"
            );
            found["state"] == state
        },
    );
    found
}

/// `chromium` run headless on `url` with `args`; its stdout.
fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs (Debian's chromium package; scripts/test installs it)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The text a person sees in `dom`: the tags dropped and entities decoded.
fn visible_text(dom: &str) -> String {
    let body = dom.split("<body").nth(1).unwrap_or(dom);
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `name{labels} value` lines of the metrics text, as (series, value).
fn samples(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_status_page_shows_jobs_images_deliveries_and_installations_and_no_secret() {
    let github = github_with_app();
    let s3 = S3Server::start();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("settings.toml");
    fs::write(
        &config,
        "consumers = []\n[schedule]\ncheck_upstream = \"off\"\n",
    )
    .unwrap();
    let mut env = app_env(&github, &config);
    env.extend(s3.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(data.path(), &env);

    // GitHub reports the installation, then a user with write permission asks for a build
    // that works and one of a version upstream does not have.
    let installation = serde_json::to_vec(&json!({
        "action": "created",
        "installation": {"id": INSTALLATION, "account": {"login": ACCOUNT, "type": "User"}},
        "repositories": [{"full_name": BUILD_REPO}],
        "sender": {"login": ACCOUNT, "type": "User"},
    }))
    .unwrap();
    assert_eq!(
        server
            .deliver("d-status-installation", "installation", &installation)
            .status,
        202
    );
    assert_eq!(
        server
            .deliver(
                "d-status-build",
                "issue_comment",
                &comment(701, "/build 1.17.1")
            )
            .status,
        202
    );
    let succeeded = wait_for_job(&server, "1.17.1", "succeeded");
    assert_eq!(
        server
            .deliver(
                "d-status-missing",
                "issue_comment",
                &comment(702, "/build 1.99.0")
            )
            .status,
        202
    );
    let failed = wait_for_job(&server, "1.99.0", "failed");
    let sha256 = succeeded["result"]["images"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sha256.len(), 64);
    let reason = failed["error"].as_str().unwrap().to_owned();
    assert!(!reason.is_empty());

    // What a person sees, rendered by a real browser.
    let url = format!("http://127.0.0.1:{}/", server.port);
    let dom = chromium(&url, &["--dump-dom"]);
    let text = visible_text(&dom);
    for expected in [
        "Published",
        "amd64 1.17.1 alloy-1.17.1-amd64.raw",
        sha256.as_str(),
        "#1 1.17.1 succeeded",
        "#2 1.99.0 failed",
        "failed at download",
        reason.as_str(),
        "comment by @writer",
        "d-status-build",
        "d-status-missing",
        "d-status-installation installation created",
        ACCOUNT,
        BUILD_REPO,
        "next upstream check off",
        "acting as the App yes App id 4242",
        "webhook secrets 1 configured",
        "s3 bucket sysext-images",
    ] {
        assert!(
            text.contains(expected),
            "the page does not show {expected:?}:\n{text}"
        );
    }
    // The failed job's step: download marked failed, the rest not run.
    assert!(
        dom.contains(r#"<span class="badge failed" title="failed">download</span>"#),
        "{dom}"
    );
    // The image link goes to the public URL.
    assert!(dom.contains("/alloy-1.17.1-amd64.raw\""), "{dom}");

    // No secret anywhere in the page.
    let key_pem = fs::read_to_string(app_key_path()).unwrap();
    let key_lines: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .collect();
    assert!(key_lines.len() > 5);
    let signing_key = fs::read_to_string(ed25519_keys().secret()).unwrap();
    let page = server.get("/").body;
    for (what, secret) in [
        ("the webhook secret", SECRET),
        ("the storage access key id", ACCESS_KEY_ID),
        ("the storage secret key", SECRET_ACCESS_KEY),
        ("a PEM marker", "PRIVATE KEY"),
    ] {
        assert!(!page.contains(secret), "the page shows {what}");
        assert!(!dom.contains(secret), "the page shows {what}");
    }
    for line in key_lines {
        assert!(!page.contains(line), "the page shows the App key");
    }
    for line in signing_key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
    {
        assert!(!page.contains(line), "the page shows the signing key");
    }

    // A screenshot, kept for people to look at.
    let screenshot = artifact_dir().join("status-page.png");
    let _ = fs::remove_file(&screenshot);
    chromium(
        &url,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 20_000, "the screenshot looks empty");

    // Ready: the database answers and the App's credentials are there.
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["status"], "ready");

    // The metrics, read line by line.
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    let samples = samples(&metrics.body);
    let value = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
    };
    assert_eq!(
        value(r#"alloy_sysext_jobs_total{outcome="succeeded"}"#),
        1.0
    );
    assert_eq!(value(r#"alloy_sysext_jobs_total{outcome="failed"}"#), 1.0);
    assert!(
        value(r#"alloy_sysext_github_requests_total{method="GET",status="2xx"}"#) > 0.0,
        "{samples:?}"
    );
    assert!(value(r#"alloy_sysext_github_requests_total{method="POST",status="2xx"}"#) > 0.0);
    assert_eq!(
        value(r#"alloy_sysext_webhook_deliveries_total{event="issue_comment",outcome="stored"}"#),
        2.0
    );
    assert_eq!(
        value(r#"alloy_sysext_webhook_deliveries_total{event="installation",outcome="processed"}"#),
        1.0
    );
    assert_eq!(
        value(r#"alloy_sysext_job_step_duration_seconds_count{step="build",outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        value(r#"alloy_sysext_job_step_duration_seconds_count{step="download",outcome="error"}"#),
        1.0
    );
    let built = value("alloy_sysext_built_bytes_total");
    assert!(built > 0.0);
    // The image and its .sha256 and .asc, the compatibility copy, and the manifest.
    assert!(value("alloy_sysext_uploaded_bytes_total") > built);
}

#[test]
fn readyz_is_503_without_app_credentials_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    let body = ready.json();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["failed"], json!(["app_credentials"]));
    assert_eq!(body["checks"]["database"], "ok");
    assert!(
        body["checks"]["app_credentials"]
            .as_str()
            .unwrap()
            .contains("no App credentials"),
        "{body}"
    );
    // Alive all the same.
    assert_eq!(server.get("/healthz").status, 200);
    // The page still renders, and says the server cannot act.
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("no App credentials"));
}

#[test]
fn with_a_status_token_the_status_answers_only_to_it_and_the_rest_stays_open() {
    const TOKEN: &str = "status-token-8sKq2mWz";
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[("WEBHOOK_SECRET", SECRET), ("STATUS_TOKEN", TOKEN)],
    );
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("admin:{TOKEN}")
        )
    );
    let bearer = format!("Bearer {TOKEN}");
    let get = |path: &str, authorization: Option<&str>| {
        let headers: Vec<(&str, &str)> = authorization
            .map(|value| vec![("Authorization", value)])
            .unwrap_or_default();
        request_with_headers(server.port, "GET", path, &headers, b"").unwrap()
    };
    assert_eq!(
        server.deliver("d-token", "ping", br#"{"zen":"x"}"#).status,
        202
    );

    for path in [
        "/",
        "/api/jobs",
        "/api/jobs/1",
        "/api/deliveries/d-token",
        "/metrics",
    ] {
        let refused = get(path, None);
        assert_eq!(refused.status, 401, "{path}: {}", refused.body);
        assert!(
            refused
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Basic realm=")),
            "{path}"
        );
        assert!(!refused.body.contains(TOKEN));
        assert_eq!(get(path, Some("Bearer wrong-token")).status, 401, "{path}");
    }
    assert_eq!(get("/", Some(&basic)).status, 200);
    assert_eq!(get("/metrics", Some(&bearer)).status, 200);
    let delivery = get("/api/deliveries/d-token", Some(&bearer));
    assert_eq!(delivery.status, 200);
    assert_eq!(delivery.json()["event"], "ping");

    // Health checks and published images need no token; unknown images are still 404.
    assert_eq!(get("/healthz", None).status, 200);
    // (Not ready, as this server has no App credentials, but not refused.)
    assert_eq!(get("/readyz", None).status, 503);
    assert_eq!(get("/images/SHA256SUMS", None).status, 404);
    assert!(!server.log().contains(TOKEN));
}

#[test]
fn a_public_server_without_a_status_token_keeps_its_status_closed_unless_made_public() {
    let data = tempfile::tempdir().unwrap();
    let public = ("PUBLIC_URL", "https://alloy.example.test");
    let server = Server::start(data.path(), &[("WEBHOOK_SECRET", SECRET), public]);
    assert_eq!(
        server.deliver("d-closed", "ping", br#"{"zen":"x"}"#).status,
        202
    );
    let status_paths = [
        "/",
        "/api/jobs",
        "/api/jobs/1",
        "/api/deliveries/d-closed",
        "/metrics",
    ];
    for path in status_paths {
        let refused = server.get(path);
        assert_eq!(refused.status, 401, "{path}: {}", refused.body);
        assert!(
            refused.body.contains("STATUS_TOKEN") && refused.body.contains("STATUS_PUBLIC"),
            "{path}: {}",
            refused.body
        );
        assert!(!refused.body.contains("ping"), "{path}: {}", refused.body);
    }
    // The start-up log says so, and how to open them.
    assert!(
        server.log().contains("STATUS_PUBLIC=true to open them"),
        "{}",
        server.log()
    );
    // Webhooks (the delivery above), health checks, setup and images are unchanged.
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 503);
    assert_eq!(server.get("/setup").status, 403);
    assert_eq!(server.get("/images/SHA256SUMS").status, 404);

    // STATUS_PUBLIC=true opens them on purpose, and the log warns.
    let data_dir = server.kill();
    let opened = Server::start(
        &data_dir,
        &[
            ("WEBHOOK_SECRET", SECRET),
            public,
            ("STATUS_PUBLIC", "true"),
        ],
    );
    for path in status_paths.into_iter().filter(|p| *p != "/api/jobs/1") {
        assert_eq!(opened.get(path).status, 200, "{path}");
    }
    assert_eq!(
        opened.get("/api/deliveries/d-closed").json()["event"],
        "ping"
    );
    assert!(opened.log().contains("STATUS_PUBLIC=true: the status page"));
}
