//! Finding and updating the Alloy image a consumer's Butane config pins.
//!
//! A consumer file pins the image in two places:
//!
//! ```yaml
//! storage:
//!   files:
//!     - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
//!       contents:
//!         source: https://example.com/alloy-1.14.2-amd64.raw
//!         verification:
//!           hash: sha256-268db7a95a807cfb1c9544fce8a0845db8d7b74354c9ab0e5a1959e4093b7fa7
//!   links:
//!     - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
//!       path: /etc/extensions/alloy.raw
//! ```
//!
//! The file is also a template (OpenTofu `${…}` and `%{…}`) and is read by people, so it
//! is never parsed and re-serialized: the text is read line by line and an update rewrites
//! only these lines, byte for byte everything else (comments, indentation, line endings, a
//! missing final newline) stays:
//!
//! - the files entry's `- path:` line, whose last path segment is
//!   `{image_name}-X.Y.Z-{arch}.raw` (any directory, any indentation);
//! - that entry's `contents.source` line, whose URL must end in the same file name;
//! - that entry's `contents.verification.hash` line, `sha256-<64 hex digits>`;
//! - every `target:` (or `- target:`) line whose last path segment is the image file name
//!   of this image and architecture: the links entry. It is optional: a file without one
//!   is updated on the other lines only (two lines for a new version), but a links entry
//!   that names another version than the files entry is an error.
//!
//! On the path, source and target lines every occurrence of the pinned file name (as a
//! whole name, not part of a longer one) changes to the new version's; on the hash line
//! only the hex digits change. Anything else that mentions the image, such as comments
//! with `alloy-{VERSION}-amd64.raw`, `/var/mnt/storage/alloy` or another entry's hash,
//! is not touched. The content of block scalars (`inline: |`, `contents: |`) is skipped
//! entirely, so a script or unit file that happens to contain such lines is never read as
//! the pin.
//!
//! Keys are read in block style only: a flow mapping such as
//! `verification: {hash: sha256-…}` is not seen, and the file is then reported as having
//! no hash rather than edited in a way that might be wrong.
//!
//! The entry of a `- path:` line runs until the next line, other than a blank line, a
//! comment or a template directive (`%{…}`), that is indented no deeper than its dash
//! (the next list item, or a less-indented key).
//!
//! A line reader can be fooled by YAML it does not model, so every edit is then checked
//! with a YAML parser ([`YamlCheck`]): the pin's lines must be plain block YAML (no
//! anchors, aliases, merge keys, flow collections, or line breaks other than LF and CRLF),
//! and the parsed old and new files must differ only at the pin, which must be the only
//! Alloy entry the parser sees. A template whose parse fails at one of its expressions
//! (replaced by placeholders) keeps the line edit, and [`ButaneEdit::yaml_check`] says that
//! the check could not run.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use crate::arch::Arch;
use crate::version::Version;

#[cfg(test)]
mod test_fixtures;
mod yaml_check;

pub use yaml_check::{Construct, MAX_DEPTH, YamlCheck, YamlRefusal};

/// The Alloy image a consumer file pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlloyPin {
    pub version: Version,
    /// 64 lowercase hex digits (the file may spell them in upper case).
    pub sha256: String,
}

/// The result of [`update_alloy_pin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButaneEdit {
    /// The updated file.
    pub text: String,
    /// What the file pinned before.
    pub previous: AlloyPin,
    /// False when version and hash already matched: `text` is then identical to the input.
    pub changed: bool,
    /// The 1-based numbers of the lines that changed, in order.
    pub changed_lines: Vec<usize>,
    /// Whether a YAML parser confirmed that only the pin changed.
    pub yaml_check: YamlCheck,
}

/// Which line of the files entry something was read from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedAt {
    /// The `- path:` line.
    Path(usize),
    /// The `contents.source` line.
    Source(usize),
}

impl fmt::Display for PinnedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinnedAt::Path(line) => write!(f, "the path on line {line}"),
            PinnedAt::Source(line) => write!(f, "the source on line {line}"),
        }
    }
}

/// Why a file's Alloy pin cannot be read or updated. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ButaneError {
    #[error("the new image hash {shown:?} is not a sha256: expected 64 hexadecimal digits")]
    InvalidSha256 { shown: String },

    #[error("invalid image name {shown:?}: use letters, digits, '.', '_' and '-'")]
    InvalidImageName { shown: String },

    #[error(
        "no storage.files entry with path …/{image}-X.Y.Z-{arch}.raw \
         (expected a line such as `- path: /opt/extensions/{image}/{image}-X.Y.Z-{arch}.raw`)"
    )]
    NoFilesEntry { image: String, arch: Arch },

    #[error(
        "the file has two storage.files entries for {file} (lines {first_line} and {second_line}); keep one"
    )]
    DuplicateEntry {
        file: String,
        first_line: usize,
        second_line: usize,
    },

    #[error(
        "the file pins two {image} versions ({first} in {first_at} and {second} in {second_at})"
    )]
    TwoVersions {
        image: String,
        first: Version,
        first_at: PinnedAt,
        second: Version,
        second_at: PinnedAt,
    },

    #[error("the storage.files entry for {file} (line {line}) has no contents.source line")]
    NoSource { file: String, line: usize },

    #[error(
        "the contents.source on line {line} does not end in {file}, so it cannot be updated \
         together with the path: found {found:?}"
    )]
    UnrecognizedSource {
        file: String,
        line: usize,
        found: String,
    },

    #[error(
        "the storage.files entry for {file} (line {line}) has no verification hash \
         (a contents.verification.hash: sha256-… line)"
    )]
    NoHash { file: String, line: usize },

    #[error(
        "the verification hash on line {line} is not `sha256-` followed by 64 hexadecimal \
         digits: found {found:?}"
    )]
    MalformedHash { line: usize, found: String },

    #[error(
        "the storage.files entry for {file} has two {key} lines (lines {first_line} and {second_line})"
    )]
    DuplicateKey {
        file: String,
        key: &'static str,
        first_line: usize,
        second_line: usize,
    },

    #[error(
        "the links entry {} points to {found} while the file pins {pinned} (line {pinned_line})",
        describe_link(.link_path.as_deref(), *.line)
    )]
    LinkMismatch {
        /// The link's own `path:` (`/etc/extensions/alloy.raw`), when the entry has one.
        link_path: Option<String>,
        /// The `target:` line.
        line: usize,
        /// The file name the target names.
        found: String,
        pinned: Version,
        pinned_line: usize,
    },

    #[error(transparent)]
    Yaml(#[from] YamlRefusal),
}

