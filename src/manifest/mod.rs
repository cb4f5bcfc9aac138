//! The `SHA256SUMS` manifest that systemd-sysupdate reads on every host.
//!
//! Hosts see a new version at the moment this file (with its signature) changes, so it is
//! parsed strictly, edited line by line, and always written back in systemd's version order.
//!
//! [`image_name`] reads a version and architecture back out of a listed file's name;
//! [`match_pattern`] picks listed files by version as systemd-sysupdate's `MatchPattern=`
//! does; [`verify`] checks published files against it as a host would.

pub mod image_name;
pub mod match_pattern;
pub mod prune;
pub mod verify;

use std::fmt;

use crate::artifacts::image_format::ImageFormat;
use crate::manifest::image_name::ImageFileName;
use crate::version::{Version, systemd_version_cmp};

/// One line of the manifest: the sha256 of a published file and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// 64 lowercase hex digits.
    pub sha256: String,
    /// A bare file name (no directories).
    pub file: String,
}

/// A parsed `SHA256SUMS`: one entry per file, kept in systemd version order.
///
/// ```
/// use alloy_sysext_automation::manifest::{Manifest, ManifestEntry};
/// let mut m = Manifest::parse("").unwrap();
/// m.upsert(ManifestEntry { sha256: "a".repeat(64), file: "alloy-1.10.0-amd64.raw".into() }).unwrap();
/// m.upsert(ManifestEntry { sha256: "b".repeat(64), file: "alloy-1.9.0-amd64.raw".into() }).unwrap();
/// assert!(m.render().starts_with(&"b".repeat(64)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
}

/// What is wrong with a manifest or an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("SHA256SUMS line {line}: {reason} (expected `<64 lowercase hex>  <file name>`)")]
    MalformedLine { line: usize, reason: String },
    #[error("SHA256SUMS lists {file:?} twice (lines {first} and {second})")]
    DuplicateFile {
        file: String,
        first: usize,
        second: usize,
    },
    #[error("invalid manifest entry for {file:?}: {reason}")]
    InvalidEntry { file: String, reason: &'static str },
}

/// How an [`Manifest::upsert`] changed the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// The file was not listed; its line was added in version order.
    Added,
    /// The file was listed with another hash; the line now has the new one.
    Replaced,
    /// The file was already listed with this hash; nothing changed.
    Unchanged,
}

impl Manifest {
    /// Parses the text of a `SHA256SUMS` file.
    ///
    /// Accepts what systemd-sysupdate accepts: 64 hex digits, a space, then a space or `*`,
    /// then the file name, one per line. Every other line is an error naming its number.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let mut entries: Vec<(usize, ManifestEntry)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let entry = parse_line(line).map_err(|reason| ManifestError::MalformedLine {
                line: number,
                reason,
            })?;
            if let Some((first, _)) = entries.iter().find(|(_, e)| e.file == entry.file) {
                return Err(ManifestError::DuplicateFile {
                    file: entry.file,
                    first: *first,
                    second: number,
                });
            }
            entries.push((number, entry));
        }
        let mut manifest = Manifest {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        };
        manifest.sort();
        Ok(manifest)
    }

    /// The entries in version order.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// The entry for `file`, if listed.
    pub fn get(&self, file: &str) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| e.file == file)
    }

    /// Adds `entry`, or replaces the line for the same file; other lines are kept.
    pub fn upsert(&mut self, entry: ManifestEntry) -> Result<Upsert, ManifestError> {
        validate_entry(&entry)?;
        let outcome = match self.entries.iter_mut().find(|e| e.file == entry.file) {
            Some(existing) if existing.sha256 == entry.sha256 => Upsert::Unchanged,
            Some(existing) => {
                existing.sha256 = entry.sha256;
                Upsert::Replaced
            }
            None => {
                self.entries.push(entry);
                self.sort();
                Upsert::Added
            }
        };
        Ok(outcome)
    }

    /// Removes the lines of the images named `name` at `version` (every architecture and
    /// format, and the compatibility name) and returns them; other lines are kept.
    pub fn remove_version(&mut self, name: &str, version: &Version) -> Vec<ManifestEntry> {
        let (removed, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|entry| {
                ImageFileName::parse(&entry.file)
                    .is_some_and(|parsed| parsed.name == name && &parsed.version == version)
            });
        self.entries = kept;
        removed
    }

    /// The versions of the images named `name`, each once, newest first.
    pub fn versions(&self, name: &str) -> Vec<Version> {
        let mut versions: Vec<Version> = Vec::new();
        for entry in &self.entries {
            if let Some(parsed) = ImageFileName::parse(&entry.file)
                && parsed.name == name
                && !versions.contains(&parsed.version)
            {
                versions.push(parsed.version);
            }
        }
        versions.sort_by(|a, b| b.cmp(a));
        versions
    }

    /// The manifest as text: `<sha256>  <file>\n` per entry, in version order.
    pub fn render(&self) -> String {
        self.to_string()
    }

    fn sort(&mut self) {
        self.entries.sort_by(|a, b| listing_order(&a.file, &b.file));
    }
}

