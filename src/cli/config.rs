//! `config`: the effective configuration of `serve`, with every secret redacted.

use std::fmt::Write as _;

use alloy_sysext_automation::config::{LogFormat, ServerConfig, StatusAccess};
use alloy_sysext_automation::github::app_jwt::AppKey;
use alloy_sysext_automation::key_source::{KeySource, KeySourceError};
use alloy_sysext_automation::server::app_credentials_file;
use alloy_sysext_automation::server::signing_key::{GENERATED_KEY_FILE, GENERATED_PUBLIC_KEY_FILE};
use alloy_sysext_automation::settings::Settings;
use alloy_sysext_automation::storage::Storage;
use clap::Args;

/// Print the effective configuration: what `serve` would run with, read from the same
/// environment and CONFIG_FILE, checked the same way, with every secret redacted.
///
/// Prints, as TOML-like text: the server's environment settings (PORT, DATA_DIR,
/// DATABASE_URL, GITHUB_API_URL, GITHUB_URL, PUBLIC_URL, GITHUB_ORGANIZATION, CONFIG_FILE,
/// JOB_RETRY_SECONDS, RETENTION_DAYS, LOG_LEVEL, LOG_FORMAT), who may read the status
/// (STATUS_TOKEN only as "set", STATUS_PUBLIC), the App (APP_ID, and whether PRIVATE_KEY or
/// PRIVATE_KEY_PATH holds a usable key; else the App made at /setup and kept in DATA_DIR),
/// how many webhook secrets are set and TRUSTED_PROXY_HEADER, the storage (R2_BUCKET, R2_ENDPOINT, S3_REGION and
/// S3_FORCE_PATH_STYLE, or the local directory; R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY
/// only as "set"), where the signing key comes from (GPG_PRIVATE_KEY, SIGNING_KEY_PATH or
/// the key generated in DATA_DIR, with its fingerprint, never the key), and the settings
/// from CONFIG_FILE or the built-in defaults. Secrets are shown as "set" or "not set",
/// never their values. Nothing is created or changed.
///
/// Exits non-zero, naming the variable or key at fault, when `serve` would refuse to start
/// with this configuration (a bad value, a partial R2 set, an App key that is not an RSA
/// private key, a signing key that cannot be loaded, a bad CONFIG_FILE).
#[derive(Debug, Args)]
pub struct ConfigArgs {}

pub fn run(_args: ConfigArgs) -> anyhow::Result<()> {
    let lookup = |name: &str| std::env::var(name).ok();
    let config = ServerConfig::from_env(lookup)?;
    let storage = Storage::from_env(lookup, &config.data_dir)?;
    let settings = Settings::load(config.config_file.as_deref())?;
    // The App: the environment's credentials, else those the setup flow stored in
    // DATA_DIR. Either key is checked as `serve` checks it; neither is shown.
    let app = match &config.app {
        Some(app) => {
            AppKey::from_pem(app.app_id, app.private_key.expose())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            AppView::Environment { id: app.app_id }
        }
        None => match app_credentials_file::load(&config.data_dir)? {
            Some(stored) => {
                AppKey::from_pem(stored.id, &stored.pem).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e}",
                        app_credentials_file::path_in(&config.data_dir).display()
                    )
                })?;
                AppView::Stored {
                    id: stored.id,
                    slug: stored.slug.clone(),
                    file: app_credentials_file::path_in(&config.data_dir)
                        .display()
                        .to_string(),
                }
            }
            None => AppView::None,
        },
    };
    let signing = signing_key_description(&config)?;
    let mut out = String::new();
    write_server(&mut out, &config, &app, &storage, &signing);
    write_settings(&mut out, &settings, config.config_file.is_some());
    print!("{out}");
    Ok(())
}

/// Where the App's credentials come from.
enum AppView {
    Environment {
        id: u64,
    },
    /// Made at `/setup` and kept in `DATA_DIR`.
    Stored {
        id: u64,
        slug: String,
        file: String,
    },
    None,
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn set_or_not(set: bool) -> &'static str {
    if set { "\"set\"" } else { "\"not set\"" }
}

/// A database URL with any password replaced.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:<redacted>@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Where `serve` gets its signing key, loaded to check it (only the fingerprint is shown).
fn signing_key_description(config: &ServerConfig) -> anyhow::Result<Vec<(String, String)>> {
    let lookup = |name: &str| std::env::var(name).ok();
    let mut lines = Vec::new();
    match KeySource::resolve(None, lookup) {
        Ok(source) => {
            let key = source.load()?;
            match &source {
                KeySource::Base64Env(_) => {
                    lines.push(("source".into(), quote("GPG_PRIVATE_KEY")));
                    lines.push(("GPG_PRIVATE_KEY".into(), set_or_not(true).into()));
                }
                KeySource::File(path) => {
                    lines.push(("source".into(), quote("SIGNING_KEY_PATH")));
                    lines.push((
                        "SIGNING_KEY_PATH".into(),
                        quote(&path.display().to_string()),
                    ));
                }
            }
            lines.push(("fingerprint".into(), quote(&key.fingerprint())));
        }
        Err(KeySourceError::NoKey) => {
            let secret = config.data_dir.join(GENERATED_KEY_FILE);
            let public = config.data_dir.join(GENERATED_PUBLIC_KEY_FILE);
            lines.push((
                "source".into(),
                quote(if secret.exists() {
                    "generated: the key the server made in DATA_DIR"
                } else {
                    "generated: the server makes an Ed25519 key in DATA_DIR on its first start with App credentials"
                }),
            ));
            lines.push(("key_file".into(), quote(&secret.display().to_string())));
            lines.push(("public_key".into(), quote(&public.display().to_string())));
        }
        Err(error) => return Err(error.into()),
    }
    Ok(lines)
}

