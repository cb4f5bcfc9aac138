//! The text of the App's comments.

use crate::commands::{CommandError, HELP};
use crate::database::jobs::Job;
use crate::manifest::{Manifest, newest_per_arch};

/// The reply to `/help`.
pub fn help() -> String {
    HELP.to_owned()
}

/// The reply to a command that cannot be read.
pub fn bad_command(user: &str, error: &CommandError) -> String {
    format!("@{user} {error}\n\nNothing was run. Comment `/help` for the commands.")
}

/// The reply to a command the commenter may not run.
pub fn not_permitted(user: &str, command: &str, repository: &str, permission: &str) -> String {
    format!(
        "@{user} `/{command}` needs admin, maintain or write permission on {repository}; yours is `{permission}`. Nothing was run."
    )
}

/// One line about a job.
pub fn job_line(job: &Job) -> String {
    let what = if job.rebuild { "rebuild" } else { "build" };
    let mut line = format!(
        "- job #{} — {what} {}: **{}**",
        job.id,
        job.version,
        job.state.as_str()
    );
    if let Some(step) = &job.step {
        line.push_str(&format!(", step `{step}`"));
    }
    line.push_str(&format!(", attempt {}", job.attempts));
    if let Some(error) = &job.error {
        line.push_str(&format!(" — {}", one_line(error)));
    }
    line
}

/// The reply to `/status`: the newest images and the latest jobs.
pub fn status(jobs: &[Job], manifest: Option<&str>, image_name: &str) -> String {
    let mut text = String::from("**Alloy sysext status**\n\n");
    let newest = manifest
        .and_then(|m| Manifest::parse(m).ok())
        .map(|m| newest_per_arch(&m, image_name))
        .unwrap_or_default();
    if newest.is_empty() {
        text.push_str("No image has been built yet.\n");
    } else {
        text.push_str("Newest built images:\n");
        for image in newest {
            text.push_str(&format!("- `{}` sha256 `{}`\n", image.file, image.sha256));
        }
    }
    text.push('\n');
    if jobs.is_empty() {
        text.push_str("No jobs yet.\n");
    } else {
        text.push_str("Latest jobs:\n");
        for job in jobs {
            text.push_str(&job_line(job));
            text.push('\n');
        }
    }
    text
}

/// The title of the tracking issue for `version`.
pub fn tracking_issue_title(version: &crate::version::Version) -> String {
    format!("Alloy {version} sysext build triggered")
}