/// The order of the manifest's lines: systemd's version order of the file names, where an
/// image's DDI counts as its squashfs image's name and comes right after it. So each
/// version and architecture lists `alloy-V-ARCH.raw`, then `alloy-V-ARCH.ddi.raw`, and a
/// manifest without DDIs keeps the order it always had.
fn listing_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |file: &str| match ImageFileName::parse(file) {
        Some(parsed) if parsed.format == ImageFormat::Ddi => (
            parsed.in_format(ImageFormat::Squashfs).file_name(),
            ImageFormat::Ddi,
        ),
        _ => (file.to_owned(), ImageFormat::Squashfs),
    };
    let ((a_name, a_format), (b_name, b_format)) = (key(a), key(b));
    systemd_version_cmp(&a_name, &b_name).then(a_format.cmp(&b_format))
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{}  {}", entry.sha256, entry.file)?;
        }
        Ok(())
    }
}

fn parse_line(line: &str) -> Result<ManifestEntry, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err("empty line".into());
    }
    let (hash, rest) = line
        .split_at_checked(64)
        .ok_or_else(|| format!("too short to hold a sha256: {:?}", shorten(line)))?;
    if !hash.bytes().all(is_lower_hex) {
        return Err(format!(
            "{:?} is not 64 lowercase hex digits",
            shorten(hash)
        ));
    }
    let file = rest
        .strip_prefix("  ")
        .or_else(|| rest.strip_prefix(" *"))
        .ok_or_else(|| {
            "the hash must be followed by two spaces (or a space and `*`)".to_string()
        })?;
    let entry = ManifestEntry {
        sha256: hash.to_owned(),
        file: file.to_owned(),
    };
    validate_entry(&entry).map_err(|e| match e {
        ManifestError::InvalidEntry { reason, .. } => reason.to_string(),
        other => other.to_string(),
    })?;
    Ok(entry)
}

fn validate_entry(entry: &ManifestEntry) -> Result<(), ManifestError> {
    let invalid = |reason| ManifestError::InvalidEntry {
        file: entry.file.clone(),
        reason,
    };
    if entry.sha256.len() != 64 || !entry.sha256.bytes().all(is_lower_hex) {
        return Err(invalid("the hash must be 64 lowercase hex digits"));
    }
    if entry.file.is_empty() || entry.file == "." || entry.file == ".." {
        return Err(invalid("the file name is empty or a directory"));
    }
    if entry
        .file
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "the file name must not contain slashes, whitespace or control characters",
        ));
    }
    Ok(())
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The newest published image for one architecture (or the compatibility name) and format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `amd64`, `arm64`, or `compat` for `<name>-X.Y.Z.raw`.
    pub arch: String,
    pub format: ImageFormat,
    pub version: String,
    pub file: String,
    pub sha256: String,
}

