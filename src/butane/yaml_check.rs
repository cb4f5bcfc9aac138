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
//!    raw text, so that it holds for a file that does not parse, and on the parser's events.
//! 2. The old and the new file are parsed, and their trees compared node by node: every
//!    difference must be the entry's `path`, `contents.source` or
//!    `contents.verification.hash` in `storage.files`, or a `target` in `storage.links`,
//!    on a line the editor changed and holding the value the editor meant to write; and
//!    every change the editor meant must show up in the tree.
//!
//! Consumer files may be OpenTofu templates: `${…}` and `%{…}` outside comments are
//! replaced by placeholders of the same length before parsing (a directive alone on its
//! line becomes a blank line). A template whose parse fails at a placeholder keeps the line
//! edit, and the result says that the YAML check could not run; any other parse failure,
//! and nesting deeper than any Butane file, is refused.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use super::ImagePattern;

/// Whether the YAML check of an edit ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlCheck {
    /// The old and the new file parse, and their trees differ only at the Alloy pin.
    Agreed,
    /// The file is a template that does not parse as YAML where one of its expressions was
    /// replaced by a placeholder: only the line edit's own checks, and the refusal of
    /// anchors, aliases, merge keys and flow collections on the pin's lines, were made.
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

    #[error(
        "line {line} has the template expression {shown:?}, which {why}; a YAML parser cannot \
         tell what it renders, so the edit was not made: compute the value in OpenTofu and \
         pass it in as a variable, or write a literal `${{` as `$${{`"
    )]
    TemplateExpression {
        line: usize,
        shown: String,
        why: &'static str,
    },

    #[error(
        "line {line} has the character {code}, which some YAML parsers read as a line break \
         and others do not; use LF or CRLF line endings only"
    )]
    UnusualLineBreak { line: usize, code: String },

    #[error(
        "line {line} puts an anchor (`&name`) on a collection that holds the Alloy pin, so an \
         alias could copy the pin where the editor does not look; write the values out \
         instead of sharing them"
    )]
    AnchoredAncestor { line: usize },

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

    #[error(
        "{at} (line {line}) also names {value:?}: a YAML parser sees another Alloy entry \
         than the one on the lines the editor reads, so the edit was not made; keep a single \
         Alloy files entry and its links, written in plain block YAML"
    )]
    AnotherAlloyEntry {
        at: String,
        value: String,
        line: usize,
    },

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
    /// The image's name: its links entry is `/etc/extensions/{image_name}.raw`.
    pub image_name: &'a str,
    /// The file names of the image and architecture being edited.
    pub pattern: &'a ImagePattern,
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
    check_pin_text(old, &old_lines, &span)?;

    let old_text = with_placeholders(old)?;
    let old_tree = match parse(&old_text.text, &old_lines, Some(&span)) {
        Ok(tree) => tree,
        Err(ParseProblem::Refused(refusal)) => return Err(refusal),
        // Only a template expression may keep a file from parsing: the placeholder that
        // stands for it is not what the template renders.
        Err(ParseProblem::Syntax { reason, line })
            if old_text.breaks_the_parse_at(line, &old_lines) =>
        {
            return Ok(YamlCheck::NotRun { reason });
        }
        Err(ParseProblem::Syntax { reason, .. }) => return Err(YamlRefusal::Invalid { reason }),
    };
    let new_text = with_placeholders(new)?;
    let new_tree = match parse(&new_text.text, &new_lines, None) {
        Ok(tree) => tree,
        Err(ParseProblem::Refused(refusal)) => return Err(refusal),
        Err(ParseProblem::Syntax { reason, .. }) => {
            return Err(YamlRefusal::InvalidAfterEdit { reason });
        }
    };
    check_one_alloy_entry(&old_tree, &old_lines, edit)?;
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

