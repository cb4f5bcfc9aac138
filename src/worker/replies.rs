//! The text of the App's comments.
//!
//! Everything that comes from a payload or a repository (an error, a repository name, an
//! address) goes through [`crate::github::markdown`]; a login is mentioned only when it is one.

use crate::database::job_result::{ConsumerOutcome, JobResult, Pruned, Publication};
use crate::database::job_steps::Step;
use crate::database::jobs::{Job, JobKind, TriggerSource};
use crate::database::withdrawals::Withdrawal;
use crate::github::markdown::{code_block, code_span, escape, safe_url, table_code_span};
use crate::manifest::{Manifest, newest_per_arch};
use crate::worker::commands::{CommandError, HELP};
use crate::worker::promotions::{Newest, Rollout};

/// Who reads a comment: those of the build repository see everything; elsewhere (a
/// consumer repository, any other one the App is installed on) no error text and no other
/// repository's name is shown, since those may be private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    BuildRepository,
    /// `owner/name` of the repository the comment is in.
    Elsewhere(&'a str),
}

impl<'a> Audience<'a> {
    /// Who reads a comment in `repo`, when the build repository is `build_repo`.
    pub fn of(repo: &'a str, build_repo: &str) -> Audience<'a> {
        if repo.eq_ignore_ascii_case(build_repo) {
            Audience::BuildRepository
        } else {
            Audience::Elsewhere(repo)
        }
    }
}

/// What a `/build` or `/rebuild` came to, for the comment's one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildAnswer {
    /// Queued as a new job: the eyes reaction says so, and the job's end report follows.
    Queued,
    /// Joined the queued job `job` for the same version; `upgraded` when this `/rebuild`
    /// made it a rebuild.
    Joined { job: i64, upgraded: bool },
    /// The commenter lacks write permission on the build repository.
    NotPermitted { permission: String },
    /// The commenter has asked for `limit` queued jobs already.
    TooManyQueued { limit: i64 },
}

/// `@login` when `login` is a GitHub login (letters, digits, hyphens, maybe `[bot]`),
/// else the text escaped, so that it mentions nobody.
pub fn mention(login: &str) -> String {
    let name = login.strip_suffix("[bot]").unwrap_or(login);
    let is_login = !name.is_empty()
        && name.len() <= 39
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if is_login {
        format!("@{login}")
    } else {
        escape(login)
    }
}

/// The reply to `/help`.
pub fn help() -> String {
    HELP.to_owned()
}

/// The part of a reply about a command that cannot be read.
pub fn bad_command(error: &CommandError) -> String {
    format!("{error}\n\nNothing was run for it. Comment `/help` for the commands.")
}

/// The answer to a dry run (`command`, as typed) asked for outside the build repository.
pub fn dry_run_elsewhere(command: &str) -> String {
    format!(
        "{} works in the build repository only: comment it on an issue or pull request there. Nothing was run.",
        code_span(command)
    )
}

/// The answer to a comment's second dry run (`command`, as typed).
pub fn one_dry_run_per_comment(command: &str) -> String {
    format!(
        "{} was not run: a comment gets one dry run. Ask for it in a comment of its own.",
        code_span(command)
    )
}

/// The answer to a dry run (`command`, as typed) that could not be done. The reason is not
/// in it: it can name the server's paths and storage.
pub fn dry_run_failed(command: &str) -> String {
    format!(
        "{} could not plan the job, and nothing was published; the server's log says why.",
        code_span(command)
    )
}

/// The part of a reply about a `/build` or `/rebuild` (`command`, as typed) that was not
/// simply queued.
pub fn build_answer(
    command: &str,
    answer: &BuildAnswer,
    build_repo: &str,
    audience: Audience<'_>,
) -> Option<String> {
    let command = code_span(command);
    let build_repository = match audience {
        Audience::BuildRepository => format!("the build repository {}", code_span(build_repo)),
        Audience::Elsewhere(_) => "the build repository".to_owned(),
    };
    Some(match answer {
        BuildAnswer::Queued => return None,
        BuildAnswer::Joined { job, upgraded } => {
            let made = if *upgraded {
                "; it is a rebuild now"
            } else {
                ""
            };
            format!(
                "{command} joins job #{job}, already queued for that version{made}. Its report names everyone who asked."
            )
        }
        BuildAnswer::NotPermitted { permission } => format!(
            "{command} publishes from {build_repository}, so it needs admin, maintain or write permission there; yours is {}. Nothing was run.",
            code_span(permission)
        ),
        BuildAnswer::TooManyQueued { limit } => format!(
            "{command} was not queued: you have asked for {limit} jobs that are still queued, the most one user may have. Ask again once one of them has started."
        ),
    })
}

/// The one reply to a comment: its parts (one per command that needs an answer), in order,
/// addressed to `user`.
pub fn comment_reply(user: &str, parts: &[String]) -> String {
    let mut text = mention(user);
    text.push(' ');
    text.push_str(&parts.join("\n\n---\n\n"));
    text
}

