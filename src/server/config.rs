//! The server's settings, from the environment.

use std::path::PathBuf;

use crate::github::api::DEFAULT_API_URL;
use crate::secret::{Secret, holds_key_text};
use crate::settings::public_base_url::is_plain_base_url;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// `RETENTION_DAYS` when it is not set.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;

/// The GitHub App's identity.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub app_id: u64,
    /// The App's private key, PEM.
    pub private_key: Secret,
}

/// Who may read the status page, `/api/jobs…`, `/api/deliveries…` and `/metrics`.
#[derive(Debug, Clone)]
pub enum StatusAccess {
    /// Anyone who reaches the server: it has no `PUBLIC_URL` (it is not meant to be reached
    /// from the internet), or `STATUS_PUBLIC=true` says so on purpose.
    Open,
    /// Requests that carry `STATUS_TOKEN`.
    Token(Secret),
    /// Nobody: the server is public (`PUBLIC_URL`) and neither `STATUS_TOKEN` nor
    /// `STATUS_PUBLIC=true` is set. Job errors, repository and user names stay private
    /// until the operator chooses.
    Closed,
}

/// Everything `serve` reads from the environment.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub port: u16,
    pub data_dir: PathBuf,
    /// `None`: the SQLite file `alloy-sysext.db` in `data_dir`.
    pub database_url: Option<String>,
    /// `None`: the server stores deliveries but cannot act on them.
    pub app: Option<AppCredentials>,
    /// Every secret that may sign a delivery (several during a rotation).
    pub webhook_secrets: Vec<Secret>,
    /// `STATUS_TOKEN`, `STATUS_PUBLIC` and `PUBLIC_URL`: who may read the status surfaces.
    pub status_access: StatusAccess,
    /// `STATUS_PUBLIC=true` was set while `STATUS_TOKEN` was too: the token wins.
    pub status_public_ignored: bool,
    pub github_api_url: String,
    /// `CONFIG_FILE`: the TOML settings; `None` for the built-in defaults.
    pub config_file: Option<PathBuf>,
    /// `PUBLIC_URL`: where GitHub reaches this server (the App's webhook URL is made from
    /// it by the setup page).
    pub public_url: Option<String>,
    /// `GITHUB_URL`: GitHub's web address, where the setup page sends the App manifest.
    pub github_url: String,
    /// `GITHUB_ORGANIZATION`: create the App for this organization instead of the user.
    pub github_organization: Option<String>,
    /// `JOB_RETRY_SECONDS`: the wait before a transiently failed job's first retry; each
    /// later retry waits twice as long.
    pub job_retry_delay: std::time::Duration,
    /// `JOB_LEASE_SECONDS` and `LEADER_LEASE_SECONDS`: how long a running job's claim and
    /// the leader's lease last unless renewed (see [`crate::worker::replica::LeaseTimes`]).
    pub lease_times: crate::worker::replica::LeaseTimes,
    /// `RETENTION_DAYS`: how long the payloads of handled deliveries, and workflow runs,
    /// are kept.
    pub retention: std::time::Duration,
    /// `TRUSTED_PROXY_HEADER`: the header in which the proxy in front of the server names
    /// the client's address (`Fly-Client-IP` on Fly.io); `None`: clients connect directly.
    pub trusted_proxy_header: Option<http::HeaderName>,
    pub log_level: String,
    /// `None`: pretty on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
}

/// A variable with a value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{set} is set but {missing} is not: set both (or neither, to run without acting)")]
    Incomplete {
        set: &'static str,
        missing: &'static str,
    },
    #[error("set PRIVATE_KEY or PRIVATE_KEY_PATH, not both")]
    BothKeys,
    #[error("reading PRIVATE_KEY_PATH {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("PRIVATE_KEY_PATH holds a key, not a path: put the PEM in PRIVATE_KEY instead")]
    KeyInPathVariable,
}