/// Refuses a lone CR, NEL, LS or PS within the pin's lines, and a NEL, LS or PS anywhere:
/// some YAML parsers (go-yaml, which Butane uses) break lines there and others do not, so
/// no parser can stand for Butane's reading of the file.
fn check_line_breaks(text: &str, lines: &LineTable, span: &PinSpan) -> Result<(), YamlRefusal> {
    if let Some((at, c)) = text
        .char_indices()
        .find(|&(_, c)| matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}'))
        .filter(|(at, _)| !span.bytes.contains(at))
    {
        return Err(YamlRefusal::UnusualLineBreak {
            line: lines.line_of(at),
            code: format!("U+{:04X}", u32::from(c)),
        });
    }
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

/// Refuses anchors, aliases, merge keys and flow collections on the pin's lines, read from
/// the raw text: the parser's events show them too, but only when the file parses, and
/// these refusals must hold for a file that does not.
///
/// Each line is read as YAML block structure: indicators (`- `, `? `), node properties
/// (`&anchor`, `!tag`), then a key or a value. The content of block scalars is skipped,
/// like the editor does; a multi-line flow or quoted scalar is read as if each of its lines
/// started a node, which can only refuse more.
fn check_pin_text(text: &str, lines: &LineTable, span: &PinSpan) -> Result<(), YamlRefusal> {
    // Inside a block scalar: the column of its key (or dash), and its content's indentation,
    // set by its first line indented deeper than that column.
    let mut block: Option<(usize, Option<usize>)> = None;
    for line in span.first..=span.last {
        let raw = &text[lines.start(line - 1)..lines.end(line - 1)];
        let body = raw.trim_end_matches(['\n', '\r']);
        let indent = body.len() - body.trim_start_matches(' ').len();
        if body[indent..].trim().is_empty() {
            continue;
        }
        if let Some((column, content)) = &mut block {
            match *content {
                None if indent > *column => {
                    *content = Some(indent);
                    continue;
                }
                Some(content) if indent >= content => continue,
                _ => {}
            }
        }
        block = check_pin_line(body, indent, |construct, what| {
            span.refuse(construct, what, line)
        })?
        .map(|column| (column, None));
    }
    Ok(())
}

/// Reads one line of the pin (see [`check_pin_text`]); returns the column a block scalar
/// it opens belongs to, if it opens one.
fn check_pin_line(
    body: &str,
    indent: usize,
    refuse: impl Fn(Construct, &'static str) -> YamlRefusal,
) -> Result<Option<usize>, YamlRefusal> {
    let bytes = body.as_bytes();
    let ends_token = |at: usize| at >= bytes.len() || matches!(bytes[at], b' ' | b'\t');
    let mut at = indent;
    // The column of the node the line's value belongs to: its key's, or its dash's.
    let mut column = indent;
    let mut merge_tag = false;
    loop {
        while at < bytes.len() && matches!(bytes[at], b' ' | b'\t') {
            at += 1;
        }
        if at >= bytes.len() || bytes[at] == b'#' {
            return Ok(None);
        }
        match bytes[at] {
            b'-' | b'?' if ends_token(at + 1) => {
                column = at;
                at += 1;
                continue;
            }
            b'-' if body[at..].starts_with("---") && ends_token(at + 3) => {
                at += 3;
                continue;
            }
            b'&' => return Err(refuse(Construct::Anchor, "defines an anchor (`&name`)")),
            b'*' => return Err(refuse(Construct::Alias, "uses an alias (`*name`)")),
            b'[' | b'{' => {
                return Err(refuse(
                    Construct::FlowCollection,
                    "has a flow collection (`{…}` or `[…]`)",
                ));
            }
            b'!' => {
                let end = (at..bytes.len())
                    .find(|&i| ends_token(i))
                    .unwrap_or(bytes.len());
                merge_tag |= body[at..end].trim_end_matches('>').ends_with("merge");
                at = end;
                continue;
            }
            _ => {}
        }
        // A scalar: quoted, or plain up to `: `, ` #` or the end of the line.
        let (value, end) = match bytes[at] {
            quote @ (b'"' | b'\'') => {
                let Some(close) = closing_quote(bytes, at + 1, quote) else {
                    // A quoted scalar that goes on to the next line.
                    return Ok(None);
                };
                (&body[at + 1..close], close + 1)
            }
            _ => {
                let end = (at..bytes.len())
                    .find(|&i| {
                        (bytes[i] == b':' && ends_token(i + 1))
                            || (bytes[i] == b'#' && matches!(bytes[i - 1], b' ' | b'\t'))
                    })
                    .unwrap_or(bytes.len());
                (body[at..end].trim_end(), end)
            }
        };
        let mut after = end;
        while after < bytes.len() && matches!(bytes[after], b' ' | b'\t') {
            after += 1;
        }
        if after < bytes.len() && bytes[after] == b':' && ends_token(after + 1) {
            if value == "<<" || merge_tag {
                return Err(refuse(Construct::MergeKey, "has a merge key (`<<:`)"));
            }
            column = at;
            merge_tag = false;
            at = after + 1;
            continue;
        }
        let plain = !matches!(bytes[at], b'"' | b'\'');
        let block_scalar = plain
            && value.starts_with(['|', '>'])
            && value[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'+' || b == b'-');
        return Ok(block_scalar.then_some(column));
    }
}

/// The index of the quote that closes a quoted scalar whose content starts at `from`, on
/// this line.
fn closing_quote(bytes: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 1,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
            b if b == quote => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A text with its template expressions replaced by placeholders.
struct Placeholders<'a> {
    text: Cow<'a, str>,
    /// The 1-based lines that hold a placeholder, in order.
    placeholder_lines: Vec<usize>,
}

impl Placeholders<'_> {
    /// Whether a placeholder may be what the parser stopped at on `line` (1-based): one on
    /// that line, or on the last line before it with anything but blanks and comments (the
    /// parser often stops at the token after the one it could not fit).
    fn breaks_the_parse_at(&self, line: usize, lines: &LineTable) -> bool {
        let holds = |line: usize| self.placeholder_lines.binary_search(&line).is_ok();
        if holds(line) {
            return true;
        }
        let previous = (1..line).rev().find(|&before| {
            let content = self.text[lines.start(before - 1)..lines.end(before - 1)].trim();
            !content.is_empty() && !content.starts_with('#')
        });
        previous.is_some_and(holds)
    }
}

/// `text` with every OpenTofu template expression (`${…}`) and directive (`%{…}`) outside
/// YAML comments replaced by a placeholder of the same byte length.
///
/// An expression becomes its ASCII letters and digits with every other byte an `_`, so that
/// different expressions stay different and none can be read as YAML syntax. A directive
/// alone on its line (`%{ if x ~}`) becomes spaces, a blank line; elsewhere, underscores.
/// `$${` and `%%{` are the template's escapes for a literal `${` and `%{`, and stay. In a
/// comment an expression is left as it is: the parser skips it either way, and a file whose
/// only expressions are in comments is no template whose parse errors could be excused.
fn with_placeholders(text: &str) -> Result<Placeholders<'_>, YamlRefusal> {
    if !text.contains("${") && !text.contains("%{") {
        return Ok(Placeholders {
            text: Cow::Borrowed(text),
            placeholder_lines: Vec::new(),
        });
    }
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut placeholder_lines = Vec::new();
    let mut reader = YamlLineReader::default();
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        let sigil = bytes[i];
        let opens = matches!(sigil, b'$' | b'%')
            && bytes.get(i + 1) == Some(&b'{')
            // `$${` / `%%{`: a literal, not an expression.
            && !(i > 0 && bytes[i - 1] == sigil);
        if !opens {
            if sigil == b'\n' {
                line += 1;
            }
            reader.read(bytes, i);
            i += 1;
            continue;
        }
        let Some(end) = closing_brace(bytes, i + 2) else {
            break;
        };
        if let Some(why) = unsafe_expression(&bytes[i..end]) {
            let first_line = text[i..end].lines().next().unwrap_or_default();
            return Err(YamlRefusal::TemplateExpression {
                line,
                shown: shorten(first_line),
                why,
            });
        }
        if reader.in_comment {
            i = end;
            continue;
        }
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
        placeholder_lines.push(line);
        line += bytes[i..end].iter().filter(|&&b| b == b'\n').count();
        reader.value_started();
        i = end;
    }
    // Only ASCII bytes were written, each over a whole expression: the text is still UTF-8.
    let text = String::from_utf8(out).expect("placeholders keep the text UTF-8");
    placeholder_lines.dedup();
    Ok(Placeholders {
        text: Cow::Owned(text),
        placeholder_lines,
    })
}

