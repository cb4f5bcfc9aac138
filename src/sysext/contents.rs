//! Everything inside a squashfs image, entry by entry, as two images can be compared: each
//! path with its type, mode, owner, mtime and, for a file, its size and the sha256 of its
//! content (decompressed), for a symlink its target.
//!
//! Unlike [`super::inspect`], which checks an image against the layout it was written from,
//! this reads any image, so that an image published elsewhere can be told apart from one
//! built here file by file.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use backhand::{FilesystemReader, InnerNode};

use crate::artifacts::digest::sha256_hex;

use super::inspect::InspectError;

/// One entry of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// Relative to the image root, `/`-separated; the root itself is `""`.
    pub path: String,
    pub kind: EntryType,
    /// Permission bits.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
}

/// What an entry is, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryType {
    Directory,
    File {
        size: u64,
        sha256: String,
    },
    Symlink {
        target: String,
    },
    /// A device, pipe or socket: not in this tool's images, named by kind.
    Special(&'static str),
}

impl EntryType {
    /// `directory`, `file`, `symlink`, or the special kind.
    pub fn name(&self) -> &'static str {
        match self {
            EntryType::Directory => "directory",
            EntryType::File { .. } => "file",
            EntryType::Symlink { .. } => "symlink",
            EntryType::Special(kind) => kind,
        }
    }
}

/// Every entry of the image at `path`, in the image's order (the root first, each
/// directory's entries sorted by name).
pub fn image_contents(path: &Path) -> Result<Vec<ImageEntry>, InspectError> {
    let unreadable = |reason: String| InspectError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let file = File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let fs = FilesystemReader::from_reader(BufReader::new(file))
        .map_err(|e| unreadable(e.to_string()))?;
    let mut entries = Vec::new();
    for node in fs.files() {
        let kind = match &node.inner {
            InnerNode::Dir(_) => EntryType::Directory,
            InnerNode::File(file) => EntryType::File {
                size: file.file_len() as u64,
                sha256: sha256_hex(fs.file(file).reader())
                    .map_err(|e| unreadable(format!("reading {}: {e}", node.fullpath.display())))?,
            },
            InnerNode::Symlink(link) => EntryType::Symlink {
                target: link.link.to_string_lossy().into_owned(),
            },
            InnerNode::CharacterDevice(_) => EntryType::Special("character device"),
            InnerNode::BlockDevice(_) => EntryType::Special("block device"),
            InnerNode::NamedPipe => EntryType::Special("named pipe"),
            InnerNode::Socket => EntryType::Special("socket"),
        };
        entries.push(ImageEntry {
            path: node
                .fullpath
                .to_string_lossy()
                .trim_start_matches('/')
                .to_owned(),
            kind,
            mode: node.header.permissions,
            uid: node.header.uid,
            gid: node.header.gid,
            mtime: node.header.mtime,
        });
    }
    Ok(entries)
}

/// How `published` differs from `rebuilt`, for the first entry that does, in the published
/// image's order (then the entries only the rebuilt image has): the path and what differs.
pub fn first_entry_difference(
    published: &[ImageEntry],
    rebuilt: &[ImageEntry],
) -> Option<EntryDifference> {
    for entry in published {
        let Some(other) = rebuilt.iter().find(|r| r.path == entry.path) else {
            return Some(EntryDifference {
                path: entry.path.clone(),
                what: format!(
                    "the published image has this {}, the rebuilt one does not",
                    entry.kind.name()
                ),
            });
        };
        if let Some(what) = describe_difference(entry, other) {
            return Some(EntryDifference {
                path: entry.path.clone(),
                what,
            });
        }
    }
    rebuilt
        .iter()
        .find(|r| !published.iter().any(|p| p.path == r.path))
        .map(|entry| EntryDifference {
            path: entry.path.clone(),
            what: format!(
                "the rebuilt image has this {}, the published one does not",
                entry.kind.name()
            ),
        })
}

/// An entry that differs between two images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDifference {
    /// Relative to the image root; `""` is the root directory.
    pub path: String,
    /// What differs, the published value first.
    pub what: String,
}

