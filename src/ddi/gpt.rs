//! The GPT of a DDI, written and read with the `gpt` crate: protective MBR, primary and
//! backup headers and entry arrays, with the disk GUID, partition UUIDs and placement fixed
//! by the image's content, so the table is the same bytes libfdisk writes for
//! `systemd-repart`.
//!
//! The crate starts a new table at the minimum first usable sector (34), while libfdisk
//! starts it at 1 MiB on disks over 4 MiB; so the primary header is first written on its
//! own with that first usable sector, and the crate then opens the disk through it and
//! keeps it when it writes the partitions and both copies of the table.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};

use gpt::disk::LogicalBlockSize;
use gpt::header::HeaderBuilder;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types::{OperatingSystem, Type};
use gpt::{DiskDevice, GptConfig};
use uuid::Uuid;

use crate::ddi::layout::{DiskLayout, SECTOR_SIZE};

/// The number of entries in the partition array (and so its 32 sectors).
const ENTRIES: u32 = 128;
/// The backup entry array's 32 sectors and the backup header's one, after the usable ones.
const TABLE_SECTORS_AT_END: u64 = 33;

/// One entry of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub type_guid: Uuid,
    pub uuid: Uuid,
    pub label: String,
    pub attributes: u64,
    /// Byte offset and size on the disk.
    pub offset: u64,
    pub size: u64,
}

/// The table that was read: the disk GUID and the used entries in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub disk_guid: Uuid,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub entries: Vec<TableEntry>,
}

/// A GPT that could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{action} the partition table: {message}")]
pub struct GptError {
    action: &'static str,
    message: String,
}

fn gpt_error(action: &'static str) -> impl FnOnce(gpt::GptError) -> GptError {
    move |error| GptError {
        action,
        message: error.to_string(),
    }
}

/// Writes the table for `entries` (in order, at their offsets) onto `device`, which is
/// already `layout.disk_size` long.
pub fn write_table<D: DiskDevice>(
    device: &mut D,
    layout: &DiskLayout,
    disk_guid: Uuid,
    entries: &[TableEntry],
) -> Result<(), GptError> {
    let sectors = layout.sectors();
    let mut primary = HeaderBuilder::new()
        .disk_guid(disk_guid)
        .backup_lba(sectors - 1)
        .first_usable(layout.first_usable_lba)
        .num_parts(ENTRIES)
        .primary(true)
        .build(LogicalBlockSize::Lb512)
        .map_err(|e| gpt_error("starting")(e.into()))?;
    primary
        .write_primary(device, LogicalBlockSize::Lb512)
        .map_err(|e| gpt_error("starting")(e.into()))?;

    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(&mut *device)
        .map_err(gpt_error("opening"))?;
    let partitions: BTreeMap<u32, Partition> = entries
        .iter()
        .zip(1..)
        .map(|(entry, id)| {
            let partition = Partition {
                part_type_guid: Type {
                    guid: entry.type_guid,
                    os: OperatingSystem::None,
                },
                part_guid: entry.uuid,
                first_lba: entry.offset / SECTOR_SIZE,
                last_lba: (entry.offset + entry.size) / SECTOR_SIZE - 1,
                flags: entry.attributes,
                name: entry.label.clone(),
            };
            (id, partition)
        })
        .collect();
    disk.update_partitions(partitions)
        .map_err(gpt_error("filling"))?;
    disk.write().map_err(gpt_error("writing"))?;

    let protective_sectors = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(protective_sectors)
        .overwrite_lba0(device)
        .map_err(|e| GptError {
            action: "writing the protective MBR of",
            message: e.to_string(),
        })?;
    Ok(())
}

/// Where the primary header is, and the fields of it that size the entry array.
const PRIMARY_HEADER_OFFSET: u64 = SECTOR_SIZE;
const ENTRIES_START_FIELD: usize = 72;
const ENTRY_COUNT_FIELD: usize = 80;
const ENTRY_SIZE_FIELD: usize = 84;
/// The only entry size the `gpt` crate reads (it panics on others), and the UEFI default.
const ENTRY_SIZE: u32 = 128;

fn invalid(message: String) -> GptError {
    GptError {
        action: "reading",
        message,
    }
}

