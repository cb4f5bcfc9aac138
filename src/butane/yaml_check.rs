//! Proof that a line edit of the Alloy pin means to a YAML parser what it means to us.
//!
//! The editor in [`super`] reads Butane line by line, which is what keeps comments, layout
//! and template expressions intact, but a line reader can be fooled by YAML it does not
//! model: an anchor or alias that shares the entry with another node, a merge key, a flow
//! collection, a line break that YAML counts and a line reader does not (a lone CR), or
//! one that some tools count and YAML does not (NEL, LS, PS). So:
//!
//! 1. The lines from the first to the last line of the pin (the files entry's path, source
//!    and hash, and every links target) must use none of those. This is checked on the
//!    parser's events and on the raw text.
//! 2. The old and the new file are parsed, and their trees compared node by node: every
//!    difference must be the entry's `path`, `contents.source` or
//!    `contents.verification.hash` in `storage.files`, or a `target` in `storage.links`,
//!    on a line the editor changed and holding the value the editor meant to write; and
//!    every change the editor meant must show up in the tree.
//!
//! Consumer files may be OpenTofu templates: `${…}` and `%{…}` are replaced by
//! placeholders of the same length before parsing (a directive alone on its line becomes
//! a blank line). A template that still does not parse keeps the line edit, and the
//! result says that the YAML check could not run.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

/// Whether the YAML check of an edit ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlCheck {
    /// The old and the new file parse, and their trees differ only at the Alloy pin.
    Agreed,
    /// The file is a template that does not parse as YAML even with its expressions
    /// replaced by placeholders: only the line edit's own checks were made.
    NotRun {
        /// What the parser said.
        reason: String,
    },
    /// Nothing was edited, so there was nothing to compare.
    NothingChanged,
}

impl YamlCheck {
    /// A paragraph for whoever reviews the edit, when the check could not run.
    pub fn review_note(&self) -> Option<String> {
        let YamlCheck::NotRun { reason } = self else {
            return None;
        };
        Some(format!(
            "\n## YAML check\n\nThe YAML check could not run: the file does not parse as YAML \
             even with its template expressions replaced by placeholders (`{}`). Only the line \
             edit's own checks were made; review the diff by hand.\n",
            // One code span, whatever the parser's message holds.
            reason.replace('`', "'").replace(['\n', '\r'], " ")
        ))
    }
}

/// Why an edit is refused by the YAML check. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlRefusal {
    #[error(
        "line {line}, within the Alloy pin (lines {first}–{last}), {what}; the pin's lines \
         and those between them must be plain block YAML so that a line edit means what a \
         YAML parser reads: {advice}",
        advice = .construct.advice()
    )]
    Construct {
        construct: Construct,
        what: String,
        line: usize,
        first: usize,
        last: usize,
    },

    #[error("the file is not valid YAML ({reason}); fix it so that Butane can read it")]
    Invalid { reason: String },

    #[error("the edited file is not valid YAML ({reason}), so the edit was not made")]
    InvalidAfterEdit { reason: String },

    #[error(
        "the edit would change {what} at {at} (line {line}) for a YAML parser, not only the \
         Alloy pin, so it was not made; {advice}"
    )]
    UnexpectedDifference {
        /// Where in the tree: `storage.files[3].mode`, `document 2`…
        at: String,
        what: String,
        line: usize,
        advice: &'static str,
    },

    #[error(
        "the edit of line {line} changes nothing at {expected} for a YAML parser, so the \
         line is not what it looks like to a line reader; check that line (a multi-line \
         value, a duplicate key, a tag) and write the pin in plain block YAML"
    )]
    MissingDifference { line: usize, expected: &'static str },

    #[error("the file nests deeper than {max} levels (line {line}); Butane files do not", max = MAX_DEPTH)]
    TooDeep { line: usize },
}

/// A YAML construct refused within the Alloy pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Construct {
    Anchor,
    Alias,
    MergeKey,
    FlowCollection,
    LineBreak,
}

impl Construct {
    fn advice(self) -> &'static str {
        match self {
            Construct::Anchor | Construct::Alias | Construct::MergeKey => {
                "write the values out instead of sharing them"
            }
            Construct::FlowCollection => "write the collection in block style, one item a line",
            Construct::LineBreak => "use LF or CRLF line endings only",
        }
    }
}

/// The deepest nesting a parsed file may have: deeper trees are refused before they are
/// built, so neither building nor comparing nor dropping them can exhaust the stack.
pub const MAX_DEPTH: usize = 256;

