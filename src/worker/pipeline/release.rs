//! Step 5: release `vX.Y.Z` in the build repository, made only once the images and the
//! manifest are published; an existing release is left as it is, but for the note of a
//! withdrawal ([`marked_withdrawn`]), which a `/rebuild` that publishes the version again
//! takes out.

use super::{StepContext, StepError};
use crate::database::job_result::JobResult;
use crate::database::jobs::TriggerSource;
use crate::database::withdrawals::Withdrawal;
use crate::github::markdown::{code_block, code_span, safe_url, table_code_span};
use crate::github::releases::{create_release, release_by_tag, update_release};
use crate::provenance::{RECORD_SUFFIX, record_file_name};
use crate::version::Version;

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let github = context.github;
    let repo = context.settings.build_repo.repo.clone();
    let auth = context.auth_for(&repo).await?;
    let tag = context.job.version.tag();
    if let Some(existing) = release_by_tag(github, auth, &repo, &tag).await? {
        let body = existing.body.clone().unwrap_or_default();
        if let Some(unmarked) = without_withdrawn_note(&body) {
            let name = release_name(&context.job.version);
            update_release(github, auth, &repo, existing.id, &name, &unmarked).await?;
        }
        context
            .record(|result| {
                result.release = Some(existing.html_url);
                result.release_created = Some(false);
            })
            .await?;
        return Ok(());
    }
    let body = release_body(context.result());
    let name = release_name(&context.job.version);
    let created = create_release(
        github,
        auth,
        &repo,
        &tag,
        &context.settings.build_repo.branch,
        &name,
        &body,
    )
    .await?;
    let url = match created {
        Some(release) => release.html_url,
        // Made by an earlier attempt whose answer was lost.
        None => release_by_tag(github, auth, &repo, &tag)
            .await?
            .and_then(|r| r.html_url),
    };
    context
        .record(|result| {
            result.release = Some(url);
            result.release_created = Some(true);
        })
        .await?;
    Ok(())
}

/// The release's name: `Alloy Sysext X.Y.Z`.
pub fn release_name(version: &Version) -> String {
    format!("Alloy Sysext {version}")
}

/// Where the note of a withdrawal starts and ends in a release's body.
const WITHDRAWN_NOTE_START: &str = "<!-- alloy-sysext: withdrawn -->\n";
const WITHDRAWN_NOTE_END: &str = "<!-- /alloy-sysext: withdrawn -->\n";

/// The name and body of a release `name` with body `body` once `withdrawal` is done: the
/// name says it is withdrawn, and the body starts with who withdrew it, when and why (a note
/// there before is replaced). The asker's words are shown as code: no mention, link or
/// formatting of theirs reaches the page.
pub fn marked_withdrawn(name: &str, body: &str, withdrawal: &Withdrawal) -> (String, String) {
    let body = without_withdrawn_note(body).unwrap_or_else(|| body.to_owned());
    let day = withdrawal.withdrawn_at.get(..10).unwrap_or("");
    let by = match (withdrawal.source, withdrawal.withdrawn_by.as_deref()) {
        (TriggerSource::Cli, _) => " from the command line".to_owned(),
        (_, Some(login)) => format!(" by {}", code_span(login)),
        (_, None) => String::new(),
    };
    let reason = withdrawal
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| format!(": {}", code_span(r)))
        .unwrap_or_default();
    let note = format!(
        "{WITHDRAWN_NOTE_START}> [!CAUTION]\n> **Withdrawn** on {day}{by}{reason}\n>\n\
         > Hosts no longer install this version: its lines are out of `SHA256SUMS`. Hosts that \
         installed it keep it until a newer version is published or they are moved back.\n\
         {WITHDRAWN_NOTE_END}\n"
    );
    (format!("{name} (withdrawn)"), format!("{note}{body}"))
}

/// `body` without the note of a withdrawal, or `None` when it has none.
pub fn without_withdrawn_note(body: &str) -> Option<String> {
    let start = body.find(WITHDRAWN_NOTE_START)?;
    let end = body[start..].find(WITHDRAWN_NOTE_END)? + start + WITHDRAWN_NOTE_END.len();
    let rest = body[end..].strip_prefix('\n').unwrap_or(&body[end..]);
    Some(format!("{}{rest}", &body[..start]))
}