/// Refuses a primary header whose entry array the `gpt` crate would not read safely: it
/// panics on entries that are not 128 bytes, and reads and allocates as many entries as the
/// header claims. The header's CRC protects nothing from a hostile file, which recomputes
/// it; so this is checked before the crate reads anything.
fn check_entry_array<D: Read + Seek>(device: &mut D) -> Result<(), GptError> {
    let mut header = [0u8; 92];
    device
        .seek(SeekFrom::Start(PRIMARY_HEADER_OFFSET))
        .and_then(|_| device.read_exact(&mut header))
        .map_err(|e| invalid(format!("no primary header: {e}")))?;
    if &header[..8] != b"EFI PART" {
        return Err(invalid("no GPT signature in the primary header".into()));
    }
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
    let entries_start = u64::from_le_bytes(
        header[ENTRIES_START_FIELD..ENTRIES_START_FIELD + 8]
            .try_into()
            .unwrap(),
    );
    let (count, size) = (u32_at(ENTRY_COUNT_FIELD), u32_at(ENTRY_SIZE_FIELD));
    if size != ENTRY_SIZE {
        return Err(invalid(format!(
            "entries of {size} bytes, expected {ENTRY_SIZE}"
        )));
    }
    if count > ENTRIES {
        return Err(invalid(format!(
            "{count} entries, at most {ENTRIES} are read"
        )));
    }
    if entries_start != 2 {
        return Err(invalid(format!(
            "the entry array starts at sector {entries_start}, expected 2"
        )));
    }
    device
        .rewind()
        .map_err(|e| invalid(format!("rewinding: {e}")))
}

/// The byte offset and size of the sectors `first..=last`, if they are a range inside the
/// table's usable sectors.
fn usable_range(first: u64, last: u64, first_usable: u64, last_usable: u64) -> Option<(u64, u64)> {
    if first < first_usable || last < first || last > last_usable {
        return None;
    }
    let offset = first.checked_mul(SECTOR_SIZE)?;
    let size = (last - first + 1).checked_mul(SECTOR_SIZE)?;
    Some((offset, size))
}

/// Reads the table of `device`; both headers must be valid, the entry array of the usual
/// shape, the usable sectors inside the device, and every used entry inside them.
pub fn read_table<D: Read + Write + Seek + std::fmt::Debug>(
    mut device: D,
) -> Result<Table, GptError> {
    check_entry_array(&mut device)?;
    let device_sectors = device
        .seek(SeekFrom::End(0))
        .and_then(|end| device.rewind().map(|_| end / SECTOR_SIZE))
        .map_err(|e| invalid(format!("sizing the device: {e}")))?;
    let disk = GptConfig::new()
        .writable(false)
        .only_valid_headers(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(device)
        .map_err(gpt_error("reading"))?;
    let header = disk
        .primary_header()
        .map_err(|e| gpt_error("reading")(e.into()))?;
    // The backup header takes the last sector, the backup array the 32 before it.
    if header.first_usable > header.last_usable
        || header.last_usable.saturating_add(TABLE_SECTORS_AT_END) >= device_sectors
    {
        return Err(invalid(format!(
            "usable sectors {}..={} do not fit a device of {device_sectors} sectors",
            header.first_usable, header.last_usable
        )));
    }
    let entries = disk
        .partitions()
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(number, p)| {
            let (offset, size) = usable_range(
                p.first_lba,
                p.last_lba,
                header.first_usable,
                header.last_usable,
            )
            .ok_or_else(|| {
                invalid(format!(
                    "partition {number} spans sectors {}..={}, outside the usable {}..={}",
                    p.first_lba, p.last_lba, header.first_usable, header.last_usable
                ))
            })?;
            Ok(TableEntry {
                type_guid: p.part_type_guid.guid,
                uuid: p.part_guid,
                label: p.name.clone(),
                attributes: p.flags,
                offset,
                size,
            })
        })
        .collect::<Result<Vec<_>, GptError>>()?;
    Ok(Table {
        disk_guid: *disk.guid(),
        first_usable_lba: header.first_usable,
        last_usable_lba: header.last_usable,
        entries,
    })
}
