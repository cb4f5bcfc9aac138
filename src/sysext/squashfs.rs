//! Writing an [`ImageLayout`] as a reproducible squashfs file system.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, Write};
use std::path::Path;

use backhand::kind::Kind;
use backhand::{BackhandError, FilesystemWriter, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, NodeHeader};

use super::compression::Compression;
use super::layout::{EntryContent, ImageLayout};
use super::prefetch::{ContextGuard, PIPELINED_COMPRESSOR, Prefetch};
pub use super::prefetch::{StoredBlock, WrittenBlocks};

/// The default data block size, as mksquashfs uses: 128 KiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;

/// More compression threads than this only cost memory.
pub const MAX_THREADS: usize = 256;

/// How to write the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SquashfsOptions {
    pub compression: Compression,
    /// Data block size in bytes: a power of two from 4 KiB to 1 MiB.
    pub block_size: u32,
    /// The modification time of every entry and of the file system itself, in seconds since
    /// the epoch (`SOURCE_DATE_EPOCH`).
    pub mtime: u32,
    /// Threads compressing the binary's blocks ahead of the writer; 0 means one per core.
    /// The image is the same whatever the number.
    pub threads: usize,
}

impl Default for SquashfsOptions {
    fn default() -> Self {
        SquashfsOptions {
            compression: Compression::default(),
            block_size: DEFAULT_BLOCK_SIZE,
            mtime: 0,
            threads: 0,
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
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

impl SquashfsOptions {
    /// The number of compression threads that `threads` asks for, at most
    /// [`MAX_THREADS`].
    pub fn worker_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(MAX_THREADS)
    }

    /// Checks the block size; backhand would panic on a bad one.
    pub fn validate(&self) -> Result<(), SquashfsError> {
        let size = self.block_size;
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size) || !size.is_power_of_two() {
            return Err(SquashfsError::InvalidBlockSize(size));
        }
        Ok(())
    }
}

/// What [`write_squashfs`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// Size in bytes.
    pub size: u64,
    /// What was stored for each block of the binary, for [`super::inspect::verify_image`];
    /// `None` when that can only be learnt by reading the image back.
    pub binary_blocks: Option<WrittenBlocks>,
}

/// Opens the binary's bytes for reading from the start: by its path, or otherwise (a file
/// still being extracted).
pub type OpenBinary<'a> = dyn Fn(&Path) -> io::Result<Box<dyn Read + Send>> + 'a;

/// Writes `layout` to `dest` as a squashfs 4.0 image.
///
/// The output depends only on the layout's contents and `options`: entries are sorted,
/// owned by uid/gid 0, and carry `options.mtime`, so the same inputs give the same bytes,
/// whatever the number of threads. The binary's blocks are compressed ahead on
/// `options.threads` threads; files are streamed from disk block by block.
pub fn write_squashfs<W: Write + Seek>(
    layout: &ImageLayout,
    options: &SquashfsOptions,
    dest: W,
) -> Result<WrittenImage, SquashfsError> {
    let open_file =
        |path: &Path| -> io::Result<Box<dyn Read + Send>> { Ok(Box::new(File::open(path)?)) };
    write_squashfs_from(layout, options, dest, &open_file)
}

