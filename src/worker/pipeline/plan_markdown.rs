//! A [`Plan`] as Markdown, for the reply to `/build X.Y.Z --dry-run`.
//!
//! The reply is read by everyone who can read the comment, so a consumer repository the
//! readers may not see is named nowhere and shows no diff: only whether its pull request
//! would be opened, updated or skipped. Everything taken from GitHub, upstream or a
//! repository's files goes through [`crate::github::markdown`]; diffs go in fenced code
//! blocks whose fence is longer than any backtick run inside. A plan longer than the room
//! given is cut between sections, with a pointer to the `plan` command, which shows all
//! of it.

use super::plan::{ConsumerAction, ConsumerPlan, Plan, PrunePlan};
use crate::database::job_result::Publication;
use crate::github::markdown::{code_span, escape, highlighted_code_block, safe_url};

/// What the readers of the reply may see of each consumer.
pub trait ConsumerDisclosure {
    /// Whether the readers may see `consumer`'s name, file and diff.
    fn shows(&self, consumer: &ConsumerPlan) -> bool;
}

impl<F: Fn(&ConsumerPlan) -> bool> ConsumerDisclosure for F {
    fn shows(&self, consumer: &ConsumerPlan) -> bool {
        self(consumer)
    }
}

/// `plan` as Markdown of at most `max_chars` characters: the sections in the job's order,
/// cut before the first one that does not fit, with a line saying how to see everything.
pub fn render_markdown(
    plan: &Plan,
    disclosure: &dyn ConsumerDisclosure,
    max_chars: usize,
) -> String {
    let blocks = blocks(plan, disclosure);
    let cut = cut_notice(plan);
    let total: usize = blocks.iter().map(|b| b.chars().count() + 1).sum();
    if total <= max_chars {
        return blocks.join("\n");
    }
    let room = max_chars.saturating_sub(cut.chars().count() + 1);
    let mut out = String::new();
    let mut used = 0;
    for block in &blocks {
        let size = block.chars().count() + 1;
        if used + size > room {
            break;
        }
        out.push_str(block);
        out.push('\n');
        used += size;
    }
    out.push_str(&cut);
    out
}

/// The line that ends a cut plan.
fn cut_notice(plan: &Plan) -> String {
    let rebuild = if plan.rebuild { " --rebuild" } else { "" };
    format!(
        "*The plan is cut here: it is longer than a comment may be. `alloy-sysext-automation plan --version {}{rebuild}`, run where the server runs, shows all of it.*",
        plan.version
    )
}

/// The plan's parts, each whole Markdown (a code block is never split), in order.
fn blocks(plan: &Plan, disclosure: &dyn ConsumerDisclosure) -> Vec<String> {
    let mut blocks = Vec::new();
    let command = if plan.rebuild { "rebuild" } else { "build" };
    blocks.push(format!(
        "Dry run of {}: what the job would do. Nothing was published or committed, and no job was queued.\n",
        code_span(&format!("/{command} {} --dry-run", plan.version))
    ));

    let mut download = String::from("**Download**\n");
    if let Some(url) = &plan.upstream_release {
        download.push_str(&format!("- upstream release {}\n", link(url)));
    }
    if plan.downloads.is_empty() {
        download.push_str("- the assets were downloaded already\n");
    }
    for item in &plan.downloads {
        let against: Vec<String> = item.checked_against.iter().map(|c| escape(c)).collect();
        download.push_str(&format!(
            "- {} sha256 {} (checked against {})\n",
            code_span(&item.asset),
            code_span(&item.sha256),
            against.join(", ")
        ));
    }
    blocks.push(download);

    let mut build = match &plan.signing_key {
        Some(fingerprint) => format!("**Build** (signed by {})\n", code_span(fingerprint)),
        None => {
            "**Build** (unsigned: the server would sign with a key it makes on its first start)\n"
                .to_owned()
        }
    };
    for image in &plan.images {
        build.push_str(&format!(
            "- {} {} bytes, sha256 {}\n",
            code_span(&image.file),
            image.size,
            code_span(&image.sha256)
        ));
    }
    blocks.push(build);

    let mut upload = String::from("**Upload**\n");
    upload.push_str(match plan.publication {
        Publication::Unchanged => {
            "- nothing: `SHA256SUMS` lists this build with the same hashes already\n"
        }
        Publication::New => "- a new build, not listed in `SHA256SUMS` yet\n",
        Publication::Replaced => {
            "- replaces published images that `SHA256SUMS` lists with other hashes\n"
        }
    });
    if let Some(stops) = &plan.stops {
        upload.push_str(&format!(
            "- the job would stop here and publish nothing: {}\n",
            escape(stops)
        ));
        blocks.push(upload);
        return blocks;
    }
    for item in &plan.uploads {
        upload.push_str(&format!(
            "- {}: {} ({} bytes)\n",
            item.action(),
            code_span(&item.key),
            item.size
        ));
    }
    blocks.push(upload);

    if let Some(manifest) = &plan.manifest {
        let mut section = format!(
            "**Manifest**: `SHA256SUMS` in {} on {}\n",
            code_span(&manifest.repo),
            code_span(&manifest.branch)
        );
        if manifest.diff.is_empty() {
            section.push_str("- unchanged\n");
        } else {
            section.push_str(&highlighted_code_block(
                "diff",
                manifest.diff.trim_end_matches('\n'),
            ));
        }
        blocks.push(section);
    }
    if let Some(release) = &plan.release {
        blocks.push(match &release.exists {
            Some(page) => format!(
                "**Release**: {} exists already in {}: {}; left as it is\n",
                code_span(&release.tag),
                code_span(&release.repo),
                link(page)
            ),
            None => format!(
                "**Release**: would create {} {} in {} on {}\n",
                code_span(&release.tag),
                code_span(&release.name),
                code_span(&release.repo),
                code_span(&release.target)
            ),
        });
    }
    if let Some(consumers) = &plan.consumers {
        blocks.push(if consumers.is_empty() {
            "**Consumers**: none configured or enrolled\n".to_owned()
        } else {
            "**Consumers**\n".to_owned()
        });
        for consumer in consumers {
            blocks.push(if disclosure.shows(consumer) {
                shown_consumer(consumer, plan)
            } else {
                hidden_consumer(consumer)
            });
        }
        if plan.enrollments_unread.is_some() {
            blocks.push(
                "Repositories that enrolled themselves could not be listed; they are missing \
                 here.\n"
                    .to_owned(),
            );
        }
    }
    if let Some(prune) = &plan.prune {
        blocks.push(prune_block(prune));
    }
    blocks
}

