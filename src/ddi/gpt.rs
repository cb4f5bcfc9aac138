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
use std::io::{Read, Seek, Write};

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

/// Reads the table of `device`; both headers must be valid.
pub fn read_table<D: Read + Write + Seek + std::fmt::Debug>(device: D) -> Result<Table, GptError> {
    let disk = GptConfig::new()
        .writable(false)
        .only_valid_headers(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(device)
        .map_err(gpt_error("reading"))?;
    let header = disk
        .primary_header()
        .map_err(|e| gpt_error("reading")(e.into()))?;
    let entries = disk
        .partitions()
        .values()
        .filter(|p| p.is_used())
        .map(|p| TableEntry {
            type_guid: p.part_type_guid.guid,
            uuid: p.part_guid,
            label: p.name.clone(),
            attributes: p.flags,
            offset: p.first_lba * SECTOR_SIZE,
            size: (p.last_lba + 1 - p.first_lba) * SECTOR_SIZE,
        })
        .collect();
    Ok(Table {
        disk_guid: *disk.guid(),
        first_usable_lba: header.first_usable,
        last_usable_lba: header.last_usable,
        entries,
    })
}
