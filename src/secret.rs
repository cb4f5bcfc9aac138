//! A value that must never be printed: keys, tokens, webhook secrets.

use std::fmt;

use sha2::{Digest, Sha256};

/// Holds a secret string; `Debug` and `Display` show `<redacted>`.
///
/// ```
/// use alloy_sysext_automation::secret::Secret;
/// let s = Secret::new("hunter2".into());
/// assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Whether the value of a variable meant to name a key's file holds key text instead (PEM
/// or armor, or several lines), as happens when a secrets store's value lands in the wrong
/// variable. Such a value must be refused without being shown: it is not a path.
///
/// ```
/// use alloy_sysext_automation::secret::holds_key_text;
/// assert!(holds_key_text("-----BEGIN PRIVATE KEY-----\nMII"));
/// assert!(!holds_key_text("/run/secrets/verity.key"));
/// ```
pub fn holds_key_text(value: &str) -> bool {
    value.contains("-----BEGIN") || value.contains('\n')
}

/// Whether `given` is the secret `expected`, compared by their digests so that the time taken
/// says nothing about how much of it matched.
pub fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
