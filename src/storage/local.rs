//! A local directory as storage, for servers without a bucket: the server's own file route
//! serves it (and sets Cache-Control; nothing here stores it).
//!
//! A file is written (put or copied) under a temporary name in its final directory, synced,
//! and renamed, so a reader sees the old file or the new one, never a part.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{
    CopyOutcome, DeleteOutcome, PutOutcome, PutRequest, StorageError, checked_copy_keys,
    checked_sha256, validate_key,
};
use crate::artifacts::digest::sha256_hex;

/// Files under `root`, one per key (a key's `/` makes subdirectories).
#[derive(Clone, Debug)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: PathBuf) -> Self {
        LocalStorage { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes the temporary files (`.<name>.<random>.tmp`) that writes cut short by a
    /// killed process left under the root, and returns their paths. For the start of the one
    /// process that writes here, before it writes anything.
    pub fn remove_leftovers(&self) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let mut directories = vec![self.root.clone()];
        while let Some(directory) = directories.pop() {
            let entries = match fs::read_dir(&directory) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let kind = entry.file_type()?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if kind.is_dir() {
                    directories.push(entry.path());
                } else if kind.is_file() && name.starts_with('.') && name.ends_with(".tmp") {
                    fs::remove_file(entry.path())?;
                    removed.push(entry.path());
                }
            }
        }
        Ok(removed)
    }

    /// `directory /x/images`.
    pub fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    /// Copies `request.path` to `root/key`, unless a file with the same sha256 is there.
    pub async fn put_file(&self, request: &PutRequest<'_>) -> Result<PutOutcome, StorageError> {
        validate_key(request.key)?;
        let sha256 = checked_sha256(request)?;
        let destination = self.root.join(request.key);
        let source = request.path.to_owned();
        let key = request.key.to_owned();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || put_blocking(&source, &root, &destination, &sha256))
            .await
            .map_err(|e| StorageError::io(format!("storing {key}"), io::Error::other(e)))?
    }

    /// Whether a file with this key and the same content is there already: what
    /// [`Self::put_file`] would leave alone.
    pub async fn holds(&self, request: &PutRequest<'_>) -> Result<bool, StorageError> {
        validate_key(request.key)?;
        let sha256 = checked_sha256(request)?;
        let destination = self.root.join(request.key);
        let source = request.path.to_owned();
        tokio::task::spawn_blocking(move || {
            let size = fs::metadata(&source)
                .map_err(|e| StorageError::io(format!("reading {}", source.display()), e))?
                .len();
            is_unchanged(&destination, size, &sha256)
                .map_err(|e| StorageError::io(format!("reading {}", destination.display()), e))
        })
        .await
        .map_err(|e| StorageError::io(format!("reading {}", request.key), io::Error::other(e)))?
    }

    /// The file stored under `key`, or `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        validate_key(key)?;
        let path = self.root.join(key);
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The sha256 (lowercase hex) of the file stored under `key`, read in pieces; `None`
    /// when there is none.
    pub async fn sha256_of(&self, key: &str) -> Result<Option<String>, StorageError> {
        validate_key(key)?;
        let path = self.root.join(key);
        tokio::task::spawn_blocking(move || match File::open(&path) {
            Ok(file) => sha256_hex(io::BufReader::new(file))
                .map(Some)
                .map_err(|e| StorageError::io(format!("reading {}", path.display()), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(format!("reading {}", path.display()), e)),
        })
        .await
        .map_err(|e| StorageError::io(format!("hashing {key}"), io::Error::other(e)))?
    }

    /// Removes the file stored under `key`; one that is not there is
    /// [`DeleteOutcome::Absent`]. Directories stay, even when left empty: a key's prefix
    /// may hold a manifest again at any time.
    pub async fn delete(&self, key: &str) -> Result<DeleteOutcome, StorageError> {
        validate_key(key)?;
        let path = self.root.join(key);
        tokio::task::spawn_blocking(move || delete_blocking(&path))
            .await
            .map_err(|e| StorageError::io(format!("deleting {key}"), io::Error::other(e)))?
    }

    /// Copies the file stored under `from` to `to` (making `to`'s directories), replacing
    /// any file there, through a temporary file and a rename like [`Self::put_file`]. A
    /// missing source is [`CopyOutcome::SourceAbsent`], and nothing is created then.
    pub async fn copy(&self, from: &str, to: &str) -> Result<CopyOutcome, StorageError> {
        checked_copy_keys(from, to)?;
        let source = self.root.join(from);
        let destination = self.root.join(to);
        let root = self.root.clone();
        let context = format!("copying {from} to {to}");
        tokio::task::spawn_blocking(move || copy_blocking(&source, &root, &destination))
            .await
            .map_err(|e| StorageError::io(context, io::Error::other(e)))?
    }
}

