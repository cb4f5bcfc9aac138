//! Reading an image back and comparing it with the layout it was written from.
//!
//! The builder runs this on its own output before giving it its final name, so a defect in
//! the writer shows up as a failed build rather than as a broken host.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use backhand::{FilesystemReader, InnerNode, SquashfsFileReader};
use sha2::{Digest, Sha256};

use crate::digest::sha256_hex;

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
/// For the binary, when the writer reports what it stored for each block, the check reads
/// the stored blocks raw and compares them with that, which proves the inode points at
/// exactly the blocks compressed from the upstream binary, in order, at a fraction of the
/// cost of decompressing them; otherwise it decompresses the file and compares its sha256.
pub fn verify_image(
    path: &Path,
    layout: &ImageLayout,
    mtime: u32,
    binary: ExpectedBinary<'_>,
) -> Result<(), InspectError> {
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
                } else if let Some(problem) =
                    check_binary(path, &fs, file, binary).map_err(|e| unreadable(e.to_string()))?
                {
                    problems.push(format!("/{relative}: {problem}"));
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
        Ok(())
    } else {
        Err(InspectError::Mismatch {
            path: shown,
            problems: problems.join("; "),
        })
    }
}

/// Checks the binary's data; `Some(problem)` when it differs.
fn check_binary(
    image: &Path,
    fs: &FilesystemReader<'_>,
    file: &SquashfsFileReader,
    binary: ExpectedBinary<'_>,
) -> io::Result<Option<String>> {
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
                return Ok(Some(format!(
                    "its blocks were compressed from data with sha256 {}, but the upstream binary has {}",
                    written.input_sha256, binary.sha256
                )));
            }
            &written.blocks
        }
        _ => {
            let actual = sha256_hex(fs.file(file).reader())?;
            return Ok((actual != binary.sha256).then(|| {
                format!(
                    "sha256 is {actual}, but the upstream binary has {}",
                    binary.sha256
                )
            }));
        }
    };
    if block_sizes.len() != expected_blocks.len() {
        return Ok(Some(format!(
            "{} data blocks, but {} were written",
            block_sizes.len(),
            expected_blocks.len()
        )));
    }
    let mut image = BufReader::new(File::open(image)?);
    image.seek(SeekFrom::Start(blocks_start))?;
    let mut buffer = Vec::new();
    for (index, (size, expected)) in block_sizes.iter().zip(expected_blocks).enumerate() {
        let actual = match size.size() {
            0 => StoredBlock::Hole,
            n => {
                buffer.resize(n as usize, 0);
                image.read_exact(&mut buffer)?;
                StoredBlock::Bytes {
                    sha256: Sha256::digest(&buffer).into(),
                    compressed: !size.uncompressed(),
                }
            }
        };
        if actual != *expected {
            return Ok(Some(format!(
                "data block {index} is not the block compressed from the upstream binary"
            )));
        }
    }
    Ok(None)
}

fn kind_of(content: &EntryContent) -> &'static str {
    match content {
        EntryContent::Directory => "directory",
        EntryContent::Text(_) | EntryContent::Binary(_) => "regular file",
    }
}
