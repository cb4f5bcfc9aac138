//! Finding the commands in a comment body: which lines are the author's own words, and
//! what each command line asks for.

use std::borrow::Cow;

use super::Command;
use crate::version::Version;

/// The most results one comment yields; the rest of the comment is not read.
pub const MAX_COMMANDS_PER_COMMENT: usize = 10;

/// The longest piece of user text quoted back in an error message, in characters.
const SHOWN_MAX_CHARS: usize = 64;

/// A line that starts with a command word but is not a valid command.
///
/// The `Display` text is meant for a reply to the comment's author: it names the command,
/// says what form it takes, and quotes the offending text inside backticks. The quoted text
/// is held already made safe for that: backticks and control characters removed (so it cannot
/// end the code span and inject Markdown or mentions), at most 64 characters, the last one
/// `…` when it was cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `/build` or `/rebuild` without a version.
    #[error(
        "`/{command}` takes one version like `1.17.1` (X.Y.Z), for example `/{command} 1.17.1`."
    )]
    MissingVersion {
        /// The command word, without its slash (as [`Command::name`]).
        command: &'static str,
    },
    /// `/build` or `/rebuild` with an argument that is not a version.
    #[error(
        "`/{command}` takes one version like `1.17.1` (X.Y.Z), for example `/{command} 1.17.1`; \
         `{given}` is not one: {reason}."
    )]
    BadVersion {
        /// The command word, without its slash (as [`Command::name`]).
        command: &'static str,
        /// The argument, made safe to quote (see the type's documentation).
        given: String,
        /// Why it is not a version; never contains the argument itself.
        reason: String,
    },
    /// `--dry-run` before the version of `/build` or `/rebuild`, or in place of it.
    #[error(
        "`--dry-run` goes after the version: `/{command} X.Y.Z --dry-run`, for example \
         `/{command} 1.17.1 --dry-run`."
    )]
    MisplacedDryRun {
        /// The command word, without its slash (as [`Command::name`]).
        command: &'static str,
    },
    /// `--dry-run` after `/status` or `/help`, which have none.
    #[error(
        "`/{command}` has no dry run: `--dry-run` goes after the version of `/build` or \
         `/rebuild`, for example `/build 1.17.1 --dry-run`."
    )]
    NoDryRun {
        /// The command word, without its slash (as [`Command::name`]).
        command: &'static str,
    },
    /// A `/withdraw` whose reason is longer than [`MAX_REASON_CHARS`].
    #[error(
        "`/withdraw X.Y.Z` takes a reason of at most {MAX_REASON_CHARS} characters after the \
         version; say more in the comment's other lines."
    )]
    ReasonTooLong,
    /// Text after the version of `/build` or `/rebuild` (and its `--dry-run`), or after
    /// `/status` or `/help`.
    #[error("{}", extra_arguments_message(command, extra))]
    ExtraArguments {
        /// The command word, without its slash (as [`Command::name`]).
        command: &'static str,
        /// The text that should not be there, made safe to quote (see the type's
        /// documentation).
        extra: String,
    },
}

fn extra_arguments_message(command: &str, extra: &str) -> String {
    if takes_version(command) {
        format!(
            "`/{command}` takes exactly one version like `1.17.1` (X.Y.Z), for example \
             `/{command} 1.17.1`; remove `{extra}`."
        )
    } else {
        format!("`/{command}` takes no arguments; remove `{extra}`.")
    }
}

/// The command words, as [`Command::name`] spells them.
pub(super) const COMMAND_WORDS: [&str; 6] =
    ["build", "rebuild", "withdraw", "promote", "status", "help"];

fn takes_version(command: &str) -> bool {
    matches!(command, "build" | "rebuild" | "withdraw" | "promote")
}

/// The longest reason a `/withdraw` may give, in characters.
pub const MAX_REASON_CHARS: usize = 300;

