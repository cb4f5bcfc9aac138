//! Where published files go: an S3-compatible bucket (Cloudflare R2 in production) or, when
//! none is configured, a local directory.
//!
//! Both skip an object that is already there with the same content, so publishing the same
//! build twice sends nothing, both take a delete of a missing object as done, both copy an
//! object to another key inside the bucket or directory (promoting a version from one
//! channel's prefix to the next) and tell a missing source from a failure, and both refuse
//! keys that could name something outside the bucket or directory (`..`, a leading `/`,
//! backslashes, NULs) before any request or file access.

pub mod local;
pub mod s3;

use std::fmt;
use std::io;
use std::path::Path;

use crate::secret::Secret;

/// Cache-Control for files that never change under their name: images, `.sha256`, `.asc`.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache-Control for files that change with every release: `SHA256SUMS`, `SHA256SUMS.gpg`.
pub const SHORT_LIVED: &str = "public, max-age=300";

/// How long caches may keep the published file `key`: the manifest and its signature
/// change with every release, everything else never changes under its name. Judged by the
/// key's last path segment, so a channel's `canary/SHA256SUMS` is a manifest too.
pub fn cache_control_of(key: &str) -> &'static str {
    let name = file_name_of(key);
    if name == crate::artifacts::MANIFEST_FILE || name == crate::artifacts::MANIFEST_SIGNATURE_FILE
    {
        SHORT_LIVED
    } else {
        IMMUTABLE
    }
}

/// The Content-Type of the published file `key`, judged by its last path segment.
pub fn content_type_of(key: &str) -> &'static str {
    let name = file_name_of(key);
    if name.ends_with(".asc") || name.ends_with(".gpg") {
        "application/pgp-signature"
    } else if name.ends_with(".sha256") || name == crate::artifacts::MANIFEST_FILE {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// The last path segment of `key`: `SHA256SUMS` for `canary/SHA256SUMS`.
fn file_name_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// One file to publish under `key`.
#[derive(Clone, Copy, Debug)]
pub struct PutRequest<'a> {
    pub key: &'a str,
    pub path: &'a Path,
    /// Lowercase hex sha256 of the file, computed by the caller.
    pub sha256: &'a str,
    pub content_type: &'a str,
    pub cache_control: &'a str,
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The file was written or uploaded.
    Uploaded,
    /// An object with this key and the same content is there already: nothing was sent.
    Unchanged,
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The object was there and is gone now.
    Removed,
    /// There was no object under this key: nothing to do.
    Absent,
}

/// What a copy did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    /// The destination holds the source's content now (in a bucket, with the source's
    /// Content-Type, Cache-Control and sha256 metadata), replacing what was there.
    Copied,
    /// There is no object under the source key: nothing was written.
    SourceAbsent,
}

/// A failed storage operation. Messages name the operation and key, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key could name something outside the bucket or directory; nothing was sent.
    #[error("refused storage key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The request itself is malformed (for example a sha256 that is not 64 hex digits).
    #[error("refused to store {key:?}: {reason}")]
    InvalidRequest { key: String, reason: String },
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The lease this write was made under passed to another replica; nothing was written.
    #[error(transparent)]
    FenceLost(#[from] crate::fence::FenceLost),
    /// The S3 server refused the request, or could not be reached.
    #[error("S3 {operation} of {key:?} failed: {message}")]
    Remote {
        operation: &'static str,
        key: String,
        /// Worth retrying later: network errors, timeouts, 5xx, throttling.
        transient: bool,
        message: String,
    },
}

impl StorageError {
    /// Whether the same operation may succeed later: network errors, timeouts, 5xx and
    /// throttling are transient; access denied, no such bucket, bad keys and bad
    /// configuration are not.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Remote { transient, .. } => *transient,
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            // A fence that could not be checked may be held still; one that passed to
            // another replica is told apart by its holder.
            StorageError::FenceLost(_) => true,
            StorageError::InvalidKey { .. } | StorageError::InvalidRequest { .. } => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Storage settings that cannot work. Never shows a credential.
#[derive(Debug, thiserror::Error)]
pub enum StorageConfigError {
    #[error(
        "S3 storage is partly configured: {} missing (set all of {} for S3 storage, or none of them for local storage)",
        describe_missing(.missing),
        REQUIRED_S3_VARIABLES.join(", ")
    )]
    Incomplete { missing: Vec<&'static str> },
    #[error("{variable}: {reason}")]
    Invalid {
        variable: &'static str,
        reason: String,
    },
}

