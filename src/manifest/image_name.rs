//! Reading a version and architecture back out of a published file name.

use crate::arch::Arch;
use crate::version::Version;

/// What a published image's file name says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFileName {
    /// The extension name (`alloy`).
    pub name: String,
    pub version: Version,
    /// `None` for the compatibility name `alloy-1.17.1.raw`.
    pub arch: Option<Arch>,
}

impl ImageFileName {
    /// Parses `<name>-<version>[-<arch>].raw`; `None` for anything else.
    ///
    /// ```
    /// use alloy_sysext_automation::manifest::image_name::ImageFileName;
    /// let parsed = ImageFileName::parse("alloy-1.17.1-amd64.raw").unwrap();
    /// assert_eq!(parsed.version.as_str(), "1.17.1");
    /// ```
    pub fn parse(file: &str) -> Option<ImageFileName> {
        let stem = file.strip_suffix(".raw")?;
        let (stem, arch) = match stem.rsplit_once('-') {
            Some((rest, arch)) if arch.parse::<Arch>().is_ok() => (rest, arch.parse().ok()),
            _ => (stem, None),
        };
        // The version starts at the first `-` followed by a digit.
        let split = stem
            .char_indices()
            .find(|&(i, c)| c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
            .map(|(i, _)| i)?;
        let version = stem[split + 1..].parse().ok()?;
        Some(ImageFileName {
            name: stem[..split].to_owned(),
            version,
            arch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_name_forms() {
        let a = ImageFileName::parse("alloy-1.17.1-arm64.raw").unwrap();
        assert_eq!(
            (a.name.as_str(), a.version.as_str(), a.arch),
            ("alloy", "1.17.1", Some(Arch::Arm64))
        );
        let c = ImageFileName::parse("alloy-1.10.0.raw").unwrap();
        assert_eq!((c.version.as_str(), c.arch), ("1.10.0", None));
        let t = ImageFileName::parse("tailscale-sysext-1.2.3-amd64.raw").unwrap();
        assert_eq!(t.name, "tailscale-sysext");
        assert!(ImageFileName::parse("SHA256SUMS").is_none());
        assert!(ImageFileName::parse("alloy.raw").is_none());
    }
}