/// The newest entry per architecture and format among the images named `name` in
/// `manifest`, by architecture, the squashfs image before the DDI.
pub fn newest_per_arch(manifest: &Manifest, name: &str) -> Vec<Published> {
    let mut newest: Vec<Published> = Vec::new();
    for entry in manifest.entries() {
        let Some(parsed) = ImageFileName::parse(&entry.file) else {
            continue;
        };
        if parsed.name != name {
            continue;
        }
        let arch = parsed
            .arch
            .map(|a| a.to_string())
            .unwrap_or_else(|| "compat".to_owned());
        let candidate = Published {
            arch: arch.clone(),
            format: parsed.format,
            version: parsed.version.as_str().to_owned(),
            file: entry.file.clone(),
            sha256: entry.sha256.clone(),
        };
        match newest
            .iter_mut()
            .find(|p| p.arch == arch && p.format == parsed.format)
        {
            Some(current) => {
                if systemd_version_cmp(&candidate.version, &current.version).is_gt() {
                    *current = candidate;
                }
            }
            None => newest.push(candidate),
        }
    }
    newest.sort_by(|a, b| a.arch.cmp(&b.arch).then(a.format.cmp(&b.format)));
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hash: char, file: &str) -> ManifestEntry {
        ManifestEntry {
            sha256: hash.to_string().repeat(64),
            file: file.into(),
        }
    }

    #[test]
    fn sorts_by_systemd_version() {
        let mut m = Manifest::default();
        m.upsert(entry('a', "alloy-1.10.0-amd64.raw")).unwrap();
        m.upsert(entry('b', "alloy-1.9.0-amd64.raw")).unwrap();
        m.upsert(entry('c', "alloy-1.9.10-amd64.raw")).unwrap();
        let files: Vec<&str> = m.entries().iter().map(|e| e.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "alloy-1.9.0-amd64.raw",
                "alloy-1.9.10-amd64.raw",
                "alloy-1.10.0-amd64.raw"
            ]
        );
    }

    #[test]
    fn each_ddi_follows_its_squashfs_image() {
        let mut m = Manifest::default();
        for (hash, file) in [
            ('a', "alloy-1.10.0-arm64.ddi.raw"),
            ('b', "alloy-1.10.0-amd64.ddi.raw"),
            ('c', "alloy-1.9.0-amd64.ddi.raw"),
            ('d', "alloy-1.10.0-amd64.raw"),
            ('e', "alloy-1.9.0-amd64.raw"),
            ('f', "alloy-1.10.0-arm64.raw"),
            ('9', "alloy-1.10.0.raw"),
        ] {
            m.upsert(entry(hash, file)).unwrap();
        }
        let files: Vec<&str> = m.entries().iter().map(|e| e.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "alloy-1.9.0-amd64.raw",
                "alloy-1.9.0-amd64.ddi.raw",
                "alloy-1.10.0-amd64.raw",
                "alloy-1.10.0-amd64.ddi.raw",
                "alloy-1.10.0-arm64.raw",
                "alloy-1.10.0-arm64.ddi.raw",
                "alloy-1.10.0.raw",
            ]
        );
        // Parsing puts a manifest written in another order back in this one.
        let reversed: String = m
            .entries()
            .iter()
            .rev()
            .map(|e| format!("{}  {}\n", e.sha256, e.file))
            .collect();
        assert_eq!(Manifest::parse(&reversed).unwrap(), m);
        let versions: Vec<String> = m.versions("alloy").iter().map(|v| v.to_string()).collect();
        assert_eq!(versions, ["1.10.0", "1.9.0"]);
        let newest: Vec<(String, ImageFormat, String)> = newest_per_arch(&m, "alloy")
            .into_iter()
            .map(|p| (p.arch, p.format, p.file))
            .collect();
        assert_eq!(
            newest,
            [
                (
                    "amd64".to_owned(),
                    ImageFormat::Squashfs,
                    "alloy-1.10.0-amd64.raw".to_owned()
                ),
                (
                    "amd64".to_owned(),
                    ImageFormat::Ddi,
                    "alloy-1.10.0-amd64.ddi.raw".to_owned()
                ),
                (
                    "arm64".to_owned(),
                    ImageFormat::Squashfs,
                    "alloy-1.10.0-arm64.raw".to_owned()
                ),
                (
                    "arm64".to_owned(),
                    ImageFormat::Ddi,
                    "alloy-1.10.0-arm64.ddi.raw".to_owned()
                ),
                (
                    "compat".to_owned(),
                    ImageFormat::Squashfs,
                    "alloy-1.10.0.raw".to_owned()
                ),
            ]
        );
        let removed: Vec<String> = m
            .remove_version("alloy", &"1.10.0".parse().unwrap())
            .into_iter()
            .map(|e| e.file)
            .collect();
        assert_eq!(
            removed,
            [
                "alloy-1.10.0-amd64.raw",
                "alloy-1.10.0-amd64.ddi.raw",
                "alloy-1.10.0-arm64.raw",
                "alloy-1.10.0-arm64.ddi.raw",
                "alloy-1.10.0.raw",
            ]
        );
    }

    #[test]
    fn rebuild_replaces_only_its_line() {
        let text = format!(
            "{}  alloy-1.9.0-amd64.raw\n{}  alloy-1.10.0-amd64.raw\n",
            "1".repeat(64),
            "2".repeat(64)
        );
        let mut m = Manifest::parse(&text).unwrap();
        assert_eq!(
            m.upsert(entry('f', "alloy-1.10.0-amd64.raw")).unwrap(),
            Upsert::Replaced
        );
        assert_eq!(
            m.render(),
            format!(
                "{}  alloy-1.9.0-amd64.raw\n{}  alloy-1.10.0-amd64.raw\n",
                "1".repeat(64),
                "f".repeat(64)
            )
        );
        assert_eq!(
            m.upsert(entry('f', "alloy-1.10.0-amd64.raw")).unwrap(),
            Upsert::Unchanged
        );
    }

    #[test]
    fn parse_render_round_trips_and_accepts_binary_marker() {
        let text = format!(
            "{}  a-1.0.0.raw\n{} *a-1.0.1.raw\n",
            "0".repeat(64),
            "1".repeat(64)
        );
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.entries()[1].file, "a-1.0.1.raw");
        assert_eq!(
            m.render(),
            format!(
                "{}  a-1.0.0.raw\n{}  a-1.0.1.raw\n",
                "0".repeat(64),
                "1".repeat(64)
            )
        );
    }

    #[test]
    fn malformed_lines_name_their_number() {
        let good = format!("{}  a-1.0.0.raw", "0".repeat(64));
        for bad in [
            "not a hash line".to_string(),
            format!("{} a-1.0.0.raw", "0".repeat(64)),
            format!("{}  ", "0".repeat(64)),
            format!("{}  dir/a.raw", "0".repeat(64)),
            format!("{}  a b.raw", "0".repeat(64)),
            format!("{}  a.raw", "g".repeat(64)),
            format!("{}  a.raw", "A".repeat(64)),
            String::new(),
        ] {
            let text = format!("{good}\n{bad}\n");
            match Manifest::parse(&text) {
                Err(ManifestError::MalformedLine { line: 2, .. }) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let err = Manifest::parse("zz\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn duplicate_files_are_an_error() {
        let text = format!("{}  a.raw\n{}  a.raw\n", "0".repeat(64), "1".repeat(64));
        assert_eq!(
            Manifest::parse(&text),
            Err(ManifestError::DuplicateFile {
                file: "a.raw".into(),
                first: 1,
                second: 2
            })
        );
    }

    #[test]
    fn upsert_refuses_bad_entries() {
        let mut m = Manifest::default();
        assert!(m.upsert(entry('A', "a.raw")).is_err());
        assert!(m.upsert(entry('a', "../a.raw")).is_err());
        assert!(m.entries().is_empty());
    }

    #[test]
    fn removing_a_version_takes_all_its_lines_and_only_them() {
        let mut m = Manifest::default();
        for (hash, file) in [
            ('a', "alloy-1.2.0-amd64.raw"),
            ('b', "alloy-1.2.0-arm64.raw"),
            ('c', "alloy-1.2.0.raw"),
            ('d', "alloy-1.2.10-amd64.raw"),
            ('e', "alloy-extra-1.2.0-amd64.raw"),
            ('f', "alloy-1.1.0-amd64.raw"),
        ] {
            m.upsert(entry(hash, file)).unwrap();
        }
        let version: Version = "1.2.0".parse().unwrap();
        let removed: Vec<String> = m
            .remove_version("alloy", &version)
            .into_iter()
            .map(|e| e.file)
            .collect();
        assert_eq!(
            removed,
            [
                "alloy-1.2.0-amd64.raw",
                "alloy-1.2.0-arm64.raw",
                "alloy-1.2.0.raw"
            ]
        );
        let kept: Vec<&str> = m.entries().iter().map(|e| e.file.as_str()).collect();
        assert_eq!(
            kept,
            [
                "alloy-extra-1.2.0-amd64.raw",
                "alloy-1.1.0-amd64.raw",
                "alloy-1.2.10-amd64.raw"
            ]
        );
        assert!(m.remove_version("alloy", &version).is_empty());
        let versions: Vec<String> = m.versions("alloy").iter().map(|v| v.to_string()).collect();
        assert_eq!(versions, ["1.2.10", "1.1.0"]);
    }
}