fn write_server(
    out: &mut String,
    config: &ServerConfig,
    app: &AppView,
    storage: &Storage,
    signing: &[(String, String)],
) {
    let _ = writeln!(
        out,
        "# The effective configuration of `alloy-sysext-automation serve`.\n\
         # Secrets are never shown, only whether they are set.\n"
    );
    let _ = writeln!(out, "[server]");
    let _ = writeln!(out, "PORT = {}", config.port);
    let _ = writeln!(
        out,
        "DATA_DIR = {}",
        quote(&config.data_dir.display().to_string())
    );
    match &config.database_url {
        Some(url) => {
            let _ = writeln!(out, "DATABASE_URL = {}", quote(&redact_url(url)));
        }
        None => {
            let _ = writeln!(
                out,
                "DATABASE_URL = \"\"  # not set: the SQLite file {}",
                config.data_dir.join("alloy-sysext.db").display()
            );
        }
    }
    let _ = writeln!(out, "GITHUB_API_URL = {}", quote(&config.github_api_url));
    let _ = writeln!(out, "GITHUB_URL = {}", quote(&config.github_url));
    let _ = writeln!(
        out,
        "PUBLIC_URL = {}",
        quote(config.public_url.as_deref().unwrap_or(""))
    );
    let _ = writeln!(
        out,
        "GITHUB_ORGANIZATION = {}",
        quote(config.github_organization.as_deref().unwrap_or(""))
    );
    match &config.config_file {
        Some(path) => {
            let _ = writeln!(out, "CONFIG_FILE = {}", quote(&path.display().to_string()));
        }
        None => {
            let _ = writeln!(out, "CONFIG_FILE = \"\"  # not set: the built-in settings");
        }
    }
    let _ = writeln!(
        out,
        "JOB_RETRY_SECONDS = {}",
        config.job_retry_delay.as_secs()
    );
    let _ = writeln!(
        out,
        "RETENTION_DAYS = {}",
        config.retention.as_secs() / 86_400
    );
    let _ = writeln!(out, "LOG_LEVEL = {}", quote(&config.log_level));
    let _ = writeln!(
        out,
        "LOG_FORMAT = {}",
        match config.log_format {
            Some(LogFormat::Json) => "\"json\"",
            Some(LogFormat::Pretty) => "\"pretty\"",
            None => "\"auto\"  # pretty on a terminal, json otherwise",
        }
    );

    let _ = writeln!(out, "\n[app]");
    let mut count = config.webhook_secrets.len();
    match app {
        AppView::Environment { id } => {
            let _ = writeln!(out, "APP_ID = {id}");
            let _ = writeln!(
                out,
                "PRIVATE_KEY = {}  # an RSA private key",
                set_or_not(true)
            );
            let _ = writeln!(out, "can_act = true");
        }
        AppView::Stored { id, slug, file } => {
            // The stored App's webhook secret verifies deliveries too.
            count += 1;
            let _ = writeln!(out, "APP_ID = {id}  # made at /setup");
            let _ = writeln!(out, "slug = {}", quote(slug));
            let _ = writeln!(out, "credentials_file = {}", quote(file));
            let _ = writeln!(
                out,
                "PRIVATE_KEY = {}  # in the credentials file; an RSA private key",
                set_or_not(true)
            );
            let _ = writeln!(out, "can_act = true");
        }
        AppView::None => {
            let _ = writeln!(out, "APP_ID = \"not set\"");
            let _ = writeln!(out, "PRIVATE_KEY = {}", set_or_not(false));
            let _ = writeln!(
                out,
                "can_act = false  # deliveries are stored, but nothing is done with them"
            );
        }
    }

    let _ = writeln!(out, "\n[status]");
    let (token_set, access, why) = match &config.status_access {
        StatusAccess::Token(_) => (
            true,
            "token",
            "the status page, /api/ and /metrics ask for STATUS_TOKEN",
        ),
        StatusAccess::Open if config.public_url.is_some() => {
            (false, "open", "STATUS_PUBLIC=true: open to anyone")
        }
        StatusAccess::Open => (
            false,
            "open",
            "no PUBLIC_URL and no STATUS_TOKEN: open to anyone who reaches the server",
        ),
        StatusAccess::Closed => (
            false,
            "closed",
            "PUBLIC_URL without STATUS_TOKEN: set STATUS_TOKEN, or STATUS_PUBLIC=true",
        ),
    };
    let _ = writeln!(out, "STATUS_TOKEN = {}", set_or_not(token_set));
    let _ = writeln!(out, "access = \"{access}\"  # {why}");

    let _ = writeln!(out, "\n[webhook]");
    match &config.trusted_proxy_header {
        Some(header) => {
            let _ = writeln!(
                out,
                "TRUSTED_PROXY_HEADER = {}  # the client's address, for the cap per client",
                quote(header.as_str())
            );
        }
        None => {
            let _ = writeln!(
                out,
                "TRUSTED_PROXY_HEADER = \"\"  # not set: clients connect directly"
            );
        }
    }
    let _ = writeln!(
        out,
        "WEBHOOK_SECRET = {}",
        set_or_not(!config.webhook_secrets.is_empty())
    );
    let _ = writeln!(
        out,
        "secrets = {count}{}",
        if count == 0 {
            "  # every delivery is refused"
        } else {
            ""
        }
    );

    let _ = writeln!(out, "\n[storage]");
    let _ = writeln!(out, "storage = {}", quote(&storage.describe()));
    match storage {
        Storage::S3(s3) => {
            let _ = writeln!(out, "R2_BUCKET = {}", quote(s3.bucket()));
            let _ = writeln!(out, "R2_ACCESS_KEY_ID = {}", set_or_not(true));
            let _ = writeln!(out, "R2_SECRET_ACCESS_KEY = {}", set_or_not(true));
        }
        Storage::Local(local) => {
            let _ = writeln!(
                out,
                "directory = {}  # no R2_* settings: files are kept here and served at /images/",
                quote(&local.root().display().to_string())
            );
        }
    }

    let _ = writeln!(out, "\n[signing]");
    for (key, value) in signing {
        let _ = writeln!(out, "{key} = {value}");
    }
}

