//! Release versions: what a version string may look like, and how systemd orders them.
//!
//! A version ends up in file names, object keys, branch names and commit messages, so it is
//! validated once, here, and everything else takes a [`Version`] rather than a string.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The longest version accepted; real ones are a dozen characters.
const MAX_LEN: usize = 64;

/// A validated release version such as `1.17.1`.
///
/// The accepted form is `MAJOR.MINOR.PATCH`; a leading `v` (as in a tag) is dropped.
/// Pre-releases (`1.10.0-rc.1`) are refused: systemd orders `1.10.0-rc.1` after `1.10.0`,
/// so a published release candidate would keep hosts from ever taking the final release.
///
/// ```
/// use alloy_sysext_automation::version::Version;
/// let v: Version = "v1.17.1".parse().unwrap();
/// assert_eq!(v.as_str(), "1.17.1");
/// assert!("../../x".parse::<Version>().is_err());
/// assert!("1.10.0-rc.1".parse::<Version>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(String);

/// Why a string is not a [`Version`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid version {shown:?}: {reason}; expected MAJOR.MINOR.PATCH such as 1.17.1")]
pub struct InvalidVersion {
    shown: String,
    reason: &'static str,
}

impl InvalidVersion {
    /// Why the input is not a version, without the input (which may be anything a user
    /// typed, so it is not repeated where Markdown or HTML would render it).
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl Version {
    /// The version without any `v` prefix, as used in file names.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The release tag for this version: `v` + version.
    pub fn tag(&self) -> String {
        format!("v{}", self.0)
    }
}

impl FromStr for Version {
    type Err = InvalidVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidVersion {
            shown: s.chars().take(MAX_LEN).collect(),
            reason,
        };
        if s.len() > MAX_LEN {
            return Err(invalid("too long"));
        }
        let bare = s.strip_prefix('v').unwrap_or(s);
        if bare.contains('-') && bare.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(invalid(
                "pre-releases are not published (systemd would order 1.10.0-rc.1 after 1.10.0, and hosts would never take the final release)",
            ));
        }
        let numbers: Vec<&str> = bare.split('.').collect();
        if numbers.len() != 3 {
            return Err(invalid("it needs exactly three numbers separated by dots"));
        }
        if numbers
            .iter()
            .any(|n| n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("each of the three parts must be a number"));
        }
        Ok(Version(bare.to_owned()))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        systemd_version_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two version strings the way systemd does (`strverscmp_improved`), which is how
/// systemd-sysupdate orders the entries of `SHA256SUMS` and picks the newest image.
///
/// Numbers compare numerically (`1.9.0 < 1.10.0`); `~` sorts before anything, even the end
/// of the string (`123~rc1 < 123`); any other suffix makes a version newer (`123 < 123-a <
/// 123.1`).
/// Strings that compare equal this way (`01` and `1`) fall back to byte order so that the
/// result is a total order.
///
/// ```
/// use alloy_sysext_automation::version::systemd_version_cmp;
/// use std::cmp::Ordering;
/// assert_eq!(systemd_version_cmp("alloy-1.9.0-amd64.raw", "alloy-1.10.0-amd64.raw"), Ordering::Less);
/// ```
pub fn systemd_version_cmp(a: &str, b: &str) -> Ordering {
    strverscmp_improved(a.as_bytes(), b.as_bytes()).then_with(|| a.cmp(b))
}

fn is_valid_version_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

/// A port of systemd's `strverscmp_improved()` (src/fundamental/string-util-fundamental.c).
fn strverscmp_improved(mut a: &[u8], mut b: &[u8]) -> Ordering {
    let at = |s: &[u8]| s.first().copied().unwrap_or(0);
    loop {
        while !a.is_empty() && !is_valid_version_char(a[0]) {
            a = &a[1..];
        }
        while !b.is_empty() && !is_valid_version_char(b[0]) {
            b = &b[1..];
        }

        // '~' marks a pre-release: the string that has it is older.
        if at(a) == b'~' || at(b) == b'~' {
            let r = (at(a) != b'~').cmp(&(at(b) != b'~'));
            if r.is_ne() {
                return r;
            }
            a = &a[1..];
            b = &b[1..];
        }

        // At the end of either string the longer one is newer.
        if a.is_empty() || b.is_empty() {
            return at(a).cmp(&at(b));
        }

        // '-', '^' and '.' separate segments; where only one string has the separator, that
        // one is older (`123-a < 123^p < 123.a < 123a`).
        for separator in [b'-', b'^', b'.'] {
            if at(a) == separator || at(b) == separator {
                let r = (at(a) != separator).cmp(&(at(b) != separator));
                if r.is_ne() {
                    return r;
                }
                a = &a[1..];
                b = &b[1..];
            }
        }

        let (a_len, b_len);
        if at(a).is_ascii_digit() || at(b).is_ascii_digit() {
            a = trim_leading_zeros(a);
            b = trim_leading_zeros(b);
            a_len = a.iter().take_while(|c| c.is_ascii_digit()).count();
            b_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
            // The longer run of digits is the larger number; same length compares as text.
            let r = a_len.cmp(&b_len).then_with(|| a[..a_len].cmp(&b[..b_len]));
            if r.is_ne() {
                return r;
            }
        } else {
            a_len = a.iter().take_while(|c| c.is_ascii_alphabetic()).count();
            b_len = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
            let common = a_len.min(b_len);
            let r = a[..common].cmp(&b[..common]).then(a_len.cmp(&b_len));
            if r.is_ne() {
                return r;
            }
        }
        a = &a[a_len..];
        b = &b[b_len..];
    }
}

