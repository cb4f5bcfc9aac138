//! The checks a consumer's fields pass wherever the consumer comes from: `CONFIG_FILE`,
//! written by the operator, or a repository's own `.github/alloy-sysext.toml`, written by
//! anyone who installs the App. The values end up in GitHub URLs, git refs and assignments,
//! so a file path must stay inside the repository, a branch must be one git accepts and an
//! assignee must be a GitHub login.

/// At most this many characters of a refused value are kept: the value may come from a
/// stranger's file, and the error goes into job reports.
const SHOWN_CHARS: usize = 100;

/// A field that fails its check: its key, its value (cut to its first 100 characters), and
/// what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value:?} is not valid: {expected}")]
pub struct InvalidField {
    pub key: String,
    pub value: String,
    pub expected: &'static str,
}

impl InvalidField {
    fn new(key: &str, value: &str, expected: &'static str) -> InvalidField {
        let mut shown: String = value.chars().take(SHOWN_CHARS).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        InvalidField {
            key: key.to_owned(),
            value: shown,
            expected,
        }
    }

    /// The same error with its key under `prefix` (`consumers[0].path`).
    pub fn under(mut self, prefix: &str) -> InvalidField {
        self.key = format!("{prefix}{}", self.key);
        self
    }
}

/// What `path` must be.
pub const FILE_PATH_EXPECTED: &str = "a path relative to the repository's root, without `.` or `..` segments, empty segments, backslashes, control characters or a leading `/`";

/// What `base` must be.
pub const BRANCH_EXPECTED: &str = "a branch name git accepts (git check-ref-format: no spaces, `..`, `~^:?*[\\`, `@{`, control characters, component starting with `.` or ending in `.lock`)";

/// What `base` must not look like.
pub const UNAMBIGUOUS_BRANCH_EXPECTED: &str = "a branch's short name: not starting with `refs/` and not 40 or 64 hexadecimal digits, which GitHub may read as a full ref or a commit rather than the branch";

/// What each of `assignees` must be.
pub const LOGIN_EXPECTED: &str = "GitHub logins (letters, digits and single hyphens, at most 39, not starting or ending with a hyphen)";

/// Checks a consumer's Butane file `path`, its `base` branch and its `assignees`; the error
/// names the first key at fault.
pub fn check_consumer_fields(
    path: &str,
    base: &str,
    assignees: &[String],
) -> Result<(), InvalidField> {
    if !is_file_path(path) {
        return Err(InvalidField::new("path", path, FILE_PATH_EXPECTED));
    }
    if !is_branch_name(base) {
        return Err(InvalidField::new("base", base, BRANCH_EXPECTED));
    }
    if !is_unambiguous_branch_name(base) {
        return Err(InvalidField::new("base", base, UNAMBIGUOUS_BRANCH_EXPECTED));
    }
    if let Some(bad) = assignees.iter().find(|login| !is_login(login)) {
        return Err(InvalidField::new("assignees", bad, LOGIN_EXPECTED));
    }
    Ok(())
}

