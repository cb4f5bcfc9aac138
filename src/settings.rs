//! What the server builds and where: the upstream release, the image, the build repository.
//! The built-in defaults are today's deployment.

use crate::arch::Arch;
use crate::sysext::compression::Compression;

/// Where Alloy's releases come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// `owner/name`.
    pub repo: String,
    /// The release asset, with `{arch}` for the architecture.
    pub asset: String,
    /// The binary inside the asset's zip, with `{arch}`.
    pub binary: String,
}

impl UpstreamSettings {
    pub fn asset_name(&self, arch: Arch) -> String {
        self.asset.replace("{arch}", arch.upstream_name())
    }

    pub fn binary_name(&self, arch: Arch) -> String {
        self.binary.replace("{arch}", arch.upstream_name())
    }
}

/// What image is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSettings {
    pub name: String,
    pub arches: Vec<Arch>,
    pub compression: Compression,
    /// Also publish `<name>-X.Y.Z.raw` (amd64 only).
    pub compat_name: bool,
}

/// The repository where releases, commands and `SHA256SUMS` live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRepoSettings {
    /// `owner/name`.
    pub repo: String,
    pub branch: String,
}

/// Everything above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub upstream: UpstreamSettings,
    pub image: ImageSettings,
    pub build_repo: BuildRepoSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            upstream: UpstreamSettings {
                repo: "grafana/alloy".into(),
                asset: "alloy-linux-{arch}.zip".into(),
                binary: "alloy-linux-{arch}".into(),
            },
            image: ImageSettings {
                name: "alloy".into(),
                arches: vec![Arch::Amd64],
                compression: Compression::default(),
                compat_name: true,
            },
            build_repo: BuildRepoSettings {
                repo: "noahwhite/alloy-sysext-build".into(),
                branch: "main".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_filled_in_per_architecture() {
        let settings = Settings::default();
        assert_eq!(
            settings.upstream.asset_name(Arch::Arm64),
            "alloy-linux-arm64.zip"
        );
        assert_eq!(
            settings.upstream.binary_name(Arch::Amd64),
            "alloy-linux-amd64"
        );
    }
}