/// [`write_squashfs`], reading the binary through `open_binary` (called twice: once for
/// the look-ahead compression, once for the writer).
pub fn write_squashfs_from<W: Write + Seek>(
    layout: &ImageLayout,
    options: &SquashfsOptions,
    dest: W,
    open_binary: &OpenBinary<'_>,
) -> Result<WrittenImage, SquashfsError> {
    options.validate()?;
    let mut fs = FilesystemWriter::default();
    fs.set_block_size(options.block_size);
    fs.set_time(options.mtime);
    fs.set_only_root_id();
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    fs.set_compressor(options.compression.filesystem_compressor());
    fs.set_kind(Kind::new_v4(&PIPELINED_COMPRESSOR));

    for entry in &layout.entries {
        let header = NodeHeader::new(entry.mode, 0, 0, options.mtime);
        let added = match &entry.content {
            EntryContent::Directory => fs.push_dir(&entry.path, header),
            EntryContent::Text(text) => {
                fs.push_file(Cursor::new(text.clone().into_bytes()), &entry.path, header)
            }
            EntryContent::Binary(source) => {
                let reader = open_binary(source).map_err(|e| read_error(source, e))?;
                fs.push_file(reader, &entry.path, header)
            }
        };
        added.map_err(|source| SquashfsError::Add {
            path: entry.path.clone(),
            source,
        })?;
    }

    let prefetch = match binary_source(layout) {
        Some(path) => {
            let workers = options.worker_threads();
            // Enough blocks in flight to keep every worker busy while the writer catches
            // up; each costs at most two blocks of memory.
            let window = workers * 4;
            let reader = open_binary(path).map_err(|e| read_error(path, e))?;
            Some(Prefetch::start(
                reader,
                options.compression,
                options.block_size,
                workers,
                window,
            ))
        }
        None => None,
    };
    let context = ContextGuard::install(options.compression, prefetch);
    let (_superblock, size) = fs.write(dest).map_err(SquashfsError::Write)?;
    Ok(WrittenImage {
        size,
        binary_blocks: context.finish(),
    })
}