impl ButaneError {
    /// Whether the file has no entry for this image and architecture at all (it may pin
    /// another architecture's), rather than one that cannot be read or updated.
    pub fn is_no_entry(&self) -> bool {
        matches!(self, ButaneError::NoFilesEntry { .. })
    }
}

fn describe_link(path: Option<&str>, line: usize) -> String {
    match path {
        Some(path) => format!("for {path} (target on line {line})"),
        None => format!("on line {line}"),
    }
}

/// Reads the version and hash of the `{image_name}-X.Y.Z-{arch}.raw` image that `text` pins,
/// checking that the files entry, its source and the links entry agree.
///
/// ```
/// use alloy_sysext_automation::{arch::Arch, butane::find_alloy_pin};
/// let text = "\
/// storage:
///   files:
///     - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
///       contents:
///         source: https://example.com/alloy-1.14.2-amd64.raw
///         verification:
///           hash: sha256-268db7a95a807cfb1c9544fce8a0845db8d7b74354c9ab0e5a1959e4093b7fa7
/// ";
/// let pin = find_alloy_pin(text, "alloy", Arch::Amd64).unwrap();
/// assert_eq!(pin.version.as_str(), "1.14.2");
/// ```
pub fn find_alloy_pin(text: &str, image_name: &str, arch: Arch) -> Result<AlloyPin, ButaneError> {
    Ok(scan(text, image_name, arch)?.pin)
}

/// Pins `version` with image hash `sha256` (64 hex digits, either case) in `text`.
///
/// Only the lines listed in the [module documentation](self) change: the path, source and
/// links target lines when the version differs (two lines when the file has no links
/// entry), the hash line when the hash differs (compared ignoring case; the new one is
/// written in lower case). When both already match nothing changes, and
/// [`ButaneEdit::changed`] is false.
pub fn update_alloy_pin(
    text: &str,
    image_name: &str,
    arch: Arch,
    version: &Version,
    sha256: &str,
) -> Result<ButaneEdit, ButaneError> {
    let new_hash = parse_sha256_arg(sha256)?;
    let scan = scan(text, image_name, arch)?;
    let same_version = scan.pin.version == *version;
    let same_hash = scan.pin.sha256 == new_hash;
    if same_version && same_hash {
        return Ok(ButaneEdit {
            text: text.to_owned(),
            previous: scan.pin,
            changed: false,
            changed_lines: Vec::new(),
            yaml_check: YamlCheck::NothingChanged,
        });
    }

    let pattern = ImagePattern::new(image_name, arch);
    let old_name = pattern.file_name(&scan.pin.version);
    let new_name = pattern.file_name(version);
    let mut edits: BTreeMap<usize, Edit> = BTreeMap::new();
    if !same_version {
        for index in [scan.path_line, scan.source_line]
            .into_iter()
            .chain(scan.target_lines.iter().copied())
        {
            edits.insert(index, Edit::FileName);
        }
    }
    if !same_hash {
        edits.insert(scan.hash_line, Edit::Hash(scan.hash_hex.clone()));
    }

    let mut out = String::with_capacity(text.len() + 16 * edits.len());
    let mut changed_lines = Vec::new();
    for (index, raw) in scan.lines.iter().enumerate() {
        let Some(edit) = edits.get(&index) else {
            out.push_str(raw);
            continue;
        };
        let (body, ending) = split_ending(raw);
        let new_body = match edit {
            Edit::FileName => replace_file_name(body, &old_name, &new_name),
            Edit::Hash(hex) => format!("{}{new_hash}{}", &body[..hex.start], &body[hex.end..]),
        };
        if new_body != body {
            changed_lines.push(index + 1);
        }
        out.push_str(&new_body);
        out.push_str(ending);
    }
    let yaml_check = if changed_lines.is_empty() {
        YamlCheck::NothingChanged
    } else {
        let new_hash_value = format!("sha256-{new_hash}");
        yaml_check::check(
            text,
            &out,
            &yaml_check::PinEdit {
                image_name,
                pattern: &pattern,
                path_line: scan.path_line,
                source_line: scan.source_line,
                hash_line: scan.hash_line,
                target_lines: &scan.target_lines,
                new_file_name: (!same_version).then_some(new_name.as_str()),
                new_hash_value: (!same_hash).then_some(new_hash_value.as_str()),
            },
        )?
    };
    Ok(ButaneEdit {
        changed: !changed_lines.is_empty(),
        text: out,
        previous: scan.pin,
        changed_lines,
        yaml_check,
    })
}

/// How a line is rewritten.
enum Edit {
    /// Every occurrence of the old file name becomes the new one.
    FileName,
    /// These bytes of the line (the hex digits of the hash) become the new hash.
    Hash(Range<usize>),
}

/// The longest piece of the input quoted back in an error message.
const MAX_SHOWN: usize = 100;

fn shown(text: &str) -> String {
    text.chars().take(MAX_SHOWN).collect()
}

/// The new hash, lower-cased, or an error for anything but 64 hex digits.
fn parse_sha256_arg(sha256: &str) -> Result<String, ButaneError> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha256.to_ascii_lowercase())
    } else {
        Err(ButaneError::InvalidSha256 {
            shown: shown(sha256),
        })
    }
}

/// Whether `c` can be part of a file name, so that a match next to it is part of a longer
/// name (`my-alloy-1.14.2-amd64.raw`, `alloy-1.14.2-amd64.raw.sha256`).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The file names of one image and architecture: `{name}-X.Y.Z-{arch}.raw`.
struct ImagePattern {
    prefix: String,
    suffix: String,
}