fn copy_blocking(
    source: &Path,
    root: &Path,
    destination: &Path,
) -> Result<CopyOutcome, StorageError> {
    let mut input = match File::open(source) {
        Ok(input) => input,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CopyOutcome::SourceAbsent),
        Err(e) => return Err(StorageError::io(format!("reading {}", source.display()), e)),
    };
    let metadata = input
        .metadata()
        .map_err(|e| StorageError::io(format!("reading {}", source.display()), e))?;
    if !metadata.is_file() {
        return Err(StorageError::io(
            format!("reading {}", source.display()),
            io::Error::other("it is not a file"),
        ));
    }
    write_atomically(&mut input, source, root, destination)?;
    Ok(CopyOutcome::Copied)
}

fn delete_blocking(path: &Path) -> Result<DeleteOutcome, StorageError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DeleteOutcome::Absent),
        Err(e) => return Err(StorageError::io(format!("deleting {}", path.display()), e)),
    }
    // The removal survives a crash once its directory is synced; a removal lost to one
    // would leave a file no manifest lists, which nothing would delete again.
    let directory = path.parent().expect("a key makes a path with a parent");
    File::open(directory)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("syncing {}", directory.display()), e))?;
    Ok(DeleteOutcome::Removed)
}

fn put_blocking(
    source: &Path,
    root: &Path,
    destination: &Path,
    sha256: &str,
) -> Result<PutOutcome, StorageError> {
    let context = |what: &str, path: &Path| format!("{what} {}", path.display());
    let source_size = fs::metadata(source)
        .map_err(|e| StorageError::io(context("reading", source), e))?
        .len();
    if is_unchanged(destination, source_size, sha256)
        .map_err(|e| StorageError::io(context("reading", destination), e))?
    {
        return Ok(PutOutcome::Unchanged);
    }
    let mut input =
        File::open(source).map_err(|e| StorageError::io(context("reading", source), e))?;
    write_atomically(&mut input, source, root, destination)?;
    Ok(PutOutcome::Uploaded)
}

/// Writes what `input` (the file at `source`) holds to `destination`, under `root`: to a
/// temporary file (`.<name>.<random>.tmp`, which [`LocalStorage::remove_leftovers`] removes)
/// in the destination's directory, made with its parents, readable by all, synced and then
/// renamed into place, the directory synced after.
fn write_atomically(
    input: &mut File,
    source: &Path,
    root: &Path,
    destination: &Path,
) -> Result<(), StorageError> {
    let context = |what: &str, path: &Path| format!("{what} {}", path.display());
    let directory = destination
        .parent()
        .expect("a key makes a path with a parent");
    fs::create_dir_all(directory)
        .map_err(|e| StorageError::io(context("creating", directory), e))?;
    // Hosts download what is published: its directories are readable whatever the umask.
    for published in directory.ancestors().take_while(|d| d.starts_with(root)) {
        fs::set_permissions(published, fs::Permissions::from_mode(0o755))
            .map_err(|e| StorageError::io(context("making readable", published), e))?;
    }
    let name = destination
        .file_name()
        .expect("a key's last segment is a file name")
        .to_string_lossy();
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(directory)
        .map_err(|e| StorageError::io(context("creating a temporary file in", directory), e))?;
    let write = |input: &mut File, temporary: &mut tempfile::NamedTempFile| -> io::Result<()> {
        io::copy(input, temporary)?;
        temporary.flush()?;
        temporary
            .as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))?;
        temporary.as_file().sync_all()
    };
    write(input, &mut temporary).map_err(|e| {
        StorageError::io(
            format!(
                "copying {} to {}",
                source.display(),
                temporary.path().display()
            ),
            e,
        )
    })?;
    temporary
        .persist(destination)
        .map_err(|e| StorageError::io(context("renaming into", destination), e.error))?;
    File::open(directory)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(context("syncing", directory), e))?;
    Ok(())
}