/// A repository-relative file path: no `.`, `..` or empty segment, no leading `/`, no
/// backslash or control character.
pub fn is_file_path(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 4096
        && !text.starts_with('/')
        && !text.chars().any(|c| c == '\\' || c.is_control())
        && text
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// A branch name as `git check-ref-format --branch` accepts it, at most 255 bytes (GitHub's
/// limit for a ref). `@`, which git reads as "the current branch", is refused too.
pub fn is_branch_name(text: &str) -> bool {
    let forbidden = |c: char| c.is_control() || " ~^:?*[\\".contains(c);
    !text.is_empty()
        && text.len() <= 255
        && text != "@"
        && text != "HEAD"
        && !text.starts_with('-')
        && !text.ends_with('.')
        && !text.contains("..")
        && !text.contains("@{")
        && !text.chars().any(forbidden)
        && text
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"))
}

/// A branch name GitHub reads as that branch alone wherever a ref is taken: not a full ref
/// (`refs/tags/v1`) and not what looks like a commit sha (SHA-1 or SHA-256).
pub fn is_unambiguous_branch_name(text: &str) -> bool {
    let commit_like =
        (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit());
    !text.starts_with("refs/") && !commit_like
}

/// A GitHub login: letters, digits and single hyphens, not at either end, 1 to 39 long.
pub fn is_login(text: &str) -> bool {
    (1..=39).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_repository() {
        for good in [
            "x.bu",
            "hosts/edge.bu",
            "a b/c#d?e%f.bu",
            "ünïcode/ok.bu",
            ".github/x.bu",
        ] {
            assert!(is_file_path(good), "{good:?}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../x",
            "a/./x",
            "a//x",
            "a/",
            ".",
            "a\\x",
            "a\0x",
            "a\nx",
        ] {
            assert!(!is_file_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn branches_follow_git_check_ref_format() {
        for good in [
            "main",
            "feature/x-1",
            "release#1%x",
            "v1.2",
            "a@b",
            "ümlaut",
        ] {
            assert!(is_branch_name(good), "{good:?}");
        }
        for bad in [
            "",
            "@",
            "-x",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "a@{1}",
            "/a",
            "a/",
            "a//b",
            ".a",
            "a/.b",
            "a.lock",
            "a/b.lock/c",
            "a.",
            "a\tb",
        ] {
            assert!(!is_branch_name(bad), "{bad:?}");
        }
        assert!(!is_branch_name(&"a".repeat(256)));
    }

    #[test]
    fn branches_are_judged_as_git_judges_them() {
        let names = [
            "main",
            "feature/x-1",
            "release#1%x",
            "a@b",
            "x@",
            "a/HEAD",
            "HEAD",
            "-x",
            "a..b",
            "a b",
            "a~1",
            "a:b",
            "a[b",
            "a\\b",
            "a@{1}",
            "a//b",
            "a/.b",
            "a.lock/b",
            "a.",
            "a\tb",
        ];
        // Outside any repository, where `--branch` would expand `@{-N}` from its history.
        let outside = tempfile::tempdir().unwrap();
        for name in names {
            let git = std::process::Command::new("git")
                .current_dir(outside.path())
                .args(["check-ref-format", "--branch", name])
                .output()
                .expect("git runs");
            assert_eq!(
                is_branch_name(name),
                git.status.success(),
                "{name:?}: git says {}",
                git.status
            );
        }
    }

    #[test]
    fn a_base_that_github_may_read_as_another_ref_or_a_commit_is_refused() {
        for ambiguous in [
            "refs/tags/v1",
            "refs/heads/main",
            &"a".repeat(40),
            &"0123456789ABCDEF".repeat(4),
        ] {
            let error = check_consumer_fields("x.bu", ambiguous, &[]).unwrap_err();
            assert_eq!(error.key, "base", "{ambiguous:?}");
            assert_eq!(error.expected, UNAMBIGUOUS_BRANCH_EXPECTED);
        }
        for plain in ["main", "heads/x", "v1", &"a".repeat(39), &"g".repeat(40)] {
            assert!(
                check_consumer_fields("x.bu", plain, &[]).is_ok(),
                "{plain:?}"
            );
        }
    }

    #[test]
    fn logins_are_githubs() {
        for good in ["noahwhite", "a", "a-b-c", &"x".repeat(39)] {
            assert!(is_login(good), "{good:?}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a b",
            "bot[bot]",
            &"x".repeat(40),
        ] {
            assert!(!is_login(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_error_names_the_first_key_at_fault() {
        let error = check_consumer_fields("../x", "a b", &[]).unwrap_err();
        assert_eq!(error.key, "path");
        let error = check_consumer_fields("x.bu", "a b", &[]).unwrap_err();
        assert_eq!(error.key, "base");
        let error =
            check_consumer_fields("x.bu", "main", &["ok".into(), "-no".into()]).unwrap_err();
        assert_eq!(error.key, "assignees");
        assert_eq!(error.value, "-no");
        assert!(check_consumer_fields("x.bu", "main", &["ok".into()]).is_ok());
        let error = error.under("consumers[2].");
        assert!(
            error
                .to_string()
                .starts_with("consumers[2].assignees = \"-no\""),
            "{error}"
        );
        // A stranger's value is cut before it reaches a report.
        let long = format!("/{}", "x".repeat(100_000));
        let refused = check_consumer_fields(&long, "main", &[]).unwrap_err();
        assert_eq!(refused.value.chars().count(), SHOWN_CHARS + 1);
        assert!(refused.to_string().len() < 400, "{refused}");
    }
}
