//! systemd-sysupdate's `MatchPattern=` for a source, with the one specifier published images
//! use: `@v`, the version (`alloy-@v-amd64.raw`).

use std::fmt;
use std::str::FromStr;

use crate::version::Version;

/// A file name pattern with exactly one `@v` where the version stands.
///
/// ```
/// use alloy_sysext_automation::manifest::match_pattern::MatchPattern;
/// let pattern: MatchPattern = "alloy-@v-amd64.raw".parse().unwrap();
/// assert_eq!(pattern.version_of("alloy-1.17.1-amd64.raw").unwrap().as_str(), "1.17.1");
/// assert!(pattern.version_of("alloy-1.17.1-arm64.raw").is_none());
/// // What a host reads as the version need not be one of ours.
/// assert_eq!(pattern.host_version_of("alloy-1.18.0-rc1-amd64.raw"), Some("1.18.0-rc1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchPattern {
    prefix: String,
    suffix: String,
}

/// Why a string is not a [`MatchPattern`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid match pattern {pattern:?}: {reason} (expected a file name with one @v, such as alloy-@v-amd64.raw)"
)]
pub struct InvalidMatchPattern {
    pattern: String,
    reason: &'static str,
}

impl MatchPattern {
    /// What systemd-sysupdate reads as the version of `file`, when the name matches: as
    /// systemd's `pattern_match()` does, the version runs from the end of the prefix up to
    /// the first occurrence of the suffix (or to the end when there is none), the suffix
    /// must then end the name, and the version must pass systemd's `version_is_valid()`:
    /// not empty, and only ASCII letters, digits and `.,_-+`. Such a version need not be
    /// a [`Version`] of ours (`1.18.0-rc1`, `v1.18.0`).
    pub fn host_version_of<'f>(&self, file: &'f str) -> Option<&'f str> {
        let rest = file.strip_prefix(self.prefix.as_str())?;
        let end = if self.suffix.is_empty() {
            rest.len()
        } else {
            rest.find(self.suffix.as_str())?
        };
        let (version, after) = rest.split_at(end);
        if after != self.suffix {
            return None;
        }
        let valid = !version.is_empty()
            && version != "."
            && version != ".."
            && version.bytes().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'.' | b',' | b'_' | b'-' | b'+')
            });
        valid.then_some(version)
    }

    /// The version in `file`, when the name matches the pattern and what a host reads as
    /// the version is a [`Version`] as written (`MAJOR.MINOR.PATCH`).
    pub fn version_of(&self, file: &str) -> Option<Version> {
        let middle = self.host_version_of(file)?;
        let version: Version = middle.parse().ok()?;
        (version.as_str() == middle).then_some(version)
    }

    /// The file name for `version`.
    pub fn file_for(&self, version: &Version) -> String {
        format!("{}{version}{}", self.prefix, self.suffix)
    }
}

impl FromStr for MatchPattern {
    type Err = InvalidMatchPattern;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidMatchPattern {
            pattern: s.chars().take(100).collect(),
            reason,
        };
        let Some((prefix, suffix)) = s.split_once("@v") else {
            return Err(invalid("it has no @v"));
        };
        if prefix.contains('@') || suffix.contains('@') {
            return Err(invalid(
                "only one specifier, @v, is supported (a literal @ is not either)",
            ));
        }
        if s.contains('/') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "it must be a bare file name, without slashes or whitespace",
            ));
        }
        Ok(MatchPattern {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }
}

impl fmt::Display for MatchPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@v{}", self.prefix, self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_versions_in_place_of_at_v() {
        let pattern: MatchPattern = "alloy-@v-amd64.raw".parse().unwrap();
        assert_eq!(pattern.to_string(), "alloy-@v-amd64.raw");
        assert_eq!(
            pattern.version_of("alloy-1.10.0-amd64.raw"),
            Some("1.10.0".parse().unwrap())
        );
        for other in [
            "alloy-1.10.0.raw",
            "alloy-v1.10.0-amd64.raw",
            "alloy-1.10-amd64.raw",
            "alloy-1.10.0-amd64.raw.asc",
            "SHA256SUMS",
        ] {
            assert_eq!(pattern.version_of(other), None, "{other}");
        }
        assert_eq!(
            pattern.file_for(&"1.2.3".parse().unwrap()),
            "alloy-1.2.3-amd64.raw"
        );
    }

    #[test]
    fn reads_the_version_a_host_reads() {
        let pattern: MatchPattern = "alloy-@v-amd64.raw".parse().unwrap();
        for (file, version) in [
            ("alloy-1.10.0-amd64.raw", Some("1.10.0")),
            ("alloy-1.20.0-rc1-amd64.raw", Some("1.20.0-rc1")),
            ("alloy-v1.20.0-amd64.raw", Some("v1.20.0")),
            ("alloy-1.0+b,2_x-amd64.raw", Some("1.0+b,2_x")),
            // The suffix's first occurrence ends the version; the name must end there.
            ("alloy-1.0-amd64.raw-amd64.raw", None),
            ("alloy-1.0~rc1-amd64.raw", None),
            ("alloy--amd64.raw", None),
            ("alloy-1.0-arm64.raw", None),
        ] {
            assert_eq!(pattern.host_version_of(file), version, "{file}");
        }
        assert_eq!(pattern.version_of("alloy-1.20.0-rc1-amd64.raw"), None);
        assert_eq!(pattern.version_of("alloy-v1.20.0-amd64.raw"), None);
        let bare: MatchPattern = "alloy_@v".parse().unwrap();
        assert_eq!(bare.host_version_of("alloy_1.2.3.raw"), Some("1.2.3.raw"));
    }

    #[test]
    fn refuses_what_it_cannot_match() {
        for bad in ["alloy.raw", "alloy-@v-@a.raw", "a/alloy-@v.raw", "@v @v"] {
            assert!(bad.parse::<MatchPattern>().is_err(), "{bad}");
        }
    }
}
