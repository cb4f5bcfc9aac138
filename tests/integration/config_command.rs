//! `config` shows what `serve` would run with and never a secret; the Dockerfile and
//! fly.toml (and fly.replicated.toml) agree with the crate and with each other.

use std::path::Path;
use std::process::Command;

use crate::common::{cli, ed25519_keys, fixture, run_fail, run_ok};

const WEBHOOK_SECRET: &str = "whsec-Zq8rT0pSecretValue";
const R2_ACCESS_KEY_ID: &str = "AKIDconfigtest0123456789";
const R2_SECRET_ACCESS_KEY: &str = "r2SecretAccessKey-DoNotShow-9f8e7d";
const STATUS_TOKEN: &str = "status-token-Kq7Wn2DoNotShow";

/// `config` with only `env` set of what the binary reads.
fn config_command(env: &[(&str, &str)]) -> Command {
    let mut command = cli();
    command.arg("config");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

#[test]
fn config_shows_the_settings_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let pem = std::fs::read_to_string(fixture("app/test-app-key.pem")).unwrap();
    let gpg_b64 = ed25519_keys().base64();
    let gpg_armored = std::fs::read_to_string(ed25519_keys().secret()).unwrap();
    let settings = dir.path().join("settings.toml");
    std::fs::write(
        &settings,
        r#"
[build_repo]
repo = "example-org/sysext-build"

[[consumers]]
repo = "example-org/fleet"
path = "hosts/node.bu"
base = "develop"
assignees = ["octocat"]
"#,
    )
    .unwrap();
    let data_dir = dir.path().join("state");
    let output = run_ok(&mut config_command(&[
        ("PORT", "4123"),
        ("RETENTION_DAYS", "7"),
        ("DATA_DIR", data_dir.to_str().unwrap()),
        ("APP_ID", "987654"),
        ("PRIVATE_KEY", &pem),
        (
            "WEBHOOK_SECRET",
            &format!("{WEBHOOK_SECRET},second-secret-x"),
        ),
        ("R2_ENDPOINT", "https://account123.r2.cloudflarestorage.com"),
        ("R2_BUCKET", "sysext-images-bucket"),
        ("R2_ACCESS_KEY_ID", R2_ACCESS_KEY_ID),
        ("R2_SECRET_ACCESS_KEY", R2_SECRET_ACCESS_KEY),
        ("GPG_PRIVATE_KEY", &gpg_b64),
        ("STATUS_TOKEN", STATUS_TOKEN),
        ("TRUSTED_PROXY_HEADER", "Fly-Client-IP"),
        ("CONFIG_FILE", settings.to_str().unwrap()),
    ]));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let both = format!("{stdout}\n{stderr}");

    // No secret, whole or in part.
    let pem_body: Vec<&str> = pem
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 20)
        .collect();
    assert!(!pem_body.is_empty());
    let armored_body: Vec<&str> = gpg_armored
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 20)
        .collect();
    let mut secrets = vec![
        WEBHOOK_SECRET,
        "second-secret-x",
        R2_ACCESS_KEY_ID,
        R2_SECRET_ACCESS_KEY,
        STATUS_TOKEN,
        gpg_b64.as_str(),
        &gpg_b64[40..80],
    ];
    secrets.extend(pem_body);
    secrets.extend(armored_body);
    for secret in secrets {
        assert!(
            !both.contains(secret),
            "config shows a secret ({secret:?}):\n{both}"
        );
    }

    // Everything else is there.
    for shown in [
        "PORT = 4123",
        "RETENTION_DAYS = 7",
        "APP_ID = 987654",
        "PRIVATE_KEY = \"set\"",
        "WEBHOOK_SECRET = \"set\"",
        "STATUS_TOKEN = \"set\"",
        "access = \"token\"",
        "TRUSTED_PROXY_HEADER = \"fly-client-ip\"",
        "secrets = 2",
        "sysext-images-bucket",
        "https://account123.r2.cloudflarestorage.com",
        "R2_SECRET_ACCESS_KEY = \"set\"",
        // A bucket without publish.base_url: the production bucket's domain.
        "public_base_url = \"https://ghost-sysext-images.separationofconcerns.dev/\"  # where hosts download the published files\npublic_base_url_from = \"the built-in address of the production bucket: storage is a bucket and publish.base_url is not set\"\n",
        "source = \"GPG_PRIVATE_KEY\"",
        &format!("fingerprint = \"{}\"", gpg_fingerprint(&gpg_armored)),
        "repo = \"example-org/sysext-build\"",
        "repo = \"example-org/fleet\"",
        "path = \"hosts/node.bu\"",
        "assignees = [\"octocat\"]",
        // Defaults for what the file leaves out.
        "repo = \"grafana/alloy\"",
        "compression = \"xz\"",
        "compression_level = 6",
    ] {
        assert!(stdout.contains(shown), "missing {shown:?} in:\n{stdout}");
    }
    // Only the consumers of the file, not the built-in ones.
    assert!(!stdout.contains("noahwhite/ghost-stack"), "{stdout}");
    // Nothing was created: config only reads.
    assert!(!data_dir.exists());
}

