//! What must be the same on every replica when the state is in PostgreSQL, checked at start.
//!
//! A PostgreSQL database is there to be shared: any replica may take any delivery and any
//! job, so each needs the same signing key (a key made by one replica would split hosts
//! between keys), the same storage (a local images directory is seen by one replica only),
//! and the same App credentials and webhook secret, from the environment (the `/setup` flow
//! keeps them in one replica's `DATA_DIR`). With SQLite the server is one process and keeps
//! whatever it makes in `DATA_DIR`: nothing here applies.
//!
//! [`check`] decides from what start-up found ([`StartupFacts`]) and names every problem at
//! once, so that one restart after fixing the configuration is enough.

use crate::database::Backend;
use crate::server::app_credentials_file::{self, AppSource, ResolvedCredentials};
use crate::server::config::ServerConfig;
use crate::signing::key_source::{KeySource, KeySourceError};
use crate::storage::Storage;

/// Where a signing key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKeyOrigin {
    /// A variable of the environment names it or holds it: every replica can be given the
    /// same one.
    Environment,
    /// The server made it in `DATA_DIR` (on this start or an earlier one): each replica
    /// would have its own.
    DataDir,
}

/// Where published files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// An S3-compatible bucket (R2): every replica reaches the same one.
    Bucket,
    /// The directory `DATA_DIR/images`, on this machine only.
    LocalDirectory,
}

/// Where the App's credentials, or its webhook secret, come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsOrigin {
    /// `APP_ID` with `PRIVATE_KEY` or `PRIVATE_KEY_PATH`; for the secret, `WEBHOOK_SECRET`.
    Environment,
    /// The file the `/setup` flow wrote in `DATA_DIR`.
    SetupFile,
    /// Nowhere.
    Missing,
}

/// What start-up found, as far as replicas sharing a database must agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupFacts {
    pub backend: Backend,
    /// The OpenPGP key that signs `SHA256SUMS` and the images.
    pub signing_key: SigningKeyOrigin,
    /// The X.509 key that signs the verity data of DDI images (`VERITY_SIGNING_KEY_PATH` or
    /// `VERITY_SIGNING_KEY`); `None` while the images carry no verity signature. Like the
    /// OpenPGP key, one made in `DATA_DIR` would differ between replicas.
    pub verity_signing_key: Option<SigningKeyOrigin>,
    pub storage: StorageKind,
    /// The App's id and private key.
    pub app_credentials: CredentialsOrigin,
    /// The secret GitHub signs deliveries with.
    pub webhook_secret: CredentialsOrigin,
}

impl StartupFacts {
    /// What a server on `backend` with `config`, `storage` and `resolved` credentials finds,
    /// reading the signing key's variables with `lookup`; `verity_key_loaded` when the
    /// images carry a verity signature (the server never makes that key, so a loaded one
    /// came from the environment). `serve` and `config` both ask this.
    pub fn of(
        backend: Backend,
        config: &ServerConfig,
        storage: &Storage,
        resolved: &ResolvedCredentials,
        verity_key_loaded: bool,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> StartupFacts {
        StartupFacts {
            backend,
            signing_key: SigningKeyOrigin::of_server_key(lookup),
            verity_signing_key: verity_key_loaded.then_some(SigningKeyOrigin::Environment),
            storage: StorageKind::of(storage),
            app_credentials: CredentialsOrigin::of_app(resolved),
            webhook_secret: CredentialsOrigin::of_webhook_secret(config, resolved),
        }
    }
}

/// One thing that is not shared with the other replicas, and what to set instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "the signing key: neither GPG_PRIVATE_KEY nor SIGNING_KEY_PATH is set, so this replica would sign with a key of its own in DATA_DIR; set one of them, the same on every replica"
    )]
    SigningKeyInDataDir,
    #[error(
        "the verity signing key: neither VERITY_SIGNING_KEY_PATH nor VERITY_SIGNING_KEY is set, so this replica would sign with a key of its own in DATA_DIR; set one of them, the same on every replica"
    )]
    VeritySigningKeyInDataDir,
    #[error(
        "storage: R2_ENDPOINT, R2_BUCKET, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY are not set, so images would go to DATA_DIR/images, which no other replica serves; set them to a bucket every replica reaches"
    )]
    LocalStorage,
    #[error(
        "the App credentials: they come from DATA_DIR/{file} (made at /setup), which the other replicas do not have; set APP_ID, and PRIVATE_KEY or PRIVATE_KEY_PATH, to its id and key",
        file = app_credentials_file::FILE_NAME
    )]
    AppCredentialsFromSetupFile,
    #[error(
        "the App credentials: APP_ID and PRIVATE_KEY or PRIVATE_KEY_PATH are not set (/setup is for single-machine deployments: create the App on one machine first, then set them)"
    )]
    NoAppCredentials,
    #[error(
        "the webhook secret: it comes from DATA_DIR/{file} (made at /setup), which the other replicas do not have; set WEBHOOK_SECRET to it",
        file = app_credentials_file::FILE_NAME
    )]
    WebhookSecretFromSetupFile,
    #[error(
        "the webhook secret: WEBHOOK_SECRET is not set, so every delivery would be refused; set it to the App's webhook secret"
    )]
    NoWebhookSecret,
}

