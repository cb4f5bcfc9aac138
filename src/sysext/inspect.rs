//! Reading an image back and comparing it with the layout it was written from.
//!
//! The builder runs this on its own output before giving it its final name, so a defect in
//! the writer shows up as a failed build rather than as a broken host.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use backhand::{FilesystemReader, InnerNode, SquashfsFileReader};
use sha2::{Digest, Sha256};

use crate::artifacts::digest::sha256_hex;

use super::layout::{EntryContent, ImageLayout};
use super::squashfs::{StoredBlock, WrittenBlocks};

/// What was found in an image that does not match its layout.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read back the image {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("image {path} does not match its layout: {problems}")]
    Mismatch { path: String, problems: String },
}

/// One entry found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEntry {
    pub path: String,
    pub kind: &'static str,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
}

/// What the binary in an image must be.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedBinary<'a> {
    pub size: u64,
    pub sha256: &'a str,
    /// What the writer stored for each block, when it knows ([`WrittenImage`]).
    ///
    /// [`WrittenImage`]: super::squashfs::WrittenImage
    pub stored_blocks: Option<&'a WrittenBlocks>,
}

/// Reads the image at `path` and checks it against `layout`: exactly the layout's paths,
/// owned by root, with the layout's modes and `mtime`, and with each file's content equal to
/// the layout's. The root directory itself is not checked for its mtime (backhand writes 0).
///
/// This is [`check_layout`] followed by one sequential read of the image through the
/// [`BlockCheck`] it returns.
pub fn verify_image(
    path: &Path,
    layout: &ImageLayout,
    mtime: u32,
    binary: ExpectedBinary<'_>,
) -> Result<(), InspectError> {
    let mut blocks = check_layout(path, layout, mtime, binary)?;
    let unreadable = |e: io::Error| InspectError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut image = File::open(path).map_err(unreadable)?;
    io::copy(&mut image, &mut blocks).map_err(unreadable)?;
    blocks.finish()
}

/// Checks everything [`verify_image`] checks except the binary's stored blocks, reading only
/// the image's tables and small files; the returned [`BlockCheck`] checks those blocks as
/// the whole image is written to it from the start, so that the read that hashes and signs
/// the image checks them too.
///
/// For the binary, when the writer reports what it stored for each block, the blocks are
/// compared raw with that, which proves the inode points at exactly the blocks compressed
/// from the upstream binary, in order, at a fraction of the cost of decompressing them;
/// otherwise the file is decompressed here and its sha256 compared, and the returned check
/// has nothing left to do.
pub fn check_layout(
    path: &Path,
    layout: &ImageLayout,
    mtime: u32,
    binary: ExpectedBinary<'_>,
) -> Result<BlockCheck, InspectError> {
    let shown = path.display().to_string();
    let unreadable = |reason: String| InspectError::Unreadable {
        path: shown.clone(),
        reason,
    };
    let file = File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let fs = FilesystemReader::from_reader(BufReader::new(file))
        .map_err(|e| unreadable(e.to_string()))?;

    let mut problems = Vec::new();
    let mut seen = Vec::new();
    let mut blocks = BlockCheck::nothing(&shown);
    for node in fs.files() {
        let image_path = node.fullpath.to_string_lossy();
        let relative = image_path.trim_start_matches('/').to_owned();
        let header = node.header;
        if header.uid != 0 || header.gid != 0 {
            problems.push(format!(
                "/{relative} is owned by {}:{}, not root",
                header.uid, header.gid
            ));
        }
        if relative.is_empty() {
            if header.permissions != 0o755 {
                problems.push(format!(
                    "the root directory has mode {:o}",
                    header.permissions
                ));
            }
            continue;
        }
        seen.push(relative.clone());
        let Some(expected) = layout.get(&relative) else {
            problems.push(format!("unexpected entry /{relative}"));
            continue;
        };
        if header.permissions != expected.mode {
            problems.push(format!(
                "/{relative} has mode {:o}, expected {:o}",
                header.permissions, expected.mode
            ));
        }
        if header.mtime != mtime {
            problems.push(format!(
                "/{relative} has mtime {}, expected {mtime}",
                header.mtime
            ));
        }
        match (&node.inner, &expected.content) {
            (InnerNode::Dir(_), EntryContent::Directory) => {}
            (InnerNode::File(file), EntryContent::Text(text)) => {
                let actual =
                    sha256_hex(fs.file(file).reader()).map_err(|e| unreadable(e.to_string()))?;
                if actual != hex::encode(Sha256::digest(text.as_bytes())) {
                    problems.push(format!("/{relative} does not hold the expected text"));
                }
            }
            (InnerNode::File(file), EntryContent::Binary(_)) => {
                if file.file_len() as u64 != binary.size {
                    problems.push(format!(
                        "/{relative} is {} bytes, but the upstream binary is {}",
                        file.file_len(),
                        binary.size
                    ));
                } else {
                    match plan_binary_check(&fs, file, binary)
                        .map_err(|e| unreadable(e.to_string()))?
                    {
                        Ok(planned) => blocks = planned.for_file(&shown, &relative),
                        Err(problem) => problems.push(format!("/{relative}: {problem}")),
                    }
                }
            }
            _ => problems.push(format!(
                "/{relative} is not a {}",
                kind_of(&expected.content)
            )),
        }
    }
    for entry in &layout.entries {
        if !seen.contains(&entry.path) {
            problems.push(format!("/{} is missing", entry.path));
        }
    }
    if problems.is_empty() {
        Ok(blocks)
    } else {
        Err(InspectError::Mismatch {
            path: shown,
            problems: problems.join("; "),
        })
    }
}