/// The lines (0-based) the editor reads the pin from, and what it wrote there.
pub(super) struct PinEdit<'a> {
    pub path_line: usize,
    pub source_line: usize,
    pub hash_line: usize,
    pub target_lines: &'a [usize],
    /// The new image file name, when the version changed.
    pub new_file_name: Option<&'a str>,
    /// The new `sha256-…` value, when the hash changed.
    pub new_hash_value: Option<&'a str>,
}

impl PinEdit<'_> {
    /// The first and last line (0-based) of the pin.
    fn line_span(&self) -> (usize, usize) {
        let all = [self.path_line, self.source_line, self.hash_line]
            .into_iter()
            .chain(self.target_lines.iter().copied());
        let first = all.clone().min().unwrap_or(0);
        let last = all.max().unwrap_or(0);
        (first, last)
    }
}

/// Checks that changing `old` into `new` changes exactly the pin described by `edit`.
pub(super) fn check(old: &str, new: &str, edit: &PinEdit<'_>) -> Result<YamlCheck, YamlRefusal> {
    let old_lines = LineTable::new(old);
    let new_lines = LineTable::new(new);
    let (first, last) = edit.line_span();
    let span_bytes = old_lines.start(first)..old_lines.end(last);
    let span = PinSpan {
        bytes: span_bytes,
        first: first + 1,
        last: last + 1,
    };
    check_line_breaks(old, &old_lines, &span)?;

    let (old_text, templated) = with_placeholders(old);
    let old_tree = match parse(&old_text, &old_lines, Some(&span)) {
        Ok(tree) => tree,
        Err(ParseProblem::Refused(refusal)) => return Err(refusal),
        Err(ParseProblem::Syntax(reason)) if templated => {
            return Ok(YamlCheck::NotRun { reason });
        }
        Err(ParseProblem::Syntax(reason)) => return Err(YamlRefusal::Invalid { reason }),
    };
    let (new_text, _) = with_placeholders(new);
    let new_tree = match parse(&new_text, &new_lines, None) {
        Ok(tree) => tree,
        Err(ParseProblem::Refused(refusal)) => return Err(refusal),
        Err(ParseProblem::Syntax(reason)) => {
            return Err(YamlRefusal::InvalidAfterEdit { reason });
        }
    };
    compare(&old_tree, &new_tree, &new_lines, edit)?;
    Ok(YamlCheck::Agreed)
}

/// The pin's lines, as bytes of the old file and as 1-based line numbers.
struct PinSpan {
    bytes: Range<usize>,
    first: usize,
    last: usize,
}

impl PinSpan {
    fn refuse(&self, construct: Construct, what: impl Into<String>, line: usize) -> YamlRefusal {
        YamlRefusal::Construct {
            construct,
            what: what.into(),
            line,
            first: self.first,
            last: self.last,
        }
    }
}

/// Where each line of a text starts, to turn byte offsets into the line numbers the
/// editor uses (lines end at `\n` only).
struct LineTable {
    starts: Vec<usize>,
    len: usize,
}

impl LineTable {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        LineTable {
            starts,
            len: text.len(),
        }
    }

    fn start(&self, line: usize) -> usize {
        self.starts.get(line).copied().unwrap_or(self.len)
    }

    fn end(&self, line: usize) -> usize {
        self.start(line + 1)
    }

    /// The 1-based line that byte `offset` is on.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset)
    }
}

/// Refuses a lone CR, NEL, LS or PS within the pin's lines.
fn check_line_breaks(text: &str, lines: &LineTable, span: &PinSpan) -> Result<(), YamlRefusal> {
    let part = &text[span.bytes.clone()];
    let mut chars = part.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let name = match c {
            '\r' if chars.peek().map(|&(_, next)| next) != Some('\n') => {
                "has a carriage return (CR) that does not end a CRLF line ending"
            }
            '\u{85}' => "has a NEL (U+0085) character",
            '\u{2028}' => "has a line separator (U+2028)",
            '\u{2029}' => "has a paragraph separator (U+2029)",
            _ => continue,
        };
        let line = lines.line_of(span.bytes.start + at);
        return Err(span.refuse(Construct::LineBreak, name, line));
    }
    Ok(())
}