/// Why a replica on PostgreSQL does not start: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotShared {
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for NotShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DATABASE_URL is a PostgreSQL database, which replicas share, so each replica must take from the environment what is the same on all of them; this one does not:"
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        write!(f, "\n(README, \"Scale out\")")
    }
}

impl std::error::Error for NotShared {}

/// Whether a replica with `found` may start: always with SQLite; with PostgreSQL, when
/// everything that must be the same on every replica comes from the environment.
pub fn check(found: &StartupFacts) -> Result<(), NotShared> {
    match found.backend {
        Backend::Sqlite => return Ok(()),
        Backend::Postgres => {}
    }
    let mut problems = Vec::new();
    if found.signing_key == SigningKeyOrigin::DataDir {
        problems.push(Problem::SigningKeyInDataDir);
    }
    if found.verity_signing_key == Some(SigningKeyOrigin::DataDir) {
        problems.push(Problem::VeritySigningKeyInDataDir);
    }
    if found.storage == StorageKind::LocalDirectory {
        problems.push(Problem::LocalStorage);
    }
    match found.app_credentials {
        CredentialsOrigin::Environment => {}
        CredentialsOrigin::SetupFile => problems.push(Problem::AppCredentialsFromSetupFile),
        CredentialsOrigin::Missing => problems.push(Problem::NoAppCredentials),
    }
    match found.webhook_secret {
        CredentialsOrigin::Environment => {}
        CredentialsOrigin::SetupFile => problems.push(Problem::WebhookSecretFromSetupFile),
        CredentialsOrigin::Missing => problems.push(Problem::NoWebhookSecret),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(NotShared { problems })
    }
}

impl SigningKeyOrigin {
    /// Where `serve`'s OpenPGP key would come from, read through `lookup` (the process
    /// environment) without loading it. `GPG_PRIVATE_KEY` and `SIGNING_KEY_PATH` both set is
    /// an error of its own, reported when the key is loaded; both are the environment's.
    pub fn of_server_key(lookup: impl Fn(&str) -> Option<String>) -> SigningKeyOrigin {
        match KeySource::resolve(None, lookup) {
            Err(KeySourceError::NoKey) => SigningKeyOrigin::DataDir,
            Ok(_) | Err(_) => SigningKeyOrigin::Environment,
        }
    }
}

impl StorageKind {
    pub fn of(storage: &Storage) -> StorageKind {
        match storage {
            Storage::S3(_) => StorageKind::Bucket,
            Storage::Local(_) => StorageKind::LocalDirectory,
        }
    }
}

impl CredentialsOrigin {
    /// Where the App's id and key that `resolved` holds come from.
    pub fn of_app(resolved: &ResolvedCredentials) -> CredentialsOrigin {
        match resolved.app.as_ref().map(|app| &app.source) {
            Some(AppSource::Environment) => CredentialsOrigin::Environment,
            Some(AppSource::Stored { .. }) => CredentialsOrigin::SetupFile,
            None => CredentialsOrigin::Missing,
        }
    }