/// One line about a job; error text only for `Audience::BuildRepository`.
pub fn job_line(job: &Job, audience: Audience<'_>) -> String {
    let what = match job.kind {
        JobKind::Withdraw => "withdraw",
        JobKind::Promote => "promote",
        JobKind::Build if job.rebuild => "rebuild",
        JobKind::Build => "build",
    };
    let mut line = format!(
        "- job #{} — {what} {}: **{}**",
        job.id,
        job.version,
        job.state.as_str()
    );
    if let Some(step) = job.step {
        line.push_str(&format!(", step {}", code_span(step.as_str())));
    }
    line.push_str(&format!(", attempt {}", job.attempts));
    if let (Some(error), Audience::BuildRepository) = (&job.error, audience) {
        line.push_str(&format!(" — {}", code_span(&one_line(error))));
    }
    line
}

/// The reply to `/status`: the newest images and the latest jobs.
pub fn status(
    jobs: &[Job],
    manifest: PublishedManifest<'_>,
    withdrawals: &[Withdrawal],
    rollout: Option<&Rollout>,
    image_name: &str,
    audience: Audience<'_>,
) -> String {
    let mut text = String::from("**Alloy sysext status**\n\n");
    let parsed = match manifest {
        PublishedManifest::Read(text) => Manifest::parse(text).map_err(|e| e.to_string()),
        PublishedManifest::Missing => Ok(Manifest::default()),
        PublishedManifest::Unreadable(reason) => Err(reason),
    };
    match parsed.map(|manifest| newest_per_arch(&manifest, image_name)) {
        Err(reason) => {
            text.push_str("The published manifest could not be read, so its images are not shown");
            // Storage's error names the bucket or directory, which only the build
            // repository may see.
            match audience {
                Audience::BuildRepository => {
                    text.push_str(&format!(": {}\n", code_span(&reason)));
                }
                Audience::Elsewhere(_) => text.push_str(".\n"),
            }
        }
        Ok(newest) if newest.is_empty() => text.push_str("No image has been built yet.\n"),
        Ok(newest) => {
            text.push_str("Newest built images:\n");
            for image in newest {
                text.push_str(&format!(
                    "- {} sha256 {}\n",
                    code_span(&image.file),
                    code_span(&image.sha256)
                ));
            }
        }
    }
    if let Some(rollout) = rollout {
        text.push_str(&rollout_lines(rollout, audience));
    }
    if !withdrawals.is_empty() {
        text.push_str(
            "\nWithdrawn (no host installs these; `/rebuild X.Y.Z` publishes one again):\n",
        );
        for withdrawal in withdrawals {
            text.push_str(&format!("- {}\n", withdrawal_line(withdrawal)));
        }
    }
    text.push('\n');
    if jobs.is_empty() {
        text.push_str("No jobs yet.\n");
    } else {
        text.push_str("Latest jobs:\n");
        for job in jobs {
            text.push_str(&job_line(job, audience));
            text.push('\n');
        }
    }
    text
}

/// The channels, each with its newest version, and the planned promotions, in Markdown.
/// The repositories whose CI failed are named in the build repository only (others may be
/// private), in code spans.
pub fn rollout_lines(rollout: &Rollout, audience: Audience<'_>) -> String {
    let mut text =
        String::from("\nChannels (builds go to the first; `/promote X.Y.Z` moves a version on):\n");
    for channel in &rollout.channels {
        let place = if channel.prefix.is_empty() {
            "the root".to_owned()
        } else {
            code_span(&channel.prefix)
        };
        let newest = match &channel.newest {
            Newest::Listed {
                version,
                since: Some(since),
            } => format!(
                "{version} since {}",
                since.get(..16).unwrap_or(since).replace('T', " ")
            ),
            Newest::Listed {
                version,
                since: None,
            } => version.to_string(),
            Newest::Nothing => "no version yet".to_owned(),
            Newest::Unreadable { .. } => "its manifest could not be read".to_owned(),
        };
        text.push_str(&format!(
            "- {} ({place}): {newest}\n",
            code_span(channel.name.as_str())
        ));
    }
    for plan in &rollout.planned {
        let due = plan
            .due_at
            .get(..16)
            .unwrap_or(&plan.due_at)
            .replace('T', " ");
        if plan.held_by.is_empty() {
            text.push_str(&format!(
                "- {} goes from {} to {} at {due} UTC unless a consumer's CI fails on it\n",
                plan.version,
                code_span(plan.from.as_str()),
                code_span(plan.to.as_str())
            ));
        } else {
            let mut repos: Vec<String> = plan
                .held_by
                .iter()
                .map(|failure| code_span(&failure.repository))
                .collect();
            repos.dedup();
            let where_ = match audience {
                Audience::BuildRepository => format!("its pull request in {}", repos.join(", ")),
                Audience::Elsewhere(_) => "a consumer's pull request for it".to_owned(),
            };
            text.push_str(&format!(
                "- {} stays in {}: CI failed on {where_}; only `/promote {}` moves it on\n",
                plan.version,
                code_span(plan.from.as_str()),
                plan.version
            ));
        }
    }
    text
}