impl ServerConfig {
    /// Reads the settings through `lookup` (the process environment, or a map in tests);
    /// empty values count as unset.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<ServerConfig, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let port = match get("PORT") {
            None => 3000,
            Some(value) => value.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "PORT",
                value,
                expected: "a port number from 0 to 65535",
            })?,
        };
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = get("DATABASE_URL");
        let webhook_secrets = get("WEBHOOK_SECRET")
            .map(|all| {
                all.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Secret::new(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let log_format = match get("LOG_FORMAT")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => None,
            Some("json") => Some(LogFormat::Json),
            Some("pretty") => Some(LogFormat::Pretty),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    value: other.to_owned(),
                    expected: "json or pretty",
                });
            }
        };
        let public_url = match get("PUBLIC_URL") {
            None => None,
            Some(url) if is_plain_base_url(url.trim()) => {
                Some(url.trim().trim_end_matches('/').to_owned())
            }
            Some(value) => {
                // A value with a user name or password is not repeated: it is a secret.
                let value = if value.contains('@') {
                    "(a URL with a user name or password, not shown)".to_owned()
                } else {
                    value
                };
                return Err(ConfigError::Invalid {
                    name: "PUBLIC_URL",
                    value,
                    expected: "an https:// URL such as https://alloy-sysext.fly.dev, with no \
                               user name, password, query or fragment",
                });
            }
        };
        let status_public = match get("STATUS_PUBLIC") {
            None => false,
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "STATUS_PUBLIC",
                        value,
                        expected: "true or false",
                    });
                }
            },
        };
        let status_token = get("STATUS_TOKEN").map(|token| Secret::new(token.trim().to_owned()));
        let status_public_ignored = status_public && status_token.is_some();
        let status_access = match status_token {
            Some(token) => StatusAccess::Token(token),
            None if status_public || public_url.is_none() => StatusAccess::Open,
            None => StatusAccess::Closed,
        };
        Ok(ServerConfig {
            port,
            data_dir,
            database_url,
            app: app_credentials(&get)?,
            webhook_secrets,
            status_access,
            status_public_ignored,
            github_api_url: get("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
            config_file: get("CONFIG_FILE").map(PathBuf::from),
            public_url,
            github_url: get("GITHUB_URL")
                .map(|url| url.trim().trim_end_matches('/').to_owned())
                .unwrap_or_else(|| "https://github.com".to_owned()),
            github_organization: get("GITHUB_ORGANIZATION").map(|o| o.trim().to_owned()),
            job_retry_delay: match get("JOB_RETRY_SECONDS") {
                None => std::time::Duration::from_secs(30),
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(seconds) if (1..=86_400).contains(&seconds) => {
                        std::time::Duration::from_secs(seconds)
                    }
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: "JOB_RETRY_SECONDS",
                            value,
                            expected: "a number of seconds from 1 to 86400",
                        });
                    }
                },
            },
            lease_times: crate::worker::replica::LeaseTimes {
                job: lease_seconds(&get, "JOB_LEASE_SECONDS", 60)?,
                leader: lease_seconds(&get, "LEADER_LEASE_SECONDS", 30)?,
            },
            retention: match get("RETENTION_DAYS") {
                None => std::time::Duration::from_secs(DEFAULT_RETENTION_DAYS * 86_400),
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(days) if days <= 36_500 => std::time::Duration::from_secs(days * 86_400),
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: "RETENTION_DAYS",
                            value,
                            expected: "a number of days from 0 (payloads go as soon as they are handled) to 36500",
                        });
                    }
                },
            },
            trusted_proxy_header: match get("TRUSTED_PROXY_HEADER") {
                None => None,
                Some(value) => Some(
                    http::HeaderName::from_bytes(value.trim().as_bytes()).map_err(|_| {
                        ConfigError::Invalid {
                            name: "TRUSTED_PROXY_HEADER",
                            value,
                            expected: "an HTTP header name such as Fly-Client-IP",
                        }
                    })?,
                ),
            },
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".to_owned()),
            log_format,
        })
    }
}

fn app_credentials(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<AppCredentials>, ConfigError> {
    let key = match (get("PRIVATE_KEY"), get("PRIVATE_KEY_PATH")) {
        (Some(_), Some(_)) => return Err(ConfigError::BothKeys),
        (Some(pem), None) => Some(("PRIVATE_KEY", pem.replace("\\n", "\n"))),
        (None, Some(path)) if holds_key_text(&path) => {
            return Err(ConfigError::KeyInPathVariable);
        }
        (None, Some(path)) => {
            let pem = std::fs::read_to_string(&path).map_err(|e| ConfigError::KeyFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            Some(("PRIVATE_KEY_PATH", pem))
        }
        (None, None) => None,
    };
    match (get("APP_ID"), key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Incomplete {
            set: "APP_ID",
            missing: "PRIVATE_KEY or PRIVATE_KEY_PATH",
        }),
        (None, Some((name, _))) => Err(ConfigError::Incomplete {
            set: name,
            missing: "APP_ID",
        }),
        (Some(id), Some((_, pem))) => {
            let app_id = id.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "APP_ID",
                value: id,
                expected: "the App's numeric id",
            })?;
            Ok(Some(AppCredentials {
                app_id,
                private_key: Secret::new(pem),
            }))
        }
    }
}