fn describe_missing(missing: &[&'static str]) -> String {
    match missing {
        [one] => format!("{one} is"),
        [init @ .., last] => format!("{} and {last} are", init.join(", ")),
        [] => "nothing is".to_owned(),
    }
}

/// The variables that together select S3 storage.
pub const REQUIRED_S3_VARIABLES: [&str; 4] = [
    "R2_ENDPOINT",
    "R2_BUCKET",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
];

/// The storage the server publishes to.
#[derive(Clone, Debug)]
pub enum Storage {
    S3(s3::S3Storage),
    Local(local::LocalStorage),
}

impl Storage {
    /// Reads the storage settings through `lookup` (an environment variable's value by name):
    /// `R2_ENDPOINT`, `R2_BUCKET`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY` (all four, or
    /// none: a partial set is an error naming what is missing), `S3_REGION` (default `auto`),
    /// `S3_FORCE_PATH_STYLE` (`true`/`false`/`1`/`0`, default false). Without them: local
    /// storage in `data_dir/images`. Empty values count as unset.
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
        data_dir: &Path,
    ) -> Result<Storage, StorageConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let values = REQUIRED_S3_VARIABLES.map(&get);
        if values.iter().all(Option::is_none) {
            return Ok(Storage::Local(local::LocalStorage::new(
                data_dir.join("images"),
            )));
        }
        let missing: Vec<&'static str> = REQUIRED_S3_VARIABLES
            .iter()
            .zip(&values)
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(StorageConfigError::Incomplete { missing });
        }
        let [endpoint, bucket, access_key_id, secret_access_key] = values.map(Option::unwrap);
        let force_path_style = match get("S3_FORCE_PATH_STYLE").as_deref() {
            None => false,
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(StorageConfigError::Invalid {
                    variable: "S3_FORCE_PATH_STYLE",
                    reason: format!("{other:?} is not one of true, false, 1, 0"),
                });
            }
        };
        let settings = s3::S3Settings {
            endpoint,
            bucket,
            region: get("S3_REGION").unwrap_or_else(|| "auto".to_owned()),
            access_key_id: Secret::new(access_key_id),
            secret_access_key: Secret::new(secret_access_key),
            force_path_style,
        };
        Ok(Storage::S3(s3::S3Storage::new(settings)?))
    }

    /// Stores the file `request.path` under `request.key`, unless an object with that key
    /// and the same content (by sha256) is there already.
    /// A write: made only while the lease it is made under is held ([`crate::fence`]).
    pub async fn put_file(&self, request: &PutRequest<'_>) -> Result<PutOutcome, StorageError> {
        crate::fence::check().await?;
        match self {
            Storage::S3(s3) => s3.put_file(request).await,
            Storage::Local(local) => local.put_file(request).await,
        }
    }

    /// Whether an object with `request.key` and the same content is there already: what
    /// [`Self::put_file`] would leave alone. Nothing is written.
    pub async fn holds(&self, request: &PutRequest<'_>) -> Result<bool, StorageError> {
        match self {
            Storage::S3(s3) => s3.holds(request).await,
            Storage::Local(local) => local.holds(request).await,
        }
    }

    /// The object stored under `key`, or `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Storage::S3(s3) => s3.get(key).await,
            Storage::Local(local) => local.get(key).await,
        }
    }

    /// The sha256 (lowercase hex) of the object stored under `key`, read in pieces rather
    /// than held whole (images are large); `None` when there is none.
    pub async fn sha256_of(&self, key: &str) -> Result<Option<String>, StorageError> {
        match self {
            Storage::S3(s3) => s3.sha256_of(key).await,
            Storage::Local(local) => local.sha256_of(key).await,
        }
    }

    /// Deletes the object stored under `key`. A missing object is no error
    /// ([`DeleteOutcome::Absent`]), so a delete cut short can be made again.
    pub async fn delete(&self, key: &str) -> Result<DeleteOutcome, StorageError> {
        crate::fence::check().await?;
        match self {
            Storage::S3(s3) => s3.delete(key).await,
            Storage::Local(local) => local.delete(key).await,
        }
    }

    /// Copies the object stored under `from` to `to`, replacing any object there, inside
    /// the same bucket or directory. A missing source is no error
    /// ([`CopyOutcome::SourceAbsent`]), so the caller can name the file that is gone; a
    /// missing bucket is. Both keys are checked before any request, and a copy onto itself
    /// is refused.
    pub async fn copy(&self, from: &str, to: &str) -> Result<CopyOutcome, StorageError> {
        crate::fence::check().await?;
        match self {
            Storage::S3(s3) => s3.copy(from, to).await,
            Storage::Local(local) => local.copy(from, to).await,
        }
    }

    /// Where files go, for logs and the status page: `s3 bucket B at https://… (path
    /// style)` or `directory /x/images`. Never a secret.
    pub fn describe(&self) -> String {
        match self {
            Storage::S3(s3) => s3.describe(),
            Storage::Local(local) => local.describe(),
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Refuses keys that could name something outside the bucket or directory, or that S3 and
/// file systems treat differently: empty, longer than 1024 bytes, a leading `/`, `..`
/// anywhere, empty or `.` path segments, backslashes, NULs and other control characters.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let refuse = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return refuse("it is empty");
    }
    if key.len() > 1024 {
        return refuse("it is longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return refuse("it starts with '/'");
    }
    if key.contains("..") {
        return refuse("it contains '..'");
    }
    if key.contains('\\') {
        return refuse("it contains a backslash");
    }
    if key.contains('\0') {
        return refuse("it contains a NUL");
    }
    if key.chars().any(char::is_control) {
        return refuse("it contains a control character");
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == ".")
    {
        return refuse("it has an empty or '.' path segment");
    }
    Ok(())
}

/// Checks both keys of a copy, and that they differ: S3 refuses a copy onto itself that
/// changes nothing, and in a directory it would be a rename of a file to its own name.
pub(crate) fn checked_copy_keys(from: &str, to: &str) -> Result<(), StorageError> {
    validate_key(from)?;
    validate_key(to)?;
    if from == to {
        return Err(StorageError::InvalidRequest {
            key: to.to_owned(),
            reason: "it is also the key copied from".to_owned(),
        });
    }
    Ok(())
}

/// Checks that `request.sha256` is 64 hex digits, and returns it lowercased.
pub(crate) fn checked_sha256(request: &PutRequest<'_>) -> Result<String, StorageError> {
    let sha256 = request.sha256;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StorageError::InvalidRequest {
            key: request.key.to_owned(),
            reason: format!("sha256 {sha256:?} is not 64 hex digits"),
        });
    }
    Ok(sha256.to_ascii_lowercase())
}

