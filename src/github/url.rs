//! Escaping text for GitHub's URLs. Every value put into a REST path or query goes through
//! here, escaped per segment: a branch or file name holding `#`, `?`, `%` or a space names
//! itself, never a fragment, a query or another resource.

/// `text` with everything but unreserved characters percent-encoded.
fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One path segment or query value: `/` is escaped too.
pub fn escape_component(text: &str) -> String {
    escape(text)
}

/// A path that cannot be put in a URL safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} cannot be put in a GitHub URL: it has an empty, `.` or `..` segment, which would name another resource"
)]
pub struct UnsafePath {
    pub text: String,
}

/// A repository file path or branch name: each segment escaped, `/` kept between them. An
/// empty, `.` or `..` segment is refused: a client or proxy may resolve it, and the URL
/// would then name another file or route.
pub fn escape_segments(text: &str) -> Result<String, UnsafePath> {
    let segments: Vec<&str> = text.split('/').collect();
    if segments
        .iter()
        .any(|segment| segment.is_empty() || *segment == "." || *segment == "..")
    {
        return Err(UnsafePath {
            text: text.to_owned(),
        });
    }
    Ok(segments
        .iter()
        .map(|segment| escape(segment))
        .collect::<Vec<_>>()
        .join("/"))
}

/// `owner/name`, each escaped.
pub fn escape_repo(repo: &str) -> String {
    match repo.split_once('/') {
        Some((owner, name)) => format!("{}/{}", escape(owner), escape(name)),
        None => escape(repo),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_characters_are_escaped_per_segment() {
        assert_eq!(
            escape_segments("a b/c#d.bu").unwrap(),
            "a%20b/c%23d.bu".to_owned()
        );
        assert_eq!(
            escape_segments("feature/x?y%z").unwrap(),
            "feature/x%3Fy%25z".to_owned()
        );
        assert_eq!(escape_component("needs triage/ok"), "needs%20triage%2Fok");
        assert_eq!(escape_component("a:b&c=d"), "a%3Ab%26c%3Dd");
        assert_eq!(escape_repo("o/r.x"), "o/r.x");
        assert_eq!(escape_repo("o/r#x"), "o/r%23x");
    }

    #[test]
    fn dot_segments_never_reach_a_url() {
        for unsafe_path in ["../x", "a/../x", "a/./x", "a//x", "/a", "a/", "..", ""] {
            assert!(escape_segments(unsafe_path).is_err(), "{unsafe_path:?}");
        }
        // Dots inside a name are just characters.
        assert_eq!(escape_segments("a/..b/c..").unwrap(), "a/..b/c..");
    }
}
