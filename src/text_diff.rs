//! A line-based unified diff of two texts, as `diff -u` prints it, for showing a planned
//! change of a file.

/// Above this many line pairs in the part that differs, the diff shows the whole part as
/// removed and added instead of searching for common lines.
const MAX_COMPARED_PAIRS: usize = 16_000_000;
/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The unified diff turning `before` into `after`, with `---`/`+++` headers naming `path`
/// (`a/path`, `b/path`); empty when the texts are equal.
pub fn unified_diff(path: &str, before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    let lines = diff_lines(&old, &new);
    let mut out = format!("--- a/{path}\n+++ b/{path}\n");
    let changed: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !matches!(l, Line::Same(_)))
        .map(|(i, _)| i)
        .collect();
    let mut index = 0;
    while index < changed.len() {
        let first = changed[index];
        let mut last = first;
        // Changes closer than twice the context share one hunk.
        while index + 1 < changed.len() && changed[index + 1] <= last + 2 * CONTEXT + 1 {
            index += 1;
            last = changed[index];
        }
        index += 1;
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(lines.len());
        let (mut old_start, mut new_start) = (1, 1);
        for line in &lines[..start] {
            match line {
                Line::Same(_) => {
                    old_start += 1;
                    new_start += 1;
                }
                Line::Removed(_) => old_start += 1,
                Line::Added(_) => new_start += 1,
            }
        }
        let hunk = &lines[start..end];
        let old_count = hunk.iter().filter(|l| !matches!(l, Line::Added(_))).count();
        let new_count = hunk
            .iter()
            .filter(|l| !matches!(l, Line::Removed(_)))
            .count();
        // An empty side starts at the line before, as `diff -u` numbers it.
        let old_start = if old_count == 0 {
            old_start - 1
        } else {
            old_start
        };
        let new_start = if new_count == 0 {
            new_start - 1
        } else {
            new_start
        };
        out.push_str(&format!(
            "@@ -{old_start},{old_count} +{new_start},{new_count} @@\n"
        ));
        for line in hunk {
            let (mark, text) = match line {
                Line::Same(text) => (' ', text),
                Line::Removed(text) => ('-', text),
                Line::Added(text) => ('+', text),
            };
            out.push(mark);
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

/// The lines of `old` and `new` in order, each the same, removed or added: common lines
/// are a longest common subsequence of the part between the common start and end.
fn diff_lines<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Line<'a>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old_mid, new_mid) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut lines: Vec<Line<'a>> = old[..prefix].iter().map(|l| Line::Same(l)).collect();
    let (n, m) = (old_mid.len(), new_mid.len());
    if n.saturating_mul(m) > MAX_COMPARED_PAIRS {
        lines.extend(old_mid.iter().map(|l| Line::Removed(l)));
        lines.extend(new_mid.iter().map(|l| Line::Added(l)));
    } else {
        // common[i][j]: the longest common subsequence of old_mid[i..] and new_mid[j..].
        let mut common = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                common[i][j] = if old_mid[i] == new_mid[j] {
                    common[i + 1][j + 1] + 1
                } else {
                    common[i + 1][j].max(common[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && old_mid[i] == new_mid[j] {
                lines.push(Line::Same(old_mid[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || common[i + 1][j] >= common[i][j + 1]) {
                lines.push(Line::Removed(old_mid[i]));
                i += 1;
            } else {
                lines.push(Line::Added(new_mid[j]));
                j += 1;
            }
        }
    }
    lines.extend(old[old.len() - suffix..].iter().map(|l| Line::Same(l)));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified_diff("f", "a\nb\n", "a\nb\n"), "");
    }

    #[test]
    fn a_changed_line_is_shown_with_three_lines_of_context() {
        let before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let after = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified_diff("dir/f", before, after),
            "--- a/dir/f\n+++ b/dir/f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn distant_changes_get_their_own_hunks_and_added_lines_count() {
        let before: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let after: String = (1..=20)
            .map(|i| match i {
                2 => "two\n".to_owned(),
                19 => "19\nnew\n".to_owned(),
                i => format!("{i}\n"),
            })
            .collect();
        assert_eq!(
            unified_diff("f", &before, &after),
            "--- a/f\n+++ b/f\n@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n\
             @@ -17,4 +17,5 @@\n 17\n 18\n 19\n+new\n 20\n"
        );
    }

    #[test]
    fn a_new_file_is_all_added() {
        assert_eq!(
            unified_diff("f", "", "a\nb\n"),
            "--- a/f\n+++ b/f\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
    }
}