/// `text` with every OpenTofu template expression (`${…}`) and directive (`%{…}`) replaced
/// by a placeholder of the same byte length, and whether there was any.
///
/// An expression becomes its ASCII letters and digits with every other byte an `_`, so that
/// different expressions stay different and none can be read as YAML syntax. A directive
/// alone on its line (`%{ if x ~}`) becomes spaces, a blank line; elsewhere, underscores.
/// `$${` and `%%{` are the template's escapes for a literal `${` and `%{`, and stay.
fn with_placeholders(text: &str) -> (Cow<'_, str>, bool) {
    if !text.contains("${") && !text.contains("%{") {
        return (Cow::Borrowed(text), false);
    }
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut replaced = false;
    let mut i = 0;
    while i + 1 < bytes.len() {
        let sigil = bytes[i];
        if !(matches!(sigil, b'$' | b'%') && bytes[i + 1] == b'{') {
            i += 1;
            continue;
        }
        if i > 0 && bytes[i - 1] == sigil {
            // `$${` / `%%{`: a literal, not an expression.
            i += 2;
            continue;
        }
        let Some(end) = closing_brace(bytes, i + 2) else {
            break;
        };
        replaced = true;
        let whole_line = sigil == b'%' && alone_on_its_line(bytes, i, end);
        for (at, slot) in out[i..end].iter_mut().enumerate() {
            let b = bytes[i + at];
            *slot = match b {
                b'\n' | b'\r' => b,
                _ if whole_line => b' ',
                _ if sigil == b'$' && b.is_ascii_alphanumeric() => b,
                _ => b'_',
            };
        }
        i = end;
    }
    // Only ASCII bytes were written, each over a whole expression: the text is still UTF-8.
    let text = String::from_utf8(out).expect("placeholders keep the text UTF-8");
    (Cow::Owned(text), replaced)
}

/// The end (exclusive) of the expression whose body starts at `from`: after the `}` that
/// closes it, counting nested braces and skipping double-quoted strings.
fn closing_brace(bytes: &[u8], from: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = from;
    let mut in_string = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'{' if !in_string => depth += 1,
            b'}' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether only spaces and tabs surround `bytes[start..end]` on its line.
fn alone_on_its_line(bytes: &[u8], start: usize, end: usize) -> bool {
    let before = bytes[..start]
        .iter()
        .rev()
        .take_while(|&&b| b != b'\n')
        .all(|&b| b == b' ' || b == b'\t');
    let after = bytes[end..]
        .iter()
        .take_while(|&&b| b != b'\n')
        .all(|&b| matches!(b, b' ' | b'\t' | b'\r'));
    before && after
}

/// A parsed YAML node, with where it starts in the text.
#[derive(Debug)]
struct Node {
    kind: Kind,
    tag: Option<String>,
    /// The anchor id (0 for none): ids are numbered in order, so equal trees have equal ids.
    anchor: usize,
    /// Byte offset of the node's first character.
    start: usize,
}

#[derive(Debug)]
enum Kind {
    Scalar(String, ScalarStyle),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
    Alias(usize),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Scalar(value, _) => format!("the value {:?}", shorten(value)),
            Kind::Sequence(items) => format!("a list of {} items", items.len()),
            Kind::Mapping(pairs) => format!("a mapping of {} keys", pairs.len()),
            Kind::Alias(_) => "an alias".to_owned(),
        }
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

enum ParseProblem {
    Syntax(String),
    Refused(YamlRefusal),
}

/// A collection being built.
enum Frame {
    Sequence(Node, Vec<Node>),
    Mapping(Node, Vec<(Node, Node)>, Option<Node>),
}

/// Parses `text` (placeholders in) into its documents. With `span`, refuses the constructs
/// the pin's lines must not use.
fn parse(text: &str, lines: &LineTable, span: Option<&PinSpan>) -> Result<Vec<Node>, ParseProblem> {
    let mut offsets = CharOffsets::new(text);
    let mut documents = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let in_span = |start: usize| span.filter(|s| s.bytes.contains(&start));

    for event in Parser::new_from_str(text) {
        let (event, event_span) = event.map_err(|e| syntax(&e, &mut offsets, lines))?;
        let start = offsets.byte(event_span.start.index());
        let end = offsets.byte(event_span.end.index());
        let line = lines.line_of(start);
        let (anchor, tag) = match &event {
            Event::Scalar(_, _, anchor, tag)
            | Event::SequenceStart(anchor, tag)
            | Event::MappingStart(anchor, tag) => (
                *anchor,
                tag.as_ref().map(|t| format!("{}{}", t.handle, t.suffix)),
            ),
            _ => (0, None),
        };
        let is_collection = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
        if let Some(span) = in_span(start) {
            if anchor != 0 {
                return Err(ParseProblem::Refused(span.refuse(
                    Construct::Anchor,
                    "defines an anchor (`&name`)",
                    line,
                )));
            }
            if matches!(event, Event::Alias(_)) {
                return Err(ParseProblem::Refused(span.refuse(
                    Construct::Alias,
                    "uses an alias (`*name`)",
                    line,
                )));
            }
            // A flow collection's event ends after its `{` or `[`; a block one's is empty.
            if is_collection && end > start && matches!(text.as_bytes()[end - 1], b'{' | b'[') {
                return Err(ParseProblem::Refused(span.refuse(
                    Construct::FlowCollection,
                    "has a flow collection (`{…}` or `[…]`)",
                    line,
                )));
            }
        }
        let node = |kind| Node {
            kind,
            tag: tag.clone(),
            anchor,
            start,
        };
        let finished = match event {
            Event::Scalar(value, style, ..) => node(Kind::Scalar(value.into_owned(), style)),
            Event::Alias(id) => node(Kind::Alias(id)),
            Event::SequenceStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseProblem::Refused(YamlRefusal::TooDeep { line }));
                }
                stack.push(Frame::Sequence(node(Kind::Alias(0)), Vec::new()));
                continue;
            }
            Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseProblem::Refused(YamlRefusal::TooDeep { line }));
                }
                stack.push(Frame::Mapping(node(Kind::Alias(0)), Vec::new(), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Sequence(mut header, items)) => {
                    header.kind = Kind::Sequence(items);
                    header
                }
                Some(Frame::Mapping(mut header, pairs, _)) => {
                    header.kind = Kind::Mapping(pairs);
                    header
                }
                None => continue,
            },
            _ => continue,
        };
        match stack.last_mut() {
            None => documents.push(finished),
            Some(Frame::Sequence(_, items)) => items.push(finished),
            Some(Frame::Mapping(_, pairs, pending)) => match pending.take() {
                Some(key) => pairs.push((key, finished)),
                None => {
                    let merge =
                        matches!(&finished.kind, Kind::Scalar(k, ScalarStyle::Plain) if k == "<<");
                    if let Some(span) = in_span(finished.start).filter(|_| merge) {
                        return Err(ParseProblem::Refused(span.refuse(
                            Construct::MergeKey,
                            "has a merge key (`<<:`)",
                            lines.line_of(finished.start),
                        )));
                    }
                    *pending = Some(finished);
                }
            },
        }
    }
    Ok(documents)
}