/// The fingerprint `config` should show, from the key itself.
fn gpg_fingerprint(armored: &str) -> String {
    alloy_sysext_automation::signing::SigningKey::from_armored(armored)
        .unwrap()
        .fingerprint()
}

#[test]
fn config_with_nothing_set_shows_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_ok(config_command(&[]).current_dir(dir.path()));
    let stdout = String::from_utf8(output.stdout).unwrap();
    for shown in [
        "PORT = 3000",
        "DATA_DIR = \"./data\"",
        "PRIVATE_KEY = \"not set\"",
        "can_act = false",
        "WEBHOOK_SECRET = \"not set\"",
        "storage = \"directory ./data/images\"",
        "repo = \"noahwhite/ghost-stack\"",
        "check_upstream = \"0 0 * * *\"",
        "access = \"open\"",
        "TRUSTED_PROXY_HEADER = \"\"",
        "RETENTION_DAYS = 30",
        // Local storage without PUBLIC_URL: no public address for the images.
        "public_base_url = \"\"  # none: hosts reach the images once PUBLIC_URL (or publish.base_url) is set\npublic_base_url_from = \"none: storage is the local directory and neither PUBLIC_URL nor publish.base_url is set\"\n",
    ] {
        assert!(stdout.contains(shown), "missing {shown:?} in:\n{stdout}");
    }
    // A public server's status is closed until a token or STATUS_PUBLIC says otherwise.
    let public = run_ok(
        config_command(&[("PUBLIC_URL", "https://alloy.example.test")]).current_dir(dir.path()),
    );
    let stdout = String::from_utf8(public.stdout).unwrap();
    assert!(stdout.contains("access = \"closed\""), "{stdout}");
    // With PUBLIC_URL, the local directory is published at the server's own /images/.
    assert!(
        stdout.contains(
            "public_base_url = \"https://alloy.example.test/images/\"  # where hosts download the published files\npublic_base_url_from = \"PUBLIC_URL + /images/: storage is the local directory this server serves\"\n"
        ),
        "{stdout}"
    );
}

#[test]
fn config_shows_the_app_made_at_setup_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let pem = std::fs::read_to_string(fixture("app/test-app-key.pem")).unwrap();
    let stored = serde_json::json!({
        "id": 424242,
        "slug": "alloy-sysext-test",
        "html_url": "https://github.com/apps/alloy-sysext-test",
        "pem": pem,
        "webhook_secret": "stored-webhook-secret-abc123",
        "client_id": "Iv1.clientid",
        "client_secret": "stored-client-secret-def456",
    });
    std::fs::write(
        dir.path().join("github-app.json"),
        serde_json::to_vec(&stored).unwrap(),
    )
    .unwrap();
    let output = run_ok(&mut config_command(&[(
        "DATA_DIR",
        dir.path().to_str().unwrap(),
    )]));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let both = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for secret in [
        "stored-webhook-secret-abc123",
        "stored-client-secret-def456",
    ]
    .into_iter()
    .chain(
        pem.lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20),
    ) {
        assert!(!both.contains(secret), "shows {secret:?}:\n{both}");
    }
    for shown in [
        "APP_ID = 424242",
        "slug = \"alloy-sysext-test\"",
        "can_act = true",
        "WEBHOOK_SECRET = \"not set\"",
        "secrets = 1",
    ] {
        assert!(stdout.contains(shown), "missing {shown:?} in:\n{stdout}");
    }
}

#[test]
fn a_bad_config_file_fails_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.toml");
    std::fs::write(
        &settings,
        "[image]\narches = [\"amd64\"]\ncompresion = \"xz\"\n",
    )
    .unwrap();
    let stderr = run_fail(&mut config_command(&[(
        "CONFIG_FILE",
        settings.to_str().unwrap(),
    )]));
    assert!(stderr.contains("compresion"), "{stderr}");
    assert!(stderr.contains("CONFIG_FILE"), "{stderr}");

    std::fs::write(&settings, "[build_repo]\nrepo = \"no-slash\"\n").unwrap();
    let stderr = run_fail(&mut config_command(&[(
        "CONFIG_FILE",
        settings.to_str().unwrap(),
    )]));
    assert!(stderr.contains("build_repo.repo"), "{stderr}");
}

