//! The App credentials the setup flow received from GitHub, kept in `DATA_DIR` (mode 0600)
//! so that the server acts as the App after a restart too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

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
    crate::private_file::write_private(&path_in(data_dir), &serde_json::to_vec_pretty(app)?)
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
}