/// The blocks of the binary to compare as the image goes by, or why it differs already.
/// A binary without a record of its stored blocks is decompressed and hashed here.
fn plan_binary_check(
    fs: &FilesystemReader<'_>,
    file: &SquashfsFileReader,
    binary: ExpectedBinary<'_>,
) -> io::Result<Result<BlockCheck, String>> {
    const NO_FRAGMENT: u32 = 0xffff_ffff;
    let (blocks_start, block_sizes, fragment) = match file {
        SquashfsFileReader::Basic(basic) => (
            u64::from(basic.blocks_start),
            &basic.block_sizes,
            basic.frag_index,
        ),
        SquashfsFileReader::Extended(extended) => (
            extended.blocks_start,
            &extended.block_sizes,
            extended.frag_index,
        ),
    };
    let expected_blocks = match binary.stored_blocks {
        Some(written) if fragment == NO_FRAGMENT => {
            if written.input_sha256 != binary.sha256 {
                return Ok(Err(format!(
                    "its blocks were compressed from data with sha256 {}, but the upstream binary has {}",
                    written.input_sha256, binary.sha256
                )));
            }
            &written.blocks
        }
        _ => {
            let actual = sha256_hex(fs.file(file).reader())?;
            return Ok(if actual == binary.sha256 {
                Ok(BlockCheck::nothing(""))
            } else {
                Err(format!(
                    "sha256 is {actual}, but the upstream binary has {}",
                    binary.sha256
                ))
            });
        }
    };
    if block_sizes.len() != expected_blocks.len() {
        return Ok(Err(format!(
            "{} data blocks, but {} were written",
            block_sizes.len(),
            expected_blocks.len()
        )));
    }
    let mut pending = Vec::new();
    let mut offset = blocks_start;
    for (index, (size, expected)) in block_sizes.iter().zip(expected_blocks).enumerate() {
        let not_written_here =
            || format!("data block {index} is not the block compressed from the upstream binary");
        match (size.size(), expected) {
            (0, StoredBlock::Hole) => {}
            (n, StoredBlock::Bytes { sha256, compressed })
                if n > 0 && *compressed != size.uncompressed() =>
            {
                pending.push(PendingBlock {
                    index,
                    start: offset,
                    end: offset + u64::from(n),
                    sha256: *sha256,
                });
                offset += u64::from(n);
            }
            _ => return Ok(Err(not_written_here())),
        }
    }
    Ok(Ok(BlockCheck {
        pending,
        ..BlockCheck::nothing("")
    }))
}

/// One stored block of the binary still to be compared.
#[derive(Debug)]
struct PendingBlock {
    index: usize,
    start: u64,
    end: u64,
    sha256: [u8; 32],
}

/// Compares the binary's stored blocks with what the writer stored, as the image's bytes are
/// written to it in order from the start ([`io::Write`]); [`finish`](Self::finish) gives
/// the verdict.
#[derive(Debug)]
pub struct BlockCheck {
    image: String,
    file: String,
    pending: Vec<PendingBlock>,
    /// The first block of `pending` not yet compared.
    next: usize,
    /// The bytes of that block seen so far.
    hasher: Sha256,
    /// How many bytes of the image have been written to the check.
    position: u64,
    problem: Option<String>,
}

impl BlockCheck {
    fn nothing(image: &str) -> Self {
        BlockCheck {
            image: image.to_owned(),
            file: String::new(),
            pending: Vec::new(),
            next: 0,
            hasher: Sha256::new(),
            position: 0,
            problem: None,
        }
    }

    fn for_file(mut self, image: &str, file: &str) -> Self {
        self.image = image.to_owned();
        self.file = file.to_owned();
        self
    }

    /// `Ok` when every block was seen and equal to what the writer stored.
    pub fn finish(self) -> Result<(), InspectError> {
        let problem = match (self.problem, self.pending.get(self.next)) {
            (Some(problem), _) => problem,
            (None, Some(block)) => format!(
                "the image ends at byte {} inside data block {}",
                self.position, block.index
            ),
            (None, None) => return Ok(()),
        };
        Err(InspectError::Mismatch {
            path: self.image,
            problems: format!("/{}: {problem}", self.file),
        })
    }
}

impl io::Write for BlockCheck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk_start = self.position;
        self.position += buf.len() as u64;
        while self.problem.is_none() {
            let Some(block) = self.pending.get(self.next) else {
                break;
            };
            if block.start >= self.position {
                break;
            }
            let from = block.start.max(chunk_start);
            let to = block.end.min(self.position);
            self.hasher
                .update(&buf[(from - chunk_start) as usize..(to - chunk_start) as usize]);
            if to < block.end {
                break;
            }
            if self.hasher.finalize_reset()[..] != block.sha256 {
                self.problem = Some(format!(
                    "data block {} is not the block compressed from the upstream binary",
                    block.index
                ));
            }
            self.next += 1;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn kind_of(content: &EntryContent) -> &'static str {
    match content {
        EntryContent::Directory => "directory",
        EntryContent::Text(_) | EntryContent::Binary(_) => "regular file",
    }
}