fn syntax(error: &ScanError, offsets: &mut CharOffsets<'_>, lines: &LineTable) -> ParseProblem {
    let line = lines.line_of(offsets.byte(error.marker().index()));
    ParseProblem::Syntax(format!("{} on line {line}", error.info()))
}

/// Turns the parser's character indices into byte offsets, walking from the last position
/// (the parser's positions mostly increase, so this is about linear in the text).
struct CharOffsets<'a> {
    text: &'a str,
    ascii: bool,
    chars: usize,
    bytes: usize,
}

impl<'a> CharOffsets<'a> {
    fn new(text: &'a str) -> Self {
        CharOffsets {
            text,
            ascii: text.is_ascii(),
            chars: 0,
            bytes: 0,
        }
    }

    fn byte(&mut self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.text.len());
        }
        for c in self.text[..self.bytes].chars().rev() {
            if self.chars <= char_index {
                break;
            }
            self.chars -= 1;
            self.bytes -= c.len_utf8();
        }
        for c in self.text[self.bytes..].chars() {
            if self.chars == char_index {
                break;
            }
            self.chars += 1;
            self.bytes += c.len_utf8();
        }
        self.bytes
    }
}

/// A step from a node to one of its children.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Document(usize),
    /// A mapping key, and whether it is the only one with that value in its mapping.
    Key(String, bool),
    Index(usize),
}

struct TreePath<'a>(&'a [Step]);

impl fmt::Display for TreePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for step in self.0 {
            match step {
                // The first document is the file; only others are named.
                Step::Document(0) => continue,
                Step::Document(n) => write!(f, "document {}", n + 1)?,
                Step::Key(key, _) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(&shorten(key))?;
                }
                Step::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if first {
            f.write_str("the top of the file")?;
        }
        Ok(())
    }
}

/// Which part of the pin a difference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PinPart {
    Path(usize),
    Source(usize),
    Hash(usize),
    Target,
}