#[test]
fn config_refuses_a_partial_r2_set_without_showing_the_secret() {
    let stderr = run_fail(&mut config_command(&[
        ("R2_BUCKET", "b"),
        ("R2_SECRET_ACCESS_KEY", R2_SECRET_ACCESS_KEY),
    ]));
    assert!(stderr.contains("R2_ENDPOINT"), "{stderr}");
    assert!(!stderr.contains(R2_SECRET_ACCESS_KEY), "{stderr}");
}

#[test]
fn config_on_postgres_names_what_replicas_must_share_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("state");
    // Port 1 answers nothing: `config` must not need the database.
    let database_url = "postgres://app:hunter2-DoNotShow@127.0.0.1:1/alloy";
    let stderr = run_fail(&mut config_command(&[
        ("DATA_DIR", data_dir.to_str().unwrap()),
        ("DATABASE_URL", database_url),
    ]));
    for named in [
        "DATABASE_URL is a PostgreSQL database",
        "the signing key: neither GPG_PRIVATE_KEY nor SIGNING_KEY_PATH is set",
        "storage: R2_ENDPOINT, R2_BUCKET",
        "the App credentials: APP_ID and PRIVATE_KEY or PRIVATE_KEY_PATH are not set",
        "the webhook secret: WEBHOOK_SECRET is not set",
    ] {
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let pem = std::fs::read_to_string(fixture("app/test-app-key.pem")).unwrap();
    let shared = [
        ("DATA_DIR", data_dir.to_str().unwrap()),
        ("DATABASE_URL", database_url),
        ("APP_ID", "987654"),
        ("PRIVATE_KEY", &pem),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("R2_ENDPOINT", "https://account123.r2.cloudflarestorage.com"),
        ("R2_BUCKET", "sysext-images-bucket"),
        ("R2_ACCESS_KEY_ID", R2_ACCESS_KEY_ID),
        ("R2_SECRET_ACCESS_KEY", R2_SECRET_ACCESS_KEY),
        ("GPG_PRIVATE_KEY", &ed25519_keys().base64()),
    ];
    let output = run_ok(&mut config_command(&shared));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(!data_dir.join("alloy-sysext.db").exists());

    // DDIs configured without the verity key: serve would not start, nor does config.
    let settings = dir.path().join("settings.toml");
    std::fs::write(&settings, "[image]\nformats = [\"squashfs\", \"ddi\"]\n").unwrap();
    let mut with_ddi = shared.to_vec();
    with_ddi.push(("CONFIG_FILE", settings.to_str().unwrap()));
    let stderr = run_fail(&mut config_command(&with_ddi));
    assert!(stderr.contains("VERITY_SIGNING_KEY"), "{stderr}");
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The Dockerfile's instructions (continuation lines joined), per stage.
fn dockerfile_stages() -> Vec<Vec<String>> {
    let text = repo_file("Dockerfile").replace("\\\n", " ");
    let mut stages: Vec<Vec<String>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.to_ascii_uppercase().starts_with("FROM ") {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(line.to_owned());
        }
    }
    stages
}

fn instruction<'a>(stage: &'a [String], name: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter_map(|line| {
            let (keyword, rest) = line.split_once(char::is_whitespace)?;
            keyword.eq_ignore_ascii_case(name).then_some(rest.trim())
        })
        .collect()
}

