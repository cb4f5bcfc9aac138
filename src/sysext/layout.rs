//! The tree inside the image: which paths, with which modes and contents.
//!
//! Both the writer and the self-check read this one description, so what is written and what
//! is verified cannot drift apart.

use std::path::PathBuf;

use crate::arch::Arch;

/// The systemd unit shipped in the image (SPEC §3).
pub const ALLOY_SERVICE_UNIT: &str = include_str!("alloy.service");

/// Where an entry's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryContent {
    Directory,
    /// Text generated here.
    Text(String),
    /// The upstream binary, read from this file on disk.
    Binary(PathBuf),
}

/// One path in the image. Everything is owned by root:root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutEntry {
    /// Path relative to the image root, `/`-separated, without a leading `/`.
    pub path: String,
    /// Permission bits.
    pub mode: u16,
    pub content: EntryContent,
}

/// The full tree of a sysext image for one extension and architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayout {
    /// Directories first, parents before children, then files.
    pub entries: Vec<LayoutEntry>,
}

impl ImageLayout {
    /// The layout of today's images (SPEC §3) for extension `name` (`alloy`): the binary at
    /// `usr/local/bin/<name>`, the unit, and `extension-release.<name>` (the file name must
    /// equal the extension name, which hosts take from `/etc/extensions/<name>.raw`).
    pub fn sysext(name: &str, arch: Arch, binary: PathBuf) -> Self {
        let dir = |path: &str| LayoutEntry {
            path: path.to_owned(),
            mode: 0o755,
            content: EntryContent::Directory,
        };
        let entries = vec![
            dir("usr"),
            dir("usr/lib"),
            dir("usr/lib/extension-release.d"),
            dir("usr/lib/systemd"),
            dir("usr/lib/systemd/system"),
            dir("usr/local"),
            dir("usr/local/bin"),
            LayoutEntry {
                path: format!("usr/lib/extension-release.d/extension-release.{name}"),
                mode: 0o644,
                content: EntryContent::Text(extension_release(arch)),
            },
            LayoutEntry {
                path: format!("usr/lib/systemd/system/{name}.service"),
                mode: 0o644,
                content: EntryContent::Text(ALLOY_SERVICE_UNIT.to_owned()),
            },
            LayoutEntry {
                path: format!("usr/local/bin/{name}"),
                mode: 0o755,
                content: EntryContent::Binary(binary),
            },
        ];
        ImageLayout { entries }
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&LayoutEntry> {
        self.entries.iter().find(|e| e.path == path)
    }
}

/// The `extension-release` file: matches any host OS, and only hosts of this architecture.
pub fn extension_release(arch: Arch) -> String {
    format!("ID=_any\nARCHITECTURE={}\n", arch.systemd_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_has_todays_directives() {
        for directive in [
            "Description=Grafana Alloy",
            "Documentation=https://grafana.com/docs/alloy/latest/",
            "Wants=network-online.target",
            "After=network-online.target",
            "Type=simple",
            "ExecStart=/usr/local/bin/alloy run /var/mnt/storage/alloy/config.alloy",
            "Restart=on-failure",
            "RestartSec=10s",
            "TimeoutStopSec=20s",
            "NoNewPrivileges=true",
            "ProtectSystem=strict",
            "ProtectHome=true",
            "ReadWritePaths=/var/lib/alloy /tmp",
            "PrivateTmp=true",
            "StateDirectory=alloy",
            "StateDirectoryMode=0750",
            "WorkingDirectory=/var/lib/alloy",
            "Environment=\"HOSTNAME=%H\"",
            "WantedBy=multi-user.target",
        ] {
            assert!(
                ALLOY_SERVICE_UNIT.lines().any(|l| l == directive),
                "missing {directive}"
            );
        }
    }

    #[test]
    fn extension_release_names_systemd_architecture() {
        assert_eq!(
            extension_release(Arch::Amd64),
            "ID=_any\nARCHITECTURE=x86-64\n"
        );
        assert_eq!(
            extension_release(Arch::Arm64),
            "ID=_any\nARCHITECTURE=arm64\n"
        );
    }

    #[test]
    fn parents_come_before_children() {
        let layout = ImageLayout::sysext("alloy", Arch::Amd64, "/tmp/b".into());
        for (i, entry) in layout.entries.iter().enumerate() {
            if let Some((parent, _)) = entry.path.rsplit_once('/') {
                let p = layout
                    .entries
                    .iter()
                    .position(|e| e.path == parent)
                    .unwrap();
                assert!(p < i, "{} before its parent", entry.path);
            }
        }
    }
}
