//! The address hosts and people download the published files from, decided once at start
//! from what the server knows together: `publish.base_url` in the settings file, where the
//! files are stored, and `PUBLIC_URL`. Everything that shows an image's address (its
//! record in the job, release notes, pull requests, replies, the status page) reads the
//! one value decided here.

use std::fmt;

use crate::settings::PublishSettings;
use crate::storage::Storage;

/// The public address of a bucket's files when the settings file does not name one: the
/// domain the production bucket is served at.
pub const BUCKET_DEFAULT_BASE_URL: &str = "https://ghost-sysext-images.separationofconcerns.dev/";

/// The route at which the server serves the files of its local storage.
pub const IMAGES_ROUTE: &str = "/images/";

/// What a server without a public address for its files tells people: said in the start-up
/// log, on the status page and in pull requests.
pub const NO_PUBLIC_BASE_URL: &str = "the server has no public URL for its images: hosts reach them only once PUBLIC_URL (or publish.base_url in CONFIG_FILE) is set";

/// Whether `url` is a plain base address: `http://` or `https://`, a host, and a path;
/// nothing that would change what a file name appended to it means or carry a secret into
/// every link made from it (a user name or password, a query, a fragment), and no
/// whitespace, control characters or backslashes.
pub fn is_plain_base_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty()
        && !host.contains('@')
        && !rest.contains(['?', '#', '\\'])
        && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Where published files are downloaded from, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicBaseUrl {
    /// `publish.base_url`, set in the settings file on purpose. Ends with `/`.
    Configured(String),
    /// `PUBLIC_URL` followed by `/images/`: the files are in the local directory this
    /// server serves there. Ends with `/`.
    ServedHere(String),
    /// [`BUCKET_DEFAULT_BASE_URL`]: the files are in a bucket and the settings file names no
    /// address.
    BucketDefault,
    /// None: the files are in the local directory and the server has no `PUBLIC_URL`. Only
    /// the server's own pages can link them, relatively, at [`IMAGES_ROUTE`].
    None,
}

impl PublicBaseUrl {
    /// The address for files kept in `storage`, given the settings file's `publish` table
    /// and `PUBLIC_URL` (`public_url`, without a trailing `/` or with one).
    pub fn resolve(
        publish: &PublishSettings,
        storage: &Storage,
        public_url: Option<&str>,
    ) -> PublicBaseUrl {
        if let Some(configured) = &publish.base_url {
            return PublicBaseUrl::Configured(configured.clone());
        }
        match (storage, public_url) {
            (Storage::S3(_), _) => PublicBaseUrl::BucketDefault,
            (Storage::Local(_), Some(public_url)) => PublicBaseUrl::ServedHere(format!(
                "{}{IMAGES_ROUTE}",
                public_url.trim_end_matches('/')
            )),
            (Storage::Local(_), None) => PublicBaseUrl::None,
        }
    }

    /// The base address, ending with `/`; `None` when there is no public one.
    pub fn base(&self) -> Option<&str> {
        match self {
            PublicBaseUrl::Configured(url) | PublicBaseUrl::ServedHere(url) => Some(url),
            PublicBaseUrl::BucketDefault => Some(BUCKET_DEFAULT_BASE_URL),
            PublicBaseUrl::None => None,
        }
    }

    /// The public address of `file`; `None` when there is no public base address.
    pub fn url(&self, file: &str) -> Option<String> {
        self.base().map(|base| format!("{base}{file}"))
    }

    /// Where the address comes from, in a few words naming the setting.
    pub fn source(&self) -> &'static str {
        match self {
            PublicBaseUrl::Configured(_) => "publish.base_url in CONFIG_FILE",
            PublicBaseUrl::ServedHere(_) => {
                "PUBLIC_URL + /images/: storage is the local directory this server serves"
            }
            PublicBaseUrl::BucketDefault => {
                "the built-in address of the production bucket: storage is a bucket and publish.base_url is not set"
            }
            PublicBaseUrl::None => {
                "none: storage is the local directory and neither PUBLIC_URL nor publish.base_url is set"
            }
        }
    }
}

