//! Taking the one expected binary out of an upstream release zip, and nothing else.
//!
//! The zip comes from the network. Only the named entry is extracted, streamed to a file with
//! a size cap, so neither a path-traversal name nor a zip bomb can do harm.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The default cap on the extracted binary: Alloy's is ~130 MB today.
pub const DEFAULT_MAX_BINARY_SIZE: u64 = 1024 * 1024 * 1024;

/// What was extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedEntry {
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the extracted bytes, lowercase hex.
    pub sha256: String,
}

/// Why the expected entry could not be taken out of the zip.
#[derive(Debug, thiserror::Error)]
pub enum ZipEntryError {
    #[error("{zip}: not a readable zip archive ({source}); download the release asset again")]
    Corrupt {
        zip: String,
        source: zip::result::ZipError,
    },
    #[error(
        "{zip}: refusing an archive with the unsafe entry name {name:?} (absolute, `..` or NUL)"
    )]
    UnsafeName { zip: String, name: String },
    #[error("{zip}: no entry named {expected:?}; the archive holds {found}")]
    Missing {
        zip: String,
        expected: String,
        found: String,
    },
    #[error("{zip}: entry {name:?} is a {kind}, not a regular file")]
    NotAFile {
        zip: String,
        name: String,
        kind: &'static str,
    },
    #[error(
        "{zip}: entry {name:?} is larger than the {limit}-byte limit ({size} bytes); raise --max-binary-size if this is expected"
    )]
    TooLarge {
        zip: String,
        name: String,
        size: String,
        limit: u64,
    },
    #[error("{zip}: reading entry {name:?} failed: {source}")]
    Read {
        zip: String,
        name: String,
        source: io::Error,
    },
    #[error("opening {zip}: {source}")]
    Open { zip: String, source: io::Error },
    #[error("writing the extracted {name}: {source}")]
    Write { name: String, source: io::Error },
}

/// Streams the entry named `entry_name` from the zip at `zip_path` into `dest`, refusing the
/// archive if any entry name could escape a directory, and refusing an entry above `max_size`
/// bytes (by its header or by what it really inflates to).
pub fn extract_entry(
    zip_path: &Path,
    entry_name: &str,
    max_size: u64,
    dest: &mut impl Write,
) -> Result<ExtractedEntry, ZipEntryError> {
    let zip = zip_path.display().to_string();
    let file = File::open(zip_path).map_err(|source| ZipEntryError::Open {
        zip: zip.clone(),
        source,
    })?;
    let corrupt = |source| ZipEntryError::Corrupt {
        zip: zip.clone(),
        source,
    };
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(corrupt)?;

    let names: Vec<String> = archive
        .file_names_raw()
        .map(|raw| String::from_utf8_lossy(raw).into_owned())
        .collect();
    if let Some(unsafe_name) = names.iter().find(|name| !is_safe_name(name)) {
        return Err(ZipEntryError::UnsafeName {
            zip,
            name: unsafe_name.clone(),
        });
    }
    let Some(index) = names.iter().position(|name| name == entry_name) else {
        return Err(ZipEntryError::Missing {
            zip,
            expected: entry_name.to_owned(),
            found: describe_names(&names),
        });
    };

    let entry = archive.by_index(index).map_err(corrupt)?;
    let kind = if entry.is_dir() {
        Some("directory")
    } else if entry.is_symlink() {
        Some("symbolic link")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(ZipEntryError::NotAFile {
            zip,
            name: entry_name.to_owned(),
            kind,
        });
    }
    let too_large = |size: String| ZipEntryError::TooLarge {
        zip: zip.clone(),
        name: entry_name.to_owned(),
        size,
        limit: max_size,
    };
    if entry.size() > max_size {
        return Err(too_large(entry.size().to_string()));
    }

    let mut hasher = Sha256::new();
    let mut limited = entry.take(max_size.saturating_add(1));
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match limited.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ZipEntryError::Read {
                    zip,
                    name: entry_name.to_owned(),
                    source,
                });
            }
        };
        size += n as u64;
        if size > max_size {
            return Err(too_large(format!("more than {max_size}")));
        }
        hasher.update(&buffer[..n]);
        dest.write_all(&buffer[..n])
            .map_err(|source| ZipEntryError::Write {
                name: entry_name.to_owned(),
                source,
            })?;
    }
    dest.flush().map_err(|source| ZipEntryError::Write {
        name: entry_name.to_owned(),
        source,
    })?;
    Ok(ExtractedEntry {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn is_safe_name(name: &str) -> bool {
    !name.starts_with('/')
        && !name.contains('\0')
        && !name.split(['/', '\\']).any(|part| part == "..")
}

fn describe_names(names: &[String]) -> String {
    match names.len() {
        0 => "no entries".to_owned(),
        n if n <= 5 => format!("{names:?}"),
        n => format!("{:?} and {} more", &names[..5], n - 5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn make_zip(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, data) in entries {
            writer
                .start_file(*name, SimpleFileOptions::default())
                .unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
        file
    }

    fn extract(
        zip: &tempfile::NamedTempFile,
        name: &str,
        max: u64,
    ) -> Result<(ExtractedEntry, Vec<u8>), ZipEntryError> {
        let mut dest = tempfile::tempfile().unwrap();
        let extracted = extract_entry(zip.path(), name, max, &mut dest)?;
        let mut data = Vec::new();
        use std::io::Seek;
        dest.rewind().unwrap();
        dest.read_to_end(&mut data).unwrap();
        Ok((extracted, data))
    }

    #[test]
    fn extracts_only_the_named_entry() {
        let zip = make_zip(&[
            ("README", b"hello"),
            ("alloy-linux-amd64", b"\x7fELFbinary"),
        ]);
        let (entry, data) = extract(&zip, "alloy-linux-amd64", 1024).unwrap();
        assert_eq!(data, b"\x7fELFbinary");
        assert_eq!(entry.size, 10);
        assert_eq!(entry.sha256, hex::encode(Sha256::digest(b"\x7fELFbinary")));
    }

    #[test]
    fn missing_entry_lists_what_is_there() {
        let zip = make_zip(&[("something-else", b"x")]);
        let err = extract(&zip, "alloy-linux-amd64", 1024)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("alloy-linux-amd64") && err.contains("something-else"),
            "{err}"
        );
    }

    #[test]
    fn refuses_traversal_names() {
        for bad in ["../alloy-linux-amd64", "a/../../etc/passwd", "/etc/passwd"] {
            let zip = make_zip(&[(bad, b"x"), ("alloy-linux-amd64", b"y")]);
            let err = extract(&zip, "alloy-linux-amd64", 1024).unwrap_err();
            assert!(
                matches!(err, ZipEntryError::UnsafeName { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn refuses_oversized_entry() {
        let zip = make_zip(&[("alloy-linux-amd64", &[0u8; 4096])]);
        let err = extract(&zip, "alloy-linux-amd64", 4095).unwrap_err();
        assert!(matches!(err, ZipEntryError::TooLarge { .. }), "{err}");
        assert!(extract(&zip, "alloy-linux-amd64", 4096).is_ok());
    }

    #[test]
    fn refuses_corrupt_zip() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"PK\x03\x04 this is not really a zip")
            .unwrap();
        let mut dest = tempfile::tempfile().unwrap();
        let err = extract_entry(file.path(), "x", 10, &mut dest).unwrap_err();
        assert!(matches!(err, ZipEntryError::Corrupt { .. }), "{err}");
    }
}
