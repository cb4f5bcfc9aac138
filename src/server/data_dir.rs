//! `DATA_DIR` is the owner's alone: it holds the App's credentials, the signing key, the
//! database of every delivery strangers sent, and job work files. It is created 0700 and
//! every file the server makes in it is 0600, except the published images under
//! `DATA_DIR/images`, which hosts download (0644, in 0755 directories; the local storage
//! sets those modes itself).
//!
//! The process's umask is set to 077 before anything is written, so that every file any
//! part of the server creates (SQLite's `-wal` and `-shm` included, and temporary files) is
//! the owner's from its first byte, without each writer having to remember. Files of the
//! server's left open by an older version are tightened at start; nothing else is touched
//! (`DATA_DIR` may by mistake be a directory that holds other things, `.` or a home), and
//! no symbolic link is followed.
//!
//! A `DATA_DIR` that another user can write to could have credentials or a signing key
//! planted in it: the server refuses to start there.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The directory of the published images, which keeps readable modes.
pub const PUBLISHED_DIR: &str = "images";

/// The files of the server's that may be in `DATA_DIR` already: the default database and
/// its journals, the App's credentials, a generated signing key.
const SERVER_FILES: &[&str] = &[
    "alloy-sysext.db",
    "alloy-sysext.db-wal",
    "alloy-sysext.db-shm",
    "alloy-sysext.db-journal",
    crate::server::app_credentials_file::FILE_NAME,
    crate::server::signing_key::GENERATED_KEY_FILE,
    crate::server::signing_key::GENERATED_PUBLIC_KEY_FILE,
];

/// The server's directories in `DATA_DIR`: the spilled webhook bodies (whose files are
/// tightened too) and the job work files.
const SERVER_DIRECTORIES: &[&str] = &[crate::server::unverified_body::SPILL_DIR, "work"];

/// What could not be made private.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("creating DATA_DIR {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "DATA_DIR {path} is owned by user {owner} (mode {mode:o}), who could put App credentials or a signing key in it; make it the server user's (chown) or choose another DATA_DIR"
    )]
    OwnedByAnother { path: String, owner: u32, mode: u32 },
    #[error(
        "DATA_DIR {path} (mode {mode:o}, owned by user {owner}) can be written by other users, who could put App credentials or a signing key in it, and the server cannot change that; make it the server user's with mode 0700, or choose another DATA_DIR"
    )]
    WritableByOthers { path: String, owner: u32, mode: u32 },
}

/// What [`prepare`] changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    /// The mode `DATA_DIR` had when it was looser than 0700.
    pub directory_was: Option<u32>,
    /// Why `DATA_DIR` could not be made 0700 (root owns it, and only lets others read it):
    /// the files in it are still 0600.
    pub directory_left_open: Option<String>,
    /// The server's files and directories inside that were readable by others, now the
    /// owner's only.
    pub entries: usize,
}

/// Sets the umask to 077, creates `dir` 0700 (or makes an existing one 0700), and makes the
/// server's files and directories already in it the owner's only, as an older version may
/// have left them. Refuses a `dir` another user can write to.
pub fn prepare(dir: &Path) -> Result<Tightened, DataDirError> {
    restrict_umask();
    make_private(dir)
}