/// What `prune` would do. Consumers are counted, not named: the reply's readers may not see
/// them all.
fn prune_block(prune: &PrunePlan) -> String {
    if prune.keep == 0 {
        return "**Prune**: off (`publish.keep_versions = 0`)\n".to_owned();
    }
    if prune.skipped.is_some() {
        return "**Prune**: nothing this time: a consumer's pin could not be read (`plan` on the \
                server says which)\n"
            .to_owned();
    }
    let mut out = format!(
        "**Prune** (keeps the newest {} versions and those a consumer pins)\n",
        prune.keep
    );
    if prune.remove.is_empty() {
        out.push_str("- nothing would leave `SHA256SUMS`\n");
    }
    for version in &prune.remove {
        out.push_str(&format!(
            "- would take {} out of `SHA256SUMS`\n",
            code_span(version.as_str())
        ));
    }
    for kept in &prune.kept_pinned {
        out.push_str(&format!(
            "- keeps {}: pinned by {} consumer(s)\n",
            code_span(kept.version.as_str()),
            kept.by.len()
        ));
    }
    out
}

/// A consumer the readers may see: its name, file, branch, what would be done, and the
/// diff.
fn shown_consumer(consumer: &ConsumerPlan, plan: &Plan) -> String {
    let kind = if consumer.enrolled {
        "enrolled"
    } else {
        "configured"
    };
    let mut out = format!(
        "- {} ({kind}) {}",
        code_span(&consumer.repo),
        code_span(&consumer.path)
    );
    if let (Some(base), Some(branch)) = (&consumer.base, &consumer.branch) {
        out.push_str(&format!(
            ", branch {} onto {}",
            code_span(branch),
            code_span(base)
        ));
    }
    let action = consumer.action.describe(&plan.version, link, escape);
    out.push_str(&format!("\n  {action}\n"));
    if !consumer.diff.is_empty() {
        out.push('\n');
        out.push_str(&highlighted_code_block(
            "diff",
            consumer.diff.trim_end_matches('\n'),
        ));
    }
    out
}

/// A consumer the readers may not see: no name, no file, no reason; only what would be
/// done.
fn hidden_consumer(consumer: &ConsumerPlan) -> String {
    let action = match &consumer.action {
        ConsumerAction::Open { .. } => "would open a pull request",
        ConsumerAction::Update { .. } => "would update its pull request",
        ConsumerAction::Skip { .. } => "would skip it",
    };
    format!("- a repository this comment's readers may not see: {action}\n")
}