/// Finds the commands in a comment body, in order, each at most once, and at most
/// [`MAX_COMMANDS_PER_COMMENT`] of them.
///
/// A line counts when, after at most three spaces, it starts with `/build`, `/rebuild`,
/// `/status` or `/help` (any case) followed by whitespace or the end of the line. `/build`
/// and `/rebuild` take a version, then optionally `--dry-run`. Other
/// `/words` are left alone: they belong to other bots. Lines in fenced code blocks (```` ``` ````
/// or `~~~`, to a closing fence of the same character at least as long, or to the end of the
/// comment), indented code (four spaces or a tab), block quotes (first non-space character
/// `>`) and everything between `<!--` and `-->` are skipped. What is left of a line once an
/// HTML comment is cut out of it is read like any other line.
///
/// A malformed command (missing or bad version, extra words) gives an `Err` to reply with.
/// Identical results are returned once. Any input is safe: this never panics and takes time
/// linear in the length of the comment.
pub fn parse_comment(body: &str) -> Vec<Result<Command, CommandError>> {
    let mut results: Vec<Result<Command, CommandError>> = Vec::new();
    let mut open_fence: Option<Fence> = None;
    let mut in_html_comment = false;

    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);

        if let Some(fence) = open_fence {
            if fence.is_closed_by(line) {
                open_fence = None;
            }
            continue;
        }

        let visible = strip_html_comments(line, &mut in_html_comment);
        let Some(text) = unindented(&visible) else {
            continue; // indented code
        };
        if text.starts_with('>') {
            continue; // block quote
        }
        if let Some(fence) = Fence::opened_by(text) {
            open_fence = Some(fence);
            continue;
        }
        let Some(result) = parse_line(text) else {
            continue;
        };
        if !results.contains(&result) {
            results.push(result);
            if results.len() == MAX_COMMANDS_PER_COMMENT {
                break;
            }
        }
    }
    results
}

/// The line without its indentation, or `None` when the indentation makes it indented code:
/// four or more spaces, or a tab (which reaches the next multiple of four columns).
fn unindented(line: &str) -> Option<&str> {
    let text = line.trim_start_matches(' ');
    let spaces = line.len() - text.len();
    (spaces <= 3 && !text.starts_with('\t')).then_some(text)
}

/// The line with the parts inside HTML comments removed. `in_comment` says whether the line
/// starts inside a comment, and is left saying whether the next one does.
fn strip_html_comments<'a>(line: &'a str, in_comment: &mut bool) -> Cow<'a, str> {
    if !*in_comment && !line.contains("<!--") {
        return Cow::Borrowed(line);
    }
    let mut visible = String::new();
    let mut rest = line;
    loop {
        if *in_comment {
            match rest.find("-->") {
                Some(end) => {
                    rest = &rest[end + "-->".len()..];
                    *in_comment = false;
                }
                None => break,
            }
        } else {
            match rest.find("<!--") {
                Some(start) => {
                    visible.push_str(&rest[..start]);
                    rest = &rest[start + "<!--".len()..];
                    *in_comment = true;
                }
                None => {
                    visible.push_str(rest);
                    break;
                }
            }
        }
    }
    Cow::Owned(visible)
}

/// An open fenced code block: its fence character and length.
#[derive(Debug, Clone, Copy)]
struct Fence {
    marker: char,
    len: usize,
}

impl Fence {
    /// The fence `text` (a line without its indentation) opens, if it opens one.
    fn opened_by(text: &str) -> Option<Fence> {
        let marker = text.chars().next().filter(|c| matches!(c, '`' | '~'))?;
        let len = text.len() - text.trim_start_matches(marker).len();
        let info = &text[len..];
        // A backtick in the info string makes the line inline code (```` ```x``` ````), not a
        // fence, as in CommonMark.
        (len >= 3 && !(marker == '`' && info.contains('`'))).then_some(Fence { marker, len })
    }

    /// Whether `line` closes this fence: at most three spaces, then at least as many of the
    /// same character, then nothing but spaces and tabs.
    fn is_closed_by(self, line: &str) -> bool {
        let Some(text) = unindented(line) else {
            return false;
        };
        let after = text.trim_start_matches(self.marker);
        let len = text.len() - after.len();
        len >= self.len && after.trim_matches([' ', '\t']).is_empty()
    }
}