/// The report of a job that has finished well: what was published, where, and the pull
/// requests.
pub fn job_succeeded(job: &Job) -> String {
    let result = job.result.clone().unwrap_or_default();
    let text_of = |key: &str| result.get(key).and_then(|v| v.as_str());
    let failed = failed_consumers(job);
    let mut text = match text_of("published") {
        Some("unchanged") => format!(
            "✅ Alloy {} is already published with the same hashes; nothing was uploaded or committed again (job #{}",
            job.version, job.id
        ),
        Some("replaced") => format!(
            "✅ Alloy {} is rebuilt and republished, replacing the earlier images (job #{}",
            job.version, job.id
        ),
        _ => format!(
            "✅ Alloy {} is built, signed and published (job #{}",
            job.version, job.id
        ),
    };
    if let Some(user) = &job.trigger.user {
        text.push_str(&format!(", asked by @{user}"));
    }
    text.push_str(").\n\n");
    if !failed.is_empty() {
        text.replace_range(..'✅'.len_utf8(), "⚠️");
        text.push_str(&format!(
            "**{} consumer update(s) failed**: {}. The tracking issue stays open; fix the cause and comment `/rebuild {}` to try them again (the published images, unchanged, are not replaced).\n\n",
            failed.len(),
            failed.join(", "),
            job.version
        ));
    }
    if let Some(images) = result.get("images").and_then(|i| i.as_array()) {
        text.push_str("| image | size | sha256 |\n|---|---:|---|\n");
        for image in images {
            let file = image.get("file").and_then(|v| v.as_str()).unwrap_or("?");
            let name = match image.get("url").and_then(|v| v.as_str()) {
                Some(url) => format!("[`{file}`]({url})"),
                None => format!("`{file}`"),
            };
            text.push_str(&format!(
                "| {name} | {} | `{}` |\n",
                image.get("size").and_then(|v| v.as_u64()).unwrap_or(0),
                image.get("sha256").and_then(|v| v.as_str()).unwrap_or("?"),
            ));
        }
        text.push('\n');
    }
    if let Some(release) = text_of("release") {
        text.push_str(&format!("Release: {release}\n"));
    }
    if let Some(consumers) = result.get("consumers").and_then(|c| c.as_array())
        && !consumers.is_empty()
    {
        text.push_str("\nConsumers:\n");
        for consumer in consumers {
            let repo = consumer.get("repo").and_then(|v| v.as_str()).unwrap_or("?");
            let outcome = consumer
                .get("outcome")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            let mut line = format!("- {repo}: {outcome}");
            if let Some(url) = consumer.get("pull_request").and_then(|v| v.as_str()) {
                line.push_str(&format!(" — {url}"));
            }
            if let Some(error) = consumer.get("error").and_then(|v| v.as_str()) {
                line.push_str(&format!(" — {}", one_line(error)));
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// The consumer repositories whose update failed for good in `job`.
pub fn failed_consumers(job: &Job) -> Vec<String> {
    job.result
        .as_ref()
        .and_then(|result| result.get("consumers"))
        .and_then(|consumers| consumers.as_array())
        .into_iter()
        .flatten()
        .filter(|consumer| consumer.get("outcome").and_then(|o| o.as_str()) == Some("failed"))
        .filter_map(|consumer| consumer.get("repo").and_then(|r| r.as_str()))
        .map(str::to_owned)
        .collect()
}

/// The reply when a job has failed for good, saying whether hosts can see the version: what
/// they read is `SHA256SUMS` in storage, which the `manifest` step writes.
pub fn job_failed(job: &Job, error: &str) -> String {
    let step = job.step.as_deref().unwrap_or("start");
    let published = match step {
        // A rebuild's upload replaces images under their published names.
        "upload" if job.rebuild => {
            "Images may have been replaced in storage, but `SHA256SUMS` was not: hosts still check against the earlier hashes. Fix the cause and comment `/rebuild {v}` to finish."
        }
        "start" | "download" | "build" | "upload" => {
            "Nothing was published: hosts see no change. Fix the cause and comment `/rebuild {v}` to try again."
        }
        "manifest" => {
            "`SHA256SUMS` may or may not have reached storage, where hosts read it; `/status` shows what is published. Fix the cause and comment `/rebuild {v}` to finish: images whose hashes are unchanged are not replaced."
        }
        _ => {
            "The images and `SHA256SUMS` are published: hosts can update to {v}. What failed came after that; fix the cause and comment `/rebuild {v}` to run the remaining steps again (the images, unchanged, are not replaced)."
        }
    }
    .replace("{v}", job.version.as_str());
    format!(
        "❌ Building Alloy {} failed (job #{}, step `{step}`, attempt {}):\n\n```\n{}\n```\n\n{published}",
        job.version,
        job.id,
        job.attempts,
        error.replace("```", "'''"),
    )
}

fn one_line(text: &str) -> String {
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::jobs::{JobState, Trigger};

    fn job() -> Job {
        Job {
            id: 3,
            kind: "build".into(),
            version: "1.17.1".into(),
            rebuild: true,
            trigger: Trigger {
                user: Some("octocat".into()),
                ..Trigger::default()
            },
            installation_id: Some(1),
            state: JobState::Failed,
            step: Some("download".into()),
            attempts: 2,
            next_attempt_at: None,
            created_at: "t".into(),
            started_at: None,
            updated_at: "t".into(),
            finished_at: None,
            error: Some("GitHub answered 404\nmore".into()),
            result: None,
        }
    }

    #[test]
    fn status_lists_the_newest_image_per_architecture_and_the_jobs() {
        let manifest = format!(
            "{}  alloy-1.9.0-amd64.raw\n{}  alloy-1.10.0-amd64.raw\n{}  alloy-1.10.0-arm64.raw\n",
            "a".repeat(64),
            "b".repeat(64),
            "c".repeat(64)
        );
        let text = status(&[job()], Some(&manifest), "alloy");
        assert!(text.contains("alloy-1.10.0-amd64.raw"));
        assert!(text.contains("alloy-1.10.0-arm64.raw"));
        assert!(!text.contains("alloy-1.9.0-amd64.raw"));
        assert!(text.contains(
            "job #3 — rebuild 1.17.1: **failed**, step `download`, attempt 2 — GitHub answered 404"
        ));
    }

    #[test]
    fn a_failure_reply_says_where_and_why() {
        let text = job_failed(&job(), "boom ``` injected");
        assert!(text.contains("step `download`"));
        assert!(text.contains("boom ''' injected"));
        assert!(text.contains("/rebuild 1.17.1"));
        assert!(text.contains("Nothing was published"), "{text}");
    }

    #[test]
    fn a_failure_after_publishing_says_hosts_can_update() {
        let mut failed = job();
        failed.rebuild = false;
        for (step, says) in [
            ("upload", "Nothing was published"),
            ("manifest", "may or may not have reached storage"),
            ("release", "hosts can update to 1.17.1"),
            ("consumers", "hosts can update to 1.17.1"),
            ("tracking", "hosts can update to 1.17.1"),
        ] {
            failed.step = Some(step.to_owned());
            let text = job_failed(&failed, "boom");
            assert!(text.contains(says), "{step}: {text}");
            assert!(text.contains("/rebuild 1.17.1"), "{step}: {text}");
        }
        // A rebuild's upload replaces images under their published names.
        failed.rebuild = true;
        failed.step = Some("upload".into());
        let text = job_failed(&failed, "boom");
        assert!(text.contains("may have been replaced"), "{text}");
    }
}