/// The release's body, from what the job recorded: upstream's notes and page, and the
/// images with their hashes and provenance records (linked, with their signatures, when the
/// images have a public address).
pub fn release_body(result: &JobResult) -> String {
    let mut body = String::new();
    if let Some(notes) = &result.upstream_notes
        && !notes.trim().is_empty()
    {
        // Upstream's Markdown would mention its contributors and link in the App's name:
        // shown as text.
        body.push_str("Upstream release notes:\n\n");
        body.push_str(&code_block(notes));
        body.push('\n');
    }
    if let Some(url) = result.upstream_release.as_ref().and_then(Option::as_deref) {
        let shown = safe_url(url).map_or_else(|| code_span(url), str::to_owned);
        body.push_str(&format!("Upstream release: {shown}\n"));
    }
    if let Some(images) = &result.images {
        body.push_str("\n| image | sha256 | provenance |\n|---|---|---|\n");
        for image in images {
            let file = table_code_span(&image.file);
            let record = table_code_span(&record_file_name(&image.file));
            let (name, provenance) = match safe_url(&image.url) {
                Some(url) => (
                    format!("[{file}]({url})"),
                    format!(
                        "[{record}]({url}{RECORD_SUFFIX}) ([signature]({url}{RECORD_SUFFIX}.asc))"
                    ),
                ),
                None => (file, record),
            };
            body.push_str(&format!(
                "| {name} | {} | {provenance} |\n",
                table_code_span(&image.sha256),
            ));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(url: &str) -> crate::database::job_result::BuiltImage {
        crate::database::job_result::BuiltImage {
            arch: crate::arch::Arch::Amd64,
            file: "alloy-1.2.3-amd64.raw".into(),
            size: 4096,
            sha256: "a".repeat(64),
            binary_sha256: "b".repeat(64),
            url: url.into(),
        }
    }

    #[test]
    fn the_body_links_each_image_and_its_provenance_record() {
        let result = JobResult {
            images: Some(vec![image(
                "https://images.example/canary/alloy-1.2.3-amd64.raw",
            )]),
            ..JobResult::default()
        };
        let sha = "a".repeat(64);
        assert_eq!(
            release_body(&result),
            format!(
                "\n| image | sha256 | provenance |\n|---|---|---|\n\
                 | [`alloy-1.2.3-amd64.raw`](https://images.example/canary/alloy-1.2.3-amd64.raw) \
                 | `{sha}` \
                 | [`alloy-1.2.3-amd64.raw.intoto.json`](https://images.example/canary/alloy-1.2.3-amd64.raw.intoto.json) \
                 ([signature](https://images.example/canary/alloy-1.2.3-amd64.raw.intoto.json.asc)) |\n"
            )
        );
        // Without a public address, the names alone.
        let result = JobResult {
            images: Some(vec![image("")]),
            ..JobResult::default()
        };
        assert_eq!(
            release_body(&result),
            format!(
                "\n| image | sha256 | provenance |\n|---|---|---|\n\
                 | `alloy-1.2.3-amd64.raw` | `{sha}` | `alloy-1.2.3-amd64.raw.intoto.json` |\n"
            )
        );
    }

    #[test]
    fn a_withdrawal_note_is_added_once_and_taken_out_whole() {
        let withdrawal = Withdrawal {
            version: "1.2.3".parse().unwrap(),
            source: TriggerSource::Comment,
            withdrawn_by: Some("ann".into()),
            reason: Some("crashes @everyone [x](https://evil.test)".into()),
            job_id: 4,
            withdrawn_at: "2026-12-03T01:02:03.000000Z".into(),
        };
        let body = "Upstream release: https://example.test\n";
        let (name, marked) = marked_withdrawn("Alloy Sysext 1.2.3", body, &withdrawal);
        assert_eq!(name, "Alloy Sysext 1.2.3 (withdrawn)");
        assert_eq!(
            marked,
            "<!-- alloy-sysext: withdrawn -->\n> [!CAUTION]\n> **Withdrawn** on 2026-12-03 by `ann`: \
             `crashes @everyone [x](https://evil.test)`\n>\n> Hosts no longer install this version: \
             its lines are out of `SHA256SUMS`. Hosts that installed it keep it until a newer \
             version is published or they are moved back.\n<!-- /alloy-sysext: withdrawn -->\n\n\
             Upstream release: https://example.test\n"
        );
        // Marked again, the note is replaced, not doubled.
        let (_, again) = marked_withdrawn("Alloy Sysext 1.2.3", &marked, &withdrawal);
        assert_eq!(again, marked);
        assert_eq!(without_withdrawn_note(&marked).as_deref(), Some(body));
        assert_eq!(without_withdrawn_note(body), None);
    }
}