/// The sha256 of `data`, lowercase hex.
pub(crate) fn sha256_of_bytes(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn keys_that_could_escape_are_refused() {
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/..",
            "a..b",
            "a\\b",
            "a\0b",
            "a\nb",
            "a//b",
            "a/",
            "./a",
            "a/./b",
        ] {
            let error = validate_key(key).unwrap_err();
            assert!(matches!(error, StorageError::InvalidKey { .. }), "{key:?}");
            assert!(!error.is_transient());
        }
        assert!(validate_key(&"a".repeat(1025)).is_err());
        for key in [
            "SHA256SUMS",
            "alloy-1.17.1-amd64.raw",
            "dir/alloy-1.17.1-amd64.raw.sha256",
            ".hidden",
        ] {
            validate_key(key).unwrap();
        }
    }

    #[test]
    fn headers_follow_the_last_path_segment_of_the_key() {
        for prefix in ["", "canary/", "channels/beta/"] {
            let of = |name: &str| format!("{prefix}{name}");
            assert_eq!(cache_control_of(&of("SHA256SUMS")), SHORT_LIVED, "{prefix}");
            assert_eq!(
                cache_control_of(&of("SHA256SUMS.gpg")),
                SHORT_LIVED,
                "{prefix}"
            );
            for immutable in [
                "alloy-1.2.3-amd64.raw",
                "alloy-1.2.3-amd64.raw.sha256",
                "alloy-1.2.3-amd64.raw.asc",
                "SHA256SUMS.sha256",
            ] {
                assert_eq!(
                    cache_control_of(&of(immutable)),
                    IMMUTABLE,
                    "{prefix}{immutable}"
                );
            }
            assert_eq!(
                content_type_of(&of("SHA256SUMS")),
                "text/plain; charset=utf-8"
            );
            assert_eq!(
                content_type_of(&of("SHA256SUMS.gpg")),
                "application/pgp-signature"
            );
            assert_eq!(
                content_type_of(&of("alloy-1.2.3-amd64.raw.asc")),
                "application/pgp-signature"
            );
            assert_eq!(
                content_type_of(&of("alloy-1.2.3-amd64.raw.sha256")),
                "text/plain; charset=utf-8"
            );
            assert_eq!(
                content_type_of(&of("alloy-1.2.3-amd64.raw")),
                "application/octet-stream"
            );
        }
        // Only the whole last segment counts: a directory named like the manifest, or a
        // file whose name merely ends like it, is not one.
        assert_eq!(
            cache_control_of("SHA256SUMS/alloy-1.2.3-amd64.raw"),
            IMMUTABLE
        );
        assert_eq!(cache_control_of("canary/old-SHA256SUMS"), IMMUTABLE);
        assert_eq!(
            content_type_of("SHA256SUMS/alloy-1.2.3-amd64.raw"),
            "application/octet-stream"
        );
        assert_eq!(
            content_type_of("canary/old-SHA256SUMS"),
            "application/octet-stream"
        );
    }

    #[test]
    fn a_copy_needs_two_valid_and_different_keys() {
        checked_copy_keys("canary/alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw").unwrap();
        // The refused key is named, whichever of the two it is.
        for (from, to, refused) in [
            ("../x", "x", "../x"),
            ("x", "../x", "../x"),
            ("canary/x", "/x", "/x"),
            ("", "x", ""),
            ("x", "", ""),
        ] {
            let error = checked_copy_keys(from, to).unwrap_err();
            assert!(
                matches!(&error, StorageError::InvalidKey { key, .. } if key == refused),
                "{from:?} -> {to:?}: {error}"
            );
        }
        let error = checked_copy_keys("canary/x", "canary/x").unwrap_err();
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "refused to store \"canary/x\": it is also the key copied from"
        );
    }

    #[test]
    fn without_settings_storage_is_local() {
        let storage = Storage::from_env(lookup(&[("S3_REGION", "x")]), Path::new("/data")).unwrap();
        assert_eq!(storage.describe(), "directory /data/images");
        // Empty values count as unset.
        let storage = Storage::from_env(
            lookup(&[("R2_ENDPOINT", ""), ("R2_BUCKET", " ")]),
            Path::new("/data"),
        )
        .unwrap();
        assert!(matches!(storage, Storage::Local(_)));
    }

    #[test]
    fn a_partial_set_names_what_is_missing() {
        let error = Storage::from_env(
            lookup(&[
                ("R2_ENDPOINT", "https://example.invalid"),
                ("R2_ACCESS_KEY_ID", "id"),
            ]),
            Path::new("/data"),
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("R2_BUCKET and R2_SECRET_ACCESS_KEY are missing"),
            "{message}"
        );
        let error = Storage::from_env(
            lookup(&[("R2_SECRET_ACCESS_KEY", "very-secret")]),
            Path::new("/data"),
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("R2_ENDPOINT, R2_BUCKET and R2_ACCESS_KEY_ID are missing"),
            "{message}"
        );
        assert!(!message.contains("very-secret"));
        assert!(!format!("{error:?}").contains("very-secret"));
    }

    #[test]
    fn s3_settings_are_read_and_never_shown() {
        let full = [
            ("R2_ENDPOINT", "https://acct.r2.cloudflarestorage.com"),
            ("R2_BUCKET", "images"),
            ("R2_ACCESS_KEY_ID", "key-id-1234"),
            ("R2_SECRET_ACCESS_KEY", "very-secret-5678"),
        ];
        let storage = Storage::from_env(lookup(&full), Path::new("/data")).unwrap();
        assert_eq!(
            storage.describe(),
            "s3 bucket images at https://acct.r2.cloudflarestorage.com (virtual-hosted style, region auto)"
        );
        let debug = format!("{storage:?}");
        for shown in [storage.describe(), debug] {
            assert!(!shown.contains("very-secret-5678"), "{shown}");
            assert!(!shown.contains("key-id-1234"), "{shown}");
        }

        let mut with_options = full.to_vec();
        with_options.push(("S3_FORCE_PATH_STYLE", "1"));
        with_options.push(("S3_REGION", "eu-west-1"));
        let storage = Storage::from_env(lookup(&with_options), Path::new("/data")).unwrap();
        assert_eq!(
            storage.describe(),
            "s3 bucket images at https://acct.r2.cloudflarestorage.com (path style, region eu-west-1)"
        );

        let mut bad = full.to_vec();
        bad.push(("S3_FORCE_PATH_STYLE", "yes"));
        let error = Storage::from_env(lookup(&bad), Path::new("/data")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "S3_FORCE_PATH_STYLE: \"yes\" is not one of true, false, 1, 0"
        );

        for endpoint in [
            "acct.r2.cloudflarestorage.com",
            "ftp://host",
            "https://user:pw@host",
        ] {
            let mut bad = full.to_vec();
            bad[0] = ("R2_ENDPOINT", endpoint);
            let error = Storage::from_env(lookup(&bad), Path::new("/data")).unwrap_err();
            assert!(error.to_string().starts_with("R2_ENDPOINT: "), "{error}");
            assert!(!error.to_string().contains("pw"), "{error}");
        }
    }

    #[test]
    fn malformed_digests_are_refused() {
        fn request(sha256: &str) -> PutRequest<'_> {
            PutRequest {
                key: "k",
                path: Path::new("/nonexistent"),
                sha256,
                content_type: "text/plain",
                cache_control: SHORT_LIVED,
            }
        }
        assert!(checked_sha256(&request("abc")).is_err());
        assert!(checked_sha256(&request(&"g".repeat(64))).is_err());
        assert_eq!(
            checked_sha256(&request(&"AB".repeat(32))).unwrap(),
            "ab".repeat(32)
        );
    }
}
