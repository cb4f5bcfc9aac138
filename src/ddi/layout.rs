//! Where each partition goes: the placement `systemd-repart --empty=create --size=auto`
//! gives a DDI (with libfdisk's alignment), so that repart, given the same seed, writes the
//! same bytes.
//!
//! The disk is the GPT's fixed overhead (1044 KiB, rounded to 4 KiB) plus the three
//! partitions; 512-byte sectors. libfdisk aligns the first usable sector to 1 MiB, unless
//! the disk is 4 MiB or smaller, where it keeps the minimum (sector 34). The data partition
//! starts at the first 4 KiB boundary from there, the signature partition ends at the last
//! 4 KiB boundary before the backup table, and the hash partition takes what is between:
//! its tree, and on a small disk the slack, zero-filled (repart gives leftover space to the
//! one partition that may grow).

/// The sector size of the image.
pub const SECTOR_SIZE: u64 = 512;
/// The signature partition's size (`VERITY_SIG_SIZE` in repart).
pub const SIGNATURE_PARTITION_SIZE: u64 = 16384;
/// What repart adds for the GPT: `round_up(GPT_METADATA_SIZE = 1044 KiB, 4096)`.
const GPT_OVERHEAD: u64 = 1044 * 1024;
/// Partitions are aligned to this.
const ALIGNMENT: u64 = 4096;
/// The sectors of the protective MBR, the header and the 128-entry array.
const TABLE_SECTORS: u64 = 34;
/// libfdisk aligns to 1 MiB on disks larger than this many sectors (4 MiB).
const SMALL_DISK_SECTORS: u64 = 8192;

/// Byte offsets and sizes on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLayout {
    pub disk_size: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub data_offset: u64,
    pub data_size: u64,
    pub hash_offset: u64,
    pub hash_size: u64,
    pub signature_offset: u64,
}

impl DiskLayout {
    /// The layout for a data partition of `data_size` bytes and a hash tree of `tree_size`
    /// bytes (both multiples of 4096).
    pub fn new(data_size: u64, tree_size: u64) -> DiskLayout {
        debug_assert!(data_size.is_multiple_of(ALIGNMENT) && tree_size.is_multiple_of(ALIGNMENT));
        let disk_size = GPT_OVERHEAD + data_size + tree_size + SIGNATURE_PARTITION_SIZE;
        let sectors = disk_size / SECTOR_SIZE;
        let first_usable_lba = if sectors > SMALL_DISK_SECTORS {
            2048
        } else {
            TABLE_SECTORS
        };
        let last_usable_lba = sectors - TABLE_SECTORS;
        let data_offset = (first_usable_lba * SECTOR_SIZE).next_multiple_of(ALIGNMENT);
        let usable_end = (last_usable_lba + 1) * SECTOR_SIZE / ALIGNMENT * ALIGNMENT;
        let signature_offset = usable_end - SIGNATURE_PARTITION_SIZE;
        let hash_offset = data_offset + data_size;
        DiskLayout {
            disk_size,
            first_usable_lba,
            last_usable_lba,
            data_offset,
            data_size,
            hash_offset,
            hash_size: signature_offset - hash_offset,
            signature_offset,
        }
    }

    /// The number of sectors.
    pub fn sectors(&self) -> u64 {
        self.disk_size / SECTOR_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_image_is_aligned_to_one_mebibyte_and_the_hash_partition_is_its_tree() {
        // The published amd64 image of 48,386,048 bytes, with its tree of 389,120.
        let layout = DiskLayout::new(48_386_048, 389_120);
        assert_eq!(layout.disk_size, 49_860_608);
        assert_eq!(layout.sectors(), 97_384);
        assert_eq!(layout.first_usable_lba, 2048);
        assert_eq!(layout.last_usable_lba, 97_350);
        assert_eq!(layout.data_offset, 1_048_576);
        assert_eq!(layout.hash_offset, 49_434_624);
        assert_eq!(layout.hash_size, 389_120);
        assert_eq!(layout.signature_offset, 49_823_744);
    }

    #[test]
    fn on_a_small_disk_the_hash_partition_takes_the_slack() {
        // A 1.8 MB image: 172 data blocks, a tree of 4 blocks.
        let layout = DiskLayout::new(172 * 4096, 4 * 4096);
        assert_eq!(layout.disk_size, 1_806_336);
        assert_eq!(layout.first_usable_lba, 34);
        assert_eq!(layout.data_offset, 20_480);
        assert_eq!(layout.hash_size, 1_044_480);
        assert_eq!(
            layout.signature_offset + SIGNATURE_PARTITION_SIZE,
            (layout.last_usable_lba + 1) * SECTOR_SIZE / 4096 * 4096
        );
    }
}