fn write_settings(out: &mut String, settings: &Settings, from_file: bool) {
    let _ = writeln!(
        out,
        "\n# Settings ({})",
        if from_file {
            "CONFIG_FILE, with the built-in defaults for what it leaves out"
        } else {
            "the built-in defaults"
        }
    );
    let _ = writeln!(out, "\n[upstream]");
    let _ = writeln!(out, "repo = {}", quote(&settings.upstream.repo));
    let _ = writeln!(out, "asset = {}", quote(&settings.upstream.asset));
    let _ = writeln!(out, "binary = {}", quote(&settings.upstream.binary));

    let image = &settings.image;
    let _ = writeln!(out, "\n[image]");
    let _ = writeln!(out, "name = {}", quote(&image.name));
    let arches: Vec<String> = image
        .arches
        .iter()
        .map(|arch| quote(arch.upstream_name()))
        .collect();
    let _ = writeln!(out, "arches = [{}]", arches.join(", "));
    let _ = writeln!(
        out,
        "compression = {}",
        quote(image.compression.algorithm())
    );
    let _ = writeln!(out, "compression_level = {}", image.compression.level());
    let _ = writeln!(out, "compat_name = {}", image.compat_name);

    let _ = writeln!(out, "\n[build_repo]");
    let _ = writeln!(out, "repo = {}", quote(&settings.build_repo.repo));
    let _ = writeln!(out, "branch = {}", quote(&settings.build_repo.branch));

    let _ = writeln!(out, "\n[publish]");
    let _ = writeln!(out, "base_url = {}", quote(&settings.publish.base_url));
    let replaced: Vec<String> = settings
        .publish
        .replace_signatures_by
        .iter()
        .map(|key| quote(key))
        .collect();
    let _ = writeln!(out, "replace_signatures_by = [{}]", replaced.join(", "));

    let _ = writeln!(out, "\n[schedule]");
    let _ = writeln!(
        out,
        "check_upstream = {}",
        quote(settings.schedule.check_upstream.as_deref().unwrap_or("off"))
    );
    let _ = writeln!(
        out,
        "tracking_label = {}",
        quote(&settings.schedule.tracking_label)
    );

    if settings.consumers.is_empty() {
        let _ = writeln!(
            out,
            "\n# consumers = []  (none configured; self-enrolled repositories still count)"
        );
    }
    for consumer in &settings.consumers {
        let _ = writeln!(out, "\n[[consumers]]");
        let _ = writeln!(out, "repo = {}", quote(&consumer.repo));
        let _ = writeln!(out, "path = {}", quote(&consumer.path));
        let _ = writeln!(out, "base = {}", quote(&consumer.base));
        let assignees: Vec<String> = consumer.assignees.iter().map(|a| quote(a)).collect();
        let _ = writeln!(out, "assignees = [{}]", assignees.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://me:hunter2@db:5432/x?a=b"),
            "postgres://me:<redacted>@db:5432/x?a=b"
        );
        assert_eq!(redact_url("sqlite:///data/x.db"), "sqlite:///data/x.db");
        assert_eq!(redact_url("sqlite:x.db"), "sqlite:x.db");
    }

    #[test]
    fn strings_are_quoted_for_toml() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
