//! Creating the App through the setup pages (GitHub's App manifest flow) against the fake
//! GitHub: the one-time token, the manifest posted to GitHub, the code exchanged, the
//! credentials kept (0600) and used at once, and expired or reused codes refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use alloy_sysext_automation::server::signature::sign;

use crate::common::fixture;
use crate::fake_github::FakeGitHub;
use crate::http::request;
use crate::serve_process::Server;

const NEW_APP_ID: u64 = 5151;
const PUBLIC_URL: &str = "https://alloy.example.test";
const GITHUB_URL: &str = "https://github.example.test";

fn start(github: &FakeGitHub, data: &std::path::Path) -> Server {
    start_with(github, data, &[])
}

/// [`start`] with more environment.
fn start_with(github: &FakeGitHub, data: &std::path::Path, extra: &[(&str, &str)]) -> Server {
    let config = data.join("settings.toml");
    fs::write(
        &config,
        "consumers = []\n[schedule]\ncheck_upstream = \"off\"\n",
    )
    .unwrap();
    let mut env = vec![
        ("PUBLIC_URL", PUBLIC_URL),
        ("GITHUB_URL", GITHUB_URL),
        ("GITHUB_API_URL", github.url.as_str()),
        ("CONFIG_FILE", config.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    Server::start(data, &env)
}

/// The one-time token the server logged at start.
fn setup_token(server: &Server) -> String {
    let mut token = String::new();
    server.wait_for("the setup link in the log", Duration::from_secs(10), || {
        let log = server.log();
        match log.rfind("/setup?token=") {
            Some(at) => {
                token = log[at + "/setup?token=".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .collect();
                token.len() == 32
            }
            None => false,
        }
    });
    token
}

fn github_with_codes() -> FakeGitHub {
    let github = FakeGitHub::start();
    let private = fs::read_to_string(fixture("app/test-app-key.pem")).unwrap();
    let public = fs::read_to_string(fixture("app/test-app-key.pub.pem")).unwrap();
    github.add_manifest_code(
        "good-code",
        NEW_APP_ID,
        "alloy-sysext-created",
        &private,
        &public,
    );
    github.add_manifest_code("old-code", NEW_APP_ID + 1, "too-late", &private, &public);
    github.expire_manifest_code("old-code");
    github
}

#[test]
fn the_app_is_created_from_the_manifest_and_used_without_a_restart() {
    let github = github_with_codes();
    let data = tempfile::tempdir().unwrap();
    let server = start(&github, data.path());
    let token = setup_token(&server);
    assert_eq!(server.get("/healthz").json()["can_act"], false);

    // The pages need the token.
    assert_eq!(server.get("/setup").status, 403);
    assert_eq!(
        server
            .get("/setup?token=0123456789abcdef0123456789abcdef")
            .status,
        403
    );
    let page = server.get(&format!("/setup?token={token}"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!(
            "action=\"{GITHUB_URL}/settings/apps/new?state={token}\""
        )),
        "{}",
        page.body
    );
    // The manifest posted to GitHub carries this server's URLs.
    assert!(
        page.body
            .contains("https://alloy.example.test/api/github/webhooks"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("https://alloy.example.test/setup/callback"),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"manifest\""));

    // An expired code stores nothing and leaves the setup open.
    let expired = server.get(&format!("/setup/callback?code=old-code&state={token}"));
    assert_eq!(expired.status, 400);
    assert!(expired.body.contains("expired"), "{}", expired.body);
    assert!(!data.path().join("github-app.json").exists());
    assert_eq!(server.get(&format!("/setup?token={token}")).status, 200);

    // A callback without the token is refused; with it, the code is exchanged.
    assert_eq!(
        server
            .get("/setup/callback?code=good-code&state=wrong")
            .status,
        403
    );
    let done = server.get(&format!("/setup/callback?code=good-code&state={token}"));
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body
            .contains("https://github.com/apps/alloy-sysext-created/installations/new"),
        "{}",
        done.body
    );
    let stored = data.path().join("github-app.json");
    let mode = fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let kept: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&stored).unwrap()).unwrap();
    assert_eq!(kept["id"], NEW_APP_ID);

    // The server acts as the App at once, and verifies deliveries with its secret.
    assert_eq!(server.get("/healthz").json()["can_act"], true);
    let secret = github.manifest_webhook_secret(NEW_APP_ID).unwrap();
    let body = br#"{"zen":"Design for failure.","hook_id":1}"#;
    let delivered = request(
        server.port,
        "POST",
        "/api/github/webhooks",
        &[
            ("X-GitHub-Delivery", "after-setup"),
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sign(&secret, body)),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .unwrap();
    assert_eq!(delivered.status, 202, "{}", delivered.body);
    server.wait_for("the ping to be handled", Duration::from_secs(30), || {
        server.get("/api/deliveries/after-setup").json()["state"] == "processed"
    });

    // The setup pages are gone, and the code cannot be used again.
    assert_eq!(server.get(&format!("/setup?token={token}")).status, 404);
    assert_eq!(
        server
            .get(&format!("/setup/callback?code=good-code&state={token}"))
            .status,
        404
    );

    // After a restart the stored App is used, and nothing secret is in the log.
    let data_dir = server.kill();
    let restarted = start(&github, &data_dir);
    assert_eq!(restarted.get("/healthz").json()["can_act"], true);
    assert_eq!(restarted.get("/setup").status, 404);
    let log = restarted.log();
    assert!(!log.contains(&secret), "the webhook secret was logged");
    assert!(!log.contains("BEGIN RSA PRIVATE KEY"), "the key was logged");
}

#[test]
fn a_reused_code_is_refused() {
    let github = github_with_codes();
    let first = tempfile::tempdir().unwrap();
    let server = start(&github, first.path());
    let token = setup_token(&server);
    assert_eq!(
        server
            .get(&format!("/setup/callback?code=good-code&state={token}"))
            .status,
        200
    );
    // Another server (or a replayed redirect) tries the same code.
    let second = tempfile::tempdir().unwrap();
    let other = start(&github, second.path());
    let other_token = setup_token(&other);
    let reused = other.get(&format!(
        "/setup/callback?code=good-code&state={other_token}"
    ));
    assert_eq!(reused.status, 400);
    assert!(reused.body.contains("used already"), "{}", reused.body);
    assert!(!second.path().join("github-app.json").exists());
}

#[test]
fn with_an_organization_the_app_is_created_there() {
    let github = github_with_codes();
    let data = tempfile::tempdir().unwrap();
    let server = start_with(
        &github,
        data.path(),
        &[("GITHUB_ORGANIZATION", "officina-pub")],
    );
    let token = setup_token(&server);
    let page = server.get(&format!("/setup?token={token}"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!(
            "action=\"{GITHUB_URL}/organizations/officina-pub/settings/apps/new?state={token}\""
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("officina-pub"), "{}", page.body);
}
