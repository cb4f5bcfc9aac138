//! Squashfs compression settings: which algorithm and level, and what backhand needs for them.

use std::fmt;
use std::str::FromStr;

use backhand::FilesystemCompressor;
use backhand::compression::{CompressionOptions, Compressor, Gzip, Zstd};
use backhand::{CompressionExtra, ExtraXz};

/// Compression of the image's data and metadata blocks. The Flatcar kernel reads all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// xz (LZMA2) with the dictionary as large as a block, as `mksquashfs -comp xz
    /// -Xdict-size 100%` does; `level` is the xz preset, 0–9.
    Xz { level: u32 },
    /// zstd at `level`, 1–22: much faster to build, somewhat larger.
    Zstd { level: u32 },
    /// gzip (zlib) at `level`, 1–9.
    Gzip { level: u32 },
}

/// An unknown algorithm or an out-of-range level.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompressionError {
    #[error("unknown compression {0:?}: use xz, zstd or gzip")]
    UnknownAlgorithm(String),
    #[error("compression level {level} is out of range for {algorithm} ({range})")]
    LevelOutOfRange {
        algorithm: &'static str,
        level: u32,
        range: &'static str,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Xz { level: 6 }
    }
}

impl Compression {
    /// The algorithm `name` (`xz`, `zstd`, `gzip`) at `level`, or at the default level that
    /// mksquashfs uses for it when `level` is `None`.
    pub fn new(name: &str, level: Option<u32>) -> Result<Self, CompressionError> {
        let (compression, range, max) = match name {
            "xz" => (
                Compression::Xz {
                    level: level.unwrap_or(6),
                },
                "0-9",
                9,
            ),
            "zstd" => (
                Compression::Zstd {
                    level: level.unwrap_or(15),
                },
                "1-22",
                22,
            ),
            "gzip" => (
                Compression::Gzip {
                    level: level.unwrap_or(9),
                },
                "1-9",
                9,
            ),
            other => {
                return Err(CompressionError::UnknownAlgorithm(
                    other.chars().take(32).collect(),
                ));
            }
        };
        let level = compression.level();
        let min = if name == "xz" { 0 } else { 1 };
        if level < min || level > max {
            return Err(CompressionError::LevelOutOfRange {
                algorithm: compression.algorithm(),
                level,
                range,
            });
        }
        Ok(compression)
    }

    /// `xz`, `zstd` or `gzip`.
    pub fn algorithm(self) -> &'static str {
        match self {
            Compression::Xz { .. } => "xz",
            Compression::Zstd { .. } => "zstd",
            Compression::Gzip { .. } => "gzip",
        }
    }

    /// The level in use.
    pub fn level(self) -> u32 {
        match self {
            Compression::Xz { level }
            | Compression::Zstd { level }
            | Compression::Gzip { level } => level,
        }
    }

    /// The settings for backhand. For xz no options are stored in the image: the dictionary
    /// then defaults to the block size, which is what `-Xdict-size 100%` means.
    pub(crate) fn filesystem_compressor(self) -> FilesystemCompressor {
        let (id, options) = match self {
            Compression::Xz { .. } => (Compressor::Xz, None),
            Compression::Zstd { level } => (
                Compressor::Zstd,
                Some(CompressionOptions::Zstd(Zstd {
                    compression_level: level,
                })),
            ),
            Compression::Gzip { level } => (
                Compressor::Gzip,
                Some(CompressionOptions::Gzip(Gzip {
                    compression_level: level,
                    window_size: 15,
                    strategies: 0,
                })),
            ),
        };
        let mut compressor = FilesystemCompressor::new(id, options)
            .expect("each compressor is paired with options of its own kind");
        if let Compression::Xz { level } = self {
            let mut extra = ExtraXz::default();
            extra
                .level(level)
                .expect("the xz level was checked to be 0-9 when the setting was made");
            compressor
                .extra(CompressionExtra::Xz(extra))
                .expect("xz extra options go with the xz compressor");
        }
        compressor
    }
}

impl FromStr for Compression {
    type Err = CompressionError;

    /// `xz`, `zstd`, `gzip`, optionally with `:LEVEL` (`zstd:19`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None => Compression::new(s, None),
            Some((name, level)) => {
                let level = level
                    .parse()
                    .map_err(|_| CompressionError::LevelOutOfRange {
                        algorithm: "the chosen compression",
                        level: u32::MAX,
                        range: "a whole number",
                    })?;
                Compression::new(name, Some(level))
            }
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (level {})", self.algorithm(), self.level())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_mksquashfs() {
        assert_eq!("xz".parse(), Ok(Compression::Xz { level: 6 }));
        assert_eq!("zstd".parse(), Ok(Compression::Zstd { level: 15 }));
        assert_eq!("gzip".parse(), Ok(Compression::Gzip { level: 9 }));
        assert_eq!("zstd:3".parse(), Ok(Compression::Zstd { level: 3 }));
    }

    #[test]
    fn rejects_unknown_and_out_of_range() {
        assert!(matches!(
            "lz5".parse::<Compression>(),
            Err(CompressionError::UnknownAlgorithm(_))
        ));
        assert!(matches!(
            Compression::new("xz", Some(10)),
            Err(CompressionError::LevelOutOfRange { .. })
        ));
        assert!(matches!(
            Compression::new("zstd", Some(0)),
            Err(CompressionError::LevelOutOfRange { .. })
        ));
        assert!("zstd:x".parse::<Compression>().is_err());
    }
}
