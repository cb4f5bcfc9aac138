//! Where the verity signing key and its certificate come from: files named on the command
//! line, files named by the environment, or PEM text in the environment (for secrets
//! stores that hold values, not files).

use std::fmt;
use std::path::PathBuf;

use crate::ddi::certificate::{CertificateError, VerityCertificate, VerityKey, VeritySigner};
use crate::secret::{Secret, holds_key_text};

/// The environment variable with the path of the PEM private key.
pub const VERITY_SIGNING_KEY_PATH_ENV: &str = "VERITY_SIGNING_KEY_PATH";
/// The environment variable with the PEM private key itself.
pub const VERITY_SIGNING_KEY_ENV: &str = "VERITY_SIGNING_KEY";
/// The environment variable with the path of the PEM certificate.
pub const VERITY_CERTIFICATE_PATH_ENV: &str = "VERITY_CERTIFICATE_PATH";
/// The environment variable with the PEM certificate itself.
pub const VERITY_CERTIFICATE_ENV: &str = "VERITY_CERTIFICATE";

/// Where one PEM document is.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    /// The text of an environment variable (never shown).
    Env {
        variable: &'static str,
        text: Secret,
    },
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(path) => write!(f, "File({})", path.display()),
            PemSource::Env { variable, .. } => write!(f, "Env({variable}, <redacted>)"),
        }
    }
}

impl fmt::Display for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(path) => write!(f, "{}", path.display()),
            PemSource::Env { variable, .. } => write!(f, "${variable}"),
        }
    }
}

impl PemSource {
    fn read(&self) -> Result<Secret, VeritySourceError> {
        match self {
            PemSource::File(path) => {
                std::fs::read_to_string(path)
                    .map(Secret::new)
                    .map_err(|error| VeritySourceError::Read {
                        path: path.display().to_string(),
                        error,
                    })
            }
            PemSource::Env { text, .. } => Ok(text.clone()),
        }
    }
}

/// No key or certificate, an ambiguous one, or one that does not load.
#[derive(Debug, thiserror::Error)]
pub enum VeritySourceError {
    #[error(
        "no verity {what}: pass {flag} FILE, or set {path_env} (a PEM file) or {text_env} (the PEM text); make a key and certificate with `alloy-sysext-automation keygen --x509 --out keys/`"
    )]
    Missing {
        what: &'static str,
        flag: &'static str,
        path_env: &'static str,
        text_env: &'static str,
    },
    #[error(
        "both {path_env} and {text_env} are set; set only one, so it is clear which {what} is used"
    )]
    Ambiguous {
        what: &'static str,
        path_env: &'static str,
        text_env: &'static str,
    },
    #[error(
        "{path_env} holds PEM text, not a path (not shown); put the {what} in a file and name it there, or its text in {text_env}"
    )]
    TextInPathVariable {
        what: &'static str,
        path_env: &'static str,
        text_env: &'static str,
    },
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("loading the verity {what} from {source_name}: {error}")]
    Load {
        what: &'static str,
        source_name: String,
        error: CertificateError,
    },
    #[error(transparent)]
    Mismatch(CertificateError),
}

/// Where the key and the certificate are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeritySignerSource {
    pub key: PemSource,
    pub certificate: PemSource,
}

