//! The parsers under attack: for each, a generator of inputs (well-formed ones that must
//! keep their invariant, and hostile ones that must only never panic or break it) and the
//! invariant itself. Shared by the property tests (`tests/properties.rs`, a few thousand
//! cases) and the fuzz command (`examples/fuzz_parsers.rs`, a million or more per parser).

// Each user takes only some of the targets; every check takes `&Value` of its generator
// (`&String` for text) so that one runner fits all.
#![allow(dead_code, clippy::ptr_arg)]

use std::cmp::Ordering;
use std::fmt::Write as _;

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::butane::{YamlCheck, find_alloy_pin, update_alloy_pin};
use alloy_sysext_automation::manifest::Manifest;
use alloy_sysext_automation::settings::{ConsumerSettings, Settings};
use alloy_sysext_automation::version::{Version, systemd_version_cmp};
use alloy_sysext_automation::worker::commands::{Command, MAX_COMMANDS_PER_COMMENT, parse_comment};
use alloy_sysext_automation::worker::routing::{Route, RoutingContext, route};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

/// What an invariant says about one input: `Err` explains the violation.
pub type Verdict = Result<(), String>;

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Verdict {
    if condition { Ok(()) } else { Err(message()) }
}

// ---------------------------------------------------------------------------------------
// Commands in comments

/// A comment: its body, and the command a reader sees in it, if any.
#[derive(Debug, Clone)]
pub struct Comment {
    pub body: String,
    pub visible: Option<Version>,
}

fn short_version() -> impl Strategy<Value = Version> {
    (0u32..30, 0u32..30, 0u32..30).prop_map(|(a, b, c)| format!("{a}.{b}.{c}").parse().unwrap())
}

/// Prose that can never be read as a command, fence, quote, indented code or HTML comment.
fn prose() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z][A-Za-z ,.:/!?]{0,30}"]
}

/// A command hidden from readers: in a fence, a quote, indented code or an HTML comment.
fn hidden_command() -> impl Strategy<Value = String> {
    let word = select(vec!["/build", "/rebuild", "/status", "/help", "/BUILD"]);
    (word, short_version(), 0usize..9).prop_map(|(word, version, form)| {
        let line = format!("{word} {version}");
        match form {
            0 => format!("> {line}"),
            1 => format!("  >> {line}"),
            2 => format!("    {line}"),
            3 => format!("\t{line}"),
            4 => format!("```\n{line}\n```"),
            5 => format!("~~~~ sh\n{line}\n~~~\n~~~~"),
            6 => format!("<!-- {line} -->"),
            7 => format!("<!--\n{line}\n-->"),
            _ => format!("````\n```\n{line}\n````"),
        }
    })
}

/// Comments made of prose and hidden commands, with at most one visible `/build`.
pub fn comments() -> impl Strategy<Value = Comment> {
    let part = prop_oneof![3 => prose(), 2 => hidden_command()];
    (
        vec(part, 0..12),
        proptest::option::of((short_version(), any::<prop::sample::Index>(), 0usize..4)),
        any::<bool>(),
    )
        .prop_map(|(mut parts, visible, crlf)| {
            let version = visible.map(|(version, at, indent)| {
                let line = format!("{}/build {version}", " ".repeat(indent));
                parts.insert(at.index(parts.len() + 1), line);
                version
            });
            let ending = if crlf { "\r\n" } else { "\n" };
            Comment {
                body: parts.join("\n").replace('\n', ending),
                visible: version,
            }
        })
}

pub fn check_comment(comment: &Comment) -> Verdict {
    let found = parse_comment(&comment.body);
    let expected: Vec<_> = comment
        .visible
        .iter()
        .cloned()
        .map(|v| Ok(Command::Build(v)))
        .collect();
    ensure(found == expected, || {
        format!("expected {expected:?}, found {found:?}")
    })
}