    /// Where the webhook secrets that `resolved` holds come from: `WEBHOOK_SECRET` in
    /// `config` first, else the App kept by `/setup` (which adds its own).
    pub fn of_webhook_secret(
        config: &ServerConfig,
        resolved: &ResolvedCredentials,
    ) -> CredentialsOrigin {
        if !config.webhook_secrets.is_empty() {
            CredentialsOrigin::Environment
        } else if resolved.webhook_secrets.is_empty() {
            CredentialsOrigin::Missing
        } else {
            CredentialsOrigin::SetupFile
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::server::app_credentials_file::StoredApp;

    /// What a replica that shares everything it must finds.
    fn shared(backend: Backend) -> StartupFacts {
        StartupFacts {
            backend,
            signing_key: SigningKeyOrigin::Environment,
            verity_signing_key: None,
            storage: StorageKind::Bucket,
            app_credentials: CredentialsOrigin::Environment,
            webhook_secret: CredentialsOrigin::Environment,
        }
    }

    /// What a single machine set up at `/setup` with nothing configured finds.
    fn own(backend: Backend) -> StartupFacts {
        StartupFacts {
            backend,
            signing_key: SigningKeyOrigin::DataDir,
            verity_signing_key: Some(SigningKeyOrigin::DataDir),
            storage: StorageKind::LocalDirectory,
            app_credentials: CredentialsOrigin::SetupFile,
            webhook_secret: CredentialsOrigin::SetupFile,
        }
    }

    fn problems(found: StartupFacts) -> Vec<Problem> {
        match check(&found) {
            Ok(()) => Vec::new(),
            Err(not_shared) => not_shared.problems,
        }
    }

    #[test]
    fn sqlite_starts_with_whatever_it_found() {
        assert_eq!(check(&own(Backend::Sqlite)), Ok(()));
        assert_eq!(check(&shared(Backend::Sqlite)), Ok(()));
        let nothing = StartupFacts {
            app_credentials: CredentialsOrigin::Missing,
            webhook_secret: CredentialsOrigin::Missing,
            ..own(Backend::Sqlite)
        };
        assert_eq!(check(&nothing), Ok(()));
    }

    #[test]
    fn postgres_starts_when_everything_comes_from_the_environment() {
        assert_eq!(check(&shared(Backend::Postgres)), Ok(()));
        let with_verity = StartupFacts {
            verity_signing_key: Some(SigningKeyOrigin::Environment),
            ..shared(Backend::Postgres)
        };
        assert_eq!(check(&with_verity), Ok(()));
    }

    #[test]
    fn postgres_names_each_thing_a_replica_would_not_share() {
        let base = shared(Backend::Postgres);
        let cases = [
            (
                StartupFacts {
                    signing_key: SigningKeyOrigin::DataDir,
                    ..base
                },
                Problem::SigningKeyInDataDir,
            ),
            (
                StartupFacts {
                    verity_signing_key: Some(SigningKeyOrigin::DataDir),
                    ..base
                },
                Problem::VeritySigningKeyInDataDir,
            ),
            (
                StartupFacts {
                    storage: StorageKind::LocalDirectory,
                    ..base
                },
                Problem::LocalStorage,
            ),
            (
                StartupFacts {
                    app_credentials: CredentialsOrigin::SetupFile,
                    ..base
                },
                Problem::AppCredentialsFromSetupFile,
            ),
            (
                StartupFacts {
                    app_credentials: CredentialsOrigin::Missing,
                    ..base
                },
                Problem::NoAppCredentials,
            ),
            (
                StartupFacts {
                    webhook_secret: CredentialsOrigin::SetupFile,
                    ..base
                },
                Problem::WebhookSecretFromSetupFile,
            ),
            (
                StartupFacts {
                    webhook_secret: CredentialsOrigin::Missing,
                    ..base
                },
                Problem::NoWebhookSecret,
            ),
        ];
        for (found, problem) in cases {
            assert_eq!(problems(found), [problem], "{found:?}");
        }
    }

    #[test]
    fn postgres_reports_every_problem_at_once() {
        assert_eq!(
            problems(own(Backend::Postgres)),
            [
                Problem::SigningKeyInDataDir,
                Problem::VeritySigningKeyInDataDir,
                Problem::LocalStorage,
                Problem::AppCredentialsFromSetupFile,
                Problem::WebhookSecretFromSetupFile,
            ]
        );
        let found = StartupFacts {
            verity_signing_key: None,
            app_credentials: CredentialsOrigin::Missing,
            webhook_secret: CredentialsOrigin::Missing,
            ..own(Backend::Postgres)
        };
        assert_eq!(
            check(&found).unwrap_err().to_string(),
            "DATABASE_URL is a PostgreSQL database, which replicas share, so each replica must take from the environment what is the same on all of them; this one does not:\n  \
             - the signing key: neither GPG_PRIVATE_KEY nor SIGNING_KEY_PATH is set, so this replica would sign with a key of its own in DATA_DIR; set one of them, the same on every replica\n  \
             - storage: R2_ENDPOINT, R2_BUCKET, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY are not set, so images would go to DATA_DIR/images, which no other replica serves; set them to a bucket every replica reaches\n  \
             - the App credentials: APP_ID and PRIVATE_KEY or PRIVATE_KEY_PATH are not set (/setup is for single-machine deployments: create the App on one machine first, then set them)\n  \
             - the webhook secret: WEBHOOK_SECRET is not set, so every delivery would be refused; set it to the App's webhook secret\n\
             (README, \"Scale out\")"
        );
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_signing_key_is_the_environments_when_a_variable_names_it() {
        let origin = |pairs: &[(&str, &str)]| SigningKeyOrigin::of_server_key(env(pairs));
        assert_eq!(origin(&[]), SigningKeyOrigin::DataDir);
        assert_eq!(
            origin(&[("GPG_PRIVATE_KEY", " "), ("SIGNING_KEY_PATH", "")]),
            SigningKeyOrigin::DataDir
        );
        assert_eq!(
            origin(&[("GPG_PRIVATE_KEY", "LS0tLS1CRUdJTg==")]),
            SigningKeyOrigin::Environment
        );
        assert_eq!(
            origin(&[("SIGNING_KEY_PATH", "/run/secrets/signing-key.asc")]),
            SigningKeyOrigin::Environment
        );
    }

    #[test]
    fn storage_is_a_bucket_when_the_r2_settings_are_there() {
        let data_dir = Path::new("/nonexistent");
        let local = Storage::from_env(env(&[]), data_dir).unwrap();
        assert_eq!(StorageKind::of(&local), StorageKind::LocalDirectory);
        let bucket = Storage::from_env(
            env(&[
                ("R2_ENDPOINT", "https://account.r2.cloudflarestorage.com"),
                ("R2_BUCKET", "images"),
                ("R2_ACCESS_KEY_ID", "id"),
                ("R2_SECRET_ACCESS_KEY", "secret"),
            ]),
            data_dir,
        )
        .unwrap();
        assert_eq!(StorageKind::of(&bucket), StorageKind::Bucket);
    }

    const PEM: &str = include_str!("../../tests/fixtures/app/test-app-key.pem");

    /// Where the App and the webhook secret come from, with `pairs` set and, if `stored`,
    /// an App kept by `/setup` in `DATA_DIR`.
    fn credentials(pairs: &[(&str, &str)], stored: bool) -> (CredentialsOrigin, CredentialsOrigin) {
        let dir = tempfile::tempdir().unwrap();
        if stored {
            let app = StoredApp {
                id: 9,
                slug: "made-at-setup".into(),
                html_url: String::new(),
                pem: PEM.into(),
                webhook_secret: "stored-secret".into(),
                client_id: "Iv1.x".into(),
                client_secret: "client-secret".into(),
            };
            app_credentials_file::save(dir.path(), &app).unwrap();
        }
        let data_dir = dir.path().display().to_string();
        let mut pairs = pairs.to_vec();
        pairs.push(("DATA_DIR", &data_dir));
        let config = ServerConfig::from_env(env(&pairs)).unwrap();
        let resolved = app_credentials_file::resolve(&config).unwrap();
        (
            CredentialsOrigin::of_app(&resolved),
            CredentialsOrigin::of_webhook_secret(&config, &resolved),
        )
    }

    #[test]
    fn credentials_are_the_environments_or_the_setup_files() {
        use CredentialsOrigin::*;
        let app = [("APP_ID", "42"), ("PRIVATE_KEY", PEM)];
        let secret = ("WEBHOOK_SECRET", "s");
        assert_eq!(credentials(&[], false), (Missing, Missing));
        assert_eq!(credentials(&[secret], false), (Missing, Environment));
        assert_eq!(credentials(&app, false), (Environment, Missing));
        assert_eq!(
            credentials(&[app[0], app[1], secret], false),
            (Environment, Environment)
        );
        assert_eq!(credentials(&[], true), (SetupFile, SetupFile));
        assert_eq!(credentials(&[secret], true), (SetupFile, Environment));
        // The environment's App wins, and the stored App's secret is then not used.
        assert_eq!(credentials(&app, true), (Environment, Missing));
        assert_eq!(
            credentials(&[app[0], app[1], secret], true),
            (Environment, Environment)
        );
    }
}