/// Whether `path` is a file of `size` bytes with `sha256`.
fn is_unchanged(path: &Path, size: u64, sha256: &str) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() || metadata.len() != size {
        return Ok(false);
    }
    Ok(sha256_hex(io::BufReader::with_capacity(1 << 20, file))? == sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{IMMUTABLE, SHORT_LIVED, Storage, StorageError};

    fn sha256(data: &[u8]) -> String {
        crate::storage::sha256_of_bytes(data)
    }

    fn request<'a>(key: &'a str, path: &'a Path, sha256: &'a str) -> PutRequest<'a> {
        PutRequest {
            key,
            path,
            sha256,
            content_type: "application/octet-stream",
            cache_control: IMMUTABLE,
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn leftovers_of_cut_short_writes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().join("images"));
        assert_eq!(storage.remove_leftovers().unwrap(), Vec::<PathBuf>::new());
        let nested = dir.path().join("images/v2");
        fs::create_dir_all(&nested).unwrap();
        let kept = [
            dir.path().join("images/alloy-1.17.1-amd64.raw"),
            dir.path().join("images/SHA256SUMS"),
            dir.path().join("images/.well-known"),
            nested.join("notes.tmp"),
        ];
        let leftovers = [
            dir.path().join("images/.alloy-1.17.1-amd64.raw.Ab12Cd.tmp"),
            nested.join(".SHA256SUMS.xYz789.tmp"),
        ];
        for path in kept.iter().chain(&leftovers) {
            fs::write(path, b"x").unwrap();
        }
        let mut removed = storage.remove_leftovers().unwrap();
        removed.sort();
        let mut expected = leftovers.to_vec();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(kept.iter().all(|path| path.is_file()));
        assert!(leftovers.iter().all(|path| !path.exists()));
    }

    #[tokio::test]
    async fn files_are_stored_skipped_when_unchanged_and_replaced_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_env(|_| None, dir.path()).unwrap();
        assert_eq!(
            storage.describe(),
            format!("directory {}", dir.path().join("images").display())
        );
        let source = dir.path().join("source");
        fs::write(&source, b"version 1").unwrap();
        let digest = sha256(b"version 1");

        let put = request("nested/dir/SHA256SUMS", &source, &digest);
        assert_eq!(storage.put_file(&put).await.unwrap(), PutOutcome::Uploaded);
        let stored = dir.path().join("images/nested/dir/SHA256SUMS");
        assert_eq!(fs::read(&stored).unwrap(), b"version 1");
        assert_eq!(
            fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            storage.get("nested/dir/SHA256SUMS").await.unwrap().unwrap(),
            b"version 1"
        );

        // The same content again: nothing written (the inode stays the same).
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = inode(&stored);
        assert_eq!(storage.put_file(&put).await.unwrap(), PutOutcome::Unchanged);
        assert_eq!(inode(&stored), before);

        // Changed content (same size, too) replaces it, through a rename.
        fs::write(&source, b"version 2").unwrap();
        let digest = sha256(b"version 2");
        let put = PutRequest {
            cache_control: SHORT_LIVED,
            ..request("nested/dir/SHA256SUMS", &source, &digest)
        };
        assert_eq!(storage.put_file(&put).await.unwrap(), PutOutcome::Uploaded);
        assert_eq!(fs::read(&stored).unwrap(), b"version 2");
        assert_ne!(inode(&stored), before);
        // No temporary file is left behind.
        assert_eq!(
            files_in(&dir.path().join("images/nested/dir")),
            ["SHA256SUMS"]
        );
    }

    #[tokio::test]
    async fn missing_keys_and_hostile_keys() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().join("images"));
        assert_eq!(storage.get("nothing-here").await.unwrap(), None);
        let source = dir.path().join("source");
        fs::write(&source, b"x").unwrap();
        let digest = sha256(b"x");
        for key in ["../escape", "/etc/x", "a\\b", "a\0b"] {
            let error = storage
                .put_file(&request(key, &source, &digest))
                .await
                .unwrap_err();
            assert!(matches!(error, StorageError::InvalidKey { .. }), "{key:?}");
            assert!(storage.get(key).await.is_err());
        }
        // Nothing was created, not even the root.
        assert!(!dir.path().join("images").exists());
        assert_eq!(files_in(dir.path()), ["source"]);
    }

    #[tokio::test]
    async fn a_delete_removes_the_file_once_and_then_finds_it_absent() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_env(|_| None, dir.path()).unwrap();
        let source = dir.path().join("source");
        fs::write(&source, b"image").unwrap();
        let digest = sha256(b"image");
        for key in [
            "alloy-1.2.3-amd64.raw",
            "canary/alloy-1.2.3-amd64.raw",
            "SHA256SUMS",
        ] {
            storage
                .put_file(&request(key, &source, &digest))
                .await
                .unwrap();
        }

        assert_eq!(
            storage
                .delete("canary/alloy-1.2.3-amd64.raw")
                .await
                .unwrap(),
            DeleteOutcome::Removed
        );
        assert_eq!(
            storage
                .delete("canary/alloy-1.2.3-amd64.raw")
                .await
                .unwrap(),
            DeleteOutcome::Absent
        );
        assert_eq!(
            storage.get("canary/alloy-1.2.3-amd64.raw").await.unwrap(),
            None
        );
        // The prefix's directory stays, empty; the other files are untouched.
        assert_eq!(
            files_in(&dir.path().join("images/canary")),
            Vec::<String>::new()
        );
        assert_eq!(
            files_in(&dir.path().join("images")),
            ["SHA256SUMS", "alloy-1.2.3-amd64.raw", "canary"]
        );
        // Under a directory that was never made, too.
        assert_eq!(
            storage
                .delete("stable/alloy-1.2.3-amd64.raw")
                .await
                .unwrap(),
            DeleteOutcome::Absent
        );
    }

    #[tokio::test]
    async fn a_delete_refuses_hostile_keys_and_names_what_it_could_not_remove() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"keep").unwrap();
        let storage = LocalStorage::new(dir.path().join("images"));
        for key in ["../outside", "/etc/passwd", "a\\b", "a/./b", ""] {
            let error = storage.delete(key).await.unwrap_err();
            assert!(matches!(error, StorageError::InvalidKey { .. }), "{key:?}");
            assert!(!error.is_transient());
        }
        assert_eq!(fs::read(&outside).unwrap(), b"keep");

        // A directory where the file would be is not removed: the error names the path.
        fs::create_dir_all(dir.path().join("images/alloy-1.2.3-amd64.raw")).unwrap();
        let error = storage.delete("alloy-1.2.3-amd64.raw").await.unwrap_err();
        assert!(matches!(error, StorageError::Io { .. }), "{error}");
        assert!(!error.is_transient());
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!(
                "deleting {}: ",
                dir.path().join("images/alloy-1.2.3-amd64.raw").display()
            )),
            "{shown}"
        );
        assert!(dir.path().join("images/alloy-1.2.3-amd64.raw").is_dir());
    }

    #[tokio::test]
    async fn a_missing_source_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().join("images"));
        let digest = sha256(b"");
        let missing = dir.path().join("missing");
        let error = storage
            .put_file(&request("k", &missing, &digest))
            .await
            .unwrap_err();
        assert!(!error.is_transient());
        assert!(error.to_string().contains("missing"), "{error}");
    }
}