/// Compares the trees; every difference must be a part of the pin, and every part the
/// editor changed must differ.
fn compare(
    old: &[Node],
    new: &[Node],
    new_lines: &LineTable,
    edit: &PinEdit<'_>,
) -> Result<(), YamlRefusal> {
    let unexpected =
        |path: &[Step], what: String, start: usize, advice| YamlRefusal::UnexpectedDifference {
            at: TreePath(path).to_string(),
            what,
            line: new_lines.line_of(start),
            advice,
        };
    const NOT_THE_PIN: &str = "check the lines the pin is on (a block scalar, a second \
                               document, a duplicate key, a multi-line value)";
    if old.len() != new.len() {
        let start = new.get(old.len()).or(new.last()).map_or(0, |n| n.start);
        return Err(unexpected(
            &[],
            format!("the number of documents ({} to {})", old.len(), new.len()),
            start,
            NOT_THE_PIN,
        ));
    }

    let mut found: Vec<PinPart> = Vec::new();
    let mut work: Vec<(Vec<Step>, &Node, &Node)> = old
        .iter()
        .zip(new)
        .enumerate()
        .map(|(i, (a, b))| (vec![Step::Document(i)], a, b))
        .collect();
    while let Some((path, a, b)) = work.pop() {
        if a.tag != b.tag || a.anchor != b.anchor {
            return Err(unexpected(
                &path,
                "a tag or anchor".into(),
                b.start,
                NOT_THE_PIN,
            ));
        }
        match (&a.kind, &b.kind) {
            (Kind::Scalar(x, x_style), Kind::Scalar(y, y_style)) => {
                if x == y && x_style == y_style {
                    continue;
                }
                match pin_part(&path, y, new_lines.line_of(b.start) - 1, edit) {
                    Some(part) if x_style == y_style => found.push(part),
                    _ => {
                        return Err(unexpected(
                            &path,
                            format!("{} to {}", a.kind.describe(), b.kind.describe()),
                            b.start,
                            NOT_THE_PIN,
                        ));
                    }
                }
            }
            (Kind::Sequence(xs), Kind::Sequence(ys)) if xs.len() == ys.len() => {
                for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                    work.push((child(&path, Step::Index(i)), x, y));
                }
            }
            (Kind::Mapping(xs), Kind::Mapping(ys)) if xs.len() == ys.len() => {
                let mut key_counts: HashMap<&str, usize> = HashMap::new();
                for (key, _) in ys {
                    if let Kind::Scalar(key, _) = &key.kind {
                        *key_counts.entry(key).or_default() += 1;
                    }
                }
                for ((xk, xv), (yk, yv)) in xs.iter().zip(ys) {
                    let same_key = match (&xk.kind, &yk.kind) {
                        (Kind::Scalar(x, x_style), Kind::Scalar(y, y_style)) => {
                            x == y && x_style == y_style
                        }
                        _ => false,
                    } && xk.tag == yk.tag
                        && xk.anchor == yk.anchor;
                    if !same_key {
                        return Err(unexpected(
                            &path,
                            format!("a key, {} to {}", xk.kind.describe(), yk.kind.describe()),
                            yk.start,
                            NOT_THE_PIN,
                        ));
                    }
                    let Kind::Scalar(key, _) = &yk.kind else {
                        unreachable!("compared as scalars above")
                    };
                    let unique = key_counts.get(key.as_str()) == Some(&1);
                    work.push((child(&path, Step::Key(key.clone(), unique)), xv, yv));
                }
            }
            (Kind::Alias(x), Kind::Alias(y)) if x == y => {}
            _ => {
                return Err(unexpected(
                    &path,
                    format!("{} to {}", a.kind.describe(), b.kind.describe()),
                    b.start,
                    NOT_THE_PIN,
                ));
            }
        }
    }
    check_all_found(&found, edit)
}

fn child(path: &[Step], step: Step) -> Vec<Step> {
    let mut path = path.to_vec();
    path.push(step);
    path
}

/// Which part of the pin the scalar at `path` on line `line` (0-based), now `value`, is,
/// if it is one and holds what the editor meant to write. `files` and `links` are those of
/// `storage`, or at the top of a file that is a fragment of a Butane config.
fn pin_part(path: &[Step], value: &str, line: usize, edit: &PinEdit<'_>) -> Option<PinPart> {
    let key = |step: &Step, name: &str| matches!(step, Step::Key(k, true) if k == name);
    let names_new_file = |value: &str| {
        edit.new_file_name.is_some() && value.rsplit('/').next() == edit.new_file_name
    };
    let path = match path {
        [Step::Document(0), storage, rest @ ..] if key(storage, "storage") => rest,
        [Step::Document(0), rest @ ..] => rest,
        _ => return None,
    };
    match path {
        [files, Step::Index(i), rest @ ..] if key(files, "files") => match rest {
            [path] if key(path, "path") && line == edit.path_line && names_new_file(value) => {
                Some(PinPart::Path(*i))
            }
            [contents, source]
                if key(contents, "contents")
                    && key(source, "source")
                    && line == edit.source_line
                    && names_new_file(value) =>
            {
                Some(PinPart::Source(*i))
            }
            [contents, verification, hash]
                if key(contents, "contents")
                    && key(verification, "verification")
                    && key(hash, "hash")
                    && line == edit.hash_line
                    && Some(value) == edit.new_hash_value =>
            {
                Some(PinPart::Hash(*i))
            }
            _ => None,
        },
        [links, Step::Index(_), target]
            if key(links, "links")
                && key(target, "target")
                && edit.target_lines.contains(&line)
                && names_new_file(value) =>
        {
            Some(PinPart::Target)
        }
        _ => None,
    }
}