fn trim_leading_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_releases_and_refuses_prereleases() {
        assert_eq!("1.17.1".parse::<Version>().unwrap().as_str(), "1.17.1");
        assert_eq!("v1.10.0".parse::<Version>().unwrap().tag(), "v1.10.0");
        let err = "1.10.0-rc.1".parse::<Version>().unwrap_err().to_string();
        assert!(err.contains("pre-releases are not published"), "{err}");
    }

    #[test]
    fn rejects_hostile_and_malformed_versions() {
        for bad in [
            "",
            "1.2",
            "1.2.3.4",
            "../../x",
            "1.0.0;rm",
            "1.0.0/../../x",
            "1.0.0 ",
            " 1.0.0",
            "1.0.0-",
            "1.0.0-rc..1",
            "1.0.0-rc/1",
            "1.a.0",
            "1..0",
            "v",
            "1.0.0\n",
            "-1.0.0",
            "１.0.0",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} was accepted");
        }
        let long = format!("1.0.0-{}", "a".repeat(100));
        assert!(long.parse::<Version>().is_err());
    }

    #[test]
    fn error_names_the_input_and_the_expected_form() {
        let err = "1.2".parse::<Version>().unwrap_err().to_string();
        assert!(err.contains("\"1.2\""), "{err}");
        assert!(err.contains("MAJOR.MINOR.PATCH"), "{err}");
    }

    #[test]
    fn the_reason_alone_never_repeats_the_input() {
        for input in [
            "../../x",
            "1.0.0;rm",
            "<b>1</b>",
            "1.2",
            "2.0.0-beta.3",
            &"9".repeat(100),
        ] {
            let error = input.parse::<Version>().unwrap_err();
            assert!(!error.reason().is_empty());
            assert!(!error.reason().contains(input), "{}", error.reason());
            assert!(error.to_string().ends_with(&format!(
                "{}; expected MAJOR.MINOR.PATCH such as 1.17.1",
                error.reason()
            )));
        }
    }

    #[test]
    fn orders_like_systemd() {
        // The ordered list from systemd's own test of strverscmp_improved().
        let ordered = [
            "~1",
            "",
            "ab",
            "abb",
            "abc",
            "0001",
            "002",
            "12",
            "122",
            "122.9",
            "123~rc1",
            "123",
            "123-a",
            "123-a.1",
            "123-a1",
            "123-a1.1",
            "123-3",
            "123-3.1",
            "123^patch1",
            "123^1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124",
        ];
        for (i, older) in ordered.iter().enumerate() {
            for newer in &ordered[i + 1..] {
                assert_eq!(
                    strverscmp_improved(older.as_bytes(), newer.as_bytes()),
                    Ordering::Less,
                    "{older} < {newer}"
                );
                assert_eq!(
                    strverscmp_improved(newer.as_bytes(), older.as_bytes()),
                    Ordering::Greater,
                    "{newer} > {older}"
                );
            }
        }
        for (older, newer) in [
            ("123.45-67.88", "123.45-67.89"),
            ("123.45-67.89", "123.45-67.89a"),
            ("123.45-67.ab", "123.45-67.89"),
            ("123.45-67.9", "123.45-67.89"),
            ("123.45-67", "123.45-67.89"),
            ("1.9.0", "1.10.0"),
            ("alloy-1.9.0-amd64.raw", "alloy-1.10.0-amd64.raw"),
            ("alloy-1.17.1-amd64.raw", "alloy-1.17.1-arm64.raw"),
        ] {
            assert_eq!(
                systemd_version_cmp(older, newer),
                Ordering::Less,
                "{older} < {newer}"
            );
        }
        assert_eq!(systemd_version_cmp("1.17.1", "1.17.1"), Ordering::Equal);
        // Leading zeros are equal to systemd; the byte fallback keeps the order total.
        assert_eq!(strverscmp_improved(b"1.01", b"1.1"), Ordering::Equal);
        assert_ne!(systemd_version_cmp("1.01", "1.1"), Ordering::Equal);
    }

    #[test]
    fn version_type_uses_systemd_order() {
        let a: Version = "1.9.3".parse().unwrap();
        let b: Version = "1.10.0".parse().unwrap();
        assert!(a < b);
    }
}