/// `url` as a bare link when it is a plain web address, else as code.
fn link(url: &str) -> String {
    safe_url(url).map_or_else(|| code_span(url), str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::arch::Arch;
    use crate::database::job_result::{BuiltImage, Download};
    use crate::worker::pipeline::plan::{ManifestPlan, PlannedUpload, ReleasePlan};

    fn plan(consumers: Vec<ConsumerPlan>) -> Plan {
        Plan {
            version: "1.18.0".parse().unwrap(),
            rebuild: false,
            signing_key: Some("ABCD".into()),
            upstream_release: Some("https://github.com/grafana/alloy/releases/tag/v1.18.0".into()),
            downloads: vec![Download {
                asset: "alloy-linux-amd64.zip".into(),
                sha256: "aa".into(),
                checked_against: vec!["SHA256SUMS".into()],
            }],
            out_dir: PathBuf::from("/secret/work/out"),
            images: vec![BuiltImage {
                arch: Arch::Amd64,
                file: "alloy-1.18.0-amd64.raw".into(),
                size: 10,
                sha256: "bb".into(),
                binary_sha256: "cc".into(),
                url: String::new(),
            }],
            publication: Publication::New,
            stops: None,
            uploads: vec![PlannedUpload {
                key: "alloy-1.18.0-amd64.raw".into(),
                size: 10,
                sha256: "bb".into(),
                in_storage: false,
            }],
            manifest: Some(ManifestPlan {
                repo: "o/build".into(),
                branch: "main".into(),
                removed: vec![],
                added: vec!["bb  alloy-1.18.0-amd64.raw".into()],
                diff: "--- a/SHA256SUMS\n+++ b/SHA256SUMS\n@@ -0,0 +1 @@\n+bb  alloy-1.18.0-amd64.raw\n"
                    .into(),
            }),
            release: Some(ReleasePlan {
                repo: "o/build".into(),
                tag: "v1.18.0".into(),
                name: "Alloy Sysext 1.18.0".into(),
                target: "main".into(),
                exists: None,
            }),
            consumers: Some(consumers),
            prune: None,
            enrollments_unread: None,
        }
    }

    #[test]
    fn enrollments_that_could_not_be_listed_are_said_to_be_missing() {
        let mut plan = plan(vec![consumer("public/a", "+x\n")]);
        assert!(!render_markdown(&plan, &public_only, 60_000).contains("could not be listed"));
        plan.enrollments_unread = Some("reading the installations: database is locked".into());
        let text = render_markdown(&plan, &public_only, 60_000);
        assert!(
            text.contains(
                "Repositories that enrolled themselves could not be listed; they are missing here."
            ),
            "{text}"
        );
        // The error stays in the server's log and the operator's `plan`.
        assert!(!text.contains("database is locked"), "{text}");
    }

    fn consumer(repo: &str, diff: &str) -> ConsumerPlan {
        ConsumerPlan {
            repo: repo.into(),
            path: "host.bu".into(),
            enrolled: false,
            base: Some("main".into()),
            branch: Some("feature/update-alloy-sysext-to-1.18.0".into()),
            action: ConsumerAction::Open {
                from: "1.17.0".parse().unwrap(),
            },
            diff: diff.into(),
        }
    }

    fn public_only(consumer: &ConsumerPlan) -> bool {
        consumer.repo.starts_with("public/")
    }

    #[test]
    fn shown_consumers_get_their_diff_and_hidden_ones_only_the_action() {
        let plan = plan(vec![
            // The last line is a context line of an empty line: kept.
            consumer("public/a", "-old ```` x\n+new\n \n"),
            consumer("private/b", "-secret\n+secret\n"),
        ]);
        let text = render_markdown(&plan, &public_only, 60_000);
        assert!(
            text.contains(
                "- `public/a` (configured) `host.bu`, branch `feature/update-alloy-sysext-to-1.18.0` onto `main`\n  would open a pull request: 1.17.0 → 1.18.0\n\n`````diff\n-old ```` x\n+new\n \n`````\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "- a repository this comment's readers may not see: would open a pull request\n"
            ),
            "{text}"
        );
        assert!(!text.contains("private/b"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.starts_with(
                "Dry run of `/build 1.18.0 --dry-run`: what the job would do. Nothing was published or committed, and no job was queued.\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_long_plan_is_cut_between_sections_with_a_pointer_to_plan() {
        let long = "+x\n".repeat(5_000);
        let plan = plan(vec![
            consumer("public/a", &long),
            consumer("public/b", "+y\n"),
        ]);
        let whole = render_markdown(&plan, &public_only, usize::MAX);
        assert!(whole.contains("`public/b`"), "{whole}");
        let cut = render_markdown(&plan, &public_only, 5_000);
        assert!(cut.chars().count() <= 5_000, "{}", cut.chars().count());
        assert!(cut.contains("**Consumers**\n"), "{cut}");
        // The long diff did not fit, so neither it nor anything after it is there, and no
        // code block is left open.
        assert!(!cut.contains("public/a"), "{cut}");
        assert!(!cut.contains("public/b"), "{cut}");
        assert_eq!(cut.matches("```").count() % 2, 0, "{cut}");
        assert!(
            cut.ends_with(
                "\n*The plan is cut here: it is longer than a comment may be. `alloy-sysext-automation plan --version 1.18.0`, run where the server runs, shows all of it.*"
            ),
            "{cut}"
        );
        assert_eq!(
            whole,
            render_markdown(&plan, &public_only, whole.chars().count() + 1)
        );
    }
}
