//! `config`: the effective configuration of `serve`, with every secret redacted.

use alloy_sysext_automation::database::Database;
use alloy_sysext_automation::server::app_credentials_file::{self, AppSource, ResolvedCredentials};
use alloy_sysext_automation::server::config::{LogFormat, ServerConfig, StatusAccess};
use alloy_sysext_automation::server::replica_requirements::{self, StartupFacts};
use alloy_sysext_automation::server::signing_key::{GENERATED_KEY_FILE, GENERATED_PUBLIC_KEY_FILE};
use alloy_sysext_automation::server::verity_key::server_verity_signer;
use alloy_sysext_automation::settings::Settings;
use alloy_sysext_automation::settings::public_base_url::PublicBaseUrl;
use alloy_sysext_automation::signing::key_source::{KeySource, KeySourceError};
use alloy_sysext_automation::storage::Storage;
use clap::Args;
use toml_edit::{DocumentMut, Item, Table, Value};

/// Print the effective configuration: what `serve` would run with, read from the same
/// environment and CONFIG_FILE, checked the same way, with every secret redacted.
///
/// Prints, as TOML: the server's environment settings (PORT, DATA_DIR,
/// DATABASE_URL, GITHUB_API_URL, GITHUB_URL, PUBLIC_URL, GITHUB_ORGANIZATION, CONFIG_FILE,
/// JOB_RETRY_SECONDS, RETENTION_DAYS, LOG_LEVEL, LOG_FORMAT), who may read the status
/// (STATUS_TOKEN only as "set", STATUS_PUBLIC), the App (APP_ID, and whether PRIVATE_KEY or
/// PRIVATE_KEY_PATH holds a usable key; else the App made at /setup and kept in DATA_DIR),
/// how many webhook secrets are set and TRUSTED_PROXY_HEADER, the storage (R2_BUCKET, R2_ENDPOINT, S3_REGION and
/// S3_FORCE_PATH_STYLE, or the local directory; R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY
/// only as "set"), the public base URL hosts download from and where it comes from
/// (publish.base_url; else PUBLIC_URL + /images/ for the local directory, the production
/// bucket's domain for R2, or none), where the signing key comes from (GPG_PRIVATE_KEY, SIGNING_KEY_PATH or
/// the key generated in DATA_DIR, with its fingerprint, never the key), and the settings
/// from CONFIG_FILE or the built-in defaults. Secrets are shown as "set" or "not set",
/// never their values. Nothing is created or changed.
///
/// Exits non-zero, naming the variable or key at fault, when `serve` would refuse to start
/// with this configuration (a bad value, a partial R2 set, an App key that is not an RSA
/// private key, a signing key that cannot be loaded, a bad CONFIG_FILE, image.formats with
/// ddi and no verity key, or, with DATABASE_URL on PostgreSQL, anything that replicas must
/// share and this one would not take from the environment). The database is not opened.
#[derive(Debug, Args)]
pub struct ConfigArgs {}

pub fn run(_args: ConfigArgs) -> anyhow::Result<()> {
    let lookup = |name: &str| std::env::var(name).ok();
    let config = ServerConfig::from_env(lookup)?;
    let storage = Storage::from_env(lookup, &config.data_dir)?;
    let settings = Settings::load(config.config_file.as_deref())?;
    let public_base_url =
        PublicBaseUrl::resolve(&settings.publish, &storage, config.public_url.as_deref());
    // The App and the webhook secrets exactly as `serve` resolves them; no key is shown.
    let credentials = app_credentials_file::resolve(&config)?;
    let signing = signing_table(&config)?;
    // What else `serve` refuses to start without: the verity key when DDIs are built, and
    // on PostgreSQL what every replica must share.
    let verity_signer = server_verity_signer(&settings, lookup)?;
    let backend = Database::backend_of(config.database_url.as_deref(), &config.data_dir)?;
    replica_requirements::check(&StartupFacts::of(
        backend,
        &config,
        &storage,
        &credentials,
        verity_signer.is_some(),
        lookup,
    ))?;
    print!(
        "{}",
        document(
            &config,
            &credentials,
            &storage,
            &public_base_url,
            signing,
            &settings
        )?
    );
    Ok(())
}