/// Every change the editor made shows in the tree, and the files entry is one item.
fn check_all_found(found: &[PinPart], edit: &PinEdit<'_>) -> Result<(), YamlRefusal> {
    let entry = |part: &PinPart| match part {
        PinPart::Path(i) | PinPart::Source(i) | PinPart::Hash(i) => Some(*i),
        PinPart::Target => None,
    };
    let mut items = found.iter().filter_map(entry);
    if let Some(first) = items.next()
        && let Some(other) = items.find(|&i| i != first)
    {
        return Err(YamlRefusal::UnexpectedDifference {
            at: format!("storage.files[{other}]"),
            what: format!("a second files entry besides storage.files[{first}]"),
            line: edit.path_line + 1,
            advice: "the path, source and hash must be one entry's",
        });
    }
    let missing = |line: usize, expected| {
        Err(YamlRefusal::MissingDifference {
            line: line + 1,
            expected,
        })
    };
    let has = |wanted: fn(&PinPart) -> bool| found.iter().any(wanted);
    if edit.new_file_name.is_some() {
        if !has(|p| matches!(p, PinPart::Path(_))) {
            return missing(edit.path_line, "storage.files[…].path");
        }
        if !has(|p| matches!(p, PinPart::Source(_))) {
            return missing(edit.source_line, "storage.files[…].contents.source");
        }
        let targets = found.iter().filter(|p| **p == PinPart::Target).count();
        if targets != edit.target_lines.len() {
            let line = edit.target_lines.first().copied().unwrap_or(edit.path_line);
            return missing(line, "storage.links[…].target");
        }
    }
    if edit.new_hash_value.is_some() && !has(|p| matches!(p, PinPart::Hash(_))) {
        return missing(
            edit.hash_line,
            "storage.files[…].contents.verification.hash",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::butane::{ButaneEdit, ButaneError, update_alloy_pin};

    const GHOST: &str = include_str!("../../tests/fixtures/real-world/ghost.bu");
    const GHOST_HASH: &str = "268db7a95a807cfb1c9544fce8a0845db8d7b74354c9ab0e5a1959e4093b7fa7";
    const NEW_HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OLD_HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn update(text: &str, version: &str, hash: &str) -> Result<ButaneEdit, ButaneError> {
        update_alloy_pin(text, "alloy", Arch::Amd64, &version.parse().unwrap(), hash)
    }

    fn refusal(text: &str) -> YamlRefusal {
        match update(text, "1.15.0", NEW_HASH) {
            Err(ButaneError::Yaml(refusal)) => refusal,
            other => panic!("expected a YAML refusal, got {other:?}"),
        }
    }

    /// The pin is on lines 6 (path), 9 (source), 11 (hash) and 18 (links target).
    fn synthetic() -> String {
        format!(
            "variant: flatcar
version: 1.1.0
storage:
  files:
    # alloy-{{VERSION}}-amd64.raw
    - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
      mode: 0644
      contents:
        source: ${{base_url}}/alloy-1.14.2-amd64.raw
        verification:
          hash: sha256-{OLD_HASH}
    - path: /opt/extensions/other/other-1.0.0-amd64.raw
      contents:
        source: https://example.com/other-1.0.0-amd64.raw
        verification:
          hash: sha256-{NEW_HASH}
  links:
    - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
      path: /etc/extensions/alloy.raw
      hard: false
"
        )
    }

    fn construct(refusal: &YamlRefusal) -> (Construct, usize) {
        match refusal {
            YamlRefusal::Construct {
                construct, line, ..
            } => (*construct, *line),
            other => panic!("expected a refused construct, got {other}"),
        }
    }

    #[test]
    fn the_real_template_passes_the_yaml_check() {
        let edit = update(GHOST, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.yaml_check, YamlCheck::Agreed);
        assert_eq!(edit.changed_lines, [36, 39, 41, 400]);
        let edit = update(GHOST, "1.14.2", NEW_HASH).unwrap();
        assert_eq!(edit.yaml_check, YamlCheck::Agreed);
        let edit = update(GHOST, "1.15.0", GHOST_HASH).unwrap();
        assert_eq!(edit.yaml_check, YamlCheck::Agreed);
        let edit = update(GHOST, "1.14.2", GHOST_HASH).unwrap();
        assert_eq!(edit.yaml_check, YamlCheck::NothingChanged);
    }

    #[test]
    fn crlf_quoted_and_non_ascii_files_pass() {
        let text = synthetic();
        assert_eq!(
            update(&text, "1.15.0", NEW_HASH).unwrap().yaml_check,
            YamlCheck::Agreed
        );
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(
            update(&crlf, "1.15.0", NEW_HASH).unwrap().yaml_check,
            YamlCheck::Agreed
        );
        // Quoted values, a comment naming the file, and non-ASCII text before the pin.
        let quoted = text
            .replace("variant: flatcar", "variant: flatcar # café ☕ façade")
            .replace(
                "path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\n",
                "path: \"/opt/extensions/alloy/alloy-1.14.2-amd64.raw\" # alloy-1.14.2-amd64.raw\n",
            )
            .replace(
                &format!("hash: sha256-{OLD_HASH}"),
                &format!("hash: 'sha256-{OLD_HASH}'"),
            );
        assert_eq!(
            update(&quoted, "1.15.0", NEW_HASH).unwrap().yaml_check,
            YamlCheck::Agreed
        );
    }

    #[test]
    fn anchors_in_the_entry_are_refused() {
        let text = synthetic().replace("mode: 0644", "mode: &mode 0644");
        let refused = refusal(&text);
        assert_eq!(construct(&refused), (Construct::Anchor, 7));
        let message = refused.to_string();
        assert!(
            message.starts_with("line 7, within the Alloy pin (lines 6–18), defines an anchor"),
            "{message}"
        );
        assert!(message.contains("write the values out"), "{message}");
        // An anchor between the entry and the links target is within the pin's lines too.
        let text = synthetic().replace(
            "      contents:\n        source: https://example.com",
            "      contents: &other\n        source: https://example.com",
        );
        assert_eq!(construct(&refusal(&text)), (Construct::Anchor, 13));
    }

    #[test]
    fn aliases_in_the_entry_are_refused() {
        let text = synthetic()
            .replace("version: 1.1.0", "version: 1.1.0\nx-mode: &mode 0644")
            .replace("mode: 0644", "mode: *mode");
        assert_eq!(construct(&refusal(&text)), (Construct::Alias, 8));
        // Outside the pin's lines, anchors and aliases are only compared.
        let text = synthetic().replace("version: 1.1.0", "version: &v 1.1.0\nalso: *v");
        assert_eq!(
            update(&text, "1.15.0", NEW_HASH).unwrap().yaml_check,
            YamlCheck::Agreed
        );
    }

    #[test]
    fn merge_keys_in_the_entry_are_refused() {
        let text = synthetic()
            .replace(
                "version: 1.1.0",
                "version: 1.1.0\nx-defaults: &defaults\n  mode: 0644",
            )
            .replace(
                "      mode: 0644\n      contents",
                "      <<: *defaults\n      contents",
            );
        let refused = refusal(&text);
        assert_eq!(construct(&refused), (Construct::MergeKey, 9));
        assert!(
            refused.to_string().contains("has a merge key (`<<:`)"),
            "{refused}"
        );
    }

    #[test]
    fn flow_collections_in_the_entry_are_refused() {
        for (flow, line) in [
            ("      user: {name: core}\n", 7),
            ("      overwrite: {}\n", 7),
            ("      append: []\n", 7),
            ("      append: [ {source: x} ]\n", 7),
        ] {
            let text = synthetic().replace("      mode: 0644\n", flow);
            let refused = refusal(&text);
            assert_eq!(
                construct(&refused),
                (Construct::FlowCollection, line),
                "{flow}"
            );
            assert!(refused.to_string().contains("block style"), "{refused}");
        }
        // A flow collection that only mentions brackets in a string is not one.
        let text = synthetic().replace("mode: 0644", "mode: 0644 # {not flow} [nor this]");
        assert_eq!(
            update(&text, "1.15.0", NEW_HASH).unwrap().yaml_check,
            YamlCheck::Agreed
        );
    }

    #[test]
    fn line_breaks_other_than_lf_and_crlf_are_refused() {
        for (inserted, name) in [
            ("\r", "carriage return"),
            ("\u{85}", "NEL (U+0085)"),
            ("\u{2028}", "line separator (U+2028)"),
            ("\u{2029}", "paragraph separator (U+2029)"),
        ] {
            let text = synthetic().replace(
                "      mode: 0644\n",
                &format!("      mode: 0644{inserted}      user: core\n"),
            );
            let refused = refusal(&text);
            assert_eq!(construct(&refused), (Construct::LineBreak, 7), "{name}");
            assert!(refused.to_string().contains(name), "{refused}");
            assert!(refused.to_string().contains("LF or CRLF"), "{refused}");
        }
        // Outside the pin's lines they are left to the tree comparison.
        let text = synthetic().replace("variant: flatcar", "variant: flatcar # ok\u{2028}");
        assert_eq!(
            update(&text, "1.15.0", NEW_HASH).unwrap().yaml_check,
            YamlCheck::Agreed
        );
    }

    #[test]
    fn an_edit_inside_a_block_scalar_is_refused() {
        // `!!str |` is a block scalar the line reader does not recognize, so it reads the
        // text inside as a links target.
        let text = synthetic().replace(
            "  links:\n",
            "    - path: /etc/notes
      contents:
        inline: !!str |
          target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
  links:
",
        );
        let refused = refusal(&text);
        assert_eq!(
            refused,
            YamlRefusal::UnexpectedDifference {
                at: "storage.files[2].contents.inline".into(),
                what: "the value \"target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\\n\" to \
                       the value \"target: /opt/extensions/alloy/alloy-1.15.0-amd64.raw\\n\""
                    .into(),
                line: 19,
                advice: "check the lines the pin is on (a block scalar, a second document, a \
                         duplicate key, a multi-line value)",
            }
        );
        assert!(
            refused
                .to_string()
                .starts_with("the edit would change the value"),
            "{refused}"
        );
    }

    #[test]
    fn an_edit_in_a_second_document_is_refused() {
        let text = format!(
            "{}---\nstorage:\n  links:\n    - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw\n",
            synthetic()
        );
        let refused = refusal(&text);
        assert!(
            matches!(&refused, YamlRefusal::UnexpectedDifference { at, line: 24, .. } if at == "document 2.storage.links[0].target"),
            "{refused:?}"
        );
    }

    #[test]
    fn an_edit_under_a_duplicate_key_is_refused() {
        let text = synthetic().replace(
            "        verification:\n",
            "      contents:\n        verification:\n",
        );
        let refused = refusal(&text);
        assert!(
            matches!(&refused, YamlRefusal::UnexpectedDifference { at, .. } if at.starts_with("storage.files[0].contents.")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_file_that_is_not_yaml_is_refused() {
        let text = synthetic().replace("${base_url}", "https://x") + "x: 'unterminated\n";
        let refused = refusal(&text);
        assert!(
            matches!(refused, YamlRefusal::Invalid { .. }),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("line 21"), "{refused}");
    }

    #[test]
    fn a_template_that_does_not_parse_keeps_the_line_edit() {
        let text = format!(
            "{}systemd:\n  units:\n${{indent(4, yamlencode(units))}}\n",
            synthetic()
        );
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.changed_lines, [6, 9, 11, 18]);
        let YamlCheck::NotRun { reason } = &edit.yaml_check else {
            panic!("{:?}", edit.yaml_check)
        };
        assert!(reason.contains("line 24"), "{reason}");
        let note = edit.yaml_check.review_note().unwrap();
        assert!(note.contains("The YAML check could not run"), "{note}");
        assert!(note.contains(reason.as_str()), "{note}");
        assert_eq!(YamlCheck::Agreed.review_note(), None);
        assert_eq!(
            edit.text,
            update(&synthetic(), "1.15.0", NEW_HASH).unwrap().text
                + "systemd:\n  units:\n${indent(4, yamlencode(units))}\n"
        );
    }

    #[test]
    fn template_directives_become_blank_lines() {
        let text = synthetic()
            .replace(
                "    - path: /opt/extensions/other",
                "%{ if with_other ~}\n    - path: /opt/extensions/other",
            )
            .replace("  links:\n", "%{ endif ~}\n  links:\n");
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.yaml_check, YamlCheck::Agreed);
        let (placeholders, templated) =
            with_placeholders("a: ${x.y[\"}\"]} $${lit} %{ if a }b%{ endif }\n%{ else ~}\n");
        assert!(templated);
        assert_eq!(
            placeholders,
            "a: __x_y______ $${lit} _________b__________\n          \n"
        );
    }

    #[test]
    fn large_mappings_are_compared_key_by_key_once() {
        let mut text = synthetic();
        text.push_str("x-big:\n");
        for n in 0..100_000 {
            text.push_str(&format!("  key{n}: value {n}\n"));
        }
        let edit = update(&text, "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.yaml_check, YamlCheck::Agreed);
        assert_eq!(edit.changed_lines, [6, 9, 11, 18]);
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let mut deep = format!("{}deep:\n", synthetic());
        for depth in 1..300 {
            deep.push_str(&"  ".repeat(depth));
            deep.push_str("k:\n");
        }
        assert!(matches!(refusal(&deep), YamlRefusal::TooDeep { .. }));
        // Flow nesting is bounded by the parser itself.
        let flow = format!(
            "{}deep: {}{}\n",
            synthetic(),
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let edit = update(&flow, "1.15.0", NEW_HASH).unwrap();
        assert!(
            matches!(&edit.yaml_check, YamlCheck::NotRun { reason } if reason.contains("recursion limit")),
            "{:?}",
            edit.yaml_check
        );
    }
}
