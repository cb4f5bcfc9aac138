//! The App credentials the setup flow received from GitHub, kept in `DATA_DIR` (mode 0600)
//! so that the server acts as the App after a restart too; and `resolve`, which picks the
//! credentials `serve` runs with (and `config` shows): the environment's, else these.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::github::app_jwt::AppKey;
use crate::secret::Secret;
use crate::server::config::ServerConfig;

/// The file's name in `DATA_DIR`.
pub const FILE_NAME: &str = "github-app.json";

/// What `POST /app-manifests/{code}/conversions` returns, as kept.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredApp {
    pub id: u64,
    pub slug: String,
    #[serde(default)]
    pub html_url: String,
    pub pem: String,
    pub webhook_secret: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for StoredApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredApp")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("html_url", &self.html_url)
            .finish_non_exhaustive()
    }
}

impl StoredApp {
    pub fn webhook_secret(&self) -> Secret {
        Secret::new(self.webhook_secret.clone())
    }
}

/// Where the file is.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The stored App, if the setup flow has run.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<StoredApp>> {
    let path = path_in(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => anyhow::bail!("reading {}: {error}", path.display()),
    };
    // The error names the file, never its content.
    let app = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a stored App: {}",
            path.display(),
            e.classify_name()
        )
    })?;
    Ok(Some(app))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "fields missing or of the wrong kind",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

/// Keeps `app` in `data_dir`, readable by the owner only, replaced whole.
pub fn save(data_dir: &Path, app: &StoredApp) -> anyhow::Result<()> {
    crate::server::private_file::write_private(&path_in(data_dir), &serde_json::to_vec_pretty(app)?)
}

/// Where the App's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSource {
    /// `APP_ID` with `PRIVATE_KEY` or `PRIVATE_KEY_PATH`.
    Environment,
    /// Made at `/setup` and kept in `file` in `DATA_DIR`.
    Stored { slug: String, file: PathBuf },
}

/// The App the server acts as, its key checked.
#[derive(Debug, Clone)]
pub struct ResolvedApp {
    pub key: AppKey,
    pub source: AppSource,
}

/// What the server runs with: the App, if any, and every secret that may sign a delivery.
#[derive(Debug, Clone)]
pub struct ResolvedCredentials {
    /// `None`: the server stores deliveries but cannot act on them.
    pub app: Option<ResolvedApp>,
    /// `WEBHOOK_SECRET`'s, then the stored App's.
    pub webhook_secrets: Vec<Secret>,
}

/// The environment's App credentials, else those the setup flow stored in `DATA_DIR`; the
/// key is checked to be one the App can sign with. The error names where the key came
/// from, never the key.
pub fn resolve(config: &ServerConfig) -> anyhow::Result<ResolvedCredentials> {
    let mut webhook_secrets = config.webhook_secrets.clone();
    if let Some(app) = &config.app {
        let key = AppKey::from_pem(app.app_id, app.private_key.expose())?;
        return Ok(ResolvedCredentials {
            app: Some(ResolvedApp {
                key,
                source: AppSource::Environment,
            }),
            webhook_secrets,
        });
    }
    let Some(stored) = load(&config.data_dir)? else {
        return Ok(ResolvedCredentials {
            app: None,
            webhook_secrets,
        });
    };
    let file = path_in(&config.data_dir);
    let key = AppKey::from_pem(stored.id, &stored.pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let webhook_secret = stored.webhook_secret();
    // An empty secret would let anyone sign.
    if !webhook_secret.expose().is_empty() {
        webhook_secrets.push(webhook_secret);
    }
    Ok(ResolvedCredentials {
        app: Some(ResolvedApp {
            key,
            source: AppSource::Stored {
                slug: stored.slug,
                file,
            },
        }),
        webhook_secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_app_is_kept_privately_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let app = StoredApp {
            id: 7,
            slug: "alloy".into(),
            html_url: "https://github.com/apps/alloy".into(),
            pem: "-----BEGIN RSA PRIVATE KEY-----\nsecretpem".into(),
            webhook_secret: "hook-secret".into(),
            client_id: "Iv1.x".into(),
            client_secret: "client-secret".into(),
        };
        save(dir.path(), &app).unwrap();
        let mode = std::fs::metadata(path_in(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.id, 7);
        let shown = format!("{loaded:?}");
        for secret in ["secretpem", "hook-secret", "client-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        std::fs::write(path_in(dir.path()), "{\"id\": 1, \"pem\": \"secretpem\"").unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(!error.contains("secretpem"), "{error}");
    }

    const PEM: &str = include_str!("../../tests/fixtures/app/test-app-key.pem");

    fn config(data_dir: &Path, pairs: &[(&str, &str)]) -> ServerConfig {
        let mut pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.push(("DATA_DIR".into(), data_dir.display().to_string()));
        ServerConfig::from_env(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    fn stored(webhook_secret: &str, pem: &str) -> StoredApp {
        StoredApp {
            id: 9,
            slug: "made-at-setup".into(),
            html_url: String::new(),
            pem: pem.into(),
            webhook_secret: webhook_secret.into(),
            client_id: "Iv1.x".into(),
            client_secret: "client-secret".into(),
        }
    }

    fn secrets(credentials: &ResolvedCredentials) -> Vec<&str> {
        credentials
            .webhook_secrets
            .iter()
            .map(Secret::expose)
            .collect()
    }

    #[test]
    fn the_environment_wins_over_the_stored_app() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &stored("stored-secret", PEM)).unwrap();
        let env = [
            ("APP_ID", "42"),
            ("PRIVATE_KEY", PEM),
            ("WEBHOOK_SECRET", "a,b"),
        ];
        let resolved = resolve(&config(dir.path(), &env)).unwrap();
        let app = resolved.app.as_ref().unwrap();
        assert_eq!(app.key.app_id(), 42);
        assert_eq!(app.source, AppSource::Environment);
        assert_eq!(secrets(&resolved), ["a", "b"]);
    }

    #[test]
    fn the_stored_app_adds_its_webhook_secret_unless_empty() {
        let dir = tempfile::tempdir().unwrap();
        let none = resolve(&config(dir.path(), &[("WEBHOOK_SECRET", "a")])).unwrap();
        assert!(none.app.is_none());
        assert_eq!(secrets(&none), ["a"]);

        save(dir.path(), &stored("stored-secret", PEM)).unwrap();
        let resolved = resolve(&config(dir.path(), &[("WEBHOOK_SECRET", "a")])).unwrap();
        let app = resolved.app.as_ref().unwrap();
        assert_eq!(app.key.app_id(), 9);
        assert_eq!(
            app.source,
            AppSource::Stored {
                slug: "made-at-setup".into(),
                file: path_in(dir.path()),
            }
        );
        assert_eq!(secrets(&resolved), ["a", "stored-secret"]);

        save(dir.path(), &stored("", PEM)).unwrap();
        let resolved = resolve(&config(dir.path(), &[])).unwrap();
        assert!(resolved.app.is_some());
        assert!(resolved.webhook_secrets.is_empty());
    }

    #[test]
    fn a_stored_key_that_cannot_sign_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        save(
            dir.path(),
            &stored("s", "-----BEGIN RSA PRIVATE KEY-----\nsecretpem"),
        )
        .unwrap();
        let error = resolve(&config(dir.path(), &[])).unwrap_err().to_string();
        assert!(error.contains(FILE_NAME), "{error}");
        assert!(!error.contains("secretpem"), "{error}");
    }
}