#[test]
fn the_dockerfile_ships_the_release_binary_as_fly_toml_expects() {
    let cargo: toml::Table = toml::from_str(&repo_file("Cargo.toml")).unwrap();
    let package = cargo["package"]["name"].as_str().unwrap();
    let fly: toml::Table = toml::from_str(&repo_file("fly.toml")).unwrap();
    let port = fly["http_service"]["internal_port"].as_integer().unwrap();
    let data_dir = fly["env"]["DATA_DIR"].as_str().unwrap();
    assert_eq!(fly["mounts"]["destination"].as_str(), Some(data_dir));
    assert_eq!(
        fly["http_service"]["auto_stop_machines"].as_str(),
        Some("off")
    );
    assert!(fly["http_service"]["min_machines_running"].as_integer() >= Some(1));
    let checks = fly["http_service"]["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["path"].as_str() == Some("/healthz"))
    );

    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "not a multi-stage build");
    let build = &stages[0];
    let runtime = stages.last().unwrap();
    assert!(
        instruction(build, "RUN")
            .iter()
            .any(|run| run.contains("cargo build --release --locked")),
        "{build:?}"
    );
    // The dependency layer is cached apart from the sources.
    let copies = instruction(build, "COPY");
    assert!(copies[0].contains("Cargo.toml") && copies[0].contains("Cargo.lock"));
    assert!(copies.iter().any(|c| c.contains(".cargo/config.toml")));

    // The binary copied is the one `cargo build --release` makes.
    let binary = format!("target/release/{package}");
    let copied: Vec<&str> = instruction(runtime, "COPY")
        .into_iter()
        .filter(|c| c.starts_with("--from="))
        .collect();
    assert_eq!(copied.len(), 1, "{runtime:?}");
    let source = copied[0].split_whitespace().nth(1).unwrap();
    assert!(source.ends_with(&binary), "copies {source}, not {binary}");
    let workdir = instruction(build, "WORKDIR");
    assert_eq!(
        source,
        format!("{}/{binary}", workdir.last().unwrap()),
        "not where the build stage builds"
    );
    let entrypoint = instruction(runtime, "ENTRYPOINT");
    assert_eq!(entrypoint, [format!("[\"{package}\"]")]);
    assert_eq!(instruction(runtime, "CMD"), ["[\"serve\"]"]);

    // HTTPS needs CA certificates.
    assert!(
        instruction(runtime, "RUN")
            .iter()
            .any(|run| run.contains("apt-get install") && run.contains("ca-certificates")),
        "{runtime:?}"
    );
    // A non-root user.
    let user = instruction(runtime, "USER");
    assert_eq!(user.len(), 1, "{runtime:?}");
    let name = user[0].split(':').next().unwrap();
    assert!(name != "root" && name != "0", "runs as {name}");
    // The data directory is a volume, and the port is Fly's.
    let env = instruction(runtime, "ENV").join(" ");
    assert!(env.contains(&format!("DATA_DIR={data_dir}")), "{env}");
    assert!(env.contains(&format!("PORT={port}")), "{env}");
    assert!(
        instruction(runtime, "VOLUME")
            .iter()
            .any(|v| v.contains(&format!("\"{data_dir}\""))),
        "{runtime:?}"
    );
    assert_eq!(instruction(runtime, "EXPOSE"), [port.to_string()]);
    let health = instruction(runtime, "HEALTHCHECK").join(" ");
    assert!(health.contains("/healthz"), "{health}");
    assert_eq!(instruction(runtime, "STOPSIGNAL"), ["SIGTERM"]);

    let ignored = repo_file(".dockerignore");
    for path in ["target/", "data/", ".git"] {
        assert!(ignored.lines().any(|l| l.starts_with(path)), "{ignored}");
    }
}

#[test]
fn fly_replicated_toml_runs_replicas_without_a_volume_or_a_secret_in_it() {
    let fly: toml::Table = toml::from_str(&repo_file("fly.replicated.toml")).unwrap();
    let single: toml::Table = toml::from_str(&repo_file("fly.toml")).unwrap();
    // The same image, stopped the same way.
    for key in ["build", "kill_signal", "kill_timeout"] {
        assert_eq!(fly[key], single[key], "{key}");
    }
    // No volume: the state is in PostgreSQL, the images in the bucket.
    assert!(!fly.contains_key("mounts"), "{fly:?}");
    // Nothing but plain settings in [env], each one the binary reads: the secrets `serve`
    // needs on PostgreSQL are set with `fly secrets set`.
    let env = fly["env"].as_table().unwrap();
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["DATA_DIR", "LOG_FORMAT", "PORT", "TRUSTED_PROXY_HEADER"]
    );
    for name in &names {
        assert!(crate::common::BINARY_ENV.contains(name), "{name}");
    }
    // The port and data directory the image sets and listens on.
    let service = fly["http_service"].as_table().unwrap();
    let port = service["internal_port"].as_integer().unwrap();
    assert_eq!(env["PORT"].as_str(), Some(port.to_string().as_str()));
    let runtime = dockerfile_stages().pop().unwrap();
    let image_env = instruction(&runtime, "ENV").join(" ");
    assert!(image_env.contains(&format!("PORT={port}")), "{image_env}");
    assert_eq!(instruction(&runtime, "EXPOSE"), [port.to_string()]);
    let data_dir = env["DATA_DIR"].as_str().unwrap();
    assert!(
        image_env.contains(&format!("DATA_DIR={data_dir}")),
        "{image_env}"
    );
    // Two machines or more, always running, replaced one at a time.
    assert_eq!(service["auto_stop_machines"].as_str(), Some("off"));
    assert_eq!(service["min_machines_running"].as_integer(), Some(2));
    let deploy = fly["deploy"].as_table().unwrap();
    assert_eq!(deploy["strategy"].as_str(), Some("rolling"));
    assert_eq!(deploy["max_unavailable"].as_integer(), Some(1));
    // Checked by the readiness route (`replicated_start.rs` asks a replica for it).
    let checks = service["checks"].as_array().unwrap();
    let paths: Vec<&str> = checks.iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/readyz"]);
    // The single-machine file keeps its volume.
    assert_eq!(single["mounts"]["destination"].as_str(), Some(data_dir));
}