impl VeritySignerSource {
    /// The key and certificate named by the flags if given, else by the environment
    /// (`lookup` reads a variable; empty values count as unset).
    pub fn resolve(
        key_flag: Option<PathBuf>,
        certificate_flag: Option<PathBuf>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<VeritySignerSource, VeritySourceError> {
        let key = resolve_one(
            key_flag,
            &lookup,
            "signing key",
            "--verity-key",
            VERITY_SIGNING_KEY_PATH_ENV,
            VERITY_SIGNING_KEY_ENV,
        )?;
        let certificate = resolve_one(
            certificate_flag,
            &lookup,
            "certificate",
            "--verity-certificate",
            VERITY_CERTIFICATE_PATH_ENV,
            VERITY_CERTIFICATE_ENV,
        )?;
        Ok(VeritySignerSource { key, certificate })
    }

    /// Loads both and checks that the key is the certificate's.
    pub fn load(&self) -> Result<VeritySigner, VeritySourceError> {
        let key =
            VerityKey::from_pem(&self.key.read()?).map_err(|error| VeritySourceError::Load {
                what: "signing key",
                source_name: self.key.to_string(),
                error,
            })?;
        let certificate =
            VerityCertificate::from_pem(self.certificate.read()?.expose()).map_err(|error| {
                VeritySourceError::Load {
                    what: "certificate",
                    source_name: self.certificate.to_string(),
                    error,
                }
            })?;
        VeritySigner::new(key, certificate).map_err(VeritySourceError::Mismatch)
    }
}

fn resolve_one(
    flag: Option<PathBuf>,
    lookup: &impl Fn(&str) -> Option<String>,
    what: &'static str,
    flag_name: &'static str,
    path_env: &'static str,
    text_env: &'static str,
) -> Result<PemSource, VeritySourceError> {
    if let Some(path) = flag {
        return Ok(PemSource::File(path));
    }
    let present = |name| lookup(name).filter(|v| !v.trim().is_empty());
    match (present(path_env), present(text_env)) {
        (Some(_), Some(_)) => Err(VeritySourceError::Ambiguous {
            what,
            path_env,
            text_env,
        }),
        (Some(path), None) if holds_key_text(&path) => Err(VeritySourceError::TextInPathVariable {
            what,
            path_env,
            text_env,
        }),
        (Some(path), None) => Ok(PemSource::File(PathBuf::from(path))),
        (None, Some(text)) => Ok(PemSource::Env {
            variable: text_env,
            text: Secret::new(text),
        }),
        (None, None) => Err(VeritySourceError::Missing {
            what,
            flag: flag_name,
            path_env,
            text_env,
        }),
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
    fn flags_win_then_paths_then_text() {
        let source = VeritySignerSource::resolve(
            Some("k.pem".into()),
            None,
            env(&[
                (VERITY_SIGNING_KEY_ENV, "KEY"),
                (VERITY_CERTIFICATE_PATH_ENV, "/c.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(source.key, PemSource::File("k.pem".into()));
        assert_eq!(source.certificate, PemSource::File("/c.pem".into()));
        let source = VeritySignerSource::resolve(
            None,
            Some("c.pem".into()),
            env(&[(VERITY_SIGNING_KEY_ENV, "KEY")]),
        )
        .unwrap();
        assert_eq!(
            source.key,
            PemSource::Env {
                variable: VERITY_SIGNING_KEY_ENV,
                text: Secret::new("KEY".into())
            }
        );
    }

    #[test]
    fn key_text_in_a_path_variable_is_refused_without_being_shown() {
        let err = VeritySignerSource::resolve(
            None,
            Some("c.pem".into()),
            env(&[(
                VERITY_SIGNING_KEY_PATH_ENV,
                "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----",
            )]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "VERITY_SIGNING_KEY_PATH holds PEM text, not a path (not shown); put the signing key in a file and name it there, or its text in VERITY_SIGNING_KEY"
        );
        assert!(!format!("{err:?}").contains("SECRET"));
    }

    #[test]
    fn a_missing_or_ambiguous_source_names_the_options() {
        let err = VeritySignerSource::resolve(None, Some("c".into()), env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no verity signing key: pass --verity-key FILE, or set VERITY_SIGNING_KEY_PATH (a PEM file) or VERITY_SIGNING_KEY (the PEM text); make a key and certificate with `alloy-sysext-automation keygen --x509 --out keys/`"
        );
        let err = VeritySignerSource::resolve(Some("k".into()), None, env(&[])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no verity certificate: pass --verity-certificate FILE"),
            "{err}"
        );
        let err = VeritySignerSource::resolve(
            None,
            Some("c".into()),
            env(&[
                (VERITY_SIGNING_KEY_ENV, "a"),
                (VERITY_SIGNING_KEY_PATH_ENV, "b"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "both VERITY_SIGNING_KEY_PATH and VERITY_SIGNING_KEY are set; set only one, so it is clear which signing key is used"
        );
    }

    #[test]
    fn the_key_text_is_never_shown() {
        let source = PemSource::Env {
            variable: VERITY_SIGNING_KEY_ENV,
            text: Secret::new("SECRET".into()),
        };
        let shown = format!("{source:?} {source}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