impl ImagePattern {
    fn new(image_name: &str, arch: Arch) -> Self {
        ImagePattern {
            prefix: format!("{image_name}-"),
            suffix: format!("-{arch}.raw"),
        }
    }

    fn file_name(&self, version: &Version) -> String {
        format!("{}{version}{}", self.prefix, self.suffix)
    }

    /// The version named by the last path segment of `value`, if that segment is one of
    /// this image's file names.
    fn version_of(&self, value: &str) -> Option<Version> {
        let file = value.rsplit('/').next()?;
        let middle = file
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        // `Version` would also take a `v` prefix, which is not how image files are named.
        if !middle.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        middle.parse().ok()
    }
}

fn check_image_name(image_name: &str) -> Result<(), ButaneError> {
    if image_name.is_empty() || image_name.len() > 64 || !image_name.chars().all(is_name_char) {
        return Err(ButaneError::InvalidImageName {
            shown: shown(image_name),
        });
    }
    Ok(())
}

/// Splits a line (as `split_inclusive('\n')` yields it) into its text and its ending
/// (`"\n"`, `"\r\n"` or `""` for a last line without one).
fn split_ending(raw: &str) -> (&str, &str) {
    let ending = if raw.ends_with("\r\n") {
        2
    } else if raw.ends_with('\n') {
        1
    } else {
        0
    };
    raw.split_at(raw.len() - ending)
}

/// `body` with every whole-name occurrence of `old` replaced by `new`.
fn replace_file_name(body: &str, old: &str, new: &str) -> String {
    let mut out = String::with_capacity(body.len() + new.len());
    let mut copied = 0;
    for (at, _) in body.match_indices(old) {
        let end = at + old.len();
        let whole = !body[..at].chars().next_back().is_some_and(is_name_char)
            && !body[end..].chars().next().is_some_and(is_name_char);
        if whole {
            out.push_str(&body[copied..at]);
            out.push_str(new);
            copied = end;
        }
    }
    out.push_str(&body[copied..]);
    out
}

/// A `key:` on a line.
struct Key<'a> {
    /// The column the key starts at.
    column: usize,
    name: &'a str,
    /// Where its value starts in the line (after the spaces following the colon).
    value_start: usize,
}

/// What a line (not blank, not a comment) says about the YAML structure.
struct Node<'a> {
    /// The column of a leading `- `.
    dash: Option<usize>,
    key: Option<Key<'a>>,
    /// Where the content after the indentation and any dash starts.
    rest_start: usize,
}

impl<'a> Node<'a> {
    fn parse(body: &'a str, indent: usize) -> Node<'a> {
        let mut pos = indent;
        let mut dash = None;
        let content = &body[pos..];
        if content == "-" || content.starts_with("- ") {
            dash = Some(pos);
            pos += 1;
            pos += body[pos..].len() - body[pos..].trim_start_matches(' ').len();
        }
        let key = split_key(&body[pos..]).map(|(name, value_offset)| Key {
            column: pos,
            name,
            value_start: pos + value_offset,
        });
        Node {
            dash,
            key,
            rest_start: pos,
        }
    }
}

/// `key: value` (or `key:`) at the start of `text`: the key and where the value starts.
fn split_key(text: &str) -> Option<(&str, usize)> {
    let colon = text.find(':')?;
    let name = &text[..colon];
    if name.is_empty() || !name.chars().all(is_name_char) {
        return None;
    }
    let after = &text[colon + 1..];
    if !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
    Some((name, colon + 1 + spaces))
}

/// The bytes of the scalar that starts at `start` in `body`: inside the quotes of a quoted
/// one, without a trailing comment and trailing spaces for a plain one.
fn scalar_range(body: &str, start: usize) -> Range<usize> {
    let value = &body[start..];
    if let Some(quote) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) {
        let inner = start + 1;
        let end = body[inner..].find(quote).map_or(body.len(), |e| inner + e);
        return inner..end;
    }
    let mut end = value.len();
    if value.starts_with('#') {
        end = 0;
    } else if let Some(comment) = value.find(" #").or_else(|| value.find("\t#")) {
        end = comment;
    }
    let trimmed = value[..end].trim_end();
    start..start + trimmed.len()
}

/// Whether a plain scalar starts a block scalar (`|`, `>-`, `|2+` …).
fn is_block_indicator(scalar: &str) -> bool {
    scalar.starts_with(['|', '>'])
        && scalar[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'+' || b == b'-')
}

/// A `- path:` files entry naming the image.
struct Entry<'a> {
    /// 0-based.
    path_line: usize,
    dash_column: usize,
    version: Version,
    /// The keys from the entry's level down to the current line: (column, name).
    keys: Vec<(usize, &'a str)>,
    /// 0-based `contents.source` lines.
    sources: Vec<usize>,
    /// 0-based `contents.verification.hash` lines.
    hashes: Vec<usize>,
}

impl<'a> Entry<'a> {
    /// Follows the entry's structure to `node`, noting the source and hash lines.
    fn visit(&mut self, index: usize, indent: usize, node: &Node<'a>) {
        while self
            .keys
            .last()
            .is_some_and(|&(column, _)| column >= indent)
        {
            self.keys.pop();
        }
        if let Some(dash) = node.dash {
            self.keys.push((dash, "-"));
        }
        if let Some(key) = &node.key {
            self.keys.push((key.column, key.name));
            let names = self.keys.iter().map(|&(_, name)| name);
            if names.clone().eq(["contents", "source"]) {
                self.sources.push(index);
            } else if names.eq(["contents", "verification", "hash"]) {
                self.hashes.push(index);
            }
        }
    }
}

/// What [`scan`] found: a consistent pin and the lines it is written on (0-based).
struct Scan<'a> {
    /// The lines of the file, each with its line ending.
    lines: Vec<&'a str>,
    pin: AlloyPin,
    path_line: usize,
    source_line: usize,
    hash_line: usize,
    /// The hex digits within the hash line.
    hash_hex: Range<usize>,
    target_lines: Vec<usize>,
}