/// Follows a text byte by byte, well enough to tell a YAML comment from a `#` in a quoted
/// scalar or in the middle of a plain one. Quotes are followed within a line only: a
/// quoted scalar that goes on to the next line is read as plain text there.
#[derive(Default)]
struct YamlLineReader {
    in_comment: bool,
    /// The quote of the quoted scalar being read.
    quote: Option<u8>,
    /// Whether the next non-blank byte starts a node (after an indicator or a new line).
    past_node_start: bool,
    /// Whether the last byte was a blank (or there was none on this line).
    after_text: bool,
    /// Whether the next byte of the quoted scalar is escaped (`\"`, `''`).
    escaped: bool,
}

impl YamlLineReader {
    fn read(&mut self, bytes: &[u8], i: usize) {
        let b = bytes[i];
        let next_is_blank = matches!(bytes.get(i + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n'));
        let after_blank = !self.after_text;
        self.after_text = !matches!(b, b' ' | b'\t' | b'\r');
        if b == b'\n' {
            *self = YamlLineReader::default();
            return;
        }
        if self.in_comment {
            return;
        }
        if let Some(quote) = self.quote {
            if self.escaped {
                self.escaped = false;
            } else if (b == b'\\' && quote == b'"')
                || (b == b'\'' && quote == b'\'' && bytes.get(i + 1) == Some(&b'\''))
            {
                self.escaped = true;
            } else if b == quote {
                self.quote = None;
                self.past_node_start = true;
            }
            return;
        }
        match b {
            b' ' | b'\t' | b'\r' => {}
            b'#' if after_blank => self.in_comment = true,
            b'"' | b'\'' if !self.past_node_start => self.quote = Some(b),
            b'-' | b'?' | b':' if next_is_blank => self.past_node_start = false,
            b'[' | b'{' | b',' => self.past_node_start = false,
            _ => self.past_node_start = true,
        }
    }

    /// A placeholder was read: it is the start of a plain scalar, or within a scalar.
    fn value_started(&mut self) {
        if self.quote.is_none() {
            self.past_node_start = true;
        }
        self.after_text = true;
    }
}

/// The end (exclusive) of the expression whose body starts at `from`: after the `}` that
/// closes it, counting nested braces and skipping quoted strings (`"…"`, `'…'`).
fn closing_brace(bytes: &[u8], from: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = from;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        match (bytes[i], quote) {
            (b'\\', Some(_)) => i += 1,
            (b, Some(q)) if b == q => quote = None,
            (_, Some(_)) => {}
            (b @ (b'"' | b'\''), None) => quote = Some(b),
            (b'{', None) => depth += 1,
            (b'}', None) => {
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

/// Why a template expression (`${…}`, `%{…}`, with its sigil and braces) cannot be
/// replaced by a placeholder: what it renders could be YAML syntax that the placeholder is
/// not, so the parser would read another file than the one hosts get.
fn unsafe_expression(expression: &[u8]) -> Option<&'static str> {
    if expression.contains(&b'\n') {
        return Some("runs over more than one line");
    }
    if expression
        .iter()
        .any(|b| matches!(b, b'"' | b'\'' | b'#' | b'|' | b'>'))
    {
        return Some("holds a quote, `#`, `|` or `>`, which could render YAML syntax");
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
    /// The text is not YAML; `line` (1-based) is where the parser stopped.
    Syntax {
        reason: String,
        line: usize,
    },
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
                // An anchor on a collection that holds the pin would let an alias copy the
                // pin, edit and all, to where the editor does not look.
                Some(Frame::Sequence(header, _) | Frame::Mapping(header, ..))
                    if header.anchor != 0
                        && span.is_some_and(|s| {
                            header.start < s.bytes.start && start >= s.bytes.start
                        }) =>
                {
                    return Err(ParseProblem::Refused(YamlRefusal::AnchoredAncestor {
                        line: lines.line_of(header.start),
                    }));
                }
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
                    // Quoted or tagged, `<<` is still a merge key to some parsers.
                    let merge = matches!(&finished.kind, Kind::Scalar(k, _) if k == "<<")
                        || finished
                            .tag
                            .as_deref()
                            .is_some_and(|t| t.ends_with("merge"));
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
    // The parser's own bound on flow nesting: no Butane file comes near it, and a file
    // that does must not pass for a template the check cannot read.
    if error.info() == "recursion limit exceeded" {
        return ParseProblem::Refused(YamlRefusal::TooDeep { line });
    }
    ParseProblem::Syntax {
        reason: format!("{} on line {line}", error.info()),
        line,
    }
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

    let fragment = old.first().is_some_and(is_fragment);
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
                match pin_part(&path, y, new_lines.line_of(b.start) - 1, fragment, edit) {
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

/// Refuses a file in which a YAML parser sees another Alloy entry than the one the editor
/// edited: another `files` entry or links `target` naming an image file of this name and
/// architecture, or any file under the pin's directory but the other architectures' images,
/// or another entry at the image's links path. The line editor
/// cannot see an entry written with a quoted key or a flow mapping, and would edit a decoy
/// while hosts go on reading the real one.
fn check_one_alloy_entry(
    documents: &[Node],
    lines: &LineTable,
    edit: &PinEdit<'_>,
) -> Result<(), YamlRefusal> {
    let on_line = |node: &Node, line: usize| lines.line_of(node.start) == line + 1;
    let lists = alloy_lists(documents);
    let edited_path = lists
        .iter()
        .filter(|list| list.files)
        .flat_map(|list| list.items.iter())
        .flat_map(|item| scalar_values(item, "path"))
        .find(|(node, _)| on_line(node, edit.path_line))
        .map(|(_, value)| value);
    let directory = edited_path
        .and_then(|path| path.rsplit_once('/'))
        .map(|(directory, _)| format!("{directory}/"));
    let link_path = format!("/etc/extensions/{}.raw", edit.image_name);
    let names_alloy = |value: &str| {
        let file_name = value.rsplit('/').next().unwrap_or(value);
        let other_architecture = file_name.starts_with(&edit.pattern.prefix)
            && file_name.ends_with(".raw")
            && !file_name.ends_with(&edit.pattern.suffix);
        value == link_path
            || edit.pattern.version_of(value).is_some()
            || (directory.as_deref().is_some_and(|d| value.starts_with(d)) && !other_architecture)
    };
    for list in &lists {
        for (i, item) in list.items.iter().enumerate() {
            let (key, edited) = if list.files {
                ("path", &[edit.path_line][..])
            } else {
                ("target", edit.target_lines)
            };
            let values = scalar_values(item, key);
            if values
                .iter()
                .any(|(node, _)| edited.iter().any(|&line| on_line(node, line)))
            {
                continue;
            }
            let link_paths = if list.files {
                Vec::new()
            } else {
                scalar_values(item, "path")
            };
            let link = link_paths
                .into_iter()
                .filter(|(_, value)| *value == link_path);
            let other = values
                .into_iter()
                .filter(|(_, value)| names_alloy(value))
                .chain(link)
                .next();
            if let Some((node, value)) = other {
                return Err(YamlRefusal::AnotherAlloyEntry {
                    at: format!("{}[{i}]", list.name),
                    value: shorten(value),
                    line: lines.line_of(node.start),
                });
            }
        }
    }
    Ok(())
}

/// A `files` or `links` list a Butane config is read from.
struct AlloyList<'a> {
    /// `storage.files`, `document 2.links`…
    name: String,
    files: bool,
    items: &'a [Node],
}

/// Every `storage.files` and `storage.links` list, in every document, and those at the top
/// of a fragment.
fn alloy_lists(documents: &[Node]) -> Vec<AlloyList<'_>> {
    let mut lists = Vec::new();
    for (d, document) in documents.iter().enumerate() {
        let prefix = if d == 0 {
            String::new()
        } else {
            format!("document {}.", d + 1)
        };
        let mut sections = vec![];
        for (_, storage) in mapping_values(document, "storage") {
            sections.push((format!("{prefix}storage."), storage));
        }
        if is_fragment(document) {
            sections.push((prefix.clone(), document));
        }
        for (section_name, section) in sections {
            for (key, files) in [("files", true), ("links", false)] {
                for (_, list) in mapping_values(section, key) {
                    if let Kind::Sequence(items) = &list.kind {
                        lists.push(AlloyList {
                            name: format!("{section_name}{key}"),
                            files,
                            items,
                        });
                    }
                }
            }
        }
    }
    lists
}

/// The values of every `key` in `node`, if it is a mapping (a duplicate key gives more).
fn mapping_values<'a>(node: &'a Node, key: &str) -> Vec<(&'a Node, &'a Node)> {
    let Kind::Mapping(pairs) = &node.kind else {
        return Vec::new();
    };
    pairs
        .iter()
        .filter(|(k, _)| matches!(&k.kind, Kind::Scalar(name, _) if name == key))
        .map(|(k, v)| (k, v))
        .collect()
}

/// The scalar values of every `key` in `node`, with their nodes.
fn scalar_values<'a>(node: &'a Node, key: &str) -> Vec<(&'a Node, &'a str)> {
    mapping_values(node, key)
        .into_iter()
        .filter_map(|(_, value)| match &value.kind {
            Kind::Scalar(text, _) => Some((value, text.as_str())),
            _ => None,
        })
        .collect()
}

fn child(path: &[Step], step: Step) -> Vec<Step> {
    let mut path = path.to_vec();
    path.push(step);
    path
}

/// Whether a document is a fragment of a Butane config (its `storage` section alone, as
/// some templates are), rather than a config: Butane ignores a config's top-level `files`
/// and `links`, with only a warning.
fn is_fragment(document: &Node) -> bool {
    let Kind::Mapping(pairs) = &document.kind else {
        return false;
    };
    !pairs.iter().any(|(key, _)| {
        matches!(&key.kind, Kind::Scalar(k, _) if matches!(k.as_str(), "storage" | "variant" | "version"))
    })
}

/// Which part of the pin the scalar at `path` on line `line` (0-based), now `value`, is,
/// if it is one and holds what the editor meant to write. `files` and `links` are those of
/// `storage`, or at the top of a `fragment` (see [`is_fragment`]).
fn pin_part(
    path: &[Step],
    value: &str,
    line: usize,
    fragment: bool,
    edit: &PinEdit<'_>,
) -> Option<PinPart> {
    let key = |step: &Step, name: &str| matches!(step, Step::Key(k, true) if k == name);
    let names_new_file = |value: &str| {
        edit.new_file_name.is_some() && value.rsplit('/').next() == edit.new_file_name
    };
    let path = match path {
        [Step::Document(0), storage, rest @ ..] if key(storage, "storage") => rest,
        [Step::Document(0), rest @ ..] if fragment => rest,
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
    use crate::butane::ButaneError;
    use crate::butane::test_fixtures::{
        GHOST, GHOST_HASH, NEW_HASH, OLD_HASH, synthetic_with_comment, update,
    };

    fn refusal(text: &str) -> YamlRefusal {
        match update(text, "1.15.0", NEW_HASH) {
            Err(ButaneError::Yaml(refusal)) => refusal,
            other => panic!("expected a YAML refusal, got {other:?}"),
        }
    }

    /// The pin is on lines 6 (path), 9 (source), 11 (hash) and 18 (links target).
    fn synthetic() -> String {
        synthetic_with_comment("alloy-{VERSION}-amd64.raw")
    }

    /// What the YAML check said of updating `text` to 1.15.0.
    fn yaml_check_of(text: &str) -> YamlCheck {
        update(text, "1.15.0", NEW_HASH).unwrap().yaml_check
    }

    /// Asserts that `text` is refused as no YAML, with a message naming `line`.
    fn assert_refused_as_invalid(text: &str, line: usize) {
        let refused = refusal(text);
        assert!(
            matches!(refused, YamlRefusal::Invalid { .. }),
            "{refused:?}"
        );
        assert!(
            refused.to_string().contains(&format!("line {line}")),
            "{refused}"
        );
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
        assert_eq!(yaml_check_of(&text), YamlCheck::Agreed);
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
        assert_eq!(yaml_check_of(&text), YamlCheck::Agreed);
    }

    /// [`synthetic`] whose Alloy entry takes its mode from `x-defaults` under `key` (line 9).
    fn with_merge_key(key: &str) -> String {
        synthetic()
            .replace(
                "version: 1.1.0",
                "version: 1.1.0\nx-defaults: &defaults\n  mode: 0644",
            )
            .replace(
                "      mode: 0644\n      contents",
                &format!("      {key}: *defaults\n      contents"),
            )
    }

    #[test]
    fn merge_keys_in_the_entry_are_refused() {
        let text = with_merge_key("<<");
        let refused = refusal(&text);
        assert_eq!(construct(&refused), (Construct::MergeKey, 9));
        assert!(
            refused.to_string().contains("has a merge key (`<<:`)"),
            "{refused}"
        );
    }

    #[test]
    fn quoted_and_tagged_merge_keys_are_refused() {
        for key in [
            "\"<<\"",
            "'<<'",
            "!!merge \"<<\"",
            "!!merge x",
            "!<tag:yaml.org,2002:merge> x",
        ] {
            let text = with_merge_key(key);
            assert_eq!(
                construct(&refusal(&text)),
                (Construct::MergeKey, 9),
                "{key}"
            );
        }
    }

    #[test]
    fn anchors_on_collections_that_hold_the_pin_are_refused() {
        for (from, to, line) in [
            ("  files:\n", "  files: &f\n", 4),
            ("storage:\n", "storage: &s\n", 3),
            ("variant: flatcar\n", "--- &doc\nvariant: flatcar\n", 1),
        ] {
            let copy = match line {
                4 => "x-copy: *f\n",
                3 => "x-copy: *s\n",
                _ => "",
            };
            let text = synthetic().replace(from, to) + copy;
            let refused = refusal(&text);
            assert_eq!(refused, YamlRefusal::AnchoredAncestor { line }, "{to}");
            assert!(
                refused.to_string().contains("holds the Alloy pin"),
                "{refused}"
            );
        }
        // An anchor on a collection beside the pin is compared like any other node.
        let text = synthetic() + "  directories: &d\n    - path: /x\nx-copy: *d\n";
        assert_eq!(yaml_check_of(&text), YamlCheck::Agreed);
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
        assert_eq!(yaml_check_of(&text), YamlCheck::Agreed);
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
        // Outside the pin's lines a lone CR is left to the tree comparison; NEL, LS and PS
        // are refused anywhere.
        let text = synthetic().replace("variant: flatcar", "variant: flatcar # ok\rx: 1");
        assert_eq!(yaml_check_of(&text), YamlCheck::Agreed);
        for (inserted, code) in [
            ("\u{85}", "U+0085"),
            ("\u{2028}", "U+2028"),
            ("\u{2029}", "U+2029"),
        ] {
            let text = synthetic() + &format!("x: a{inserted}b\n");
            let refused = refusal(&text);
            assert_eq!(
                refused,
                YamlRefusal::UnusualLineBreak {
                    line: 21,
                    code: code.into()
                }
            );
            assert!(refused.to_string().contains("LF or CRLF"), "{refused}");
        }
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
        assert_refused_as_invalid(&text, 21);
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
        let placeholders =
            with_placeholders("a: ${x.y[0]} $${lit} %{ if a }b%{ endif }\n%{ else ~}\n").unwrap();
        assert_eq!(placeholders.placeholder_lines, [1, 2]);
        assert_eq!(
            placeholders.text,
            "a: __x_y_0__ $${lit} _________b__________\n          \n"
        );
    }

    #[test]
    fn expressions_in_comments_are_not_placeholders() {
        let placeholders = with_placeholders(
            "# ${a}\nb: 1 # ${c}\nd: '#${e}' # ${f}\ng: \"it's # ${h}\"\ni: it's # ${j}\nk: x#${l}\n",
        )
        .unwrap();
        assert_eq!(
            placeholders.text,
            "# ${a}\nb: 1 # ${c}\nd: '#__e_' # ${f}\ng: \"it's # __h_\"\ni: it's # ${j}\nk: x#__l_\n"
        );
        assert_eq!(placeholders.placeholder_lines, [3, 4, 6]);
        // A file whose only expressions are in comments is no template: its parse errors
        // are refusals.
        let text = synthetic().replace("${base_url}", "https://x") + "# ${x}\nx: 'unterminated\n";
        assert!(matches!(refusal(&text), YamlRefusal::Invalid { .. }));
    }

    #[test]
    fn only_a_parse_error_on_a_placeholder_line_skips_the_check() {
        // The template's `${base_url}` (line 9) is not what breaks the parse.
        let text = synthetic() + "x: 'unterminated\n";
        assert_refused_as_invalid(&text, 21);
    }

    #[test]
    fn template_expressions_that_could_render_yaml_syntax_are_refused() {
        for (line, expression, why) in [
            ("x: ${\"'\"}\n", "${\"'\"}", "holds a quote"),
            ("x: ${x['}']} y\n", "${x['}']}", "holds a quote"),
            ("x: a${b # c}\n", "${b # c}", "holds a quote, `#`"),
            ("x: ${a || b}\n", "${a || b}", "`|`"),
            ("%{ if a > 1 ~}\n", "%{ if a > 1 ~}", "`>`"),
            ("# ${\"\\n[x]\"}\n", "${\"\\n[x]\"}", "holds a quote"),
            (
                "x: ${join(\",\",\n  xs)}\n",
                "${join(\",\",",
                "more than one line",
            ),
            ("x: ${f(\n  a)}\n", "${f(", "more than one line"),
        ] {
            let text = synthetic().replace("version: 1.1.0\n", &format!("version: 1.1.0\n{line}"));
            let refused = refusal(&text);
            assert!(
                matches!(&refused, YamlRefusal::TemplateExpression { line: 3, shown, why: w }
                    if shown == expression && w.contains(why)),
                "{line}: {refused:?}"
            );
            let message = refused.to_string();
            assert!(
                message.starts_with("line 3 has the template expression"),
                "{message}"
            );
            assert!(
                message.contains("write a literal `${` as `$${`"),
                "{message}"
            );
        }
        // The template's escape is no expression.
        let text = synthetic().replace("version: 1.1.0\n", "version: 1.1.0\nx: $${\"'\"}\n");
        assert_eq!(yaml_check_of(&text), YamlCheck::Agreed);
    }

    /// The Alloy pin of [`synthetic`], in a file that does not parse because of the
    /// template expression on its last line.
    fn unparsable_template() -> String {
        format!(
            "{}systemd:\n  units:\n${{indent(4, yamlencode(units))}}\n",
            synthetic()
        )
    }

    #[test]
    fn pin_constructs_are_refused_when_the_file_does_not_parse() {
        assert!(matches!(
            update(&unparsable_template(), "1.15.0", NEW_HASH)
                .unwrap()
                .yaml_check,
            YamlCheck::NotRun { .. }
        ));
        for (line, wanted) in [
            ("      mode: &m 0644\n", Construct::Anchor),
            ("      - &m 0644\n", Construct::Anchor),
            ("      mode: *m\n", Construct::Alias),
            ("      mode: !!int *m\n", Construct::Alias),
            ("      <<: {mode: 1}\n", Construct::MergeKey),
            ("      \"<<\": x\n", Construct::MergeKey),
            ("      '<<' : x\n", Construct::MergeKey),
            ("      !!merge m: x\n", Construct::MergeKey),
            ("      user: {name: core}\n", Construct::FlowCollection),
            ("      \"user\": [core]\n", Construct::FlowCollection),
            ("      ? [a]\n      : b\n", Construct::FlowCollection),
        ] {
            let text = unparsable_template().replace("      mode: 0644\n", line);
            let refused = refusal(&text);
            assert_eq!(construct(&refused), (wanted, 7), "{line}");
        }
        // A line less indented than the block scalar's content ends it.
        let text = unparsable_template().replace(
            "      mode: 0644\n",
            "      z: |\n          text\n        mode: &m 0644\n",
        );
        assert_eq!(construct(&refusal(&text)), (Construct::Anchor, 9));
        // Within a block scalar, in a comment or inside a quoted or plain scalar, the same
        // characters are text.
        let text = unparsable_template().replace(
            "      mode: 0644\n",
            "      mode: 0644 # &m *m [x]\n      x: a&b *c [d] {e}\n      y: '&m [x]'\n      z: !!str |\n        &m *m\n        [Transfer]\n      w: \"&m\" \n",
        );
        assert!(matches!(yaml_check_of(&text), YamlCheck::NotRun { .. }));
    }

    #[test]
    fn a_comment_and_deep_flow_nesting_do_not_skip_the_check() {
        // A file that is no template, but has an expression in a comment, and nests flow
        // collections deeper than the parser goes, above the pin.
        let deep = format!("x-pad: {}{}\n", "[".repeat(300), "]".repeat(300));
        let base = synthetic().replace("${base_url}", "https://x").replace(
            "version: 1.1.0\n",
            &format!("version: 1.1.0\n# ${{x}}\n{deep}"),
        );
        let refused = refusal(&base);
        assert_eq!(refused, YamlRefusal::TooDeep { line: 4 });
        assert!(
            refused.to_string().contains("Butane files do not"),
            "{refused}"
        );
        for (line, wanted) in [
            ("      mode: &m 0644\n", Construct::Anchor),
            ("      mode: *m\n", Construct::Alias),
            ("      <<: *m\n", Construct::MergeKey),
            ("      user: {name: core}\n", Construct::FlowCollection),
        ] {
            let text = base.replace("      mode: 0644\n", line);
            assert_eq!(construct(&refusal(&text)), (wanted, 9), "{line}");
        }
    }

    /// A pin at the top of the file, where Butane ignores it in a config.
    fn top_level_pin() -> String {
        format!(
            "files:
  - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
    contents:
      source: https://example.com/alloy-1.14.2-amd64.raw
      verification:
        hash: sha256-{OLD_HASH}
links:
  - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
    path: /etc/extensions/alloy.raw
"
        )
    }

    #[test]
    fn a_fragment_may_pin_at_its_top_but_a_config_may_not() {
        let edit = update(&top_level_pin(), "1.15.0", NEW_HASH).unwrap();
        assert_eq!(edit.yaml_check, YamlCheck::Agreed);
        for key in ["variant: flatcar\n", "version: 1.1.0\n", "storage: {}\n"] {
            let text = format!("{key}{}", top_level_pin());
            let refused = refusal(&text);
            assert!(
                matches!(&refused, YamlRefusal::UnexpectedDifference { at, .. }
                    if at == "files[0].path" || at == "links[0].target"),
                "{key}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_decoy_pin_with_the_real_entry_hidden_from_the_line_reader_is_refused() {
        let real = format!(
            "storage:
  files:
    - \"path\": /opt/extensions/alloy/alloy-1.14.2-amd64.raw
      contents:
        source: https://example.com/alloy-1.14.2-amd64.raw
        verification: {{hash: sha256-{NEW_HASH}}}
"
        );
        let text = format!(
            "variant: flatcar\nversion: 1.1.0\n{}{real}",
            top_level_pin()
        );
        let refused = refusal(&text);
        assert_eq!(
            refused,
            YamlRefusal::AnotherAlloyEntry {
                at: "storage.files[0]".into(),
                value: "/opt/extensions/alloy/alloy-1.14.2-amd64.raw".into(),
                line: 14,
            }
        );
        let message = refused.to_string();
        assert!(
            message.starts_with("storage.files[0] (line 14) also names \"/opt/extensions/alloy/"),
            "{message}"
        );
        assert!(
            message.contains("keep a single Alloy files entry"),
            "{message}"
        );
        // The same entry as a flow mapping.
        let flow = format!(
            "variant: flatcar\nversion: 1.1.0\n{}storage:\n  files:\n    - {{path: /opt/extensions/alloy/alloy-1.0.0-amd64.raw}}\n",
            top_level_pin()
        );
        assert!(matches!(
            refusal(&flow),
            YamlRefusal::AnotherAlloyEntry { line: 14, .. }
        ));
    }

    #[test]
    fn another_entry_in_the_pin_directory_or_at_the_link_path_is_refused() {
        for (extra, at, line) in [
            (
                "    - {path: /opt/extensions/alloy/other.raw}\n",
                "storage.files[0]",
                5,
            ),
            (
                "    - \"path\": /opt/images/alloy-1.0.0-amd64.raw\n",
                "storage.files[0]",
                5,
            ),
            (
                "    - {\"path\": /etc/extensions/alloy.raw}\n",
                "storage.files[0]",
                5,
            ),
        ] {
            let text = synthetic().replace("  files:\n", &format!("  files:\n{extra}"));
            let refused = refusal(&text);
            assert!(
                matches!(&refused, YamlRefusal::AnotherAlloyEntry { at: a, line: l, .. } if a == at && *l == line),
                "{extra}: {refused:?}"
            );
        }
        let text = synthetic() + "    - {target: /opt/evil.raw, path: /etc/extensions/alloy.raw}\n";
        let refused = refusal(&text);
        assert!(
            matches!(&refused, YamlRefusal::AnotherAlloyEntry { at, line: 21, value } if at == "storage.links[1]" && value == "/etc/extensions/alloy.raw"),
            "{refused:?}"
        );
        // Other images, the other architecture's image and other files about Alloy are not
        // the pin.
        let text = synthetic().replace(
            "  links:\n",
            "    - path: /etc/sysupdate.alloy.d/alloy.conf\n    - path: /opt/extensions/alloyish/alloyish-1.0.0-amd64.raw\n    - path: /opt/extensions/alloy/alloy-1.14.2-arm64.raw\n  links:\n",
        ) + "    - {target: /opt/other.raw, path: /etc/extensions/other.raw}\n";
        assert_eq!(yaml_check_of(&text), YamlCheck::Agreed);
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
        // Flow nesting is bounded by the parser itself, and refused the same way.
        let flow = format!(
            "{}deep: {}{}\n",
            synthetic(),
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(refusal(&flow), YamlRefusal::TooDeep { line: 21 });
    }
}
