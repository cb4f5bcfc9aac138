//! Reading a version, architecture and format back out of a published file name.

use crate::arch::Arch;
use crate::artifacts::image_format::ImageFormat;
use crate::version::Version;

/// What a published image's file name says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFileName {
    /// The extension name (`alloy`).
    pub name: String,
    pub version: Version,
    /// `None` for the compatibility name `alloy-1.17.1.raw`.
    pub arch: Option<Arch>,
    /// The squashfs image (`.raw`) or the signed dm-verity image (`.ddi.raw`).
    pub format: ImageFormat,
}

impl ImageFileName {
    /// Parses `<name>-<version>[-<arch>].raw` and `<name>-<version>-<arch>.ddi.raw` (a DDI
    /// always names its architecture); `None` for anything else.
    ///
    /// ```
    /// use alloy_sysext_automation::artifacts::image_format::ImageFormat;
    /// use alloy_sysext_automation::manifest::image_name::ImageFileName;
    /// let parsed = ImageFileName::parse("alloy-1.17.1-amd64.raw").unwrap();
    /// assert_eq!(parsed.version.as_str(), "1.17.1");
    /// let ddi = ImageFileName::parse("alloy-1.17.1-amd64.ddi.raw").unwrap();
    /// assert_eq!(ddi.format, ImageFormat::Ddi);
    /// ```
    pub fn parse(file: &str) -> Option<ImageFileName> {
        if let Some(stem) = file.strip_suffix(ImageFormat::Ddi.file_suffix())
            && let Some(parsed) = Self::parse_stem(stem, ImageFormat::Ddi)
        {
            return parsed.arch.is_some().then_some(parsed);
        }
        Self::parse_stem(
            file.strip_suffix(ImageFormat::Squashfs.file_suffix())?,
            ImageFormat::Squashfs,
        )
    }

    fn parse_stem(stem: &str, format: ImageFormat) -> Option<ImageFileName> {
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
            format,
        })
    }

    /// The file name this was parsed from.
    pub fn file_name(&self) -> String {
        let arch = self.arch.map(|a| format!("-{a}")).unwrap_or_default();
        format!(
            "{}-{}{arch}{}",
            self.name,
            self.version,
            self.format.file_suffix()
        )
    }

    /// The same image in `format`: `alloy-1.17.1-amd64.ddi.raw` for the squashfs image
    /// `alloy-1.17.1-amd64.raw`, and back.
    pub fn in_format(&self, format: ImageFormat) -> ImageFileName {
        ImageFileName {
            format,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_name_forms() {
        let a = ImageFileName::parse("alloy-1.17.1-arm64.raw").unwrap();
        assert_eq!(
            (a.name.as_str(), a.version.as_str(), a.arch, a.format),
            ("alloy", "1.17.1", Some(Arch::Arm64), ImageFormat::Squashfs)
        );
        let c = ImageFileName::parse("alloy-1.10.0.raw").unwrap();
        assert_eq!((c.version.as_str(), c.arch), ("1.10.0", None));
        let t = ImageFileName::parse("tailscale-sysext-1.2.3-amd64.raw").unwrap();
        assert_eq!(t.name, "tailscale-sysext");
        assert!(ImageFileName::parse("SHA256SUMS").is_none());
        assert!(ImageFileName::parse("alloy.raw").is_none());
    }

    #[test]
    fn parses_ddi_names_which_always_carry_an_architecture() {
        let d = ImageFileName::parse("alloy-1.17.1-amd64.ddi.raw").unwrap();
        assert_eq!(
            (d.name.as_str(), d.version.as_str(), d.arch, d.format),
            ("alloy", "1.17.1", Some(Arch::Amd64), ImageFormat::Ddi)
        );
        assert_eq!(d.file_name(), "alloy-1.17.1-amd64.ddi.raw");
        assert_eq!(
            d.in_format(ImageFormat::Squashfs).file_name(),
            "alloy-1.17.1-amd64.raw"
        );
        assert!(ImageFileName::parse("alloy-1.17.1.ddi.raw").is_none());
        assert!(ImageFileName::parse("alloy-1.17.1-amd64.ddi.raw.asc").is_none());
        let c = ImageFileName::parse("alloy-1.10.0.raw").unwrap();
        assert_eq!(c.file_name(), "alloy-1.10.0.raw");
    }
}