/// The lease length named `name`, in seconds from 3 to 3600, or `default`.
fn lease_seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<std::time::Duration, ConfigError> {
    match get(name) {
        None => Ok(std::time::Duration::from_secs(default)),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(seconds) if (3..=3600).contains(&seconds) => {
                Ok(std::time::Duration::from_secs(seconds))
            }
            _ => Err(ConfigError::Invalid {
                name,
                value,
                expected: "a number of seconds from 3 to 3600",
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServerConfig::from_env(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_start_a_server_that_cannot_act() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.database_url, None);
        assert!(c.app.is_none());
        assert!(c.webhook_secrets.is_empty());
        assert_eq!(c.github_api_url, "https://api.github.com");
        assert_eq!(c.log_level, "info");
        assert_eq!(c.retention, std::time::Duration::from_secs(30 * 86_400));
        assert_eq!(c.trusted_proxy_header, None);
    }

    #[test]
    fn retention_is_in_days() {
        let c = config(&[("RETENTION_DAYS", "7")]).unwrap();
        assert_eq!(c.retention, std::time::Duration::from_secs(7 * 86_400));
        assert_eq!(
            config(&[("RETENTION_DAYS", "0")]).unwrap().retention,
            std::time::Duration::ZERO
        );
        for bad in ["-1", "a week", "36501"] {
            let err = config(&[("RETENTION_DAYS", bad)]).unwrap_err().to_string();
            assert!(err.contains("RETENTION_DAYS"), "{err}");
        }
    }

    #[test]
    fn the_trusted_proxy_header_is_a_header_name() {
        let c = config(&[("TRUSTED_PROXY_HEADER", " Fly-Client-IP ")]).unwrap();
        assert_eq!(c.trusted_proxy_header.unwrap().as_str(), "fly-client-ip");
        let err = config(&[("TRUSTED_PROXY_HEADER", "Fly Client IP")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TRUSTED_PROXY_HEADER"), "{err}");
    }

    #[test]
    fn several_webhook_secrets_for_rotation() {
        let c = config(&[("WEBHOOK_SECRET", "old, new,")]).unwrap();
        let secrets: Vec<&str> = c.webhook_secrets.iter().map(Secret::expose).collect();
        assert_eq!(secrets, ["old", "new"]);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("PORT", "http")]).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
        let err = config(&[("APP_ID", "12")]).unwrap_err().to_string();
        assert!(err.contains("PRIVATE_KEY"), "{err}");
        let err = config(&[("APP_ID", "x"), ("PRIVATE_KEY", "pem")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("APP_ID"), "{err}");
        assert!(config(&[("LOG_FORMAT", "xml")]).is_err());
        assert_eq!(
            config(&[("LOG_FORMAT", " JSON ")]).unwrap().log_format,
            Some(LogFormat::Json)
        );
    }

    #[test]
    fn app_credentials_never_show_the_key() {
        let c = config(&[
            ("APP_ID", "42"),
            ("PRIVATE_KEY", "-----BEGIN KEY-----\\nSECRET"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
        let misplaced = "-----BEGIN RSA PRIVATE KEY-----\\nSECRET";
        let err = config(&[("APP_ID", "42"), ("PRIVATE_KEY_PATH", misplaced)]).unwrap_err();
        assert_eq!(err, ConfigError::KeyInPathVariable);
        assert!(!err.to_string().contains("SECRET"));
        let app = c.app.unwrap();
        assert_eq!(app.app_id, 42);
        assert_eq!(app.private_key.expose(), "-----BEGIN KEY-----\nSECRET");
    }

    #[test]
    fn a_public_server_closes_its_status_unless_told_otherwise() {
        let access = |pairs: &[(&str, &str)]| config(pairs).unwrap().status_access;
        // Not reachable from the internet on purpose: open, as before.
        assert!(matches!(access(&[]), StatusAccess::Open));
        let public = ("PUBLIC_URL", "https://alloy.example.dev");
        assert!(matches!(access(&[public]), StatusAccess::Closed));
        assert!(matches!(
            access(&[public, ("STATUS_PUBLIC", "true")]),
            StatusAccess::Open
        ));
        assert!(matches!(
            access(&[public, ("STATUS_PUBLIC", "false")]),
            StatusAccess::Closed
        ));
        match access(&[public, ("STATUS_TOKEN", " t0ken ")]) {
            StatusAccess::Token(token) => assert_eq!(token.expose(), "t0ken"),
            other => panic!("{other:?}"),
        }
        // The token wins over STATUS_PUBLIC, and the start-up log says so.
        let both = config(&[public, ("STATUS_TOKEN", "t"), ("STATUS_PUBLIC", "yes")]).unwrap();
        assert!(matches!(both.status_access, StatusAccess::Token(_)));
        assert!(both.status_public_ignored);
        let err = config(&[("STATUS_PUBLIC", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("STATUS_PUBLIC"), "{err}");
    }
}