impl EntryDifference {
    /// `/usr/local/bin/alloy`, `/` for the root.
    pub fn shown_path(&self) -> String {
        format!("/{}", self.path)
    }
}

/// What differs between two entries at the same path, the published one first.
fn describe_difference(published: &ImageEntry, rebuilt: &ImageEntry) -> Option<String> {
    let both = |what: &str, p: String, r: String| {
        Some(format!(
            "{what} is {p} in the published image, {r} in the rebuilt one"
        ))
    };
    match (&published.kind, &rebuilt.kind) {
        (p, r) if p.name() != r.name() => {
            return both("its type", p.name().to_owned(), r.name().to_owned());
        }
        (
            EntryType::File {
                size: p_size,
                sha256: p_sha,
            },
            EntryType::File {
                size: r_size,
                sha256: r_sha,
            },
        ) if p_sha != r_sha || p_size != r_size => {
            return both(
                "its content",
                format!("{p_size} bytes with sha256 {p_sha}"),
                format!("{r_size} bytes with sha256 {r_sha}"),
            );
        }
        (EntryType::Symlink { target: p }, EntryType::Symlink { target: r }) if p != r => {
            return both("its target", format!("{p:?}"), format!("{r:?}"));
        }
        _ => {}
    }
    if published.mode != rebuilt.mode {
        return both(
            "its mode",
            format!("{:04o}", published.mode),
            format!("{:04o}", rebuilt.mode),
        );
    }
    if (published.uid, published.gid) != (rebuilt.uid, rebuilt.gid) {
        return both(
            "its owner",
            format!("{}:{}", published.uid, published.gid),
            format!("{}:{}", rebuilt.uid, rebuilt.gid),
        );
    }
    if published.mtime != rebuilt.mtime {
        return both(
            "its mtime",
            published.mtime.to_string(),
            rebuilt.mtime.to_string(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha256: &str) -> ImageEntry {
        ImageEntry {
            path: path.to_owned(),
            kind: EntryType::File {
                size: 4,
                sha256: sha256.to_owned(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    #[test]
    fn names_the_first_entry_that_differs_and_how() {
        let published = vec![file("a", "1"), file("b", "2"), file("c", "3")];
        let mut rebuilt = published.clone();
        assert_eq!(first_entry_difference(&published, &rebuilt), None);

        rebuilt[2] = file("c", "4");
        rebuilt[1].mtime = 7;
        assert_eq!(
            first_entry_difference(&published, &rebuilt),
            Some(EntryDifference {
                path: "b".into(),
                what: "its mtime is 0 in the published image, 7 in the rebuilt one".into()
            })
        );
        rebuilt[1].mtime = 0;
        assert_eq!(
            first_entry_difference(&published, &rebuilt).unwrap().what,
            "its content is 4 bytes with sha256 3 in the published image, 4 bytes with sha256 4 in the rebuilt one"
        );
        rebuilt[2] = file("c", "3");
        rebuilt[0].mode = 0o755;
        rebuilt[0].uid = 1;
        assert_eq!(
            first_entry_difference(&published, &rebuilt).unwrap().what,
            "its mode is 0644 in the published image, 0755 in the rebuilt one"
        );
        rebuilt[0].mode = 0o644;
        assert_eq!(
            first_entry_difference(&published, &rebuilt).unwrap().what,
            "its owner is 0:0 in the published image, 1:0 in the rebuilt one"
        );

        let fewer = &published[..2];
        assert_eq!(
            first_entry_difference(fewer, &published),
            Some(EntryDifference {
                path: "c".into(),
                what: "the rebuilt image has this file, the published one does not".into()
            })
        );
        assert_eq!(
            first_entry_difference(&published, fewer).unwrap().what,
            "the published image has this file, the rebuilt one does not"
        );
        let mut directory = published.clone();
        directory[0].kind = EntryType::Directory;
        assert_eq!(
            first_entry_difference(&published, &directory).unwrap().what,
            "its type is file in the published image, directory in the rebuilt one"
        );
    }
}