/// The command `text` (a line without its indentation) holds, if any.
fn parse_line(text: &str) -> Option<Result<Command, CommandError>> {
    let after_slash = text.strip_prefix('/')?;
    let (word, arguments) = after_slash
        .split_once(char::is_whitespace)
        .unwrap_or((after_slash, ""));
    let command = COMMAND_WORDS
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(word))?;
    let arguments = arguments.trim();
    let first_word = arguments.split(char::is_whitespace).next().unwrap_or("");

    if !takes_version(command) {
        if is_dry_run_flag(first_word) {
            return Some(Err(CommandError::NoDryRun { command }));
        }
        if !arguments.is_empty() {
            return Some(Err(CommandError::ExtraArguments {
                command,
                extra: shown(arguments),
            }));
        }
        return Some(Ok(if command == "status" {
            Command::Status
        } else {
            Command::Help
        }));
    }

    if arguments.is_empty() {
        return Some(Err(CommandError::MissingVersion { command }));
    }
    if is_dry_run_flag(first_word) {
        return Some(Err(CommandError::MisplacedDryRun { command }));
    }
    let (given, extra) = arguments
        .split_once(char::is_whitespace)
        .map_or((arguments, ""), |(given, extra)| {
            (given, extra.trim_start())
        });
    if command == "withdraw" && !is_dry_run_flag(first_word) {
        return Some(withdraw(given, extra));
    }
    if command == "promote" {
        return Some(promote(given, extra));
    }
    // The version is checked before the extra words, so that `/build 1.0.0;rm -rf` is
    // answered with what is wrong with `1.0.0;rm` rather than with the `-rf`.
    let version = match given.parse::<Version>() {
        Ok(version) => version,
        Err(error) => {
            return Some(Err(CommandError::BadVersion {
                command,
                given: shown(given),
                reason: error.reason().to_owned(),
            }));
        }
    };
    let (dry_run, extra) = match extra.split_once(char::is_whitespace) {
        Some((flag, rest)) if is_dry_run_flag(flag) => (true, rest.trim_start()),
        None if is_dry_run_flag(extra) => (true, ""),
        _ => (false, extra),
    };
    if !extra.is_empty() {
        return Some(Err(CommandError::ExtraArguments {
            command,
            extra: shown(extra),
        }));
    }
    if dry_run {
        return Some(Ok(Command::DryRun {
            version,
            rebuild: command == "rebuild",
        }));
    }
    Some(Ok(if command == "build" {
        Command::Build(version)
    } else {
        Command::Rebuild(version)
    }))
}

/// `/withdraw VERSION [reason…]`: the rest of the line is the reason, without control
/// characters; `--dry-run` is refused (a withdrawal has none).
fn withdraw(given: &str, rest: &str) -> Result<Command, CommandError> {
    let version = given
        .parse::<Version>()
        .map_err(|error| CommandError::BadVersion {
            command: "withdraw",
            given: shown(given),
            reason: error.reason().to_owned(),
        })?;
    if rest.split(char::is_whitespace).any(is_dry_run_flag) {
        return Err(CommandError::NoDryRun {
            command: "withdraw",
        });
    }
    let reason: String = rest
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .collect();
    let reason = reason.trim();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(CommandError::ReasonTooLong);
    }
    Ok(Command::Withdraw {
        version,
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
    })
}

/// `/promote VERSION`: nothing after the version; `--dry-run` is refused (a promotion has
/// none).
fn promote(given: &str, rest: &str) -> Result<Command, CommandError> {
    let command = "promote";
    let version = given
        .parse::<Version>()
        .map_err(|error| CommandError::BadVersion {
            command,
            given: shown(given),
            reason: error.reason().to_owned(),
        })?;
    if rest.split(char::is_whitespace).any(is_dry_run_flag) {
        return Err(CommandError::NoDryRun { command });
    }
    if !rest.is_empty() {
        return Err(CommandError::ExtraArguments {
            command,
            extra: shown(rest),
        });
    }
    Ok(Command::Promote(version))
}

/// Characters that change how the text around them reads without being seen: bidirectional
/// overrides and isolates, and zero-width characters. A reason goes into release notes,
/// commit messages and the status page, where they could make it read as something else.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Whether `word` is the dry-run flag, `--dry-run` in any case.
fn is_dry_run_flag(word: &str) -> bool {
    word.eq_ignore_ascii_case("--dry-run")
}