/// The whole output: the server's configuration, then the settings.
fn document(
    config: &ServerConfig,
    credentials: &ResolvedCredentials,
    storage: &Storage,
    public_base_url: &PublicBaseUrl,
    signing: Table,
    settings: &Settings,
) -> Result<DocumentMut, toml_edit::ser::Error> {
    let mut doc = DocumentMut::new();
    doc.decor_mut().set_prefix(
        "# The effective configuration of `alloy-sysext-automation serve`.\n\
         # Secrets are never shown, only whether they are set.\n\n",
    );
    doc.insert("server", Item::Table(server_table(config)));
    doc.insert("app", Item::Table(app_table(credentials)));
    doc.insert("status", Item::Table(status_table(config)));
    doc.insert(
        "webhook",
        Item::Table(webhook_table(config, credentials.webhook_secrets.len())),
    );
    doc.insert(
        "storage",
        Item::Table(storage_table(storage, public_base_url)),
    );
    doc.insert("signing", Item::Table(signing));
    insert_settings(&mut doc, settings, config.config_file.is_some())?;
    Ok(doc)
}

/// `value` with `comment` after it on its line.
fn commented(value: impl Into<Value>, comment: &str) -> Item {
    let mut value = value.into();
    value.decor_mut().set_suffix(format!("  # {comment}"));
    Item::Value(value)
}

/// A secret, shown only as whether it is set.
fn set_or_not(set: bool) -> Item {
    toml_edit::value(if set { "set" } else { "not set" })
}

/// `number` as a TOML integer, or as a string beyond TOML's integer range.
fn integer(number: u64) -> Value {
    match i64::try_from(number) {
        Ok(number) => Value::from(number),
        Err(_) => Value::from(number.to_string()),
    }
}

