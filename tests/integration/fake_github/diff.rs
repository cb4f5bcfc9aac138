//! A line diff (longest common subsequence), enough for files of a few hundred lines.

/// The lines of `old` that `new` removes and the lines it adds, each in order.
pub(super) fn line_diff(old: &str, new: &str) -> (Vec<String>, Vec<String>) {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    // The common ends need no table.
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let a = &old[prefix..old.len() - suffix];
    let b = &new[prefix..new.len() - suffix];
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            added.push(b[j].to_owned());
            j += 1;
        } else {
            removed.push(a[i].to_owned());
            i += 1;
        }
    }
    (removed, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diffs_keep_what_is_common() {
        let old = "a\nb\nc\nd\ne\n";
        let new = "a\nB\nc\nd\nf\ne\n";
        assert_eq!(
            line_diff(old, new),
            (vec!["b".to_owned()], vec!["B".to_owned(), "f".to_owned()])
        );
        assert_eq!(line_diff("x\n", "x\n"), (vec![], vec![]));
        assert_eq!(
            line_diff("", "x\ny\n"),
            (vec![], vec!["x".into(), "y".into()])
        );
        assert_eq!(line_diff("x\n", ""), (vec!["x".into()], vec![]));
    }
}
