//! Text from webhook payloads and repositories, made inert for the Markdown of the App's
//! comments, issues and pull request bodies.
//!
//! A workflow name, a branch name, a file path or an error message is chosen by whoever
//! controls a repository. Written into a comment as it is, it could mention a team
//! (`@org/team`), link elsewhere, show an image or add HTML in the App's name. Every such
//! string goes through one of these functions:
//!
//! - [`code_span`] shows it as inline code: nothing in a code span is a mention, link,
//!   image or HTML, and the fence is chosen longer than any run of backticks inside.
//! - [`table_code_span`] is [`code_span`] for a table cell, where `|` ends the cell.
//! - [`code_block`] does the same for text of several lines (an error with its causes);
//!   [`highlighted_code_block`] names the block's language too (a diff).
//! - [`escape`] keeps it as plain text, every Markdown character backslash-escaped and every
//!   `@` kept from starting a mention.
//!
//! ```
//! use alloy_sysext_automation::github::markdown::{code_span, escape};
//! assert_eq!(code_span("a`b"), "``a`b``");
//! assert_eq!(escape("[x](y)"), r"\[x\]\(y\)");
//! ```

/// The zero-width space put after every `@` of plain text: GitHub links `@name` only when
/// the name follows the `@` directly, and turns `name@host` into a mail link only then too.
const MENTION_BREAK: char = '\u{200B}';