/// The settings tables of `config`'s output, read back as a settings file.
fn settings_shown(stdout: &str) -> alloy_sysext_automation::settings::Settings {
    let mut shown: toml::Table =
        toml::from_str(stdout).unwrap_or_else(|e| panic!("not TOML ({e}):\n{stdout}"));
    for server_table in ["server", "app", "status", "webhook", "storage", "signing"] {
        assert!(shown.remove(server_table).is_some(), "{stdout}");
    }
    alloy_sysext_automation::settings::Settings::parse(&toml::to_string(&shown).unwrap())
        .unwrap_or_else(|e| panic!("{e}:\n{stdout}"))
}

#[test]
fn config_output_reads_back_as_the_same_settings_whatever_the_values() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.toml");
    for text in [
        // Quotes, backslashes, newlines and what would close or open a table.
        r##"
[upstream]
asset = "alloy-\"]]\n[server]\nPORT = 1\t'''{arch}.zip"
binary = 'alloy-linux-{arch} "#'

[image]
arches = ["arm64", "amd64"]
compression = "zstd"
compression_level = 3
compat_name = false
formats = ["squashfs", "ddi"]

[publish]
base_url = "http://127.0.0.1:3000/images"
replace_signatures_by = ["0123456789ABCDEF"]

[schedule]
check_upstream = "OFF"
tracking_label = "x\"\n[[consumers]]\nrepo = 'a/b'"

[[consumers]]
repo = "example-org/fleet"
path = "hosts/\"]] # not a comment.bu"
base = "release/v1"
assignees = ["octocat", "hubot"]
"##,
        // No consumers at all, which is not the built-in ones.
        "consumers = []\n",
        "",
    ] {
        std::fs::write(&settings, text).unwrap();
        let expected = alloy_sysext_automation::settings::Settings::parse(text).unwrap();
        let dir_arg = dir.path().join("state");
        // The first settings build DDIs, which serve (and so config) needs the verity key for.
        let keys = crate::ddi::ecdsa_verity_keys();
        let (key, certificate) = (keys.key(), keys.certificate());
        let output = run_ok(&mut config_command(&[
            ("CONFIG_FILE", settings.to_str().unwrap()),
            ("DATA_DIR", dir_arg.to_str().unwrap()),
            ("VERITY_SIGNING_KEY_PATH", key.to_str().unwrap()),
            ("VERITY_CERTIFICATE_PATH", certificate.to_str().unwrap()),
        ]));
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(settings_shown(&stdout), expected, "{stdout}");
        // The comments that explain the values are kept.
        assert!(
            stdout.starts_with("# The effective configuration of"),
            "{stdout}"
        );
        assert!(stdout.contains("# Settings (CONFIG_FILE"), "{stdout}");
        for comment in ["  # xz, zstd or gzip", "  # cron, UTC; \"off\" to disable"] {
            assert!(
                stdout.contains(comment),
                "missing {comment:?} in:\n{stdout}"
            );
        }
        if text.starts_with("consumers = []") {
            assert!(
                stdout.contains("consumers = []  # none configured"),
                "{stdout}"
            );
        }
        if text.contains("base_url") {
            // Set in the file, it is the address, whatever the storage.
            assert!(
                stdout.contains(
                    "public_base_url = \"http://127.0.0.1:3000/images/\"  # where hosts download the published files\npublic_base_url_from = \"publish.base_url in CONFIG_FILE\"\n"
                ),
                "{stdout}"
            );
        }
    }
}