/// A table with a blank line before its header.
fn table(entries: impl IntoIterator<Item = (&'static str, Item)>) -> Table {
    let mut table = Table::new();
    for (key, item) in entries {
        table.insert(key, item);
    }
    table
}

/// Where `serve` gets its signing key, loaded to check it (only the fingerprint is shown).
fn signing_table(config: &ServerConfig) -> anyhow::Result<Table> {
    let lookup = |name: &str| std::env::var(name).ok();
    let mut signing = Table::new();
    match KeySource::resolve(None, lookup) {
        Ok(source) => {
            let key = source.load()?;
            match &source {
                KeySource::Base64Env(_) => {
                    signing.insert("source", toml_edit::value("GPG_PRIVATE_KEY"));
                    signing.insert("GPG_PRIVATE_KEY", set_or_not(true));
                }
                KeySource::File(path) => {
                    signing.insert("source", toml_edit::value("SIGNING_KEY_PATH"));
                    signing.insert(
                        "SIGNING_KEY_PATH",
                        toml_edit::value(path.display().to_string()),
                    );
                }
            }
            signing.insert("fingerprint", toml_edit::value(key.fingerprint()));
        }
        Err(KeySourceError::NoKey) => {
            let secret = config.data_dir.join(GENERATED_KEY_FILE);
            let public = config.data_dir.join(GENERATED_PUBLIC_KEY_FILE);
            signing.insert(
                "source",
                toml_edit::value(if secret.exists() {
                    "generated: the key the server made in DATA_DIR"
                } else {
                    "generated: the server makes an Ed25519 key in DATA_DIR on its first start with App credentials"
                }),
            );
            signing.insert("key_file", toml_edit::value(secret.display().to_string()));
            signing.insert("public_key", toml_edit::value(public.display().to_string()));
        }
        Err(error) => return Err(error.into()),
    }
    Ok(signing)
}

fn server_table(config: &ServerConfig) -> Table {
    let database_url = match &config.database_url {
        Some(url) => toml_edit::value(alloy_sysext_automation::database::shown_url(url)),
        None => commented(
            "",
            &format!(
                "not set: the SQLite file {}",
                config.data_dir.join("alloy-sysext.db").display()
            ),
        ),
    };
    let config_file = match &config.config_file {
        Some(path) => toml_edit::value(path.display().to_string()),
        None => commented("", "not set: the built-in settings"),
    };
    let log_format = match config.log_format {
        Some(LogFormat::Json) => toml_edit::value("json"),
        Some(LogFormat::Pretty) => toml_edit::value("pretty"),
        None => commented("auto", "pretty on a terminal, json otherwise"),
    };
    table([
        ("PORT", toml_edit::value(i64::from(config.port))),
        (
            "DATA_DIR",
            toml_edit::value(config.data_dir.display().to_string()),
        ),
        ("DATABASE_URL", database_url),
        ("GITHUB_API_URL", toml_edit::value(&config.github_api_url)),
        ("GITHUB_URL", toml_edit::value(&config.github_url)),
        (
            "PUBLIC_URL",
            toml_edit::value(config.public_url.as_deref().unwrap_or("")),
        ),
        (
            "GITHUB_ORGANIZATION",
            toml_edit::value(config.github_organization.as_deref().unwrap_or("")),
        ),
        ("CONFIG_FILE", config_file),
        (
            "JOB_RETRY_SECONDS",
            Item::Value(integer(config.job_retry_delay.as_secs())),
        ),
        (
            "RETENTION_DAYS",
            Item::Value(integer(config.retention.as_secs() / 86_400)),
        ),
        ("LOG_LEVEL", toml_edit::value(&config.log_level)),
        ("LOG_FORMAT", log_format),
    ])
}

fn app_table(credentials: &ResolvedCredentials) -> Table {
    let Some(app) = &credentials.app else {
        return table([
            ("APP_ID", toml_edit::value("not set")),
            ("PRIVATE_KEY", set_or_not(false)),
            (
                "can_act",
                commented(
                    false,
                    "deliveries are stored, but nothing is done with them",
                ),
            ),
        ]);
    };
    let id = integer(app.key.app_id());
    match &app.source {
        AppSource::Environment => table([
            ("APP_ID", Item::Value(id)),
            ("PRIVATE_KEY", commented("set", "an RSA private key")),
            ("can_act", toml_edit::value(true)),
        ]),
        AppSource::Stored { slug, file } => table([
            ("APP_ID", commented(id, "made at /setup")),
            ("slug", toml_edit::value(slug)),
            (
                "credentials_file",
                toml_edit::value(file.display().to_string()),
            ),
            (
                "PRIVATE_KEY",
                commented("set", "in the credentials file; an RSA private key"),
            ),
            ("can_act", toml_edit::value(true)),
        ]),
    }
}

fn status_table(config: &ServerConfig) -> Table {
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
    table([
        ("STATUS_TOKEN", set_or_not(token_set)),
        ("access", commented(access, why)),
    ])
}

/// `secrets`: how many secrets may sign a delivery, the stored App's included.
fn webhook_table(config: &ServerConfig, secrets: usize) -> Table {
    let proxy_header = match &config.trusted_proxy_header {
        Some(header) => commented(
            header.as_str(),
            "the client's address, for the cap per client",
        ),
        None => commented("", "not set: clients connect directly"),
    };
    let count = integer(secrets as u64);
    table([
        ("TRUSTED_PROXY_HEADER", proxy_header),
        (
            "WEBHOOK_SECRET",
            set_or_not(!config.webhook_secrets.is_empty()),
        ),
        (
            "secrets",
            if secrets == 0 {
                commented(count, "every delivery is refused")
            } else {
                Item::Value(count)
            },
        ),
    ])
}

fn storage_table(storage: &Storage, public_base_url: &PublicBaseUrl) -> Table {
    let mut entries = vec![("storage", toml_edit::value(storage.describe()))];
    match storage {
        Storage::S3(s3) => {
            entries.push(("R2_BUCKET", toml_edit::value(s3.bucket())));
            entries.push(("R2_ACCESS_KEY_ID", set_or_not(true)));
            entries.push(("R2_SECRET_ACCESS_KEY", set_or_not(true)));
        }
        Storage::Local(local) => entries.push((
            "directory",
            commented(
                local.root().display().to_string(),
                "no R2_* settings: files are kept here and served at /images/",
            ),
        )),
    }
    entries.push((
        "public_base_url",
        match public_base_url.base() {
            Some(base) => commented(base, "where hosts download the published files"),
            None => commented(
                "",
                "none: hosts reach the images once PUBLIC_URL (or publish.base_url) is set",
            ),
        },
    ));
    entries.push((
        "public_base_url_from",
        toml_edit::value(public_base_url.source()),
    ));
    table(entries)
}

/// What the settings' keys mean, shown after their values: (table, key, comment).
const SETTINGS_COMMENTS: [(&str, &str, &str); 7] = [
    ("image", "arches", "amd64, arm64 or both"),
    ("image", "compression", "xz, zstd or gzip"),
    (
        "image",
        "compat_name",
        "also publish <name>-X.Y.Z.raw (amd64)",
    ),
    (
        "image",
        "formats",
        "squashfs, and ddi for the signed dm-verity image <name>-X.Y.Z-ARCH.ddi.raw",
    ),
    (
        "build_repo",
        "repo",
        "where SHA256SUMS is committed, releases and commands live",
    ),
    (
        "publish",
        "replace_signatures_by",
        "keys whose SHA256SUMS.gpg may be replaced (a key change)",
    ),
    (
        "schedule",
        "check_upstream",
        "cron, UTC; \"off\" to disable",
    ),
];

/// The settings, as `CONFIG_FILE` would hold them: reading the output back gives the same
/// settings.
fn insert_settings(
    doc: &mut DocumentMut,
    settings: &Settings,
    from_file: bool,
) -> Result<(), toml_edit::ser::Error> {
    let mut first_table = true;
    for (key, item) in toml_edit::ser::to_document(settings)?.into_table() {
        // The serializer writes every table inline: shown as `[table]` and `[[table]]`.
        let mut item = match item.into_table() {
            Ok(table) => Item::Table(table),
            Err(item) => item
                .into_array_of_tables()
                .map_or_else(|item| item, Item::ArrayOfTables),
        };
        match &mut item {
            Item::Table(table) => {
                if first_table {
                    table.decor_mut().set_prefix(format!(
                        "\n# Settings ({})\n\n",
                        if from_file {
                            "CONFIG_FILE, with the built-in defaults for what it leaves out"
                        } else {
                            "the built-in defaults"
                        }
                    ));
                    first_table = false;
                }
                for (_, name, comment) in SETTINGS_COMMENTS.iter().filter(|(t, ..)| *t == key) {
                    if let Some(value) = table.get_mut(name).and_then(Item::as_value_mut) {
                        value.decor_mut().set_suffix(format!("  # {comment}"));
                    }
                }
            }
            // No `[[consumers]]` header can say "none": the empty list is a key of the root
            // table, which TOML puts before every table.
            Item::Value(value) if key.as_str() == "consumers" => {
                value
                    .decor_mut()
                    .set_suffix("  # none configured; self-enrolled repositories still count");
            }
            _ => {}
        }
        doc.insert(&key, item);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            alloy_sysext_automation::database::shown_url("postgres://me:hunter2@db:5432/x?a=b"),
            "postgres://me@db:5432/x?…"
        );
        assert_eq!(
            alloy_sysext_automation::database::shown_url("sqlite:///data/x.db"),
            "sqlite:///data/x.db"
        );
        assert_eq!(
            alloy_sysext_automation::database::shown_url("sqlite:x.db"),
            "sqlite:x.db"
        );
    }

    /// The settings tables of `output`, as a settings file.
    fn settings_of(output: &str) -> Settings {
        let mut parsed: toml::Table = toml::from_str(output).unwrap();
        for server_table in ["server", "app", "status", "webhook", "storage", "signing"] {
            assert!(parsed.remove(server_table).is_some(), "{output}");
        }
        Settings::parse(&toml::to_string(&parsed).unwrap()).unwrap()
    }

    #[test]
    fn hostile_strings_are_quoted_for_toml() {
        let mut settings = Settings::default();
        settings.upstream.asset = "a\"b\n]]\n[x]\t'''{arch}.zip".into();
        settings.schedule.tracking_label = "x\"\\\n[[consumers]]\ny = '".into();
        settings.consumers[0].path = "hosts/\"]] #.bu".into();
        settings.validate().unwrap();
        let config = ServerConfig::from_env(|_| None).unwrap();
        let credentials = ResolvedCredentials {
            app: None,
            webhook_secrets: Vec::new(),
        };
        let storage = Storage::from_env(|_| None, &config.data_dir).unwrap();
        let without_consumers = Settings {
            consumers: Vec::new(),
            ..settings.clone()
        };
        for settings in [settings, without_consumers] {
            let output = document(
                &config,
                &credentials,
                &storage,
                &PublicBaseUrl::None,
                Table::new(),
                &settings,
            )
            .unwrap()
            .to_string();
            assert_eq!(settings_of(&output), settings, "{output}");
        }
    }
}