impl fmt::Display for PublicBaseUrl {
    /// The base address, or `none` when there is no public one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base().unwrap_or("none"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_base_url_is_a_plain_address() {
        for good in [
            "https://images.example.org/",
            "http://127.0.0.1:3000/images/",
            "https://example.org",
        ] {
            assert!(is_plain_base_url(good), "{good}");
        }
        for bad in [
            "ftp://example.org/",
            "https://",
            "https:///images/",
            "https://user:secret@example.org/",
            "https://example.org/?x=1",
            "https://example.org/#top",
            "https://example.org/a b/",
            "https://example.org/a\\b/",
            "https://example.org/\u{1b}/",
            "javascript:alert(1)",
        ] {
            assert!(!is_plain_base_url(bad), "{bad}");
        }
    }

    fn local() -> Storage {
        Storage::from_env(|_| None, Path::new("/data")).unwrap()
    }

    fn bucket() -> Storage {
        let values = [
            ("R2_ENDPOINT", "https://acct.r2.cloudflarestorage.com"),
            ("R2_BUCKET", "images"),
            ("R2_ACCESS_KEY_ID", "id"),
            ("R2_SECRET_ACCESS_KEY", "secret"),
        ];
        Storage::from_env(
            |name| {
                values
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            },
            Path::new("/data"),
        )
        .unwrap()
    }

    fn publish(base_url: Option<&str>) -> PublishSettings {
        PublishSettings {
            base_url: base_url.map(str::to_owned),
            ..PublishSettings::default()
        }
    }

    #[test]
    fn a_base_url_set_in_the_file_wins_whatever_the_storage() {
        let configured = publish(Some("https://images.example.test/sysext/"));
        for storage in [local(), bucket()] {
            for public_url in [None, Some("https://alloy.example.test")] {
                let resolved = PublicBaseUrl::resolve(&configured, &storage, public_url);
                assert_eq!(
                    resolved,
                    PublicBaseUrl::Configured("https://images.example.test/sysext/".into())
                );
                assert_eq!(
                    resolved.url("alloy-1.2.3-amd64.raw").as_deref(),
                    Some("https://images.example.test/sysext/alloy-1.2.3-amd64.raw")
                );
                assert_eq!(resolved.source(), "publish.base_url in CONFIG_FILE");
            }
        }
    }

    #[test]
    fn local_storage_with_a_public_url_is_served_here() {
        for public_url in ["https://alloy.example.test", "https://alloy.example.test/"] {
            let resolved = PublicBaseUrl::resolve(&publish(None), &local(), Some(public_url));
            assert_eq!(
                resolved,
                PublicBaseUrl::ServedHere("https://alloy.example.test/images/".into())
            );
            assert_eq!(
                resolved.url("SHA256SUMS").as_deref(),
                Some("https://alloy.example.test/images/SHA256SUMS")
            );
            assert_eq!(resolved.to_string(), "https://alloy.example.test/images/");
        }
    }

    #[test]
    fn a_bucket_without_a_base_url_is_the_production_domain() {
        for public_url in [None, Some("https://alloy.example.test")] {
            let resolved = PublicBaseUrl::resolve(&publish(None), &bucket(), public_url);
            assert_eq!(resolved, PublicBaseUrl::BucketDefault);
            assert_eq!(
                resolved.url("alloy-1.2.3-amd64.raw").as_deref(),
                Some("https://ghost-sysext-images.separationofconcerns.dev/alloy-1.2.3-amd64.raw")
            );
        }
    }

    #[test]
    fn local_storage_without_a_public_url_has_no_public_address() {
        let resolved = PublicBaseUrl::resolve(&publish(None), &local(), None);
        assert_eq!(resolved, PublicBaseUrl::None);
        assert_eq!(resolved.base(), None);
        assert_eq!(resolved.url("alloy-1.2.3-amd64.raw"), None);
        assert_eq!(resolved.to_string(), "none");
        assert!(resolved.source().contains("PUBLIC_URL"));
        assert!(resolved.source().contains("publish.base_url"));
    }
}
