//! Creating the App through the setup pages (GitHub's App manifest flow) against the fake
//! GitHub: the one-time token, the manifest posted to GitHub, the code exchanged, the
//! credentials kept (0600) and used at once, and expired or reused codes refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use alloy_sysext_automation::server::signature::sign;

use crate::common::fixture;
use crate::fake_github::{Failure, FakeGitHub};
use crate::http::{request, request_with_headers};
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
        // The test reads deliveries' states; a public server's status is closed otherwise.
        ("STATUS_PUBLIC", "true"),
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

/// Starts a server with no App yet, and waits for the one-time setup token it logs.
fn start_setup(github: &FakeGitHub, data: &std::path::Path) -> (Server, String) {
    let server = start(github, data);
    let token = setup_token(&server);
    (server, token)
}

/// The App credentials the server stored in `data` (`github-app.json`).
fn stored_app(data: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(data.join("github-app.json")).unwrap()).unwrap()
}

/// GitHub's page for creating an App on a user account, where the setup form goes
/// without an organization.
fn user_app_page() -> String {
    format!("{GITHUB_URL}/settings/apps/new")
}

/// The OAuth `state` the setup page put in its form's action, after checking that the form
/// goes to `action` (GitHub's App creation page) and does not carry the setup token.
fn state_from_page(server: &Server, token: &str, action: &str) -> String {
    let page = server.get(&format!("/setup?token={token}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let prefix = format!("action=\"{action}?state=");
    let at = page
        .body
        .find(&prefix)
        .unwrap_or_else(|| panic!("no form to {action} in {}", page.body));
    let state: String = page.body[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(state.len(), 32, "{}", page.body);
    assert_ne!(state, token, "the state must not be the setup token");
    assert!(!page.body.contains(token), "the page shows the setup token");
    state
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
    let (server, token) = start_setup(&github, data.path());
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
    let action = user_app_page();
    let state = state_from_page(&server, &token, &action);
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

    // An expired code stores nothing and leaves the setup open; its state is used up.
    let expired = server.get(&format!("/setup/callback?code=old-code&state={state}"));
    assert_eq!(expired.status, 400);
    assert!(expired.body.contains("expired"), "{}", expired.body);
    assert!(!data.path().join("github-app.json").exists());
    assert_eq!(server.get(&format!("/setup?token={token}")).status, 200);
    let reused_state = server.get(&format!("/setup/callback?code=good-code&state={state}"));
    assert_eq!(reused_state.status, 403, "{}", reused_state.body);

    // A callback without a state the setup page made is refused, the setup token included;
    // with one, the code is exchanged.
    for wrong in ["wrong", "", token.as_str()] {
        let refused = server.get(&format!("/setup/callback?code=good-code&state={wrong}"));
        assert_eq!(refused.status, 403, "state {wrong:?}: {}", refused.body);
    }
    assert_eq!(server.get("/setup/callback?code=good-code").status, 403);
    let state = state_from_page(&server, &token, &action);
    let done = server.get(&format!("/setup/callback?code=good-code&state={state}"));
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
    let kept = stored_app(data.path());
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
            .get(&format!("/setup/callback?code=good-code&state={state}"))
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
    let (server, token) = start_setup(&github, first.path());
    let action = user_app_page();
    let state = state_from_page(&server, &token, &action);
    assert_eq!(
        server
            .get(&format!("/setup/callback?code=good-code&state={state}"))
            .status,
        200
    );
    // Another server (or a replayed redirect) tries the same code.
    let second = tempfile::tempdir().unwrap();
    let (other, other_token) = start_setup(&github, second.path());
    let other_state = state_from_page(&other, &other_token, &action);
    let reused = other.get(&format!(
        "/setup/callback?code=good-code&state={other_state}"
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
    state_from_page(
        &server,
        &token,
        &format!("{GITHUB_URL}/organizations/officina-pub/settings/apps/new"),
    );
    let page = server.get(&format!("/setup?token={token}"));
    assert!(page.body.contains("officina-pub"), "{}", page.body);
}

#[test]
fn two_racing_callbacks_create_one_app() {
    let github = github_with_codes();
    let private = fs::read_to_string(fixture("app/test-app-key.pem")).unwrap();
    let public = fs::read_to_string(fixture("app/test-app-key.pub.pem")).unwrap();
    github.add_manifest_code(
        "other-code",
        NEW_APP_ID + 2,
        "second-app",
        &private,
        &public,
    );
    let data = tempfile::tempdir().unwrap();
    let (server, token) = start_setup(&github, data.path());
    let action = user_app_page();
    // Two setup page views (two tabs), each sent through GitHub.
    let first_state = state_from_page(&server, &token, &action);
    let second_state = state_from_page(&server, &token, &action);
    // GitHub is slow to exchange the first code, so the second callback arrives meanwhile.
    github.fail_next(
        "POST",
        "/app-manifests/",
        Failure::Delay(Duration::from_secs(3)),
    );
    let port = server.port;
    let first = std::thread::spawn(move || {
        request(
            port,
            "GET",
            &format!("/setup/callback?code=good-code&state={first_state}"),
            &[],
            b"",
        )
        .unwrap()
    });
    let conversions = || {
        github
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/app-manifests/"))
            .count()
    };
    server.wait_for("the first code's exchange", Duration::from_secs(10), || {
        conversions() == 1
    });
    let second = server.get(&format!(
        "/setup/callback?code=other-code&state={second_state}"
    ));
    assert_eq!(second.status, 409, "{}", second.body);
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.body);

    // One App: one exchange, the first one's credentials kept, the setup gone.
    assert_eq!(conversions(), 1);
    assert!(github.manifest_webhook_secret(NEW_APP_ID + 2).is_none());
    let kept = stored_app(data.path());
    assert_eq!(kept["id"], NEW_APP_ID);
    assert_eq!(server.get(&format!("/setup?token={token}")).status, 404);
    assert_eq!(
        server.log().matches("the GitHub App was created").count(),
        1,
        "{}",
        server.log()
    );
}

#[test]
fn a_lost_answer_is_not_asked_again_and_shows_no_code() {
    let github = github_with_codes();
    let data = tempfile::tempdir().unwrap();
    let (server, token) = start_setup(&github, data.path());
    let action = user_app_page();
    let page = request_with_headers(
        server.port,
        "GET",
        &format!("/setup?token={token}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    // GitHub makes the App, but its answer is lost.
    github.fail_next("POST", "/app-manifests/", Failure::AnswerLost(502));
    let state = state_from_page(&server, &token, &action);
    let failed = server.get(&format!("/setup/callback?code=good-code&state={state}"));
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert!(
        failed.body.contains("GitHub answered 502"),
        "{}",
        failed.body
    );
    assert!(
        failed.body.contains("GitHub may have created the App"),
        "{}",
        failed.body
    );
    // Asked once: a second exchange of a used code could only be refused.
    let conversions = github
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/app-manifests/"))
        .count();
    assert_eq!(conversions, 1);
    assert!(!data.path().join("github-app.json").exists());
    // The code is a secret for its hour: not in the page, not in the log.
    assert!(!failed.body.contains("good-code"), "{}", failed.body);
    assert!(!server.log().contains("good-code"), "{}", server.log());
    // The setup is still open.
    assert_eq!(server.get(&format!("/setup?token={token}")).status, 200);
}

#[test]
fn an_app_stored_but_not_usable_ends_the_setup_and_says_to_restart() {
    let github = github_with_codes();
    let data = tempfile::tempdir().unwrap();
    let missing_key = data.path().join("no-such-signing-key.asc");
    let server = start_with(
        &github,
        data.path(),
        &[("SIGNING_KEY_PATH", missing_key.to_str().unwrap())],
    );
    let token = setup_token(&server);
    let action = user_app_page();
    let first = state_from_page(&server, &token, &action);
    let second = state_from_page(&server, &token, &action);
    let stored = server.get(&format!("/setup/callback?code=good-code&state={first}"));
    assert_eq!(stored.status, 500, "{}", stored.body);
    assert!(stored.body.contains("restart"), "{}", stored.body);
    assert!(
        !stored.body.contains("Nothing was stored"),
        "{}",
        stored.body
    );
    let kept = stored_app(data.path());
    assert_eq!(kept["id"], NEW_APP_ID);
    // The setup is over: no second App can replace the stored one.
    assert_eq!(server.get(&format!("/setup?token={token}")).status, 404);
    assert_eq!(
        server
            .get(&format!("/setup/callback?code=old-code&state={second}"))
            .status,
        404
    );
}
