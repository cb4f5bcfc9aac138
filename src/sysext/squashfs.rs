//! Writing an [`ImageLayout`] as a reproducible squashfs file system.

use std::io::{Cursor, Seek, Write};

use backhand::{BackhandError, FilesystemWriter, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, NodeHeader};

use super::compression::Compression;
use super::layout::{EntryContent, ImageLayout};

/// The default data block size, as mksquashfs uses: 128 KiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;

/// How to write the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SquashfsOptions {
    pub compression: Compression,
    /// Data block size in bytes: a power of two from 4 KiB to 1 MiB.
    pub block_size: u32,
    /// The modification time of every entry and of the file system itself, in seconds since
    /// the epoch (`SOURCE_DATE_EPOCH`).
    pub mtime: u32,
}

impl Default for SquashfsOptions {
    fn default() -> Self {
        SquashfsOptions {
            compression: Compression::default(),
            block_size: DEFAULT_BLOCK_SIZE,
            mtime: 0,
        }
    }
}

/// Why the image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error("block size {0} is invalid: use a power of two from 4096 (4 KiB) to 1048576 (1 MiB)")]
    InvalidBlockSize(u32),
    #[error("adding {path} to the image: {source}")]
    Add { path: String, source: BackhandError },
    #[error("writing the squashfs image: {0}")]
    Write(BackhandError),
}

impl SquashfsOptions {
    /// Checks the block size; backhand would panic on a bad one.
    pub fn validate(&self) -> Result<(), SquashfsError> {
        let size = self.block_size;
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size) || !size.is_power_of_two() {
            return Err(SquashfsError::InvalidBlockSize(size));
        }
        Ok(())
    }
}

/// Writes `layout` to `dest` as a squashfs 4.0 image and returns its size in bytes.
///
/// The output depends only on the layout's contents and `options`: entries are sorted,
/// owned by uid/gid 0, and carry `options.mtime`, so the same inputs give the same bytes.
/// Files are streamed from disk block by block.
pub fn write_squashfs<W: Write + Seek>(
    layout: &ImageLayout,
    options: &SquashfsOptions,
    dest: W,
) -> Result<u64, SquashfsError> {
    options.validate()?;
    let mut fs = FilesystemWriter::default();
    fs.set_block_size(options.block_size);
    fs.set_time(options.mtime);
    fs.set_only_root_id();
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    fs.set_compressor(options.compression.filesystem_compressor());

    for entry in &layout.entries {
        let header = NodeHeader::new(entry.mode, 0, 0, options.mtime);
        let added = match &entry.content {
            EntryContent::Directory => fs.push_dir(&entry.path, header),
            EntryContent::Text(text) => {
                fs.push_file(Cursor::new(text.clone().into_bytes()), &entry.path, header)
            }
            EntryContent::Binary(source) => {
                fs.push_file_from_path(source.clone(), &entry.path, header)
            }
        };
        added.map_err(|source| SquashfsError::Add {
            path: entry.path.clone(),
            source,
        })?;
    }

    let (_superblock, size) = fs.write(dest).map_err(SquashfsError::Write)?;
    Ok(size)
}
