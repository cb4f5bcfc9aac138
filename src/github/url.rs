//! Escaping text for GitHub's URLs.

/// `text` with everything but unreserved characters (and those in `keep`) percent-encoded.
fn escape(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One path segment or query value: `/` is escaped too.
pub fn escape_component(text: &str) -> String {
    escape(text, b"")
}

/// A repository path or branch name: its `/` separators stay.
pub fn escape_path(text: &str) -> String {
    escape(text, b"/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_characters_are_escaped() {
        assert_eq!(escape_path("a b/c#d.bu"), "a%20b/c%23d.bu");
        assert_eq!(escape_path("feature/x y"), "feature/x%20y");
        assert_eq!(escape_component("needs triage/ok"), "needs%20triage%2Fok");
    }
}