/// The published manifest, as `/status` found it in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishedManifest<'a> {
    Read(&'a str),
    /// Nothing is published yet.
    Missing,
    /// Storage failed, or what it holds is not text: why.
    Unreadable(String),
}

/// The title of the tracking issue for `version`.
pub fn tracking_issue_title(version: &crate::version::Version) -> String {
    format!("Alloy {version} sysext build triggered")
}

/// Someone who asked for a job, and the repository they asked in (`None`: not in a
/// comment, such as a release's or a dispatch's sender, who acted on the build repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker {
    pub user: String,
    pub repository: Option<String>,
}

impl Asker {
    /// The logins of `askers` that `audience` may see, each once, in order: all of them in
    /// the build repository; elsewhere only those who asked in that repository, since the
    /// others asked in repositories that may be private.
    pub fn visible_to(askers: &[Asker], audience: Audience<'_>) -> Vec<String> {
        let mut users: Vec<String> = Vec::new();
        for asker in askers {
            let visible = match audience {
                Audience::BuildRepository => true,
                Audience::Elsewhere(here) => asker
                    .repository
                    .as_deref()
                    .is_some_and(|repo| repo.eq_ignore_ascii_case(here)),
            };
            if visible && !users.iter().any(|u| u.eq_ignore_ascii_case(&asker.user)) {
                users.push(asker.user.clone());
            }
        }
        users
    }
}

/// `askers` as a list of mentions: "@a", "@a and @b", "@a, @b and @c".
fn asked_by(askers: &[String]) -> Option<String> {
    let mentions: Vec<String> = askers.iter().map(|a| mention(a)).collect();
    match mentions.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        [rest @ .., last] => Some(format!("{} and {last}", rest.join(", "))),
    }
}

