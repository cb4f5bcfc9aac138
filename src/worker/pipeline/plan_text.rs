//! A [`Plan`] as plain text, for the `plan` command.

use std::fmt::Write;

use super::plan::{ConsumerPlan, Plan, PrunePlan};
use crate::database::job_result::Publication;
use crate::version::Version;

/// Control characters other than the line breaks and tabs the report is laid out with,
/// written as `\u{..}` escapes: the report quotes files and errors from repositories
/// (an enrolled stranger's among them), whose escape sequences must not reach the
/// operator's terminal.
pub fn terminal_safe(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            let _ = write!(safe, "\\u{{{:x}}}", c as u32);
        } else {
            safe.push(c);
        }
    }
    safe
}

/// The report of `plan`: each step's part, in the job's order, safe to print on a
/// terminal.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let job = if plan.rebuild { "rebuild" } else { "build" };
    let _ = writeln!(
        out,
        "Plan of the {job} of Alloy {} (nothing was written to GitHub or storage)",
        plan.version
    );
    out.push('\n');
    out.push_str("Download:\n");
    if let Some(url) = &plan.upstream_release {
        let _ = writeln!(out, "  upstream release {url}");
    }
    if plan.downloads.is_empty() {
        out.push_str("  the assets were downloaded already\n");
    }
    for download in &plan.downloads {
        let _ = writeln!(
            out,
            "  {} sha256 {} (checked against {})",
            download.asset,
            download.sha256,
            download.checked_against.join(", ")
        );
    }
    out.push('\n');
    match &plan.signing_key {
        Some(fingerprint) => {
            let _ = writeln!(
                out,
                "Build (signed by {fingerprint}) in {}:",
                plan.out_dir.display()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "Build in {} (unsigned here: the server would sign with a key it makes on its first start):",
                plan.out_dir.display()
            );
        }
    }
    for image in &plan.images {
        let _ = writeln!(
            out,
            "  {} {} bytes sha256 {}",
            image.file, image.size, image.sha256
        );
    }
    out.push('\n');
    out.push_str("Upload:\n");
    match plan.publication {
        Publication::Unchanged => {
            out.push_str("  nothing: SHA256SUMS lists this build with the same hashes already\n")
        }
        Publication::New => out.push_str("  a new build, not listed in SHA256SUMS yet\n"),
        Publication::Replaced => {
            out.push_str("  replaces published images that SHA256SUMS lists with other hashes\n")
        }
    }
    if let Some(stops) = &plan.stops {
        let _ = writeln!(
            out,
            "  the job would stop here and publish nothing: {stops}"
        );
        return out;
    }
    for upload in &plan.uploads {
        let _ = writeln!(
            out,
            "  {}: {} ({} bytes, sha256 {})",
            upload.action(),
            upload.key,
            upload.size,
            upload.sha256
        );
    }
    if let Some(manifest) = &plan.manifest {
        out.push('\n');
        let _ = writeln!(
            out,
            "Manifest: SHA256SUMS in {} on {}:",
            manifest.repo, manifest.branch
        );
        if manifest.diff.is_empty() {
            out.push_str("  unchanged\n");
        } else {
            for line in manifest.diff.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    if let Some(release) = &plan.release {
        out.push('\n');
        out.push_str("Release:\n");
        match &release.exists {
            Some(page) => {
                let _ = writeln!(
                    out,
                    "  {} exists already in {}: {page}; left as it is",
                    release.tag, release.repo
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  would create {} \"{}\" in {} on {}",
                    release.tag, release.name, release.repo, release.target
                );
            }
        }
    }
    if let Some(consumers) = &plan.consumers {
        out.push('\n');
        out.push_str("Consumers:\n");
        if consumers.is_empty() {
            out.push_str("  none configured or enrolled\n");
        }
        for consumer in consumers {
            render_consumer(&mut out, consumer, &plan.version);
        }
        if let Some(error) = &plan.enrollments_unread {
            let _ = writeln!(
                out,
                "  repositories that enrolled themselves could not be listed: {error}"
            );
        }
    }
    if let Some(prune) = &plan.prune {
        out.push('\n');
        out.push_str(&prune_text(prune));
    }
    terminal_safe(&out)
}

/// What `prune` would do, as lines of text.
pub fn prune_text(prune: &PrunePlan) -> String {
    let mut out = String::from("Prune:\n");
    if prune.keep == 0 {
        out.push_str("  off (publish.keep_versions = 0): every version stays\n");
        return out;
    }
    if let Some(why) = &prune.skipped {
        let _ = writeln!(out, "  nothing would be pruned this time: {why}");
        return out;
    }
    if prune.remove.is_empty() {
        let _ = writeln!(
            out,
            "  nothing: no unpinned version is older than the newest {}",
            prune.keep
        );
    }
    for version in &prune.remove {
        let _ = writeln!(
            out,
            "  would take {version} out of SHA256SUMS (older than the newest {}, pinned by no consumer); its files leave storage after the grace period",
            prune.keep
        );
    }
    for kept in &prune.kept_pinned {
        let _ = writeln!(
            out,
            "  keeps {}: pinned by {}",
            kept.version,
            kept.by.join(", ")
        );
    }
    out
}

fn render_consumer(out: &mut String, consumer: &ConsumerPlan, version: &Version) {
    let kind = if consumer.enrolled {
        "enrolled"
    } else {
        "configured"
    };
    let _ = writeln!(out, "  {} ({kind}) {}", consumer.repo, consumer.path);
    if let (Some(base), Some(branch)) = (&consumer.base, &consumer.branch) {
        let _ = writeln!(out, "    branch {branch} onto {base}");
    }
    let action = consumer
        .action
        .describe(version, str::to_owned, str::to_owned);
    let _ = writeln!(out, "    {action}");
    for line in consumer.diff.lines() {
        let _ = writeln!(out, "    {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_from_repositories_are_shown_not_sent() {
        assert_eq!(
            terminal_safe("a\u{1b}]52;c;aGk=\u{7}b\r\n\tc\u{9b}"),
            "a\\u{1b}]52;c;aGk=\\u{7}b\\u{d}\n\tc\\u{9b}"
        );
    }
}
