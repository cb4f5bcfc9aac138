//! Target architectures, under the three names each one goes by.

use std::fmt;
use std::str::FromStr;

/// A CPU architecture that images are built for.
///
/// Upstream release assets use Go's names (`amd64`, `arm64`), systemd's
/// `extension-release` uses its own (`x86-64`, `arm64`), and the ELF header a machine number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

/// An architecture name that is not supported.
#[derive(Debug, thiserror::Error)]
#[error("unsupported architecture {0:?}: use amd64 or arm64")]
pub struct UnknownArch(String);

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// The upstream (Go) name, used in asset and image file names.
    pub fn upstream_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// systemd's name, as `ARCHITECTURE=` in `extension-release` expects.
    pub fn systemd_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86-64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The `e_machine` value of a 64-bit ELF executable for this architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 0x3e,
            Arch::Arm64 => 0xb7,
        }
    }

    /// The architecture of an ELF `e_machine` value, if it is one of ours.
    pub fn from_elf_machine(machine: u16) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.elf_machine() == machine)
    }
}

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "amd64" | "x86-64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(UnknownArch(other.chars().take(32).collect())),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.upstream_name())
    }
}
