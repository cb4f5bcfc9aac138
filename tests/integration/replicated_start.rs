//! `serve` on a real PostgreSQL `DATABASE_URL`: a replica starts only when what every
//! replica must share comes from the environment, names every problem when it does not,
//! and its `/setup` says it is for single-machine deployments.
//!
//! SQLite keeps its behaviour: a server with the local directory and a key it makes in
//! `DATA_DIR` starts (`Server::with_secret`, used throughout), and its setup pages are there
//! until the App is configured, then 404 (`app_setup.rs`).

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{cli, ed25519_keys};
use crate::fake_github::FakeGitHub;
use crate::http::request_with_headers;
use crate::postgres_server;
use crate::s3_server::S3Server;
use crate::serve_process::{SECRET, Server, free_port};
use crate::test_app::{APP_ID, app_key_path, install_app};

/// Runs `serve` with `env` until it exits (it must, within a minute); its status and
/// standard error.
pub(crate) fn serve_until_exit(
    data_dir: &Path,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    fs::create_dir_all(data_dir).unwrap();
    let stderr_path = data_dir.join("serve.stderr");
    let mut command = cli();
    command
        .arg("serve")
        .env("PORT", free_port().to_string())
        .env("DATA_DIR", data_dir)
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr_path).unwrap());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("serve starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve did not exit; its standard error:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, fs::read_to_string(&stderr_path).unwrap())
}

#[test]
fn a_replica_with_a_local_directory_and_a_key_of_its_own_does_not_start() {
    let database_url = postgres_server::shared().new_database();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let key = app_key_path();
    let (status, stderr) = serve_until_exit(
        &data_dir,
        &[
            ("DATABASE_URL", &database_url),
            ("APP_ID", &APP_ID.to_string()),
            ("PRIVATE_KEY_PATH", key.to_str().unwrap()),
            ("WEBHOOK_SECRET", SECRET),
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "error: DATABASE_URL is a PostgreSQL database, which replicas share, so each replica must take from the environment what is the same on all of them; this one does not:\n  \
         - the signing key: neither GPG_PRIVATE_KEY nor SIGNING_KEY_PATH is set, so this replica would sign with a key of its own in DATA_DIR; set one of them, the same on every replica\n  \
         - storage: R2_ENDPOINT, R2_BUCKET, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY are not set, so images would go to DATA_DIR/images, which no other replica serves; set them to a bucket every replica reaches\n\
         (README, \"Scale out\")\n"
    );
    // Refused before making anything a replica would keep to itself.
    let mut left: Vec<String> = fs::read_dir(&data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["serve.stderr"]);
}

#[test]
fn a_replica_with_a_bucket_and_everything_from_the_environment_starts_without_setup() {
    let database_url = postgres_server::shared().new_database();
    let s3 = S3Server::start();
    let github = FakeGitHub::start();
    install_app(&github, &[]);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fs::create_dir_all(&data_dir).unwrap();
    let settings = dir.path().join("settings.toml");
    fs::write(
        &settings,
        "consumers = []\n[schedule]\ncheck_upstream = \"off\"\n",
    )
    .unwrap();
    let key = app_key_path();
    let gpg_private_key = ed25519_keys().base64();
    let app_id = APP_ID.to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &database_url),
        ("GPG_PRIVATE_KEY", &gpg_private_key),
        ("APP_ID", &app_id),
        ("PRIVATE_KEY_PATH", key.to_str().unwrap()),
        ("WEBHOOK_SECRET", SECRET),
        ("GITHUB_API_URL", &github.url),
        ("CONFIG_FILE", settings.to_str().unwrap()),
        ("PUBLIC_URL", "https://alloy.example.test"),
        ("STATUS_PUBLIC", "true"),
    ];
    let s3_env = s3.env();
    env.extend(s3_env.iter().map(|(name, value)| (*name, value.as_str())));
    let server = Server::start(&data_dir, &env);

    assert_eq!(
        server.get("/healthz").json(),
        serde_json::json!({
            "status": "ok",
            "can_act": true,
            "cannot_act_because": null,
            "webhook_secret_configured": true,
        })
    );
    // Ready by the check fly.replicated.toml gives Fly's proxy.
    let fly: toml::Table = toml::from_str(
        &fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fly.replicated.toml"))
            .unwrap(),
    )
    .unwrap();
    let check = fly["http_service"]["checks"][0]["path"].as_str().unwrap();
    let ready = server.get(check);
    assert_eq!(ready.status, 200, "{check}: {}", ready.body);
    // It acts: a delivery is stored in PostgreSQL and handled.
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    assert_eq!(server.deliver("replica-ping", "ping", body).status, 202);
    server.wait_for("the ping to be handled", Duration::from_secs(30), || {
        server.get("/api/deliveries/replica-ping").json()["state"] == "processed"
    });

    for path in [
        "/setup",
        "/setup?token=0123456789abcdef0123456789abcdef",
        "/setup/callback?code=some-code&state=some-state",
    ] {
        let page = request_with_headers(server.port, "GET", path, &[], b"").unwrap();
        assert_eq!(page.status, 404, "{path}");
        assert_eq!(page.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let shown = page
            .body
            .split_once("<body>")
            .and_then(|(_, rest)| rest.split_once("</body>"))
            .map(|(shown, _)| shown)
            .unwrap_or_else(|| panic!("{path}: no body in {}", page.body));
        assert_eq!(
            shown,
            "<h1>The App setup is for single-machine deployments</h1>\
             <p>This server keeps its state in PostgreSQL, which replicas share, so it takes the App's id, private key and webhook secret from the environment (<code>APP_ID</code>, <code>PRIVATE_KEY</code> or <code>PRIVATE_KEY_PATH</code>, <code>WEBHOOK_SECRET</code>), the same on every replica: the setup pages, which keep them in one machine's data directory, are for single-machine deployments.</p>\
             <p>To create a new App, run the server once on one machine with its default SQLite database and create the App at its <code>/setup</code>, then move the credentials it kept in <code>DATA_DIR/github-app.json</code> into those variables on every replica. The README's section <b>Scale out</b> shows how.</p>",
            "{path}"
        );
    }

    // The configured key signs; none was made in DATA_DIR, and nothing is published there.
    assert!(!data_dir.join("signing-key.asc").exists());
    assert!(!data_dir.join("images").exists());
    let log = server.log();
    let signing: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["fields"]["message"] == "signing with the configured key")
        .collect();
    assert_eq!(signing.len(), 1, "{log}");
    assert_eq!(signing[0]["fields"]["source"], "$GPG_PRIVATE_KEY", "{log}");
}