/// Creates `dir` 0700 or makes it so, and the server's files in it.
fn make_private(dir: &Path) -> Result<Tightened, DataDirError> {
    let shown = || dir.display().to_string();
    fs::create_dir_all(dir).map_err(|source| DataDirError::Create {
        path: shown(),
        source,
    })?;
    let mut tightened = Tightened::default();
    let metadata = fs::metadata(dir).map_err(|source| DataDirError::Create {
        path: shown(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    check_owner(dir, metadata.uid(), current_uid(), mode)?;
    if mode != 0o700 {
        match fs::set_permissions(dir, fs::Permissions::from_mode(0o700)) {
            Ok(()) => tightened.directory_was = Some(mode),
            Err(error) => {
                if mode & 0o022 != 0 {
                    return Err(DataDirError::WritableByOthers {
                        path: shown(),
                        owner: metadata.uid(),
                        mode,
                    });
                }
                tightened.directory_left_open = Some(format!("mode {mode:o}: {error}"));
            }
        }
    }
    tightened.entries = tighten_server_entries(dir);
    Ok(tightened)
}

/// A `DATA_DIR` owned by `owner` with `mode` is safe for the server running as `us` when it
/// is ours, or root's and not writable by group or others (root can do anything anyway).
/// Another user who owns it may make it writable whenever they like.
fn check_owner(dir: &Path, owner: u32, us: u32, mode: u32) -> Result<(), DataDirError> {
    let path = || dir.display().to_string();
    if owner == us {
        return Ok(());
    }
    if owner != 0 {
        return Err(DataDirError::OwnedByAnother {
            path: path(),
            owner,
            mode,
        });
    }
    if mode & 0o022 != 0 {
        return Err(DataDirError::WritableByOthers {
            path: path(),
            owner,
            mode,
        });
    }
    Ok(())
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// New files 0600 and directories 0700, whoever creates them.
fn restrict_umask() {
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Makes the server's files and directories in `dir` the owner's only: files 0600 (0700
/// when executable), directories 0700, and the files directly in the spill directory.
/// Symbolic links are not followed. Returns how many were changed; an entry that cannot be
/// read or changed is left as it is.
fn tighten_server_entries(dir: &Path) -> usize {
    let mut changed = 0;
    for name in SERVER_FILES.iter().chain(SERVER_DIRECTORIES) {
        changed += usize::from(tighten(&dir.join(name)));
    }
    let spill = dir.join(crate::server::unverified_body::SPILL_DIR);
    if fs::symlink_metadata(&spill).is_ok_and(|m| m.is_dir())
        && let Ok(entries) = fs::read_dir(&spill)
    {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_file()) {
                changed += usize::from(tighten(&entry.path()));
            }
        }
    }
    changed
}

/// Makes the file or directory `path` the owner's only, unless it is a symbolic link (or
/// missing). True when it was changed.
fn tighten(path: &Path) -> bool {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return false;
    };
    if !(metadata.is_file() || metadata.is_dir()) {
        return false;
    }
    let mode = metadata.permissions().mode() & 0o7777;
    mode & 0o077 != 0 && fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_servers_files_are_made_the_owners_and_nothing_else_is_touched() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        fs::create_dir_all(dir.join("work/job-1")).unwrap();
        fs::create_dir_all(dir.join("incoming")).unwrap();
        fs::create_dir_all(dir.join(PUBLISHED_DIR)).unwrap();
        fs::create_dir_all(dir.join("notes/deep")).unwrap();
        let outside = parent.path().join("outside.txt");
        fs::write(&outside, b"x").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        for (path, mode) in [
            ("alloy-sysext.db", 0o644),
            ("alloy-sysext.db-wal", 0o644),
            ("github-app.json", 0o640),
            ("incoming/body-1", 0o644),
            ("images/alloy-1.0.0.raw", 0o644),
            ("notes/deep/mine.txt", 0o644),
            ("settings.toml", 0o644),
        ] {
            fs::write(dir.join(path), b"x").unwrap();
            fs::set_permissions(dir.join(path), fs::Permissions::from_mode(mode)).unwrap();
        }
        for path in ["", "work", "incoming", "images", "notes", "notes/deep"] {
            fs::set_permissions(dir.join(path), fs::Permissions::from_mode(0o755)).unwrap();
        }
        // A link where a server file would be: what it points at is not the server's.
        std::os::unix::fs::symlink(&outside, dir.join("signing-key.asc")).unwrap();
        // Not `prepare`: the umask would change for every test in this process.
        let tightened = make_private(&dir).unwrap();
        assert_eq!(tightened.directory_was, Some(0o755));
        assert_eq!(tightened.entries, 6, "{tightened:?}");
        assert_eq!(mode(&dir), 0o700);
        for path in [
            "alloy-sysext.db",
            "alloy-sysext.db-wal",
            "github-app.json",
            "incoming/body-1",
        ] {
            assert_eq!(mode(&dir.join(path)), 0o600, "{path}");
        }
        assert_eq!(mode(&dir.join("work")), 0o700);
        assert_eq!(mode(&dir.join("incoming")), 0o700);
        // Not the server's: left as they were.
        assert_eq!(mode(&outside), 0o644);
        assert_eq!(mode(&dir.join("notes")), 0o755);
        assert_eq!(mode(&dir.join("notes/deep/mine.txt")), 0o644);
        assert_eq!(mode(&dir.join("settings.toml")), 0o644);
        assert_eq!(mode(&dir.join("images")), 0o755);
        assert_eq!(mode(&dir.join("images/alloy-1.0.0.raw")), 0o644);
        // Done once, nothing is left to change.
        assert_eq!(make_private(&dir).unwrap(), Tightened::default());
    }

    #[test]
    fn a_data_dir_another_user_can_write_to_is_refused() {
        let dir = Path::new("/srv/data");
        let us = 1000;
        assert!(check_owner(dir, us, us, 0o777).is_ok());
        // Root's, and others may only read: it cannot be tightened, but nothing can be planted.
        assert!(check_owner(dir, 0, us, 0o755).is_ok());
        let refused = check_owner(dir, 0, us, 0o775).unwrap_err();
        assert!(matches!(refused, DataDirError::WritableByOthers { .. }));
        assert!(refused.to_string().contains("/srv/data"), "{refused}");
        // Another user may open their directory whenever they like, whatever its mode now.
        let refused = check_owner(dir, 1001, us, 0o700).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("DATA_DIR /srv/data is owned by user 1001"),
            "{refused}"
        );
        // Root running the server owns nothing special: another user's directory is refused.
        assert!(check_owner(dir, 1001, 0, 0o700).is_err());
    }
}