/// The report of a job that has finished well: what was published, where, and the pull
/// requests; `askers` are those who asked for it whom this audience may see (see
/// [`Asker::visible_to`]). Outside the build repository, the release (its address names the
/// build repository), other repositories' names, outcomes and errors are left out.
pub fn job_succeeded(job: &Job, askers: &[String], audience: Audience<'_>) -> String {
    match job.kind {
        JobKind::Withdraw => return withdrawal_done(job, askers, audience),
        JobKind::Promote => return promotion_done(job, askers, audience),
        JobKind::Build => {}
    }
    let result = job.result.clone().unwrap_or_default();
    // Elsewhere, only that repository's own update counts: the others may be private.
    let failed: Vec<String> = failed_consumers(job)
        .into_iter()
        .filter(|repo| match audience {
            Audience::BuildRepository => true,
            Audience::Elsewhere(here) => repo.eq_ignore_ascii_case(here),
        })
        .collect();
    let mut text = match result.published {
        Some(Publication::Unchanged) => format!(
            "✅ Alloy {} is already published with the same hashes; nothing was uploaded or committed again (job #{}",
            job.version, job.id
        ),
        Some(Publication::Replaced) => format!(
            "✅ Alloy {} is rebuilt and republished, replacing the earlier images (job #{}",
            job.version, job.id
        ),
        _ => format!(
            "✅ Alloy {} is built, signed and published (job #{}",
            job.version, job.id
        ),
    };
    if let Some(askers) = asked_by(askers) {
        text.push_str(&format!(", asked by {askers}"));
    }
    text.push_str(").\n\n");
    if !failed.is_empty() {
        text.replace_range(..'✅'.len_utf8(), "⚠️");
        let which = match audience {
            Audience::BuildRepository => format!(
                ": {}",
                failed
                    .iter()
                    .map(|repo| code_span(repo))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Audience::Elsewhere(_) => String::new(),
        };
        text.push_str(&format!(
            "**{} consumer update(s) failed**{which}. The tracking issue stays open; fix the cause and comment `/rebuild {}` to try them again (the published images, unchanged, are not replaced).\n\n",
            failed.len(),
            job.version
        ));
    }
    if let Some(images) = &result.images {
        text.push_str("| image | size | sha256 |\n|---|---:|---|\n");
        for image in images {
            let file = table_code_span(&image.file);
            let name = match safe_url(&image.url) {
                Some(url) => format!("[{file}]({url})"),
                None => file,
            };
            text.push_str(&format!(
                "| {name} | {} | {} |\n",
                image.size,
                table_code_span(&image.sha256),
            ));
        }
        text.push('\n');
    }
    // The release's address names the build repository, which may be private.
    if let (Some(Some(release)), Audience::BuildRepository) = (&result.release, audience) {
        text.push_str(&format!("Release: {}\n", link_or_code(release)));
    }
    text.push_str(&consumer_lines(&result, audience));
    if let Some(pruned) = &result.pruned {
        text.push_str(&pruned_lines(pruned, audience));
    }
    text
}

/// What the `prune` step took out of `SHA256SUMS`, or why it took nothing; the repositories
/// that pin kept versions only in the build repository.
fn pruned_lines(pruned: &Pruned, audience: Audience<'_>) -> String {
    let mut lines = String::new();
    if !pruned.removed.is_empty() {
        let versions: Vec<String> = pruned.removed.iter().map(|v| v.to_string()).collect();
        lines.push_str(&format!(
            "\nPruned from `SHA256SUMS` (older than the newest {}, pinned by no consumer): {}. Their files leave storage after the grace period.\n",
            pruned.keep,
            versions.join(", ")
        ));
    }
    if let (Some(why), Audience::BuildRepository) = (&pruned.skipped, audience) {
        lines.push_str(&format!(
            "\nNothing was pruned this time: {}\n",
            code_span(&one_line(why))
        ));
    }
    if audience == Audience::BuildRepository {
        for kept in &pruned.kept_pinned {
            let by: Vec<String> = kept.by.iter().map(|repo| code_span(repo)).collect();
            lines.push_str(&format!(
                "Kept {}: pinned by {}.\n",
                kept.version,
                by.join(", ")
            ));
        }
    }
    lines
}

/// An address from GitHub's answers: bare when it is a plain web address, else in a code
/// span.
fn link_or_code(url: &str) -> String {
    safe_url(url).map_or_else(|| code_span(url), str::to_owned)
}

/// The consumer repositories whose update failed for good in `job`.
pub fn failed_consumers(job: &Job) -> Vec<String> {
    job.result
        .as_ref()
        .map(|result| {
            result
                .failed_consumers()
                .into_iter()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The report when a job has failed for good, saying whether hosts can see the version:
/// what they read is `SHA256SUMS` in storage, which the `manifest` step writes. The error
/// itself is shown only in the build repository.
pub fn job_failed(job: &Job, error: &str, askers: &[String], audience: Audience<'_>) -> String {
    match job.kind {
        JobKind::Withdraw => return withdrawal_failed(job, error, askers, audience),
        JobKind::Promote => return promotion_failed(job, error, askers, audience),
        JobKind::Build => {}
    }
    let published = match job.step {
        // A rebuild's upload replaces images under their published names.
        Some(Step::Upload) if job.rebuild => {
            "Images may have been replaced in storage, but `SHA256SUMS` was not: hosts still check against the earlier hashes. Fix the cause and comment `/rebuild {v}` to finish."
        }
        None | Some(Step::Download | Step::Build | Step::Upload) => {
            "Nothing was published: hosts see no change. Fix the cause and comment `/rebuild {v}` to try again."
        }
        Some(Step::Manifest) => {
            "`SHA256SUMS` may or may not have reached storage, where hosts read it; `/status` shows what is published. Fix the cause and comment `/rebuild {v}` to finish: images whose hashes are unchanged are not replaced."
        }
        Some(Step::Release | Step::Consumers | Step::Prune | Step::Tracking | Step::Report) => {
            "The images and `SHA256SUMS` are published: hosts can update to {v}. What failed came after that; fix the cause and comment `/rebuild {v}` to run the remaining steps again (the images, unchanged, are not replaced)."
        }
    }
    .replace("{v}", job.version.as_str());
    let asked = asked_by(askers)
        .map(|a| format!(", asked by {a}"))
        .unwrap_or_default();
    let why = match audience {
        Audience::BuildRepository => code_block(error),
        Audience::Elsewhere(_) => {
            "The error is reported in the build repository's tracking issue.\n".to_owned()
        }
    };
    format!(
        "❌ Building Alloy {} failed (job #{}{asked}, step {}, attempt {}):\n\n{why}\n{published}",
        job.version,
        job.id,
        code_span(job.step.map_or("start", Step::as_str)),
        job.attempts,
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

/// The report of a withdraw job that ended well.
fn withdrawal_done(job: &Job, askers: &[String], audience: Audience<'_>) -> String {
    let result = job.result.clone().unwrap_or_default();
    let done = result.withdrawal.clone().unwrap_or_default();
    let version = &job.version;
    let mut text = format!("⛔ Alloy {version} is withdrawn (job #{}", job.id);
    if let Some(askers) = asked_by(askers) {
        text.push_str(&format!(", asked by {askers}"));
    }
    let manifests = if done.channels.len() > 1 {
        let names: Vec<String> = done.channels.iter().map(|c| c.to_string()).collect();
        format!("the `SHA256SUMS` of {}", names.join(", "))
    } else {
        "`SHA256SUMS`".to_owned()
    };
    text.push_str(&format!(
        "): its lines are out of {manifests}, so no host installs it from now on. Hosts that \
         installed it keep it until a newer version is published or they are moved back. A \
         release, a dispatch or the upstream check never publishes it again; `/rebuild {version}` does.\n\n"
    ));
    if !done.files.is_empty() {
        let files: Vec<String> = done.files.iter().map(|f| code_span(f)).collect();
        text.push_str(&format!("Taken out: {}.", files.join(", ")));
        if let Some(after) = &done.files_removed_after {
            text.push_str(&format!(
                " The files stay in storage until {} for hosts that were downloading them.",
                after.get(..16).unwrap_or(after).replace('T', " ")
            ));
        }
        text.push('\n');
    }
    if let (Some(Some(release)), Audience::BuildRepository, Some(true)) =
        (&result.release, audience, done.release_marked)
    {
        text.push_str(&format!(
            "Release marked withdrawn: {}\n",
            link_or_code(release)
        ));
    }
    match &done.moved_to {
        Some(to) => text.push_str(&format!(
            "\nConsumers that pin {version} are moved to {to}, the newest version still listed.\n"
        )),
        None => text.push_str(
            "\nNo version is listed any more: consumers that pin it are left as they are.\n",
        ),
    }
    if audience == Audience::BuildRepository && !done.closed_pull_requests.is_empty() {
        text.push_str("\nClosed pull requests for it:\n");
        for url in &done.closed_pull_requests {
            text.push_str(&format!("- {}\n", link_or_code(url)));
        }
    }
    text.push_str(&consumer_lines(&result, audience));
    text
}

/// The report of a withdraw job that failed.
fn withdrawal_failed(job: &Job, error: &str, askers: &[String], audience: Audience<'_>) -> String {
    let version = &job.version;
    let state = match job.step {
        None | Some(Step::Manifest) => format!(
            "`SHA256SUMS` may still list {version}: `/status` shows what is published. Fix the cause and comment `/withdraw {version}` again to finish."
        ),
        Some(_) => format!(
            "{version} is out of `SHA256SUMS`: no host installs it from now on. What failed came after that; fix the cause and comment `/withdraw {version}` again to finish the rest."
        ),
    };
    failure_report("Withdrawing", job, error, askers, audience, &state)
}

/// The report of a promote job that ended well.
fn promotion_done(job: &Job, askers: &[String], audience: Audience<'_>) -> String {
    let result = job.result.clone().unwrap_or_default();
    let version = &job.version;
    let mut text = format!("⏩ Alloy {version}");
    if let Some(promotion) = &result.promotion {
        text.push_str(&format!(
            " is promoted from {} to {}",
            code_span(promotion.from.as_str()),
            code_span(promotion.to.as_str())
        ));
    } else {
        text.push_str(" is promoted");
    }
    text.push_str(&format!(" (job #{}", job.id));
    if let Some(askers) = asked_by(askers) {
        text.push_str(&format!(", asked by {askers}"));
    }
    text.push_str("): hosts that follow that channel install it from now on.\n");
    text.push_str(&consumer_lines(&result, audience));
    if let Some(pruned) = &result.pruned {
        text.push_str(&pruned_lines(pruned, audience));
    }
    text
}

/// The report of a withdraw or promote job that failed (`doing`: "Withdrawing"), with
/// `state`, what hosts see now and what to do; the error itself only in the build
/// repository.
fn failure_report(
    doing: &str,
    job: &Job,
    error: &str,
    askers: &[String],
    audience: Audience<'_>,
    state: &str,
) -> String {
    let asked = asked_by(askers)
        .map(|a| format!(", asked by {a}"))
        .unwrap_or_default();
    let why = match audience {
        Audience::BuildRepository => code_block(error),
        Audience::Elsewhere(_) => {
            "The error is on the build repository's status page.\n".to_owned()
        }
    };
    format!(
        "❌ {doing} Alloy {} failed (job #{}{asked}, step {}, attempt {}):\n\n{why}\n{state}",
        job.version,
        job.id,
        code_span(job.step.map_or("start", Step::as_str)),
        job.attempts,
    )
}

/// The report of a promote job that failed.
fn promotion_failed(job: &Job, error: &str, askers: &[String], audience: Audience<'_>) -> String {
    let version = &job.version;
    let state = match job.step {
        None | Some(Step::Upload | Step::Manifest) => format!(
            "Hosts of the next channel may not see {version} yet: `/status` shows where it is. Fix the cause and comment `/promote {version}` again."
        ),
        Some(_) => format!(
            "{version} is listed in the next channel: its hosts install it. What failed came after that (the consumers' pull requests or pruning); it is done again with the next promotion or build."
        ),
    };
    failure_report("Promoting", job, error, askers, audience, &state)
}

/// The consumers' outcomes, one line each; elsewhere, only that repository's own.
fn consumer_lines(result: &JobResult, audience: Audience<'_>) -> String {
    let mut lines = String::new();
    let consumers: Vec<_> = result
        .consumers
        .iter()
        .flatten()
        .filter(|consumer| match audience {
            Audience::BuildRepository => true,
            Audience::Elsewhere(here) => consumer.repo.eq_ignore_ascii_case(here),
        })
        .collect();
    if !consumers.is_empty() {
        lines.push_str("\nConsumers:\n");
        for consumer in consumers {
            let outcome = &consumer.outcome;
            let mut line = format!(
                "- {}: {}",
                code_span(&consumer.repo),
                escape(outcome.name())
            );
            if let ConsumerOutcome::OtherChannel { channel } = outcome {
                line.push_str(&format!(" ({})", code_span(channel.as_str())));
            }
            if let Some(url) = outcome.pull_request() {
                line.push_str(&format!(" — {}", link_or_code(url)));
            }
            if let (Some(error), Audience::BuildRepository) = (outcome.error(), audience) {
                line.push_str(&format!(" — {}", code_span(&one_line(error))));
            }
            lines.push_str(&line);
            lines.push('\n');
        }
    }
    lines
}

/// A withdrawn version, when, by whom and why, in Markdown: the login and the reason are
/// shown as code, so that neither mentions nor links anyone.
pub fn withdrawal_line(withdrawal: &Withdrawal) -> String {
    let day = withdrawal.withdrawn_at.get(..10).unwrap_or("");
    let by = match (withdrawal.source, withdrawal.withdrawn_by.as_deref()) {
        (TriggerSource::Cli, Some(login)) => {
            format!(" by {} on the command line", code_span(login))
        }
        (TriggerSource::Cli, None) => " on the command line".to_owned(),
        (_, Some(login)) => format!(" by {}", code_span(login)),
        (_, None) => String::new(),
    };
    let reason = withdrawal
        .reason
        .as_deref()
        .map(|r| format!(": {}", code_span(&one_line(r))))
        .unwrap_or_default();
    format!(
        "**{}** withdrawn on {day}{by} (job #{}){reason}",
        withdrawal.version, withdrawal.job_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::jobs::{JobKind, JobState, Trigger};

    #[test]
    fn the_build_repository_is_recognised_whatever_its_case() {
        assert_eq!(
            Audience::of("Owner/Build", "owner/build"),
            Audience::BuildRepository
        );
        assert_eq!(
            Audience::of("owner/consumer", "owner/build"),
            Audience::Elsewhere("owner/consumer")
        );
    }

    fn job() -> Job {
        Job {
            id: 3,
            kind: JobKind::Build,
            version: "1.17.1".parse().unwrap(),
            rebuild: true,
            trigger: Trigger {
                user: Some("octocat".into()),
                ..Trigger::default()
            },
            installation_id: Some(1),
            state: JobState::Failed,
            step: Some(Step::Download),
            attempts: 2,
            next_attempt_at: None,
            created_at: "t".into(),
            started_at: None,
            updated_at: "t".into(),
            finished_at: None,
            error: Some("GitHub answered 404\nmore".into()),
            result: None,
            lease: None,
        }
    }

    fn result(stored: serde_json::Value) -> crate::database::job_result::JobResult {
        serde_json::from_value(stored).unwrap()
    }

    #[test]
    fn status_lists_the_newest_image_per_architecture_and_the_jobs() {
        let manifest = format!(
            "{}  alloy-1.9.0-amd64.raw\n{}  alloy-1.10.0-amd64.raw\n{}  alloy-1.10.0-arm64.raw\n",
            "a".repeat(64),
            "b".repeat(64),
            "c".repeat(64)
        );
        let text = status(
            &[job()],
            PublishedManifest::Read(&manifest),
            &[],
            None,
            "alloy",
            Audience::BuildRepository,
        );
        assert!(text.contains("alloy-1.10.0-amd64.raw"));
        assert!(text.contains("alloy-1.10.0-arm64.raw"));
        assert!(!text.contains("alloy-1.9.0-amd64.raw"));
        assert!(text.contains(
            "job #3 — rebuild 1.17.1: **failed**, step `download`, attempt 2 — `GitHub answered 404`"
        ));
    }

    #[test]
    fn status_tells_an_unreadable_manifest_from_none_and_names_why_only_in_the_build_repository() {
        let reason = "S3 GetObject on bucket private-images: timed out";
        let text = status(
            &[job()],
            PublishedManifest::Unreadable(reason.into()),
            &[],
            None,
            "alloy",
            Audience::BuildRepository,
        );
        assert!(text.contains(&format!(
            "The published manifest could not be read, so its images are not shown: `{reason}`\n"
        )));
        assert!(!text.contains("No image has been built yet."));
        assert!(text.contains("job #3"));
        let text = status(
            &[job()],
            PublishedManifest::Unreadable(reason.into()),
            &[],
            None,
            "alloy",
            Audience::Elsewhere("o/consumer"),
        );
        assert!(
            text.contains(
                "The published manifest could not be read, so its images are not shown.\n"
            )
        );
        assert!(!text.contains("private-images") && !text.contains("No image has been built"));
        // A manifest that does not parse is unreadable too, not empty.
        let text = status(
            &[],
            PublishedManifest::Read("not a manifest"),
            &[],
            None,
            "alloy",
            Audience::BuildRepository,
        );
        assert!(text.contains("could not be read"), "{text}");
        let text = status(
            &[],
            PublishedManifest::Missing,
            &[],
            None,
            "alloy",
            Audience::BuildRepository,
        );
        assert!(text.contains("No image has been built yet."));
    }

    #[test]
    fn status_lists_withdrawn_versions_with_who_and_why_as_code() {
        let withdrawal = Withdrawal {
            version: "1.17.1".parse().unwrap(),
            source: TriggerSource::Comment,
            withdrawn_by: Some("ann".into()),
            reason: Some("@everyone crashes\nsecond line".into()),
            job_id: 9,
            withdrawn_at: "2026-12-03T01:02:03.000000Z".into(),
        };
        let text = status(
            &[],
            PublishedManifest::Missing,
            &[withdrawal],
            None,
            "alloy",
            Audience::BuildRepository,
        );
        assert!(
            text.contains(
                "\nWithdrawn (no host installs these; `/rebuild X.Y.Z` publishes one again):\n\
                 - **1.17.1** withdrawn on 2026-12-03 by `ann` (job #9): `@everyone crashes`\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn status_elsewhere_shows_no_error_text() {
        let mut failed = job();
        failed.error = Some("updating noahwhite/private-infra: GitHub answered 404".into());
        let text = status(
            &[failed],
            PublishedManifest::Missing,
            &[],
            None,
            "alloy",
            Audience::Elsewhere("o/consumer"),
        );
        assert!(
            text.contains("job #3 — rebuild 1.17.1: **failed**"),
            "{text}"
        );
        assert!(!text.contains("private-infra"), "{text}");
        assert!(!text.contains("404"), "{text}");
    }

    #[test]
    fn reports_name_everyone_who_asked_and_no_one_else() {
        let mut done = job();
        done.state = JobState::Succeeded;
        done.result = Some(result(serde_json::json!({
            "consumers": [
                {"repo": "o/consumer", "path": "a.bu", "from": "1.17.0", "image": "alloy-1.17.1-amd64.raw", "outcome": "opened", "pull_request": "https://github.com/o/consumer/pull/1"},
                {"repo": "o/private", "path": "a.bu", "outcome": "failed", "error": "![x](http://evil) @org/team"},
            ],
        })));
        let askers = [
            "ann".to_owned(),
            "bob".to_owned(),
            "evil @org/team".to_owned(),
        ];
        let text = job_succeeded(&done, &askers, Audience::BuildRepository);
        assert!(
            text.contains("asked by @ann, @bob and evil @\u{200B}org\\/team"),
            "{text}"
        );
        assert!(text.contains("`![x](http://evil) @org/team`"), "{text}");
        assert!(text.contains("`o/private`"), "{text}");
        let elsewhere = job_succeeded(&done, &askers, Audience::Elsewhere("o/consumer"));
        assert!(elsewhere.contains("`o/consumer`"), "{elsewhere}");
        assert!(!elsewhere.contains("private"), "{elsewhere}");
        assert!(!elsewhere.contains("evil)"), "{elsewhere}");
        // Another repository's failed update is not counted there.
        assert!(!elsewhere.contains("failed"), "{elsewhere}");
        assert!(elsewhere.starts_with("✅"), "{elsewhere}");
        assert!(text.contains("1 consumer update(s) failed"), "{text}");
    }

    #[test]
    fn a_report_elsewhere_shows_no_release_of_the_build_repository_and_no_other_askers() {
        let mut done = job();
        done.state = JobState::Succeeded;
        done.result = Some(result(serde_json::json!({
            "release": "https://github.com/o/private-build/releases/tag/v1.17.1",
            "consumers": [
                {"repo": "o/consumer", "path": "a.bu", "outcome": "failed", "error": "boom"},
                {"repo": "o/other", "path": "a.bu", "from": "1.17.0", "image": "alloy-1.17.1-amd64.raw", "outcome": "opened", "pull_request": "https://github.com/o/other/pull/1"},
            ],
        })));
        let askers = [
            Asker {
                user: "ann".into(),
                repository: Some("o/private-build".into()),
            },
            Asker {
                user: "bob".into(),
                repository: Some("O/Consumer".into()),
            },
            Asker {
                user: "cy".into(),
                repository: Some("o/secret".into()),
            },
            Asker {
                user: "dispatcher".into(),
                repository: None,
            },
            Asker {
                user: "bob".into(),
                repository: Some("o/secret".into()),
            },
        ];
        let here = Audience::Elsewhere("o/consumer");
        assert_eq!(Asker::visible_to(&askers, here), ["bob"]);
        assert_eq!(
            Asker::visible_to(&askers, Audience::BuildRepository),
            ["ann", "bob", "cy", "dispatcher"]
        );
        let elsewhere = job_succeeded(&done, &Asker::visible_to(&askers, here), here);
        for hidden in ["private-build", "Release", "o/other", "@ann", "@cy", "boom"] {
            assert!(!elsewhere.contains(hidden), "{hidden}: {elsewhere}");
        }
        // Its own update's failure is its to know.
        assert!(
            elsewhere.contains("**1 consumer update(s) failed**."),
            "{elsewhere}"
        );
        assert!(elsewhere.contains("asked by @bob)"), "{elsewhere}");
        let built = job_succeeded(
            &done,
            &Asker::visible_to(&askers, Audience::BuildRepository),
            Audience::BuildRepository,
        );
        assert!(
            built.contains("Release: https://github.com/o/private-build/releases/tag/v1.17.1"),
            "{built}"
        );
    }

    #[test]
    fn answers_to_build_commands_say_why() {
        let refused = build_answer(
            "/build 1.0.0",
            &BuildAnswer::NotPermitted {
                permission: "read".into(),
            },
            "o/build",
            Audience::Elsewhere("o/consumer"),
        )
        .unwrap();
        assert!(refused.contains("the build repository"), "{refused}");
        assert!(!refused.contains("o/build"), "{refused}");
        assert!(refused.contains("`read`"), "{refused}");
        let limited = build_answer(
            "/build 1.0.0",
            &BuildAnswer::TooManyQueued { limit: 3 },
            "o/build",
            Audience::BuildRepository,
        )
        .unwrap();
        assert!(
            limited.contains("3 jobs that are still queued"),
            "{limited}"
        );
        assert_eq!(
            build_answer(
                "/build 1.0.0",
                &BuildAnswer::Queued,
                "o/build",
                Audience::BuildRepository
            ),
            None
        );
        let reply = comment_reply("ann", &["a".into(), "b".into()]);
        assert_eq!(reply, "@ann a\n\n---\n\nb");
    }

    #[test]
    fn a_failure_reply_says_where_and_why() {
        let text = job_failed(&job(), "boom ``` injected", &[], Audience::BuildRepository);
        assert!(text.contains("step `download`"));
        assert!(text.contains("````\nboom ``` injected\n````"), "{text}");
        assert!(text.contains("/rebuild 1.17.1"));
        assert!(text.contains("Nothing was published"), "{text}");
    }

    #[test]
    fn a_failure_after_publishing_says_hosts_can_update() {
        let mut failed = job();
        failed.rebuild = false;
        for (step, says) in [
            (Step::Upload, "Nothing was published"),
            (Step::Manifest, "may or may not have reached storage"),
            (Step::Release, "hosts can update to 1.17.1"),
            (Step::Consumers, "hosts can update to 1.17.1"),
            (Step::Tracking, "hosts can update to 1.17.1"),
        ] {
            failed.step = Some(step);
            let text = job_failed(&failed, "boom", &[], Audience::BuildRepository);
            assert!(text.contains(says), "{step}: {text}");
            assert!(text.contains("/rebuild 1.17.1"), "{step}: {text}");
        }
        // A rebuild's upload replaces images under their published names.
        failed.rebuild = true;
        failed.step = Some(Step::Upload);
        let text = job_failed(&failed, "boom", &[], Audience::BuildRepository);
        assert!(text.contains("may have been replaced"), "{text}");
        // Elsewhere, the error stays in the build repository.
        let text = job_failed(&failed, "boom", &["ann".into()], Audience::Elsewhere("o/c"));
        assert!(!text.contains("boom"), "{text}");
        assert!(text.contains("asked by @ann"), "{text}");
    }

    #[test]
    fn the_rollout_shows_each_channel_and_names_failed_ci_only_in_the_build_repository() {
        use crate::database::channel_entries::ConsumerCiFailure;
        use crate::worker::promotions::{ChannelState, PlannedPromotion};
        let plan = |version: &str, held: bool| PlannedPromotion {
            version: version.parse().unwrap(),
            from: "canary".parse().unwrap(),
            to: "stable".parse().unwrap(),
            entered_at: "2026-12-01T10:00:00.000000Z".into(),
            due_at: "2026-12-03T10:00:00.000000Z".into(),
            held_by: if held {
                vec![ConsumerCiFailure {
                    run_id: 1,
                    run_attempt: 1,
                    repository: "private/fleet".into(),
                    version: version.parse().unwrap(),
                    conclusion: "failure".into(),
                    html_url: None,
                    failed_at: "2026-12-01T11:00:00.000000Z".into(),
                }]
            } else {
                Vec::new()
            },
        };
        let rollout = Rollout {
            channels: vec![
                ChannelState {
                    name: "canary".parse().unwrap(),
                    prefix: "canary/".into(),
                    newest: Newest::Listed {
                        version: "1.18.0".parse().unwrap(),
                        since: Some("2026-12-01T10:00:00.000000Z".into()),
                    },
                },
                ChannelState {
                    name: "stable".parse().unwrap(),
                    prefix: String::new(),
                    newest: Newest::Listed {
                        version: "1.17.1".parse().unwrap(),
                        since: None,
                    },
                },
            ],
            planned: vec![plan("1.18.0", true)],
            promote_after_hours: 48,
        };
        let here = rollout_lines(&rollout, Audience::BuildRepository);
        assert_eq!(
            here,
            "\nChannels (builds go to the first; `/promote X.Y.Z` moves a version on):\n\
             - `canary` (`canary/`): 1.18.0 since 2026-12-01 10:00\n\
             - `stable` (the root): 1.17.1\n\
             - 1.18.0 stays in `canary`: CI failed on its pull request in `private/fleet`; only `/promote 1.18.0` moves it on\n"
        );
        let elsewhere = rollout_lines(&rollout, Audience::Elsewhere("o/c"));
        assert!(!elsewhere.contains("private/fleet"), "{elsewhere}");
        assert!(
            elsewhere.contains("CI failed on a consumer's pull request for it;"),
            "{elsewhere}"
        );
        let due = Rollout {
            planned: vec![plan("1.18.0", false)],
            ..rollout
        };
        assert!(
            rollout_lines(&due, Audience::BuildRepository).ends_with(
                "- 1.18.0 goes from `canary` to `stable` at 2026-12-03 10:00 UTC unless a consumer's CI fails on it\n"
            )
        );
    }
}
