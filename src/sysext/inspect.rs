//! Reading an image back and comparing it with the layout it was written from.
//!
//! The builder runs this on its own output before giving it its final name, so a defect in
//! the writer shows up as a failed build rather than as a broken host.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use backhand::{FilesystemReader, InnerNode};
use sha2::{Digest, Sha256};

use crate::digest::sha256_hex;

use super::layout::{EntryContent, ImageLayout};

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

/// Reads the image at `path` and checks it against `layout`: exactly the layout's paths,
/// owned by root, with the layout's modes and `mtime`, and with each file's content equal to
/// the layout's (`binary_sha256` for the binary). The root directory itself is not checked
/// for its mtime (backhand writes 0).
pub fn verify_image(
    path: &Path,
    layout: &ImageLayout,
    mtime: u32,
    binary_sha256: &str,
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
                let actual =
                    sha256_hex(fs.file(file).reader()).map_err(|e| unreadable(e.to_string()))?;
                if actual != binary_sha256 {
                    problems.push(format!(
                        "/{relative} has sha256 {actual}, but the upstream binary has {binary_sha256}"
                    ));
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

fn kind_of(content: &EntryContent) -> &'static str {
    match content {
        EntryContent::Directory => "directory",
        EntryContent::Text(_) | EntryContent::Binary(_) => "regular file",
    }
}
