//! `DATA_DIR` is the owner's alone: it holds the App's credentials, the signing key, the
//! database of every delivery strangers sent, and job work files. It is created 0700 and
//! every file in it is 0600, except the published images under `DATA_DIR/images`, which
//! hosts download (0644, in 0755 directories; the local storage sets those modes itself).
//!
//! The process's umask is set to 077 before anything is written, so that every file any
//! part of the server creates (SQLite's `-wal` and `-shm` included, and temporary files) is
//! the owner's from its first byte, without each writer having to remember.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The directory of the published images, which keeps readable modes.
pub const PUBLISHED_DIR: &str = "images";

/// What could not be made private.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("creating DATA_DIR {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
}

/// What [`prepare`] changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    /// The mode `DATA_DIR` had when it was looser than 0700.
    pub directory_was: Option<u32>,
    /// Why `DATA_DIR` could not be made 0700 (another user owns it): the files in it are
    /// still 0600.
    pub directory_left_open: Option<String>,
    /// Files and directories inside that were readable by others, now the owner's only.
    pub entries: usize,
}

/// Sets the umask to 077, creates `dir` 0700 (or makes an existing one 0700), and makes the
/// files and directories already in it (but the published images) the owner's only, as an
/// older version or a hand-made directory may have left them.
pub fn prepare(dir: &Path) -> Result<Tightened, DataDirError> {
    restrict_umask();
    make_private(dir)
}

/// Creates `dir` 0700 or makes it so, and what is in it but the published images.
fn make_private(dir: &Path) -> Result<Tightened, DataDirError> {
    let shown = || dir.display().to_string();
    fs::create_dir_all(dir).map_err(|source| DataDirError::Create {
        path: shown(),
        source,
    })?;
    let mut tightened = Tightened::default();
    let mode = fs::metadata(dir)
        .map_err(|source| DataDirError::Create {
            path: shown(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode != 0o700 {
        match fs::set_permissions(dir, fs::Permissions::from_mode(0o700)) {
            Ok(()) => tightened.directory_was = Some(mode),
            Err(error) => {
                tightened.directory_left_open = Some(format!("mode {mode:o}: {error}"));
            }
        }
    }
    tightened.entries = tighten_inside(dir, true);
    Ok(tightened)
}

/// New files 0600 and directories 0700, whoever creates them.
fn restrict_umask() {
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Makes what is under `dir` the owner's only: files 0600 (or 0700 when executable),
/// directories 0700. Returns how many were changed; an entry that cannot be read or changed
/// (another user's) is left as it is.
fn tighten_inside(dir: &Path, top: bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut changed = 0;
    for entry in entries.flatten() {
        if top && entry.file_name() == PUBLISHED_DIR {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            continue;
        }
        if kind.is_dir() {
            changed += tighten_inside(&entry.path(), false);
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let owner_only = mode & 0o700;
            if fs::set_permissions(entry.path(), fs::Permissions::from_mode(owner_only)).is_ok() {
                changed += 1;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_existing_directory_is_made_the_owners_but_the_published_images() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        fs::create_dir_all(dir.join("work/job-1")).unwrap();
        fs::create_dir_all(dir.join(PUBLISHED_DIR)).unwrap();
        for (path, mode) in [
            ("alloy-sysext.db", 0o644),
            ("work/job-1/a.zip", 0o664),
            ("images/alloy-1.0.0.raw", 0o644),
        ] {
            fs::write(dir.join(path), b"x").unwrap();
            fs::set_permissions(dir.join(path), fs::Permissions::from_mode(mode)).unwrap();
        }
        for path in ["", "work", "work/job-1", "images"] {
            fs::set_permissions(dir.join(path), fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Not `prepare`: the umask would change for every test in this process.
        let tightened = make_private(&dir).unwrap();
        assert_eq!(tightened.directory_was, Some(0o755));
        assert_eq!(tightened.entries, 4, "{tightened:?}");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("alloy-sysext.db")), 0o600);
        assert_eq!(mode(&dir.join("work")), 0o700);
        assert_eq!(mode(&dir.join("work/job-1/a.zip")), 0o600);
        assert_eq!(mode(&dir.join("images")), 0o755);
        assert_eq!(mode(&dir.join("images/alloy-1.0.0.raw")), 0o644);
        // Done once, nothing is left to change.
        assert_eq!(make_private(&dir).unwrap(), Tightened::default());
    }
}