/// User text made safe to quote in a Markdown code span: backticks (which would end the span)
/// and control characters removed, at most [`SHOWN_MAX_CHARS`] characters, ending in `…`
/// when cut.
fn shown(text: &str) -> String {
    let mut chars = text.chars().filter(|c| *c != '`' && !c.is_control());
    let mut out: String = chars.by_ref().take(SHOWN_MAX_CHARS).collect();
    if chars.next().is_some() {
        out.pop();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn build(s: &str) -> Result<Command, CommandError> {
        Ok(Command::Build(v(s)))
    }

    fn rebuild(s: &str) -> Result<Command, CommandError> {
        Ok(Command::Rebuild(v(s)))
    }

    fn bad_version(result: &Result<Command, CommandError>) -> (&'static str, &str, &str) {
        match result {
            Err(CommandError::BadVersion {
                command,
                given,
                reason,
            }) => (*command, given.as_str(), reason.as_str()),
            other => panic!("expected BadVersion, got {other:?}"),
        }
    }

    #[test]
    fn finds_each_command() {
        assert_eq!(parse_comment("/build 1.17.1"), vec![build("1.17.1")]);
        assert_eq!(parse_comment("/rebuild 1.17.1"), vec![rebuild("1.17.1")]);
        assert_eq!(parse_comment("/status"), vec![Ok(Command::Status)]);
        assert_eq!(parse_comment("/help"), vec![Ok(Command::Help)]);
    }

    #[test]
    fn a_leading_v_is_accepted() {
        assert_eq!(parse_comment("/build v1.17.1"), vec![build("1.17.1")]);
    }

    #[test]
    fn command_words_ignore_case() {
        assert_eq!(
            parse_comment("/BUILD 1.0.0\n/ReBuild 1.0.0\n/Status\n/HELP"),
            vec![
                build("1.0.0"),
                rebuild("1.0.0"),
                Ok(Command::Status),
                Ok(Command::Help)
            ]
        );
    }

    #[test]
    fn the_word_must_end_at_whitespace_or_end_of_line() {
        for line in [
            "/builder 1.0.0",
            "/build-it 1.0.0",
            "/build,1.0.0",
            "/build:1.0.0",
            "/statuses",
            "/status.",
            "/helpme",
            "/rebuilds 1.0.0",
            "//build 1.0.0",
            "/ build 1.0.0",
            "/",
        ] {
            assert_eq!(parse_comment(line), vec![], "{line:?}");
        }
        assert_eq!(parse_comment("/build\t1.0.0"), vec![build("1.0.0")]);
        assert_eq!(parse_comment("/status   "), vec![Ok(Command::Status)]);
        assert_eq!(parse_comment("/status\t"), vec![Ok(Command::Status)]);
    }

    #[test]
    fn other_slash_words_belong_to_other_bots() {
        assert_eq!(
            parse_comment("/assign @me\n/label bug\n/lgtm\n/retest\n/approve"),
            vec![]
        );
    }

    #[test]
    fn commands_must_start_the_line() {
        for body in [
            "please /build 1.0.0",
            "- /build 1.0.0",
            "* /status",
            "1. /help",
            "`/build 1.0.0`",
            "**/build 1.0.0**",
            "Run `/build 1.0.0` to build.",
        ] {
            assert_eq!(parse_comment(body), vec![], "{body:?}");
        }
    }

    #[test]
    fn up_to_three_spaces_of_indentation_are_allowed() {
        assert_eq!(parse_comment(" /status"), vec![Ok(Command::Status)]);
        assert_eq!(parse_comment("  /status"), vec![Ok(Command::Status)]);
        assert_eq!(parse_comment("   /status"), vec![Ok(Command::Status)]);
    }

    #[test]
    fn indented_code_is_ignored() {
        assert_eq!(parse_comment("    /status"), vec![]);
        assert_eq!(parse_comment("        /build 1.0.0"), vec![]);
        assert_eq!(parse_comment("\t/status"), vec![]);
        assert_eq!(parse_comment("  \t/status"), vec![]);
        assert_eq!(parse_comment("text\n\n    /build 1.0.0\n"), vec![]);
    }

    #[test]
    fn one_command_per_line() {
        // The second command word is an extra argument of the first.
        let results = parse_comment("/status /help");
        assert_eq!(
            results,
            vec![Err(CommandError::ExtraArguments {
                command: "status",
                extra: "/help".into()
            })]
        );
        assert_eq!(
            parse_comment("/build 1.0.0 /rebuild 1.0.0"),
            vec![Err(CommandError::ExtraArguments {
                command: "build",
                extra: "/rebuild 1.0.0".into()
            })]
        );
    }

    #[test]
    fn several_lines_give_several_commands_in_order() {
        assert_eq!(
            parse_comment("/status\n/build 1.0.0\n/rebuild 0.9.0\n/help\n"),
            vec![
                Ok(Command::Status),
                build("1.0.0"),
                rebuild("0.9.0"),
                Ok(Command::Help)
            ]
        );
    }

    #[test]
    fn crlf_line_endings() {
        assert_eq!(
            parse_comment(
                "Hi\r\n/build 1.0.0\r\n/status\r\n```\r\n/help\r\n```\r\n/rebuild 2.0.0\r\n"
            ),
            vec![build("1.0.0"), Ok(Command::Status), rebuild("2.0.0")]
        );
    }

    #[test]
    fn fenced_code_blocks_are_ignored() {
        let body = "\
before
```
/build 1.0.0
```
~~~
/rebuild 1.0.0
~~~
```sh
/status
```
after
/help";
        assert_eq!(parse_comment(body), vec![Ok(Command::Help)]);
    }

    #[test]
    fn a_fence_closes_only_with_the_same_character_at_least_as_long() {
        let body = "\
````
```
/build 1.0.0
~~~~
/status
`````
/help";
        assert_eq!(parse_comment(body), vec![Ok(Command::Help)]);
        let tildes = "~~~~\n~~~\n/status\n```\n/build 1.0.0\n~~~~~~ \n/help";
        assert_eq!(parse_comment(tildes), vec![Ok(Command::Help)]);
    }

    #[test]
    fn a_closing_fence_has_nothing_after_it_and_at_most_three_spaces_before() {
        let body = "```\n``` not closed\n    ```\n/status\n   ```\n/help";
        assert_eq!(parse_comment(body), vec![Ok(Command::Help)]);
    }

    #[test]
    fn fences_may_be_indented_up_to_three_spaces() {
        assert_eq!(
            parse_comment("   ```\n/status\n```\n/help"),
            vec![Ok(Command::Help)]
        );
        // Four spaces make it indented code, not a fence: the next line is read.
        assert_eq!(parse_comment("    ```\n/status"), vec![Ok(Command::Status)]);
    }

    #[test]
    fn an_unclosed_fence_runs_to_the_end() {
        assert_eq!(
            parse_comment("/status\n```\n/build 1.0.0\n/help\n"),
            vec![Ok(Command::Status)]
        );
        assert_eq!(parse_comment("~~~\n/help"), vec![]);
    }

    #[test]
    fn short_runs_and_inline_code_do_not_open_fences() {
        assert_eq!(parse_comment("``\n/status"), vec![Ok(Command::Status)]);
        assert_eq!(parse_comment("~~\n/status"), vec![Ok(Command::Status)]);
        assert_eq!(parse_comment("```x```\n/status"), vec![Ok(Command::Status)]);
        // A tilde fence's info string may hold backticks.
        assert_eq!(parse_comment("~~~ `x`\n/status"), vec![]);
    }

    #[test]
    fn block_quotes_are_ignored() {
        for body in [
            "> /build 1.0.0",
            ">/build 1.0.0",
            "  > /status",
            "> > /help",
            ">\n> /rebuild 1.0.0",
        ] {
            assert_eq!(parse_comment(body), vec![], "{body:?}");
        }
        // A fence inside a quote does not open a fence outside it.
        assert_eq!(parse_comment("> ```\n/status"), vec![Ok(Command::Status)]);
    }

    #[test]
    fn html_comments_are_ignored() {
        assert_eq!(parse_comment("<!-- /build 1.0.0 -->"), vec![]);
        let template = "\
<!--
Describe the problem.
/rebuild 1.0.0
```
-->
/status";
        assert_eq!(parse_comment(template), vec![Ok(Command::Status)]);
        assert_eq!(
            parse_comment("<!-- never closed\n/build 1.0.0\n/help"),
            vec![]
        );
    }

    #[test]
    fn text_around_an_html_comment_is_read() {
        assert_eq!(
            parse_comment("/status <!-- why -->"),
            vec![Ok(Command::Status)]
        );
        assert_eq!(
            parse_comment("/build 1.0.0 <!-- opened here\n/help\n-->"),
            vec![build("1.0.0")]
        );
        // What is left once the comment is cut out is an ordinary line.
        assert_eq!(
            parse_comment("<!-- a -->/status"),
            vec![Ok(Command::Status)]
        );
        assert_eq!(parse_comment("<!--\nx\n-->/help"), vec![Ok(Command::Help)]);
        assert_eq!(parse_comment("<!-- a --> x /status"), vec![]);
        assert_eq!(
            parse_comment("<!-- a --><!-- b -->/help"),
            vec![Ok(Command::Help)]
        );
    }

    #[test]
    fn html_comment_markers_in_code_are_literal() {
        let body = "```\n<!--\n```\n/status\n-->";
        assert_eq!(parse_comment(body), vec![Ok(Command::Status)]);
    }

    #[test]
    fn fence_markers_in_html_comments_are_ignored() {
        assert_eq!(
            parse_comment("<!-- ``` -->\n/status"),
            vec![Ok(Command::Status)]
        );
    }

    #[test]
    fn missing_version() {
        for body in ["/build", "/build   ", "/rebuild\t"] {
            let results = parse_comment(body);
            assert_eq!(results.len(), 1, "{body:?}");
            assert!(
                matches!(results[0], Err(CommandError::MissingVersion { .. })),
                "{body:?}: {results:?}"
            );
        }
        let message = parse_comment("/rebuild")[0]
            .clone()
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "`/rebuild` takes one version like `1.17.1` (X.Y.Z), for example `/rebuild 1.17.1`."
        );
    }

    #[test]
    fn bad_versions_are_reported_with_the_reason() {
        let results = parse_comment("/build 1.2");
        let (command, given, reason) = bad_version(&results[0]);
        assert_eq!(command, "build");
        assert_eq!(given, "1.2");
        assert_eq!(reason, "it needs exactly three numbers separated by dots");
        assert_eq!(
            results[0].clone().unwrap_err().to_string(),
            "`/build` takes one version like `1.17.1` (X.Y.Z), for example `/build 1.17.1`; \
             `1.2` is not one: it needs exactly three numbers separated by dots."
        );

        let results = parse_comment("/rebuild 1.10.0-rc.1");
        let (command, _, reason) = bad_version(&results[0]);
        assert_eq!(command, "rebuild");
        assert!(
            reason.starts_with("pre-releases are not published"),
            "{reason}"
        );
    }

    #[test]
    fn extra_arguments() {
        assert_eq!(
            parse_comment("/build 1.0.0 please"),
            vec![Err(CommandError::ExtraArguments {
                command: "build",
                extra: "please".into()
            })]
        );
        assert_eq!(
            parse_comment("/build 1.0.0 2.0.0"),
            vec![Err(CommandError::ExtraArguments {
                command: "build",
                extra: "2.0.0".into()
            })]
        );
        let status = parse_comment("/status of 1.0.0");
        assert_eq!(
            status,
            vec![Err(CommandError::ExtraArguments {
                command: "status",
                extra: "of 1.0.0".into()
            })]
        );
        assert_eq!(
            status[0].clone().unwrap_err().to_string(),
            "`/status` takes no arguments; remove `of 1.0.0`."
        );
        assert_eq!(
            parse_comment("/rebuild 1.0.0 now")[0]
                .clone()
                .unwrap_err()
                .to_string(),
            "`/rebuild` takes exactly one version like `1.17.1` (X.Y.Z), for example \
             `/rebuild 1.17.1`; remove `now`."
        );
        assert!(matches!(
            &parse_comment("/help me")[0],
            Err(CommandError::ExtraArguments {
                command: "help",
                ..
            })
        ));
    }

    fn dry_run(version: &str, rebuild: bool) -> Result<Command, CommandError> {
        Ok(Command::DryRun {
            version: v(version),
            rebuild,
        })
    }

    #[test]
    fn a_dry_run_follows_the_version() {
        assert_eq!(
            parse_comment("/build 1.18.0 --dry-run"),
            vec![dry_run("1.18.0", false)]
        );
        assert_eq!(
            parse_comment("/Rebuild v1.18.0   --DRY-RUN  \r\n"),
            vec![dry_run("1.18.0", true)]
        );
        // A dry run and the build itself are different commands.
        assert_eq!(
            parse_comment("/build 1.0.0 --dry-run\n/build 1.0.0\n/build 1.0.0 --dry-run"),
            vec![dry_run("1.0.0", false), build("1.0.0")]
        );
        // In code, quotes and HTML comments it is skipped like any command.
        assert_eq!(
            parse_comment("```\n/build 1.0.0 --dry-run\n```\n> /build 1.0.0 --dry-run"),
            vec![]
        );
    }

    #[test]
    fn a_dry_run_anywhere_else_is_an_error() {
        for (body, command) in [
            ("/build --dry-run", "build"),
            ("/build --dry-run 1.0.0", "build"),
            ("/rebuild --dry-run 1.0.0", "rebuild"),
        ] {
            assert_eq!(
                parse_comment(body),
                vec![Err(CommandError::MisplacedDryRun { command })],
                "{body:?}"
            );
        }
        assert_eq!(
            parse_comment("/build --dry-run 1.0.0")[0]
                .clone()
                .unwrap_err()
                .to_string(),
            "`--dry-run` goes after the version: `/build X.Y.Z --dry-run`, for example \
             `/build 1.17.1 --dry-run`."
        );
        for (body, command) in [
            ("/status --dry-run", "status"),
            ("/help --dry-run x", "help"),
        ] {
            assert_eq!(
                parse_comment(body),
                vec![Err(CommandError::NoDryRun { command })],
                "{body:?}"
            );
        }
        assert_eq!(
            parse_comment("/status --dry-run")[0]
                .clone()
                .unwrap_err()
                .to_string(),
            "`/status` has no dry run: `--dry-run` goes after the version of `/build` or \
             `/rebuild`, for example `/build 1.17.1 --dry-run`."
        );
        assert_eq!(
            parse_comment("/build 1.0.0 --dry-run now"),
            vec![Err(CommandError::ExtraArguments {
                command: "build",
                extra: "now".into()
            })]
        );
        assert_eq!(
            parse_comment("/build 1.0.0 now --dry-run"),
            vec![Err(CommandError::ExtraArguments {
                command: "build",
                extra: "now --dry-run".into()
            })]
        );
        assert_eq!(
            parse_comment("/build 1.0.0 --dry-run --dry-run"),
            vec![Err(CommandError::ExtraArguments {
                command: "build",
                extra: "--dry-run".into()
            })]
        );
        // Other spellings are not the flag.
        assert_eq!(
            parse_comment("/build 1.0.0 --dryrun"),
            vec![Err(CommandError::ExtraArguments {
                command: "build",
                extra: "--dryrun".into()
            })]
        );
    }

    #[test]
    fn identical_commands_are_returned_once() {
        assert_eq!(
            parse_comment("/build 1.0.0\n/build 1.0.0\n/build v1.0.0\n/BUILD 1.0.0"),
            vec![build("1.0.0")]
        );
        assert_eq!(
            parse_comment("/status\n/help\n/status\n/build 1.0.0\n/rebuild 1.0.0\n/help"),
            vec![
                Ok(Command::Status),
                Ok(Command::Help),
                build("1.0.0"),
                rebuild("1.0.0")
            ]
        );
        // Identical errors too: one reply is enough.
        assert_eq!(parse_comment("/build\n/build").len(), 1);
    }

    #[test]
    fn at_most_ten_results() {
        let body: String = (0..50).map(|i| format!("/build 1.0.{i}\n")).collect();
        let results = parse_comment(&body);
        assert_eq!(results.len(), MAX_COMMANDS_PER_COMMENT);
        assert_eq!(results[0], build("1.0.0"));
        assert_eq!(results[9], build("1.0.9"));
        // Duplicates do not use up the limit.
        let body = "/status\n".repeat(100) + "/help";
        assert_eq!(
            parse_comment(&body),
            vec![Ok(Command::Status), Ok(Command::Help)]
        );
    }

    #[test]
    fn hostile_versions_are_refused() {
        for (body, given) in [
            ("/rebuild ../../x", "../../x"),
            ("/build 1.0.0;rm -rf", "1.0.0;rm"),
            ("/build $(id)", "$(id)"),
            ("/build 1.0.0&&id", "1.0.0&&id"),
            ("/build 1.0.0/../../etc", "1.0.0/../../etc"),
            ("/build ${HOME}", "${HOME}"),
            ("/build 1.0.0|sh", "1.0.0|sh"),
            ("/build -1.0.0", "-1.0.0"),
            ("/build １.０.０", "１.０.０"),
            ("/build 1.0.0\u{0}", "1.0.0"),
            ("/build 1.0.0.", "1.0.0."),
            ("/build @admin", "@admin"),
        ] {
            let results = parse_comment(body);
            assert_eq!(results.len(), 1, "{body:?}");
            let (_, shown_given, reason) = bad_version(&results[0]);
            assert_eq!(shown_given, given, "{body:?}");
            assert!(!reason.contains(given), "{body:?}: {reason}");
        }
    }

    #[test]
    fn quoted_text_cannot_break_out_of_its_code_span() {
        let results = parse_comment("/build 1`](http://evil)`@team");
        let (_, given, _) = bad_version(&results[0]);
        assert_eq!(given, "1](http://evil)@team");
        let message = results[0].clone().unwrap_err().to_string();
        // Only the message's own four code spans (the command, the two examples and the
        // quoted argument): no backtick comes from the input.
        assert_eq!(message.matches('`').count(), 8, "{message}");

        let results = parse_comment("/status ``` <b>x</b>");
        assert_eq!(
            results,
            vec![Err(CommandError::ExtraArguments {
                command: "status",
                extra: " <b>x</b>".into()
            })]
        );

        // Control characters are dropped.
        let results = parse_comment("/build 1.0\u{7}\u{1b}[31m");
        let (_, given, _) = bad_version(&results[0]);
        assert_eq!(given, "1.0[31m");
    }

    #[test]
    fn long_arguments_are_cut_to_64_characters() {
        let long = "x".repeat(1000);
        let results = parse_comment(&format!("/build {long}"));
        let (_, given, reason) = bad_version(&results[0]);
        assert_eq!(given.chars().count(), 64);
        assert!(given.ends_with('…'), "{given}");
        assert_eq!(reason, "too long");

        let results = parse_comment(&format!("/status {}", "é".repeat(200)));
        let Err(CommandError::ExtraArguments { extra, .. }) = &results[0] else {
            panic!("{results:?}");
        };
        assert_eq!(extra.chars().count(), 64);

        // Exactly 64 characters are kept whole.
        let exact = "y".repeat(64);
        let results = parse_comment(&format!("/help {exact}"));
        let Err(CommandError::ExtraArguments { extra, .. }) = &results[0] else {
            panic!("{results:?}");
        };
        assert_eq!(extra, &exact);
    }

    #[test]
    fn huge_comments_are_handled() {
        // A megabyte on one line, as a version and as noise.
        let huge = "9".repeat(1 << 20);
        let results = parse_comment(&format!("/build {huge}"));
        let (_, given, _) = bad_version(&results[0]);
        assert_eq!(given.chars().count(), 64);
        assert_eq!(parse_comment(&huge), vec![]);

        // A megabyte of lines, with the real command at the end.
        let body = "/nope\n> quote\n<!-- -->\n".repeat(50_000) + "/status";
        assert!(body.len() > 1 << 20);
        assert_eq!(parse_comment(&body), vec![Ok(Command::Status)]);

        // Many comment openers and fences.
        let body = "<!--".repeat(300_000);
        assert_eq!(parse_comment(&body), vec![]);
        // An odd number of fences: the last one is never closed.
        let body = "```\n".repeat(300_001) + "/help";
        assert_eq!(parse_comment(&body), vec![]);
        let body = "`".repeat(1 << 20);
        assert_eq!(parse_comment(&body), vec![]);
    }

    #[test]
    fn odd_input_does_not_panic() {
        for body in [
            "",
            "\n",
            "\r",
            "\r\n\r\n",
            "/",
            "/\u{0}",
            "/build \u{0}",
            "-->",
            "<!--",
            "<!---->",
            "<!-->/status",
            "```",
            "~~~~~~~~",
            "\u{feff}/status",
            "/build\u{a0}1.0.0",
            "/ЬUILD 1.0.0",
            "/bu\u{301}ild 1.0.0",
            ">",
            "   ",
            "\t",
        ] {
            let _ = parse_comment(body);
        }
        // Non-breaking space separates like any whitespace.
        assert_eq!(parse_comment("/build\u{a0}1.0.0"), vec![build("1.0.0")]);
        // A byte-order mark is not whitespace: that line is not a command.
        assert_eq!(parse_comment("\u{feff}/status"), vec![]);
    }

    #[test]
    fn a_realistic_comment() {
        let body = "\
Thanks for the report! <!-- triage note: /rebuild 1.16.0 if the first try fails -->

Upstream tagged the release this morning, so let's try it:

/build v1.17.1

> On Monday @someone wrote:
> /rebuild 1.16.0
>
> ```
> /status
> ```

For reference, the command line equivalent is:

```sh
alloy-sysext-automation build --version 1.17.1 --out out/
/build 1.0.0
```

    /rebuild 1.15.0

/assign @me
/Status

<!--
Template hint: write /help for the list of commands.
-->
Cheers";
        assert_eq!(
            parse_comment(&body.replace('\n', "\r\n")),
            vec![build("1.17.1"), Ok(Command::Status)]
        );
        assert_eq!(
            parse_comment(body),
            vec![build("1.17.1"), Ok(Command::Status)]
        );
    }
}