/// Reads the file once, line by line, and checks what it pins.
fn scan<'a>(text: &'a str, image_name: &str, arch: Arch) -> Result<Scan<'a>, ButaneError> {
    check_image_name(image_name)?;
    let pattern = ImagePattern::new(image_name, arch);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();

    let mut entries: Vec<Entry> = Vec::new();
    let mut open: Option<Entry> = None;
    let mut targets: Vec<(usize, Version)> = Vec::new();
    // Inside a block scalar: lines indented deeper than this column are its content.
    let mut block: Option<usize> = None;

    for (index, &raw) in lines.iter().enumerate() {
        let (body, _) = split_ending(raw);
        let indent = body.len() - body.trim_start_matches(' ').len();
        let content = &body[indent..];
        let blank = content.trim().is_empty();
        if let Some(column) = block {
            if blank || indent > column {
                continue;
            }
            block = None;
        }
        if blank || content.starts_with('#') || content.starts_with("%{") {
            continue;
        }
        let node = Node::parse(body, indent);

        if open.as_ref().is_some_and(|e| indent <= e.dash_column) {
            entries.extend(open.take());
        }
        if let Some(entry) = open.as_mut() {
            entry.visit(index, indent, &node);
        }

        match &node.key {
            Some(key) => {
                let value = &body[scalar_range(body, key.value_start)];
                match key.name {
                    "path" if node.dash.is_some() => {
                        if let Some(version) = pattern.version_of(value) {
                            entries.extend(open.take());
                            open = Some(Entry {
                                path_line: index,
                                dash_column: indent,
                                version,
                                keys: Vec::new(),
                                sources: Vec::new(),
                                hashes: Vec::new(),
                            });
                        }
                    }
                    "target" => {
                        if let Some(version) = pattern.version_of(value) {
                            targets.push((index, version));
                        }
                    }
                    _ => {}
                }
                if is_block_indicator(value) {
                    block = Some(key.column);
                }
            }
            None => {
                if let Some(dash) = node.dash {
                    let value = &body[scalar_range(body, node.rest_start)];
                    if is_block_indicator(value) {
                        block = Some(dash);
                    }
                }
            }
        }
    }
    entries.extend(open.take());

    let Some(entry) = entries.first() else {
        return Err(ButaneError::NoFilesEntry {
            image: image_name.to_owned(),
            arch,
        });
    };
    let file = pattern.file_name(&entry.version);
    if let Some(other) = entries.iter().find(|e| e.version != entry.version) {
        return Err(ButaneError::TwoVersions {
            image: image_name.to_owned(),
            first: entry.version.clone(),
            first_at: PinnedAt::Path(entry.path_line + 1),
            second: other.version.clone(),
            second_at: PinnedAt::Path(other.path_line + 1),
        });
    }
    if let Some(other) = entries.get(1) {
        return Err(ButaneError::DuplicateEntry {
            file,
            first_line: entry.path_line + 1,
            second_line: other.path_line + 1,
        });
    }

    let source_line = only_line(&entry.sources, &file, "contents.source", || {
        ButaneError::NoSource {
            file: file.clone(),
            line: entry.path_line + 1,
        }
    })?;
    let source_body = split_ending(lines[source_line]).0;
    let source = &source_body[key_value_range(source_body)];
    match pattern.version_of(source) {
        None => {
            return Err(ButaneError::UnrecognizedSource {
                file,
                line: source_line + 1,
                found: shown(source),
            });
        }
        Some(version) if version != entry.version => {
            return Err(ButaneError::TwoVersions {
                image: image_name.to_owned(),
                first: entry.version.clone(),
                first_at: PinnedAt::Path(entry.path_line + 1),
                second: version,
                second_at: PinnedAt::Source(source_line + 1),
            });
        }
        Some(_) => {}
    }

    let hash_line = only_line(&entry.hashes, &file, "contents.verification.hash", || {
        ButaneError::NoHash {
            file: file.clone(),
            line: entry.path_line + 1,
        }
    })?;
    let hash_body = split_ending(lines[hash_line]).0;
    let hash_value = key_value_range(hash_body);
    let hash = &hash_body[hash_value.clone()];
    let hex = match hash.strip_prefix("sha256-") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => hex,
        _ => {
            return Err(ButaneError::MalformedHash {
                line: hash_line + 1,
                found: shown(hash),
            });
        }
    };
    let hash_hex = hash_value.end - 64..hash_value.end;

    if let Some((line, version)) = targets.iter().find(|(_, v)| *v != entry.version) {
        return Err(ButaneError::LinkMismatch {
            link_path: link_path(&lines, *line),
            line: line + 1,
            found: pattern.file_name(version),
            pinned: entry.version.clone(),
            pinned_line: entry.path_line + 1,
        });
    }

    Ok(Scan {
        pin: AlloyPin {
            version: entry.version.clone(),
            sha256: hex.to_ascii_lowercase(),
        },
        path_line: entry.path_line,
        source_line,
        hash_line,
        hash_hex,
        target_lines: targets.into_iter().map(|(line, _)| line).collect(),
        lines,
    })
}

/// The value of the `key: value` line `body` (known to have a key).
fn key_value_range(body: &str) -> Range<usize> {
    let indent = body.len() - body.trim_start_matches(' ').len();
    let node = Node::parse(body, indent);
    let start = node.key.map_or(body.len(), |key| key.value_start);
    scalar_range(body, start)
}

/// The `path:` of the links entry whose `target:` is on line `target` (0-based), for an
/// error message. Only called once, on the way to an error, so it may walk the entry.
fn link_path(lines: &[&str], target: usize) -> Option<String> {
    let parse = |index: usize| {
        let body = split_ending(lines[index]).0;
        let indent = body.len() - body.trim_start_matches(' ').len();
        let content = &body[indent..];
        let structural =
            !(content.trim().is_empty() || content.starts_with('#') || content.starts_with("%{"));
        (body, indent, structural.then(|| Node::parse(body, indent)))
    };
    let (_, _, node) = parse(target);
    let column = node?.key?.column;

    // The entry starts at the `- ` line whose key is at the target's column.
    let mut start = target;
    loop {
        let (_, indent, node) = parse(start);
        if let Some(node) = node {
            if node.dash.is_some() && node.key.is_some_and(|k| k.column == column) {
                break;
            }
            if indent < column {
                return None;
            }
        }
        start = start.checked_sub(1)?;
    }
    for index in start..lines.len() {
        let (body, indent, node) = parse(index);
        let Some(node) = node else { continue };
        if index > start && indent < column {
            break;
        }
        if let Some(key) = node.key.filter(|k| k.column == column && k.name == "path") {
            return Some(shown(&body[scalar_range(body, key.value_start)]));
        }
    }
    None
}

