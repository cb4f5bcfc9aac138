//! The three partitions of a system extension DDI, as the Discoverable Partitions
//! Specification names them: root (the file system), root-verity (its hash tree) and
//! root-verity-sig (the signed root hash), with their type GUIDs per architecture, the
//! labels `systemd-repart` gives them, and their GPT attribute bits.

use std::fmt;

use uuid::{Uuid, uuid};

use crate::arch::Arch;

/// GPT attribute bit 60: read-only.
pub const READ_ONLY: u64 = 1 << 60;

/// Which of the three partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionRole {
    /// The squashfs file system.
    Root,
    /// Its dm-verity hash partition.
    RootVerity,
    /// The signature of the root hash.
    RootVeritySig,
}

impl PartitionRole {
    /// The partitions in the order they are on the disk.
    pub const ALL: [PartitionRole; 3] = [
        PartitionRole::Root,
        PartitionRole::RootVerity,
        PartitionRole::RootVeritySig,
    ];

    /// The designator systemd uses (`root`, `root-verity`, `root-verity-sig`).
    pub fn designator(self) -> &'static str {
        match self {
            PartitionRole::Root => "root",
            PartitionRole::RootVerity => "root-verity",
            PartitionRole::RootVeritySig => "root-verity-sig",
        }
    }

    /// The partition type GUID for `arch`.
    pub fn type_guid(self, arch: Arch) -> Uuid {
        match (self, arch) {
            (PartitionRole::Root, Arch::Amd64) => uuid!("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
            (PartitionRole::Root, Arch::Arm64) => uuid!("b921b045-1df0-41c3-af44-4c6f280d3fae"),
            (PartitionRole::RootVerity, Arch::Amd64) => {
                uuid!("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")
            }
            (PartitionRole::RootVerity, Arch::Arm64) => {
                uuid!("df3300ce-d69f-4c92-978c-9bfb0f38d820")
            }
            (PartitionRole::RootVeritySig, Arch::Amd64) => {
                uuid!("41092b05-9fc8-4523-994f-2def0408b176")
            }
            (PartitionRole::RootVeritySig, Arch::Arm64) => {
                uuid!("6db69de6-29f4-4758-a7a5-962190f00ce3")
            }
        }
    }

    /// The role and architecture of a partition type GUID, if it is one of ours.
    pub fn of_type_guid(type_guid: Uuid) -> Option<(PartitionRole, Arch)> {
        PartitionRole::ALL.into_iter().find_map(|role| {
            Arch::ALL
                .into_iter()
                .find(|&arch| role.type_guid(arch) == type_guid)
                .map(|arch| (role, arch))
        })
    }

    /// The GPT partition name `systemd-repart` gives it: `root-x86-64`,
    /// `root-x86-64-verity`, `root-arm64-verity-sig`…
    pub fn label(self, arch: Arch) -> String {
        let arch = arch.systemd_name();
        match self {
            PartitionRole::Root => format!("root-{arch}"),
            PartitionRole::RootVerity => format!("root-{arch}-verity"),
            PartitionRole::RootVeritySig => format!("root-{arch}-verity-sig"),
        }
    }

    /// The GPT attribute bits `systemd-repart` 257 sets: read-only on the file system and
    /// its hash partition, none on the signature partition.
    pub fn attributes(self) -> u64 {
        match self {
            PartitionRole::Root | PartitionRole::RootVerity => READ_ONLY,
            PartitionRole::RootVeritySig => 0,
        }
    }
}

impl fmt::Display for PartitionRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.designator())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_guids_name_their_role_and_architecture() {
        for role in PartitionRole::ALL {
            for arch in Arch::ALL {
                assert_eq!(
                    PartitionRole::of_type_guid(role.type_guid(arch)),
                    Some((role, arch))
                );
            }
        }
        assert_eq!(PartitionRole::of_type_guid(Uuid::nil()), None);
        assert_eq!(
            PartitionRole::RootVeritySig.label(Arch::Amd64),
            "root-x86-64-verity-sig"
        );
        assert_eq!(PartitionRole::Root.label(Arch::Arm64), "root-arm64");
    }
}