/// `text` as one Markdown code span, on one line: line breaks and other control characters
/// become spaces, and the span's fence is one backtick longer than the longest run of
/// backticks in the text, so nothing in it can end the span early.
pub fn code_span(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.is_empty() {
        // Two backticks alone are no code span; a space is.
        return "` `".to_owned();
    }
    let fence = "`".repeat(longest_backtick_run(&text) + 1);
    // A span's content that starts or ends with a backtick needs a space to keep it apart
    // from the fence; CommonMark strips one space from each side when both are there, so
    // text with a space at both ends gets one more on each side to keep its own.
    let padded = text.starts_with('`')
        || text.ends_with('`')
        || (text.starts_with(' ') && text.ends_with(' ') && !text.trim().is_empty());
    if padded {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// [`code_span`] for a GitHub table cell: the table splits its row at every `|` before code
/// spans are read, so each `|` is written `\|`, which GitHub reads as a `|` inside the
/// span.
pub fn table_code_span(text: &str) -> String {
    code_span(text).replace('|', "\\|")
}

/// `text` as a fenced code block of its own lines, the fence longer than any run of
/// backticks inside. Ends with a line break.
pub fn code_block(text: &str) -> String {
    highlighted_code_block("", text)
}

/// [`code_block`] with `language` (a fixed word of the App's own, such as `diff`, never user
/// text) after the opening fence, for GitHub to highlight the block as that language.
pub fn highlighted_code_block(language: &str, text: &str) -> String {
    let text: String = text
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    let fence = "`".repeat((longest_backtick_run(&text) + 1).max(3));
    format!("{fence}{language}\n{text}\n{fence}\n")
}

/// `text` as plain text on one line: control characters become spaces, every ASCII
/// punctuation character is backslash-escaped (no emphasis, link, image, HTML, heading,
/// list, table cell or autolink can start), and each `@` is followed by a zero-width space
/// (no mention, no team mention, no mail link).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for c in text.chars() {
        if c.is_control() {
            out.push(' ');
        } else if c == '@' {
            out.push('@');
            out.push(MENTION_BREAK);
        } else {
            if c.is_ascii_punctuation() {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// `url` when it is a plain `https` or `http` address that can stand as a link target and
/// as a bare link without changing the Markdown around it: no spaces, quotes, brackets,
/// parentheses, angle brackets, backticks or control characters.
pub fn safe_url(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let plain = !rest.is_empty()
        && rest.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~' | ':' | '%')
        });
    plain.then_some(url)
}

fn longest_backtick_run(text: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_span_in_a_table_cell_keeps_its_pipes_inside() {
        assert_eq!(table_code_span("a|b"), "`a\\|b`");
        assert_eq!(table_code_span("x"), "`x`");
        // A row of hostile cells still has three cells: no unescaped `|` is left inside.
        let cell = table_code_span("| ![x](https://evil.example/x.png) |");
        let row = format!("| {cell} | {} |", table_code_span("@org/team"));
        let unescaped = row
            .char_indices()
            .filter(|(i, c)| *c == '|' && !row[..*i].ends_with('\\'))
            .count();
        assert_eq!(unescaped, 3, "{row}");
    }

    const HOSTILE: [&str; 9] = [
        "@org/team",
        "hi @octocat",
        "![x](http://evil.example/x.png)",
        "[click](https://evil.example)",
        "<img src=x onerror=alert(1)>",
        "`code` and ``more``",
        "line one\n# heading\n- item",
        "https://evil.example/path and www.evil.example",
        "a|b *c* _d_ ~~e~~ mail@evil.example",
    ];

    /// The content of a code span made by [`code_span`], as CommonMark reads it back.
    fn span_content(span: &str) -> &str {
        let fence = span.len() - span.trim_start_matches('`').len();
        let inner = &span[fence..span.len() - fence];
        assert!(!inner.starts_with('`') && !inner.ends_with('`'), "{span}");
        if inner.len() >= 2 && inner.starts_with(' ') && inner.ends_with(' ') {
            &inner[1..inner.len() - 1]
        } else {
            inner
        }
    }

    #[test]
    fn a_code_span_holds_any_text_whole() {
        for text in HOSTILE {
            let span = code_span(text);
            assert!(!span.contains('\n'), "{span}");
            assert_eq!(span_content(&span), text.replace('\n', " "), "{span}");
        }
    }

    #[test]
    fn the_fence_outgrows_the_backticks_inside() {
        assert_eq!(code_span("plain"), "`plain`");
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("a``b`c"), "```a``b`c```");
        assert_eq!(code_span("`x`"), "`` `x` ``");
        assert_eq!(code_span(" both "), "`  both  `");
        assert_eq!(span_content(&code_span(" both ")), " both ");
        assert_eq!(code_span(""), "` `");
        // The fence is never found inside: the span cannot end early.
        for text in HOSTILE {
            let span = code_span(text);
            let fence = span.len() - span.trim_start_matches('`').len();
            assert!(!span_content(&span).contains(&"`".repeat(fence)), "{span}");
        }
    }

    #[test]
    fn a_code_block_cannot_be_closed_from_inside() {
        let block = code_block("error:\n```\n@everyone ![x](y)\n````");
        assert!(block.starts_with("`````\n"), "{block}");
        assert!(block.ends_with("\n`````\n"), "{block}");
        assert_eq!(code_block("boom"), "```\nboom\n```\n");
        assert!(!code_block("a\u{1b}[31mb").contains('\u{1b}'));
    }

    #[test]
    fn escaped_text_starts_no_markup() {
        for text in HOSTILE {
            let escaped = escape(text);
            assert!(!escaped.contains('\n'), "{escaped}");
            let chars: Vec<char> = escaped.chars().collect();
            for (i, c) in chars.iter().enumerate() {
                if c.is_ascii_punctuation() && *c != '\\' && *c != '@' {
                    assert_eq!(chars[i - 1], '\\', "{c} unescaped in {escaped}");
                }
                if *c == '@' {
                    assert_eq!(chars.get(i + 1), Some(&MENTION_BREAK), "{escaped}");
                }
            }
            // What it shows is the text itself, without the escapes.
            let shown: String = escaped
                .replace(MENTION_BREAK, "")
                .chars()
                .scan(false, |escaping, c| {
                    let keep = *escaping || c != '\\';
                    *escaping = !*escaping && c == '\\';
                    Some(keep.then_some(c))
                })
                .flatten()
                .collect();
            assert_eq!(shown, text.replace('\n', " "));
        }
        assert_eq!(escape("@org/team"), "@\u{200B}org\\/team");
        assert_eq!(escape("Validate Butane"), "Validate Butane");
        assert_eq!(escape("a\\b"), "a\\\\b");
    }

    #[test]
    fn only_plain_web_addresses_are_linked() {
        assert_eq!(
            safe_url("https://github.com/o/r/actions/runs/5"),
            Some("https://github.com/o/r/actions/runs/5")
        );
        for url in [
            "javascript:alert(1)",
            "https://x/)![i](https://evil",
            "https://x/ y",
            "https://x/<b>",
            "https://",
            "ftp://x",
            "https://x/`",
        ] {
            assert_eq!(safe_url(url), None, "{url}");
        }
    }
}