/// Anything, with a bias towards the characters and words the parser reads.
pub fn comment_noise() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        select(vec![
            "/build", "/rebuild", "/status", "/help", " 1.2.3", " v1.17.1", " 1.2", " x", "```",
            "~~~", ">", "    ", "\t", "<!--", "-->", "\n", "\r\n", "\r", " ", "`", "-", "é",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

pub fn check_comment_noise(body: &String) -> Verdict {
    let found = parse_comment(body);
    ensure(found.len() <= MAX_COMMANDS_PER_COMMENT, || {
        format!("{} results", found.len())
    })?;
    for (i, a) in found.iter().enumerate() {
        ensure(!found[..i].contains(a), || format!("{a:?} returned twice"))?;
        if let Err(error) = a {
            let message = error.to_string();
            ensure(
                !message.contains('\n') && message.matches('`').count() % 2 == 0,
                || format!("unsafe reply {message:?}"),
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Versions

/// Two versions as numbers, and a string that may or may not be one.
pub type VersionCase = ((u32, u32, u32), (u32, u32, u32), String);

fn component() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..12, 0u32..=999_999_999]
}

pub fn versions() -> impl Strategy<Value = VersionCase> {
    let parts = || (component(), component(), component());
    let text = prop_oneof![
        "v?[0-9]{0,10}(\\.[0-9]{0,10}){0,3}(-rc\\.?[0-9])?",
        "[v0-9.~^a-z+-]{0,16}",
        any::<String>()
    ];
    (parts(), parts(), text)
}

pub fn check_versions(case: &VersionCase) -> Verdict {
    let (a, b, text) = case;
    let show = |(x, y, z): (u32, u32, u32)| format!("{x}.{y}.{z}");
    let (a_text, b_text) = (show(*a), show(*b));
    let va: Version = a_text.parse().map_err(|e| format!("{a_text}: {e}"))?;
    let vb: Version = b_text.parse().map_err(|e| format!("{b_text}: {e}"))?;
    // parse ∘ display is the identity, with or without the tag's `v`.
    ensure(va.to_string() == a_text, || {
        format!("{a_text} displays as {va}")
    })?;
    ensure(
        format!("v{a_text}").parse::<Version>() == Ok(va.clone()),
        || format!("v{a_text} is not {a_text}"),
    )?;
    // Ordering is systemd's, which for X.Y.Z is the numbers'.
    ensure(va.cmp(&vb) == a.cmp(b), || {
        format!("{a_text} vs {b_text}: {:?}", va.cmp(&vb))
    })?;
    ensure(va.cmp(&vb) == systemd_version_cmp(&a_text, &b_text), || {
        format!("{a_text} vs {b_text} disagrees with systemd_version_cmp")
    })?;
    ensure(vb.cmp(&va) == va.cmp(&vb).reverse(), || {
        format!("{a_text} vs {b_text} is not antisymmetric")
    })?;
    // Any string: refused, or a canonical version that reads back as itself.
    if let Ok(v) = text.parse::<Version>() {
        let bare = text.strip_prefix('v').unwrap_or(text);
        ensure(v.as_str() == bare, || format!("{text:?} parsed as {v}"))?;
        let numbers: Vec<&str> = bare.split('.').collect();
        ensure(
            numbers.len() == 3
                && numbers
                    .iter()
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            || format!("{text:?} accepted"),
        )?;
        ensure(v.to_string().parse::<Version>() == Ok(v.clone()), || {
            format!("{v} does not read back")
        })?;
        let ordering = v.cmp(&va);
        ensure(ordering == systemd_version_cmp(v.as_str(), &a_text), || {
            format!("{v} vs {a_text}")
        })?;
        ensure((ordering == Ordering::Equal) == (v == va), || {
            format!("{v} vs {a_text}: order and equality disagree")
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The Butane editor

const HASHES: [&str; 3] = [
    "268db7a95a807cfb1c9544fce8a0845db8d7b74354c9ab0e5a1959e4093b7fa7",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// A generated consumer file, where its pin is, and the update asked of it.
#[derive(Debug, Clone)]
pub struct ButaneCase {
    pub text: String,
    pub old: (Version, String),
    pub new: (Version, String),
    /// 1-based.
    pub path_line: usize,
    pub source_line: usize,
    pub hash_line: usize,
    pub target_lines: Vec<usize>,
}

/// Content around the pin: other entries (with decoys in block scalars), comments,
/// template directives.
#[derive(Debug, Clone)]
enum Filler {
    OtherFile(u8),
    ScriptWithDecoys,
    Comment,
    Directive,
    Blank,
}

fn filler() -> impl Strategy<Value = Filler> {
    prop_oneof![
        (0u8..4).prop_map(Filler::OtherFile),
        Just(Filler::ScriptWithDecoys),
        Just(Filler::Comment),
        Just(Filler::Directive),
        Just(Filler::Blank),
    ]
}

/// Lines of a file, counting as they are added.
struct Lines(Vec<String>);

impl Lines {
    /// Adds `text` (one or more lines, without the final newline); returns the 1-based
    /// number of its first line.
    fn add(&mut self, text: impl AsRef<str>) -> usize {
        let at = self.0.len() + 1;
        self.0.extend(text.as_ref().split('\n').map(str::to_owned));
        at
    }
}

fn write_filler(lines: &mut Lines, filler: &Filler, dash: &str, key: &str, old_file: &str) {
    match filler {
        Filler::OtherFile(n) => {
            lines.add(format!(
                "{dash}- path: /opt/extensions/other{n}/other{n}-1.0.{n}-amd64.raw\n{key}mode: 0644\n\
                 {key}contents:\n{key}  source: https://example.com/other{n}-1.0.{n}-amd64.raw\n\
                 {key}  verification:\n{key}    hash: sha256-{}",
                HASHES[*n as usize % 3]
            ));
        }
        Filler::ScriptWithDecoys => {
            lines.add(format!(
                "{dash}- path: /opt/bin/fetch.sh\n{key}contents:\n{key}  inline: |\n\
                 {key}    - path: /opt/extensions/alloy/{old_file}\n\
                 {key}    target: /opt/extensions/alloy/{old_file}\n\
                 {key}    hash: sha256-{}\n\
                 {key}    curl -s https://x/{old_file} # ${{url}}",
                HASHES[2]
            ));
        }
        Filler::Comment => {
            lines.add(format!("{key}# {old_file} and alloy-{{VERSION}}-amd64.raw"));
        }
        Filler::Directive => {
            lines.add("%{ if with_extras ~}");
        }
        Filler::Blank => {
            lines.add("");
        }
    }
}

pub fn butane_files() -> impl Strategy<Value = ButaneCase> {
    (
        (short_version(), 0usize..3),
        (short_version(), 0usize..3, any::<bool>()),
        (vec(filler(), 0..4), vec(filler(), 0..4)),
        (any::<bool>(), 0usize..3, 0usize..3),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (old_version, old_hash),
                (new_version, new_hash, upper),
                (before, after),
                (compact, source_style, links),
                (crlf, final_newline, extra_keys),
            )| {
                let old_file = format!("alloy-{old_version}-amd64.raw");
                let (dash, key) = if compact { ("  ", "    ") } else { ("    ", "      ") };
                let old_hash_text = if upper {
                    HASHES[old_hash].to_ascii_uppercase()
                } else {
                    HASHES[old_hash].to_owned()
                };
                let mut lines = Lines(Vec::new());
                lines.add("variant: flatcar\nversion: 1.1.0\nstorage:\n  files:");
                for f in &before {
                    write_filler(&mut lines, f, dash, key, &old_file);
                }
                let path_line = lines.add(format!("{dash}- path: /opt/extensions/alloy/{old_file}"));
                if extra_keys {
                    lines.add(format!("{key}mode: 0644\n{key}# pinned: {old_file}\n{key}user:\n{key}  name: root"));
                }
                let source = match source_style {
                    0 => format!("https://images.example.com/{old_file}"),
                    1 => format!("${{base_url}}/{old_file}"),
                    _ => format!("\"https://images.example.com/{old_file}\""),
                };
                lines.add(format!("{key}contents:"));
                let source_line = lines.add(format!("{key}  source: {source}"));
                lines.add(format!("{key}  verification:"));
                let hash_line = lines.add(format!("{key}    hash: sha256-{old_hash_text}"));
                for f in &after {
                    write_filler(&mut lines, f, dash, key, &old_file);
                }
                let mut target_lines = Vec::new();
                if links > 0 {
                    lines.add("  links:");
                    for n in 0..links {
                        target_lines.push(lines.add(format!(
                            "{dash}- target: /opt/extensions/alloy/{old_file}\n{key}path: /etc/extensions/alloy{n}.raw"
                        )));
                    }
                    lines.add(format!("{dash}- target: /opt/other.raw\n{key}path: /etc/extensions/other.raw"));
                }
                let ending = if crlf { "\r\n" } else { "\n" };
                let mut text = lines.0.join(ending);
                if final_newline {
                    text.push_str(ending);
                }
                ButaneCase {
                    text,
                    old: (old_version, HASHES[old_hash].to_owned()),
                    new: (new_version, HASHES[new_hash].to_owned()),
                    path_line,
                    source_line,
                    hash_line,
                    target_lines,
                }
            },
        )
}

/// The 1-based numbers of the lines that differ; `None` when the line count changed.
fn differing_lines(before: &str, after: &str) -> Option<Vec<usize>> {
    let a: Vec<&str> = before.split('\n').collect();
    let b: Vec<&str> = after.split('\n').collect();
    (a.len() == b.len()).then(|| {
        (0..a.len())
            .filter(|&i| a[i] != b[i])
            .map(|i| i + 1)
            .collect()
    })
}

pub fn check_butane(case: &ButaneCase) -> Verdict {
    let (version, hash) = &case.new;
    let edit = update_alloy_pin(&case.text, "alloy", Arch::Amd64, version, hash)
        .map_err(|e| format!("refused: {e}"))?;
    let mut expected = Vec::new();
    if case.old.0 != *version {
        expected.extend([case.path_line, case.source_line]);
        expected.extend(&case.target_lines);
    }
    if case.old.1 != *hash {
        expected.push(case.hash_line);
    }
    expected.sort_unstable();
    ensure(edit.changed_lines == expected, || {
        format!("changed {:?}, expected {expected:?}", edit.changed_lines)
    })?;
    ensure(
        differing_lines(&case.text, &edit.text) == Some(expected.clone()),
        || "the text changed elsewhere than the reported lines".into(),
    )?;
    let wanted = if expected.is_empty() {
        YamlCheck::NothingChanged
    } else {
        YamlCheck::Agreed
    };
    ensure(edit.yaml_check == wanted, || {
        format!("YAML check: {:?}", edit.yaml_check)
    })?;
    let pin = find_alloy_pin(&edit.text, "alloy", Arch::Amd64).map_err(|e| e.to_string())?;
    ensure(pin.version == *version && pin.sha256 == *hash, || {
        format!("reads back as {pin:?}")
    })
}

/// A generated file with something hostile put in it: the edit must be refused, or change
/// only the lines it reports and read back as the new pin.
pub fn hostile_butane_files() -> impl Strategy<Value = (ButaneCase, usize, String)> {
    let hostile = prop_oneof![
        select(REFUSED_IN_THE_PIN.to_vec()).prop_map(str::to_owned),
        select(vec![
            "      mode: &m 0644",
            "      mode: *m",
            "      <<: {a: 1}",
            "      <<: *m",
            "      user: {name: core}",
            "      append: []",
            "      x: 1\r      y: 2",
            "      x: 1\u{85}      y: 2",
            "      x: 1\u{2028}y: 2",
            "      x: 1\u{2029}y: 2",
            "files:",
            "    - \"path\": /opt/extensions/alloy/alloy-0.0.1-amd64.raw",
            "    - {path: /opt/extensions/alloy/alloy-0.0.1-amd64.raw}",
            "    - {target: /opt/x.raw, path: /etc/extensions/alloy.raw}",
            "  files: &f",
            "x-copy: *f",
            "# ${x}",
            "x: ${\"'\"}",
            "x: ${a #",
            "      x: ${f(",
            "---",
            "...",
            "      contents:",
            "        source: https://x/alloy-1.0.0-amd64.raw",
            "          hash: sha256-0000000000000000000000000000000000000000000000000000000000000000",
            "    - target: /opt/extensions/alloy/alloy-0.0.1-amd64.raw",
            "      inline: !!str |",
            "      inline: >-",
            "%{ for x in xs ~}",
            "${indent(4, yamlencode(units))}",
            "\t- path: /x",
            "  '",
            "  \"",
            "#",
        ])
        .prop_map(str::to_owned),
        "[ -~\u{85}\u{2028}\r\t]{0,30}",
        (250usize..300).prop_map(|depth| format!("x-pad: {}{}", "[".repeat(depth), "]".repeat(depth))),
    ];
    (butane_files(), any::<prop::sample::Index>(), hostile).prop_map(|(case, at, hostile)| {
        let count = case.text.split('\n').count();
        (case, at.index(count + 1), hostile)
    })
}

/// Lines that must be refused wherever they stand between the pin's first and last line,
/// whether or not the file parses.
const REFUSED_IN_THE_PIN: [&str; 10] = [
    "      mode: &m 0644",
    "      mode: *m",
    "      <<: x",
    "      \"<<\": x",
    "      !!merge m: x",
    "      user: {name: core}",
    "      append: []",
    "      x: 1\r      y: 2",
    "      x: 1\u{85}      y: 2",
    "      x: 1\u{2028}y: 2",
];

pub fn check_hostile_butane(input: &(ButaneCase, usize, String)) -> Verdict {
    let (case, at, hostile) = input;
    let mut lines: Vec<&str> = case.text.split('\n').collect();
    let at = (*at).min(lines.len());
    lines.insert(at, hostile);
    let text = lines.join("\n");
    let (version, hash) = &case.new;
    // The inserted line is line `at + 1`; strictly after the path line and no later than the
    // last line of the pin, it is between the pin's lines.
    let last = case
        .target_lines
        .iter()
        .copied()
        .chain([case.hash_line])
        .max();
    let in_the_pin = at + 1 > case.path_line && last.is_some_and(|last| at < last);
    let result = update_alloy_pin(&text, "alloy", Arch::Amd64, version, hash);
    if in_the_pin && REFUSED_IN_THE_PIN.contains(&hostile.as_str()) {
        return ensure(result.as_ref().map_or(true, |edit| !edit.changed), || {
            format!("{hostile:?} in the pin was not refused: {result:?}")
        });
    }
    let Ok(edit) = result else {
        return Ok(());
    };
    let differing = differing_lines(&text, &edit.text)
        .ok_or_else(|| "the edit changed the number of lines".to_string())?;
    ensure(differing == edit.changed_lines, || {
        format!("changed {differing:?}, reported {:?}", edit.changed_lines)
    })?;
    if edit.changed {
        let pin = find_alloy_pin(&edit.text, "alloy", Arch::Amd64).map_err(|e| e.to_string())?;
        ensure(pin.version == *version && pin.sha256 == *hash, || {
            format!("reads back as {pin:?}")
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SHA256SUMS manifests

/// Entries as (version, arch, image, hash index); the file names may repeat.
pub type ManifestCase = Vec<((u32, u32, u32), bool, bool, usize)>;

pub fn manifests() -> impl Strategy<Value = ManifestCase> {
    vec(
        (
            (0u32..4, 0u32..25, 0u32..12),
            any::<bool>(),
            any::<bool>(),
            0usize..3,
        ),
        0..20,
    )
}

pub fn check_manifest(case: &ManifestCase) -> Verdict {
    let mut entries: Vec<(String, String)> = Vec::new();
    for ((a, b, c), arm, other, hash) in case {
        let arch = if *arm { "arm64" } else { "amd64" };
        let image = if *other { "other" } else { "alloy" };
        let file = format!("{image}-{a}.{b}.{c}-{arch}.raw");
        if !entries.iter().any(|(f, _)| *f == file) {
            entries.push((file, HASHES[*hash].to_owned()));
        }
    }
    let shuffled: String = entries
        .iter()
        .map(|(file, hash)| format!("{hash} *{file}\r\n"))
        .collect();
    entries.sort_by(|a, b| systemd_version_cmp(&a.0, &b.0));
    let canonical: String = entries
        .iter()
        .map(|(file, hash)| format!("{hash}  {file}\n"))
        .collect();
    // print ∘ parse is the identity on a canonical manifest…
    let parsed = Manifest::parse(&canonical).map_err(|e| e.to_string())?;
    ensure(parsed.render() == canonical, || {
        format!("{canonical:?} renders as {:?}", parsed.render())
    })?;
    // …and parse ∘ print on any manifest.
    ensure(
        Manifest::parse(&parsed.render()).as_ref() == Ok(&parsed),
        || "parse ∘ print is not the identity".into(),
    )?;
    // Any order, `*` and CRLF read as the same manifest, in systemd's order.
    let reordered = Manifest::parse(&shuffled).map_err(|e| e.to_string())?;
    ensure(reordered == parsed, || {
        "order or spelling changed the manifest".into()
    })?;
    for pair in parsed.entries().windows(2) {
        ensure(
            systemd_version_cmp(&pair[0].file, &pair[1].file) == Ordering::Less,
            || format!("{} before {}", pair[0].file, pair[1].file),
        )?;
    }
    // A repeated file is refused.
    if let Some((file, hash)) = entries.first() {
        let doubled = format!("{canonical}{hash}  {file}\n");
        ensure(Manifest::parse(&doubled).is_err(), || {
            format!("{file} twice accepted")
        })?;
    }
    Ok(())
}

pub fn manifest_noise() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        (
            0usize..3,
            "[a-z0-9.*_-]{0,24}",
            select(vec!["  ", " *", " ", "\t", ""])
        )
            .prop_map(|(h, file, sep)| format!("{}{sep}{file}", HASHES[h])),
        "[0-9a-fA-F]{60,66}[ *]{0,3}[ -~\u{85}\u{2028}é]{0,20}",
        any::<String>(),
    ];
    (vec(line, 0..8), select(vec!["\n", "\r\n", "\r"]))
        .prop_map(|(lines, ending)| lines.join(ending))
}

pub fn check_manifest_noise(text: &String) -> Verdict {
    let Ok(manifest) = Manifest::parse(text) else {
        return Ok(());
    };
    let printed = manifest.render();
    ensure(Manifest::parse(&printed).as_ref() == Ok(&manifest), || {
        format!("{text:?} accepted but does not read back")
    })?;
    for entry in manifest.entries() {
        ensure(
            entry.sha256.len() == 64
                && !entry.file.is_empty()
                && !entry.file.contains(['/', '\\'])
                && !entry
                    .file
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control()),
            || format!("{entry:?} accepted"),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Consumer settings in TOML

/// `[[consumers]]` tables with values that may be hostile.
pub type ConsumersCase = Vec<(String, String, String, Vec<String>)>;

fn hostile_value(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(valid.to_owned()),
        2 => select(vec![
            "", ".", "..", "../etc/passwd", "/etc/passwd", "a/../b", "a/./b", "a//b", "a\\b",
            "a/b/", "x.bu?y", "x#y", "owner/name", "owner", "o/n/x", "-", "main..x", "@{u}",
            "a\u{0}b", "é", "a b", "a\nb", "\"", "'", "${x}", "HEAD", "refs/heads/main",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

pub fn consumer_tables() -> impl Strategy<Value = ConsumersCase> {
    vec(
        (
            hostile_value("owner/repo"),
            hostile_value("flatcar/ghost.bu.tftpl"),
            hostile_value("main"),
            vec(hostile_value("octocat"), 0..3),
        ),
        0..4,
    )
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn consumers_toml(case: &ConsumersCase) -> String {
    let mut text = String::new();
    for (repo, path, base, assignees) in case {
        let assignees: Vec<String> = assignees.iter().map(|a| toml_string(a)).collect();
        let _ = write!(
            text,
            "[[consumers]]\nrepo = {}\npath = {}\nbase = {}\nassignees = [{}]\n",
            toml_string(repo),
            toml_string(path),
            toml_string(base),
            assignees.join(", ")
        );
    }
    text
}

/// What every accepted consumer must be, whatever the file said.
fn consumer_is_safe(repo: &str, path: &str, base: &str) -> bool {
    let repo_ok = matches!(repo.split_once('/'), Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/'))
        && !repo.split('/').any(|p| p == "." || p == "..");
    let path_ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    let base_ok = !base.is_empty()
        && !base.starts_with('/')
        && !base.contains("..")
        // Git's rules: no ASCII space or control character; other characters, a
        // non-breaking space included, are bytes git accepts.
        && !base.chars().any(|c| c == ' ' || c.is_control());
    repo_ok && path_ok && base_ok
}

/// Every consumer `settings` accepted is a safe one.
fn all_consumers_safe(settings: &Settings) -> Verdict {
    for consumer in &settings.consumers {
        ensure(
            consumer_is_safe(&consumer.repo, &consumer.path, &consumer.base),
            || format!("accepted {consumer:?}"),
        )?;
    }
    Ok(())
}

pub fn check_consumers(case: &ConsumersCase) -> Verdict {
    let text = consumers_toml(case);
    match Settings::parse(&text) {
        Ok(settings) => {
            // Without a consumers table the defaults stay.
            ensure(
                case.is_empty() || settings.consumers.len() == case.len(),
                || {
                    format!(
                        "{} consumers read from {}",
                        settings.consumers.len(),
                        case.len()
                    )
                },
            )?;
            all_consumers_safe(&settings)
        }
        Err(message) => ensure(message.contains("consumers"), || {
            format!("refusal does not name the key: {message}")
        }),
    }
}

/// Enrollment files (`.github/alloy-sysext.toml`, written by whoever owns a repository):
/// `path`, `base` and `assignees` with values that may be hostile, sometimes with a key
/// the file may not hold.
pub fn enrollment_files() -> impl Strategy<Value = String> {
    (
        hostile_value("flatcar/ghost.bu.tftpl"),
        hostile_value("main"),
        vec(hostile_value("octocat"), 0..3),
        select(vec![
            "",
            "repo = \"other/repo\"\n",
            "labels = []\n",
            "path = \"x\"\n",
        ]),
    )
        .prop_map(|(path, base, assignees, extra)| {
            let assignees: Vec<String> = assignees.iter().map(|a| toml_string(a)).collect();
            format!(
                "path = {}\nbase = {}\nassignees = [{}]\n{extra}",
                toml_string(&path),
                toml_string(&base),
                assignees.join(", ")
            )
        })
}

/// An accepted enrollment is a safe consumer of the repository the file is in, and nothing
/// else; a refusal names the key at fault.
pub fn check_enrollment(text: &String) -> Verdict {
    const REPO: &str = "acme/fleet";
    match ConsumerSettings::from_enrollment(REPO, text.as_bytes()) {
        Ok(consumer) => {
            ensure(consumer.repo == REPO, || {
                format!("{text:?} moved to {consumer:?}")
            })?;
            ensure(
                consumer_is_safe(&consumer.repo, &consumer.path, &consumer.base),
                || format!("{text:?} accepted as {consumer:?}"),
            )
        }
        Err(message) => ensure(
            ["path", "base", "assignees", "repo", "labels"]
                .iter()
                .any(|key| message.contains(key)),
            || format!("{text:?}: the refusal names no key: {message}"),
        ),
    }
}

pub fn settings_noise() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        select(vec![
            "[[consumers]]\n",
            "repo = ",
            "path = ",
            "base = ",
            "assignees = [",
            "]",
            "\"",
            "'''",
            "\n",
            "[image]\n",
            "arches = [\"amd64\"]\n",
            "compression_level = 99\n",
            "[schedule]\n",
            "check_upstream = \"@every 1s\"\n",
            "name = \"x\"\n",
            "=",
            "#",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    vec(piece, 0..30).prop_map(|pieces| pieces.concat())
}

pub fn check_settings_noise(text: &String) -> Verdict {
    match Settings::parse(text) {
        Ok(settings) => all_consumers_safe(&settings),
        Err(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Event routing

const BUILD_REPO: &str = "grafana-sysext/alloy-sysext";

const EVENTS: [&str; 11] = [
    "issue_comment",
    "release",
    "repository_dispatch",
    "workflow_dispatch",
    "workflow_run",
    "installation",
    "installation_repositories",
    "ping",
    "push",
    "",
    "issue_comment\n",
];

const KEYS: [&str; 28] = [
    "action",
    "repository",
    "full_name",
    "installation",
    "id",
    "account",
    "login",
    "sender",
    "release",
    "tag_name",
    "author",
    "draft",
    "prerelease",
    "client_payload",
    "version",
    "inputs",
    "comment",
    "user",
    "type",
    "body",
    "issue",
    "number",
    "repositories",
    "repositories_added",
    "workflow_run",
    "name",
    "head_branch",
    "conclusion",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        select(vec![
            "created",
            "published",
            "completed",
            "deleted",
            "suspend",
            "alloy-sysext-build",
            BUILD_REPO,
            "GRAFANA-SYSEXT/ALLOY-SYSEXT",
            "someone/else",
            "v1.17.1",
            "1.17.1",
            "1.10.0-rc.1",
            "Bot",
            "User",
            "app[bot]",
            "/build 1.2.3",
            "",
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((select(KEYS.to_vec()), inner), 0..6).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

pub type DeliveryCase = (String, String, Value);

pub fn deliveries() -> impl Strategy<Value = DeliveryCase> {
    let event =
        prop_oneof![3 => select(EVENTS.to_vec()).prop_map(str::to_owned), 1 => any::<String>()];
    (event, "[a-f0-9-]{0,36}", json_value())
}

pub fn check_delivery(case: &DeliveryCase) -> Verdict {
    let (event, delivery, payload) = case;
    let context = RoutingContext {
        build_repo: BUILD_REPO,
        app_login: Some("app[bot]"),
    };
    let routed = route(event, delivery, payload, &context);
    ensure(routed == route(event, delivery, payload, &context), || {
        "routing is not deterministic".into()
    })?;
    let repository = payload
        .pointer("/repository/full_name")
        .and_then(Value::as_str);
    match &routed {
        Route::Build(_) => ensure(
            repository.is_some_and(|r| r.eq_ignore_ascii_case(BUILD_REPO)),
            || format!("a build from {repository:?}"),
        ),
        Route::Comment(comment) => ensure(
            payload.pointer("/comment/body").and_then(Value::as_str) == Some(comment.body.as_str())
                && !comment.user.ends_with("[bot]"),
            || format!("comment {comment:?}"),
        ),
        _ => Ok(()),
    }
}