/// The one line (0-based) in `found` that holds `key` of the entry for `file`: none gives
/// `missing()`, more than one a [`ButaneError::DuplicateKey`].
fn only_line(
    found: &[usize],
    file: &str,
    key: &'static str,
    missing: impl FnOnce() -> ButaneError,
) -> Result<usize, ButaneError> {
    match found {
        [] => Err(missing()),
        [line] => Ok(*line),
        [first, second, ..] => Err(ButaneError::DuplicateKey {
            file: file.to_owned(),
            key,
            first_line: first + 1,
            second_line: second + 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::test_fixtures::{
        GHOST, GHOST_HASH, NEW_HASH, OLD_HASH, synthetic_with_comment, update,
    };
    use super::*;

    const TAILSCALE_HASH_LINE: &str =
        "          hash: sha256-4fac074559d01328d0c59e030170821d22332a3ebd19087c135959f11feafaa1";

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    fn find(text: &str) -> Result<AlloyPin, ButaneError> {
        find_alloy_pin(text, "alloy", Arch::Amd64)
    }

    /// The 1-based numbers of the lines that differ; both texts must have as many lines.
    fn diff_lines(before: &str, after: &str) -> Vec<usize> {
        let a: Vec<&str> = before.split_inclusive('\n').collect();
        let b: Vec<&str> = after.split_inclusive('\n').collect();
        assert_eq!(a.len(), b.len(), "the number of lines changed");
        (0..a.len())
            .filter(|&i| a[i] != b[i])
            .map(|i| i + 1)
            .collect()
    }

    fn line(text: &str, number: usize) -> &str {
        text.split_inclusive('\n').nth(number - 1).unwrap()
    }

    /// A small consumer file pinning alloy 1.14.2 with `OLD_HASH`, whose comment names
    /// the image's checksum files.
    fn synthetic() -> String {
        synthetic_with_comment("alloy-{VERSION}-amd64.raw.sha256 and alloy-1.14.2-amd64.raw.sha256")
    }

    #[test]
    fn finds_the_pin_in_the_real_file() {
        let pin = find(GHOST).unwrap();
        assert_eq!(pin.version, v("1.14.2"));
        assert_eq!(pin.sha256, GHOST_HASH);
        // The file pins no arm64 image.
        let err = find_alloy_pin(GHOST, "alloy", Arch::Arm64).unwrap_err();
        assert!(matches!(err, ButaneError::NoFilesEntry { .. }), "{err}");
    }

    #[test]
    fn updates_exactly_four_lines_of_the_real_file() {
        let edit = update(GHOST, "1.15.0", NEW_HASH).unwrap();
        assert!(edit.changed);
        assert_eq!(edit.previous.version, v("1.14.2"));
        assert_eq!(edit.previous.sha256, GHOST_HASH);
        assert_eq!(edit.changed_lines, [36, 39, 41, 400]);
        assert_eq!(diff_lines(GHOST, &edit.text), edit.changed_lines);
        assert_eq!(
            line(&edit.text, 36),
            "    - path: /opt/extensions/alloy/alloy-1.15.0-amd64.raw\n"
        );
        assert_eq!(
            line(&edit.text, 39),
            "        source: https://ghost-sysext-images.separationofconcerns.dev/alloy-1.15.0-amd64.raw\n"
        );
        assert_eq!(
            line(&edit.text, 41),
            format!("          hash: sha256-{NEW_HASH}\n")
        );
        assert_eq!(
            line(&edit.text, 400),
            "    - target: /opt/extensions/alloy/alloy-1.15.0-amd64.raw\n"
        );
        // What must never change.
        assert_eq!(line(&edit.text, 388), format!("{TAILSCALE_HASH_LINE}\n"));
        assert_eq!(
            line(&edit.text, 34),
            "    #   curl -s https://ghost-sysext-images.separationofconcerns.dev/alloy-{VERSION}-amd64.raw.sha256\n"
        );
        assert!(edit.text.contains("MatchPattern=alloy-@v-amd64.raw\n"));
        assert!(edit.text.contains("/var/mnt/storage/alloy\n"));
        assert_eq!(edit.text.len(), GHOST.len());
        // The result reads back as the new pin.
        let pin = find(&edit.text).unwrap();
        assert_eq!((pin.version, pin.sha256.as_str()), (v("1.15.0"), NEW_HASH));
    }

    #[test]
    fn same_version_and_hash_changes_nothing() {
        let edit = update(GHOST, "1.14.2", GHOST_HASH).unwrap();
        assert!(!edit.changed);
        assert!(edit.changed_lines.is_empty());
        assert_eq!(edit.text, GHOST);
        // Case does not make a hash different.
        let edit = update(GHOST, "1.14.2", &GHOST_HASH.to_ascii_uppercase()).unwrap();
        assert!(!edit.changed);
        assert_eq!(edit.text, GHOST);
    }

    #[test]
    fn same_version_with_another_hash_changes_only_the_hash() {
        let edit = update(GHOST, "1.14.2", NEW_HASH).unwrap();
        assert!(edit.changed);
        assert_eq!(edit.changed_lines, [41]);
        assert_eq!(diff_lines(GHOST, &edit.text), [41]);
        assert_eq!(find(&edit.text).unwrap().sha256, NEW_HASH);
        assert_eq!(line(&edit.text, 388), format!("{TAILSCALE_HASH_LINE}\n"));
    }

    #[test]
    fn another_version_with_the_same_hash_changes_only_the_version_lines() {
        let edit = update(GHOST, "1.15.0", GHOST_HASH).unwrap();
        assert!(edit.changed);
        assert_eq!(edit.changed_lines, [36, 39, 400]);
        assert_eq!(diff_lines(GHOST, &edit.text), [36, 39, 400]);
    }

    #[test]
    fn the_new_hash_is_written_in_lower_case() {
        let edit = update(GHOST, "1.14.2", &NEW_HASH.to_ascii_uppercase()).unwrap();
        assert_eq!(
            line(&edit.text, 41),
            format!("          hash: sha256-{NEW_HASH}\n")
        );
    }

    #[test]
    fn upper_case_hash_in_the_file_is_read_and_compared_ignoring_case() {
        let text = synthetic().replace(OLD_HASH, &OLD_HASH.to_ascii_uppercase());
        assert_eq!(find(&text).unwrap().sha256, OLD_HASH);
        let edit = update(&text, "1.14.2", OLD_HASH).unwrap();
        assert!(!edit.changed);
        assert_eq!(edit.text, text);
        // A new version leaves the (equal) hash as the file spells it.
        let edit = update(&text, "1.15.0", OLD_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9, 18]);
        // A new hash is written in lower case.
        let edit = update(&text, "1.14.2", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [11]);
        assert!(edit.text.contains(&format!("hash: sha256-{NEW_HASH}\n")));
    }

    #[test]
    fn synthetic_file_with_template_source_and_decoy_comment() {
        let text = synthetic();
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9, 11, 18]);
        assert_eq!(diff_lines(&text, &edit.text), [6, 9, 11, 18]);
        assert_eq!(
            line(&edit.text, 9),
            "        source: ${base_url}/alloy-1.15.0-amd64.raw\n"
        );
        // The other image's hash (the same as the new one here) and the comment stay.
        assert_eq!(line(&edit.text, 5), line(&text, 5));
        assert_eq!(line(&edit.text, 16), line(&text, 16));
    }

    #[test]
    fn keeps_crlf_line_endings() {
        let text = synthetic().replace('\n', "\r\n");
        assert_eq!(find(&text).unwrap().sha256, OLD_HASH);
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9, 11, 18]);
        assert_eq!(edit.text, synthetic_updated().replace('\n', "\r\n"));
        assert_eq!(
            edit.text.matches("\r\n").count(),
            edit.text.matches('\n').count()
        );
    }

    fn synthetic_updated() -> String {
        update(&synthetic(), "1.15.0", NEW_HASH).unwrap().text
    }

    #[test]
    fn keeps_a_missing_final_newline() {
        let text = synthetic();
        let text = text.trim_end_matches('\n');
        let edit = update(text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.text, synthetic_updated().trim_end_matches('\n'));
        assert!(!edit.text.ends_with('\n'));

        // Also when the last line is one that changes.
        let text = format!(
            "storage:\n  files:\n    - path: /opt/alloy-1.14.2-amd64.raw\n      contents:\n        \
             source: https://x/alloy-1.14.2-amd64.raw\n        verification:\n          \
             hash: sha256-{OLD_HASH}"
        );
        let edit = update(&text, "1.14.3", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [3, 5, 7]);
        assert!(edit.text.ends_with(&format!("hash: sha256-{NEW_HASH}")));
    }

    #[test]
    fn missing_alloy_entry_is_an_error() {
        let text = synthetic().replace(
            "alloy-1.14.2-amd64.raw\n      mode",
            "alloy.raw\n      mode",
        );
        let err = find(&text).unwrap_err();
        assert!(matches!(err, ButaneError::NoFilesEntry { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("no storage.files entry with path …/alloy-X.Y.Z-amd64.raw"),
            "{message}"
        );
        let err = update("", "1.15.0", NEW_HASH).unwrap_err();
        assert!(matches!(err, ButaneError::NoFilesEntry { .. }), "{err}");
        // A mention of the file name anywhere but a `- path:` line is not an entry.
        let err = find("# - path: /opt/alloy-1.14.2-amd64.raw\nfoo: /opt/alloy-1.14.2-amd64.raw\n")
            .unwrap_err();
        assert!(matches!(err, ButaneError::NoFilesEntry { .. }), "{err}");
    }

    #[test]
    fn entry_without_hash_is_an_error() {
        let text = synthetic().replace(&format!("          hash: sha256-{OLD_HASH}\n"), "");
        let err = find(&text).unwrap_err();
        assert_eq!(
            err,
            ButaneError::NoHash {
                file: "alloy-1.14.2-amd64.raw".into(),
                line: 6
            }
        );
        assert!(
            err.to_string().contains("has no verification hash"),
            "{err}"
        );
        // The next entry's hash is not taken for this one's.
        assert!(update(&text, "1.15.0", NEW_HASH).is_err());
    }

    #[test]
    fn hash_that_is_not_sha256_is_an_error() {
        for bad in [
            format!("sha512-{OLD_HASH}{OLD_HASH}"),
            format!("sha256-{}", &OLD_HASH[1..]),
            format!("sha256-{}g", &OLD_HASH[1..]),
            OLD_HASH.to_string(),
            "${alloy_hash}".to_string(),
        ] {
            let text = synthetic().replace(&format!("sha256-{OLD_HASH}"), &bad);
            let err = find(&text).unwrap_err();
            assert_eq!(
                err,
                ButaneError::MalformedHash {
                    line: 11,
                    found: shown(&bad)
                }
            );
        }
    }

    #[test]
    fn entry_without_source_or_with_an_unrelated_source_is_an_error() {
        let text = synthetic().replace("        source: ${base_url}/alloy-1.14.2-amd64.raw\n", "");
        let err = find(&text).unwrap_err();
        assert!(
            matches!(err, ButaneError::NoSource { line: 6, .. }),
            "{err}"
        );

        let text = synthetic().replace("${base_url}/alloy-1.14.2-amd64.raw", "${alloy_url}");
        let err = find(&text).unwrap_err();
        assert!(
            matches!(err, ButaneError::UnrecognizedSource { line: 9, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("${alloy_url}"), "{err}");
    }

    #[test]
    fn two_alloy_versions_are_an_error() {
        let text = synthetic().replace(
            "    - path: /opt/extensions/other/other-1.0.0-amd64.raw",
            "    - path: /opt/extensions/alloy/alloy-1.15.0-amd64.raw",
        );
        let err = find(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the file pins two alloy versions (1.14.2 in the path on line 6 and 1.15.0 in the path on line 12)"
        );
        assert!(update(&text, "1.16.0", NEW_HASH).is_err());

        // The same version twice is an error of its own.
        let text = synthetic().replace(
            "    - path: /opt/extensions/other/other-1.0.0-amd64.raw",
            "    - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw",
        );
        let err = find(&text).unwrap_err();
        assert!(
            matches!(
                err,
                ButaneError::DuplicateEntry {
                    first_line: 6,
                    second_line: 12,
                    ..
                }
            ),
            "{err}"
        );

        // A source naming another version than the path.
        let text = synthetic().replace("${base_url}/alloy-1.14.2", "${base_url}/alloy-1.13.0");
        let err = find(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the file pins two alloy versions (1.14.2 in the path on line 6 and 1.13.0 in the source on line 9)"
        );
    }

    #[test]
    fn links_entry_pointing_at_another_version_is_an_error() {
        let text = synthetic().replace(
            "- target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw",
            "- target: /opt/extensions/alloy/alloy-1.13.0-amd64.raw",
        );
        let err = find(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the links entry for /etc/extensions/alloy.raw (target on line 18) points to \
             alloy-1.13.0-amd64.raw while the file pins 1.14.2 (line 6)"
        );
        assert!(update(&text, "1.15.0", NEW_HASH).is_err());

        // With `path` first and `target` second in the entry.
        let text = synthetic().replace(
            "    - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\n      path: /etc/extensions/alloy.raw\n",
            "    - path: /etc/extensions/alloy.raw\n      target: /opt/extensions/alloy/alloy-1.13.0-amd64.raw\n",
        );
        let err = find(&text).unwrap_err();
        assert_eq!(
            err,
            ButaneError::LinkMismatch {
                link_path: Some("/etc/extensions/alloy.raw".into()),
                line: 19,
                found: "alloy-1.13.0-amd64.raw".into(),
                pinned: v("1.14.2"),
                pinned_line: 6,
            }
        );
    }

    #[test]
    fn links_entry_may_list_target_second() {
        let text = synthetic().replace(
            "    - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\n      path: /etc/extensions/alloy.raw\n",
            "    - path: /etc/extensions/alloy.raw\n      target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\n",
        );
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9, 11, 19]);
        assert_eq!(
            line(&edit.text, 19),
            "      target: /opt/extensions/alloy/alloy-1.15.0-amd64.raw\n"
        );
    }

    #[test]
    fn every_links_entry_targeting_the_pin_changes() {
        let text = format!(
            "{}    - target: ../../opt/extensions/alloy/alloy-1.14.2-amd64.raw\n      path: /etc/extensions/alloy-pinned.raw\n",
            synthetic()
        );
        let edit = update(&text, "1.15.0", OLD_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9, 18, 21]);
        assert_eq!(
            line(&edit.text, 21),
            "    - target: ../../opt/extensions/alloy/alloy-1.15.0-amd64.raw\n"
        );
    }

    #[test]
    fn file_without_links_entry_changes_two_lines_for_a_new_version() {
        let text = synthetic();
        let text = &text[..text.find("  links:").unwrap()];
        let edit = update(text, "1.15.0", OLD_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9]);
        let edit = update(text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9, 11]);
        assert_eq!(diff_lines(text, &edit.text), [6, 9, 11]);
    }

    #[test]
    fn arm64_image_names() {
        let text = synthetic();
        let err = find_alloy_pin(&text, "alloy", Arch::Arm64).unwrap_err();
        assert!(matches!(err, ButaneError::NoFilesEntry { .. }), "{err}");
        assert!(err.to_string().contains("alloy-X.Y.Z-arm64.raw"), "{err}");

        let arm = text.replace("-amd64.raw", "-arm64.raw");
        let pin = find_alloy_pin(&arm, "alloy", Arch::Arm64).unwrap();
        assert_eq!(pin.version, v("1.14.2"));
        let edit = update_alloy_pin(&arm, "alloy", Arch::Arm64, &v("1.15.0"), NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9, 11, 18]);
        assert!(
            edit.text
                .contains("- path: /opt/extensions/alloy/alloy-1.15.0-arm64.raw\n")
        );

        // Both architectures in one file: each update touches its own entry only.
        let both = format!(
            "storage:\n  files:\n{}{}",
            entry("alloy-1.14.2-amd64.raw", OLD_HASH),
            entry("alloy-1.14.2-arm64.raw", NEW_HASH)
        );
        let edit = update_alloy_pin(&both, "alloy", Arch::Arm64, &v("1.15.0"), OLD_HASH).unwrap();
        assert_eq!(edit.changed_lines, [9, 12, 14]);
        assert_eq!(find(&edit.text).unwrap(), find(&both).unwrap());
    }

    fn entry(file: &str, hash: &str) -> String {
        format!(
            "    - path: /opt/extensions/alloy/{file}\n      mode: 0644\n      contents:\n        \
             source: https://example.com/{file}\n        verification:\n          \
             hash: sha256-{hash}\n"
        )
    }

    #[test]
    fn hostile_or_invalid_sha256_arguments_are_refused() {
        let long = "a".repeat(10_000);
        for bad in [
            "",
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            &NEW_HASH[1..],
            &format!("{NEW_HASH}0"),
            &format!("{}g", &NEW_HASH[1..]),
            &format!("{}\n", &NEW_HASH[1..]),
            &format!("{}\n    - path: /evil", &NEW_HASH[..40]),
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdé",
            "０123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
            &long,
        ] {
            let err = update(GHOST, "1.15.0", bad).unwrap_err();
            assert!(
                matches!(err, ButaneError::InvalidSha256 { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().len() < 300);
        }
    }

    #[test]
    fn invalid_image_names_are_refused() {
        for bad in ["", "a/b", "alloy raw", "../alloy", "alloy\n"] {
            let err = find_alloy_pin(GHOST, bad, Arch::Amd64).unwrap_err();
            assert!(
                matches!(err, ButaneError::InvalidImageName { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn other_images_and_longer_names_are_not_the_pin() {
        let text = format!(
            "storage:\n  files:\n{}{}{}",
            entry("myalloy-1.0.0-amd64.raw", NEW_HASH).replace("/alloy/", "/myalloy/"),
            entry("alloy-extra-1.0.0-amd64.raw", NEW_HASH).replace("/alloy/", "/alloy-extra/"),
            entry("alloy-1.14.2-amd64.raw", OLD_HASH)
        );
        let pin = find(&text).unwrap();
        assert_eq!((pin.version, pin.sha256.as_str()), (v("1.14.2"), OLD_HASH));
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [15, 18, 20]);
    }

    #[test]
    fn only_whole_file_names_change_on_the_edited_lines() {
        let text = format!(
            "storage:\n  files:\n    - path: \"/opt/alloy-1.14.2-amd64.raw\"  # was alloy-1.14.2-amd64.raw.bak, see xalloy-1.14.2-amd64.raw\n      \
             contents:\n        source: 'https://x/alloy-1.14.2-amd64.raw'\n        \
             verification:\n          hash: \"sha256-{OLD_HASH}\" # pinned\n"
        );
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(
            line(&edit.text, 3),
            "    - path: \"/opt/alloy-1.15.0-amd64.raw\"  # was alloy-1.14.2-amd64.raw.bak, see xalloy-1.14.2-amd64.raw\n"
        );
        assert_eq!(
            line(&edit.text, 5),
            "        source: 'https://x/alloy-1.15.0-amd64.raw'\n"
        );
        assert_eq!(
            line(&edit.text, 7),
            format!("          hash: \"sha256-{NEW_HASH}\" # pinned\n")
        );
    }

    #[test]
    fn block_scalars_and_template_directives_are_skipped() {
        let text = format!(
            "storage:
  files:
    - path: /etc/script.sh
      contents:
        inline: |
          - path: /opt/alloy-9.9.9-amd64.raw
            contents:
              source: https://x/alloy-9.9.9-amd64.raw
          target: /opt/alloy-9.9.9-amd64.raw
%{{ if with_alloy }}
{}%{{ endif }}
  links:
    - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
      path: /etc/extensions/alloy.raw
",
            entry("alloy-1.14.2-amd64.raw", OLD_HASH)
        );
        let pin = find(&text).unwrap();
        assert_eq!(pin.version, v("1.14.2"));
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [11, 14, 16, 19]);
    }

    #[test]
    fn entry_ends_at_the_next_item_or_a_less_indented_key() {
        // The hash after the next item belongs to that item.
        let text = format!(
            "storage:
  files:
  - path: /opt/alloy-1.14.2-amd64.raw
    contents:
      source: https://x/alloy-1.14.2-amd64.raw
  - path: /opt/other.raw
    contents:
      verification:
        hash: sha256-{OLD_HASH}
"
        );
        assert!(matches!(find(&text), Err(ButaneError::NoHash { .. })));
        // Compact (unindented) sequences.
        let text = format!(
            "files:
- path: /opt/alloy-1.14.2-amd64.raw
  contents:
    source: https://x/alloy-1.14.2-amd64.raw

    # a comment at any indentation does not end the entry
# like this one
    verification:
      hash: sha256-{OLD_HASH}
links:
- target: /opt/alloy-1.14.2-amd64.raw
  path: /etc/extensions/alloy.raw
"
        );
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [2, 4, 9, 11]);
        // A hash outside contents.verification is not the image's.
        let text = format!(
            "- path: /opt/alloy-1.14.2-amd64.raw
  contents:
    source: https://x/alloy-1.14.2-amd64.raw
  append:
    - source: https://x/other
      verification:
        hash: sha256-{OLD_HASH}
"
        );
        assert!(matches!(find(&text), Err(ButaneError::NoHash { .. })));
    }

    #[test]
    fn duplicate_keys_in_the_entry_are_an_error() {
        let text = synthetic().replace(
            &format!("          hash: sha256-{OLD_HASH}\n"),
            &format!("          hash: sha256-{OLD_HASH}\n          hash: sha256-{NEW_HASH}\n"),
        );
        let err = find(&text).unwrap_err();
        assert!(
            matches!(
                err,
                ButaneError::DuplicateKey {
                    first_line: 11,
                    second_line: 12,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn huge_input_is_handled_in_one_pass() {
        // About 5 MB of other entries around the pin, and one 1 MB line.
        let filler = entry("other-1.0.0-amd64.raw", NEW_HASH).replace("/alloy/", "/other/");
        let count = 5_000_000 / filler.len();
        let mut text = String::from("storage:\n  files:\n");
        for _ in 0..count / 2 {
            text.push_str(&filler);
        }
        text.push_str(&entry("alloy-1.14.2-amd64.raw", OLD_HASH));
        text.push_str(&format!(
            "    - path: /x\n      contents:\n        inline: {}\n",
            "alloy-1.14.2-amd64.raw ".repeat(50_000)
        ));
        for _ in 0..count / 2 {
            text.push_str(&filler);
        }
        text.push_str("  links:\n    - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\n");
        assert!(text.len() > 5_000_000);
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        let first = 2 + (count / 2) * 6 + 1;
        let last = text.lines().count();
        assert_eq!(edit.changed_lines, [first, first + 3, first + 5, last]);
        assert_eq!(edit.text.len(), text.len());

        // Deep nesting inside the entry and a pathological single line.
        let mut deep = String::from("- path: /opt/alloy-1.14.2-amd64.raw\n");
        for depth in 1..1_000 {
            deep.push_str(&" ".repeat(depth * 2));
            deep.push_str("k:\n");
        }
        deep.push_str(&format!(
            "  contents:\n    source: /x/alloy-1.14.2-amd64.raw\n    verification:\n      hash: sha256-{OLD_HASH}\n"
        ));
        deep.push_str(&"- path: ".repeat(500_000));
        assert_eq!(find(&deep).unwrap().version, v("1.14.2"));
    }
}
