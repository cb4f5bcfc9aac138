//! Where the signing key comes from: a file named on the command line, or the environment.
//!
//! The existing deployment passes the key as `GPG_PRIVATE_KEY` (base64 of an armored,
//! unprotected secret key); a key on disk is named by `SIGNING_KEY_PATH`.

use std::path::PathBuf;

use crate::secret::holds_key_text;
use crate::signing::{SigningError, SigningKey};

/// The environment variable with the base64 of an armored secret key.
pub const GPG_PRIVATE_KEY_ENV: &str = "GPG_PRIVATE_KEY";
/// The environment variable with the path of an armored secret key.
pub const SIGNING_KEY_PATH_ENV: &str = "SIGNING_KEY_PATH";

/// Where to load the key from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    /// The base64 text of `GPG_PRIVATE_KEY` (never shown).
    Base64Env(String),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "File({})", path.display()),
            KeySource::Base64Env(_) => write!(f, "Base64Env(<redacted>)"),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "{}", path.display()),
            KeySource::Base64Env(_) => write!(f, "${GPG_PRIVATE_KEY_ENV}"),
        }
    }
}

/// No key, or an ambiguous one.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error(
        "no signing key: pass --signing-key FILE, or set {GPG_PRIVATE_KEY_ENV} (base64 of an armored secret key) or {SIGNING_KEY_PATH_ENV}; make a key with `alloy-sysext-automation keygen --out keys/`, or build with --no-sign"
    )]
    NoKey,
    #[error(
        "both {GPG_PRIVATE_KEY_ENV} and {SIGNING_KEY_PATH_ENV} are set; set only one, so it is clear which key signs"
    )]
    Ambiguous,
    #[error(
        "{SIGNING_KEY_PATH_ENV} holds key text, not a path (not shown); put the key in a file and name it there, or its base64 in {GPG_PRIVATE_KEY_ENV}"
    )]
    KeyInPathVariable,
    #[error("loading the signing key from {source_name}: {error}")]
    Load {
        source_name: String,
        error: SigningError,
    },
}

impl KeySource {
    /// The key named by `flag` if given, else by the environment (`lookup` reads a variable;
    /// empty values count as unset).
    pub fn resolve(
        flag: Option<PathBuf>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<KeySource, KeySourceError> {
        if let Some(path) = flag {
            return Ok(KeySource::File(path));
        }
        let present = |name| lookup(name).filter(|v| !v.trim().is_empty());
        match (present(GPG_PRIVATE_KEY_ENV), present(SIGNING_KEY_PATH_ENV)) {
            (Some(_), Some(_)) => Err(KeySourceError::Ambiguous),
            (Some(b64), None) => Ok(KeySource::Base64Env(b64)),
            (None, Some(path)) if holds_key_text(&path) => Err(KeySourceError::KeyInPathVariable),
            (None, Some(path)) => Ok(KeySource::File(PathBuf::from(path))),
            (None, None) => Err(KeySourceError::NoKey),
        }
    }

    /// Loads the key.
    pub fn load(&self) -> Result<SigningKey, KeySourceError> {
        let loaded = match self {
            KeySource::File(path) => SigningKey::from_file(path),
            KeySource::Base64Env(b64) => SigningKey::from_base64_armored(b64),
        };
        loaded.map_err(|error| KeySourceError::Load {
            source_name: self.to_string(),
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn key_text_in_the_path_variable_is_refused_without_being_shown() {
        let err = KeySource::resolve(
            None,
            env(&[(
                SIGNING_KEY_PATH_ENV,
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nSECRET",
            )]),
        )
        .unwrap_err();
        assert!(matches!(err, KeySourceError::KeyInPathVariable));
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(!format!("{err:?}").contains("SECRET"));
    }

    #[test]
    fn flag_wins_then_environment() {
        assert_eq!(
            KeySource::resolve(Some("k.asc".into()), env(&[(GPG_PRIVATE_KEY_ENV, "x")])).unwrap(),
            KeySource::File("k.asc".into())
        );
        assert_eq!(
            KeySource::resolve(None, env(&[(GPG_PRIVATE_KEY_ENV, "abc")])).unwrap(),
            KeySource::Base64Env("abc".into())
        );
        assert_eq!(
            KeySource::resolve(None, env(&[(SIGNING_KEY_PATH_ENV, "/k")])).unwrap(),
            KeySource::File("/k".into())
        );
    }

    #[test]
    fn missing_key_names_keygen_and_ambiguity_is_refused() {
        let err = KeySource::resolve(None, env(&[(GPG_PRIVATE_KEY_ENV, " ")])).unwrap_err();
        assert!(err.to_string().contains("keygen"), "{err}");
        assert!(matches!(
            KeySource::resolve(
                None,
                env(&[(GPG_PRIVATE_KEY_ENV, "a"), (SIGNING_KEY_PATH_ENV, "b")])
            ),
            Err(KeySourceError::Ambiguous)
        ));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!(
            "{:?} {}",
            KeySource::Base64Env("SECRET".into()),
            KeySource::Base64Env("SECRET".into())
        );
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
