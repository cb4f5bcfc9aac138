//! The formats an image is published in.

use std::fmt;
use std::str::FromStr;

/// One format of the image of a version and architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageFormat {
    /// The squashfs image `alloy-V-ARCH.raw`, checked by hosts when they download it.
    Squashfs,
    /// The signed dm-verity disk image `alloy-V-ARCH.ddi.raw`, checked by the kernel every
    /// time it reads it.
    Ddi,
}

/// A format name that is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("unknown image format {0:?}: use squashfs or ddi")]
pub struct UnknownImageFormat(String);

impl ImageFormat {
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Squashfs => "squashfs",
            ImageFormat::Ddi => "ddi",
        }
    }

    /// What the format's file names end in: `.raw` or `.ddi.raw`.
    pub fn file_suffix(self) -> &'static str {
        match self {
            ImageFormat::Squashfs => ".raw",
            ImageFormat::Ddi => ".ddi.raw",
        }
    }
}

impl FromStr for ImageFormat {
    type Err = UnknownImageFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "squashfs" => Ok(ImageFormat::Squashfs),
            "ddi" => Ok(ImageFormat::Ddi),
            other => Err(UnknownImageFormat(other.chars().take(32).collect())),
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("ddi".parse::<ImageFormat>().unwrap(), ImageFormat::Ddi);
        assert_eq!(
            " squashfs".parse::<ImageFormat>().unwrap(),
            ImageFormat::Squashfs
        );
        assert_eq!(
            "erofs".parse::<ImageFormat>().unwrap_err().to_string(),
            "unknown image format \"erofs\": use squashfs or ddi"
        );
    }
}