fn read_error(path: &Path, source: io::Error) -> SquashfsError {
    SquashfsError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// The file whose blocks are worth compressing ahead: the upstream binary.
fn binary_source(layout: &ImageLayout) -> Option<&Path> {
    layout
        .entries
        .iter()
        .find_map(|entry| match &entry.content {
            EntryContent::Binary(path) => Some(path.as_path()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::path::PathBuf;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::arch::Arch;
    use crate::sysext::inspect::{ExpectedBinary, InspectError, check_layout, verify_image};

    /// A binary of `blocks` 128 KiB blocks and a bit: varied data, with all-zero blocks
    /// (stored as holes) at the start, in the middle and at the end.
    fn binary(dir: &Path, blocks: usize) -> (PathBuf, Vec<u8>) {
        let mut data = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for block in 0..blocks {
            if block == 0 || block == blocks / 2 || block == blocks - 1 {
                data.extend(std::iter::repeat_n(0u8, 131072));
                continue;
            }
            for _ in 0..131072 / 8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Half the bytes repeat, so blocks compress, but not to nothing.
                data.extend_from_slice(&(state & 0x0f0f_0f0f_0f0f_0f0f).to_le_bytes());
            }
        }
        data.extend_from_slice(b"tail that is not a whole block");
        let path = dir.join("binary");
        fs::write(&path, &data).unwrap();
        (path, data)
    }

    fn write(layout: &ImageLayout, threads: usize, dest: &Path) -> WrittenImage {
        let options = SquashfsOptions {
            threads,
            ..SquashfsOptions::default()
        };
        write_squashfs(layout, &options, File::create(dest).unwrap()).unwrap()
    }

    #[test]
    fn output_is_the_same_whatever_the_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = binary(dir.path(), 24);
        let layout = ImageLayout::sysext("alloy", Arch::Amd64, path);
        let serial = dir.path().join("serial.raw");
        let parallel = dir.path().join("parallel.raw");
        let written_serial = write(&layout, 1, &serial);
        let written_parallel = write(&layout, 4, &parallel);
        assert!(fs::read(&serial).unwrap() == fs::read(&parallel).unwrap());
        assert_eq!(written_serial.size, written_parallel.size);

        let written = written_parallel
            .binary_blocks
            .expect("every block went through");
        let blocks = &written.blocks;
        assert_eq!(blocks.len(), 25);
        assert_eq!(blocks[0], StoredBlock::Hole);
        assert_eq!(blocks[12], StoredBlock::Hole);
        assert_eq!(blocks[23], StoredBlock::Hole);
        assert_eq!(written_serial.binary_blocks.as_ref(), Some(&written));

        let sha256 = hex::encode(Sha256::digest(&data));
        assert_eq!(written.input_sha256, sha256);
        let expected = ExpectedBinary {
            size: data.len() as u64,
            sha256: &sha256,
            stored_blocks: Some(&written),
        };
        verify_image(&parallel, &layout, 0, expected).unwrap();
        // The slow path, reading the binary back, agrees.
        let without_blocks = ExpectedBinary {
            stored_blocks: None,
            ..expected
        };
        verify_image(&parallel, &layout, 0, without_blocks).unwrap();
    }

    #[test]
    fn self_check_finds_a_changed_data_block() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = binary(dir.path(), 6);
        let layout = ImageLayout::sysext("alloy", Arch::Amd64, path);
        let image = dir.path().join("image.raw");
        let written = write(&layout, 2, &image).binary_blocks.unwrap();

        // The first data block of the binary follows the superblock and a few hundred
        // bytes of metadata; change a byte well inside the data.
        let mut bytes = fs::read(&image).unwrap();
        bytes[40_000] ^= 0x40;
        fs::write(&image, &bytes).unwrap();

        let sha256 = hex::encode(Sha256::digest(&data));
        let expected = ExpectedBinary {
            size: data.len() as u64,
            sha256: &sha256,
            stored_blocks: Some(&written),
        };
        match verify_image(&image, &layout, 0, expected) {
            Err(InspectError::Mismatch { problems, .. }) => {
                assert!(problems.contains("data block"), "{problems}")
            }
            other => panic!("the changed block was not noticed: {other:?}"),
        }
        let without_blocks = ExpectedBinary {
            stored_blocks: None,
            ..expected
        };
        assert!(verify_image(&image, &layout, 0, without_blocks).is_err());
    }

    #[test]
    fn stored_blocks_are_checked_whatever_pieces_the_image_comes_in() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = binary(dir.path(), 6);
        let layout = ImageLayout::sysext("alloy", Arch::Amd64, path);
        let image = dir.path().join("image.raw");
        let written = write(&layout, 2, &image).binary_blocks.unwrap();
        let bytes = fs::read(&image).unwrap();
        let sha256 = hex::encode(Sha256::digest(&data));
        let expected = ExpectedBinary {
            size: data.len() as u64,
            sha256: &sha256,
            stored_blocks: Some(&written),
        };
        let check = |piece: usize, bytes: &[u8]| {
            let mut blocks = check_layout(&image, &layout, 0, expected).unwrap();
            for chunk in bytes.chunks(piece) {
                io::Write::write_all(&mut blocks, chunk).unwrap();
            }
            blocks.finish()
        };
        for piece in [1, 7, 4096, 65_536, 1 << 20] {
            check(piece, &bytes).unwrap_or_else(|e| panic!("pieces of {piece}: {e}"));
        }
        // An image that stops inside the data, or whose data differs, is not accepted.
        match check(4096, &bytes[..bytes.len() / 2]) {
            Err(InspectError::Mismatch { problems, .. }) => {
                assert!(problems.contains("ends at byte"), "{problems}")
            }
            other => panic!("a short image was accepted: {other:?}"),
        }
        let mut changed = bytes.clone();
        changed[bytes.len() / 3] ^= 1;
        match check(4096, &changed) {
            Err(InspectError::Mismatch { problems, .. }) => {
                assert!(problems.contains("data block"), "{problems}")
            }
            other => panic!("a changed block was accepted: {other:?}"),
        }
    }

    #[test]
    fn a_binary_smaller_than_a_block_is_checked_by_reading_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        fs::write(&path, b"\x7fELF small binary").unwrap();
        let layout = ImageLayout::sysext("alloy", Arch::Amd64, path);
        let image = dir.path().join("image.raw");
        let written = write(&layout, 2, &image);
        assert_eq!(
            written.binary_blocks, None,
            "a fragment is not a data block"
        );
        let sha256 = hex::encode(Sha256::digest(b"\x7fELF small binary"));
        let expected = ExpectedBinary {
            size: 17,
            sha256: &sha256,
            stored_blocks: None,
        };
        verify_image(&image, &layout, 0, expected).unwrap();
        let wrong = "0".repeat(64);
        let expected = ExpectedBinary {
            sha256: &wrong,
            ..expected
        };
        assert!(verify_image(&image, &layout, 0, expected).is_err());
    }
}
