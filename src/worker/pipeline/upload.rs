//! Step 3: the images, their `.sha256` and `.asc` files, into storage — unless the build
//! repository's `SHA256SUMS` already lists this build with the same hashes, in which case
//! nothing at all is published again (the daily churn of SPEC §2 cannot happen).

use serde_json::json;

use super::{JobContext, StepError};
use crate::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use crate::github::contents::read_file;
use crate::manifest::Manifest;
use crate::storage::{PutOutcome, PutRequest, cache_control_of, content_type_of};

/// How this build relates to what is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// Listed with the same hashes: nothing to do.
    Unchanged,
    /// Not listed yet.
    New,
    /// Listed with other hashes, replaced by `/rebuild`.
    Replaced,
}

impl Publication {
    pub fn as_str(self) -> &'static str {
        match self {
            Publication::Unchanged => "unchanged",
            Publication::New => "new",
            Publication::Replaced => "replaced",
        }
    }
}

/// The build's manifest: every image file of this build with its hash.
pub fn local_manifest(context: &JobContext<'_>) -> Result<Manifest, StepError> {
    let path = context.out_dir().join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| StepError::Permanent(format!("reading {}: {e}", path.display())))?;
    Manifest::parse(&text).map_err(|e| StepError::Permanent(format!("{}: {e}", path.display())))
}

/// The build repository's `SHA256SUMS` (empty when there is none yet).
pub async fn published_manifest(
    context: &JobContext<'_>,
) -> Result<(Manifest, Option<crate::github::contents::RepoFile>), StepError> {
    let settings = &context.worker.settings;
    let repo = &settings.build_repo.repo;
    let auth = context.auth_for(repo).await?;
    let file = read_file(
        &context.worker.github,
        auth,
        repo,
        &settings.build_repo.branch,
        MANIFEST_FILE,
    )
    .await?;
    let manifest = match &file {
        Some(file) => Manifest::parse(&String::from_utf8_lossy(&file.content)).map_err(|e| {
            StepError::Permanent(format!("{MANIFEST_FILE} in {repo} cannot be read: {e}"))
        })?,
        None => Manifest::default(),
    };
    Ok((manifest, file))
}

/// Compares this build with what is published.
pub fn compare(local: &Manifest, published: &Manifest) -> (Publication, Vec<String>) {
    let mut differing = Vec::new();
    let mut any_new = false;
    for entry in local.entries() {
        match published.get(&entry.file) {
            None => any_new = true,
            Some(listed) if listed.sha256 == entry.sha256 => {}
            Some(listed) => differing.push(format!(
                "{} is published with sha256 {}, this build gives {}",
                entry.file, listed.sha256, entry.sha256
            )),
        }
    }
    let publication = if !differing.is_empty() {
        Publication::Replaced
    } else if any_new {
        Publication::New
    } else {
        Publication::Unchanged
    };
    (publication, differing)
}

pub async fn run(context: &mut JobContext<'_>) -> Result<(), StepError> {
    let local = local_manifest(context)?;
    let (published, _) = published_manifest(context).await?;
    let (publication, differing) = compare(&local, &published);
    if publication == Publication::Replaced && !context.job.rebuild {
        return Err(StepError::Permanent(format!(
            "{}. Builds are reproducible, so the inputs differ from the published build (another upstream binary or other image settings). Nothing was changed; comment `/rebuild {}` to replace the published images.",
            differing.join("; "),
            context.version
        )));
    }
    if publication != Publication::Unchanged {
        // Nothing goes to storage that the manifest step would then refuse to list: a
        // replaced image under a signature hosts cannot check would reach them unlisted.
        let settings = &context.worker.settings;
        let repo = &settings.build_repo.repo;
        let auth = context.auth_for(repo).await?;
        if let Some(signature) = read_file(
            &context.worker.github,
            auth,
            repo,
            &settings.build_repo.branch,
            MANIFEST_SIGNATURE_FILE,
        )
        .await?
        {
            super::manifest::check_published_signer(context, repo, &signature.content)?;
        }
    }
    if publication == Publication::Unchanged {
        tracing::info!(
            job = context.job.id,
            "this build is published already with the same hashes; nothing to upload"
        );
        context
            .record(json!({ "published": publication.as_str() }))
            .await?;
        return Ok(());
    }
    let out_dir = context.out_dir();
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .map_err(|e| StepError::Permanent(format!("listing {}: {e}", out_dir.display())))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !name.starts_with('.') && name != MANIFEST_FILE && name != MANIFEST_SIGNATURE_FILE
        })
        .collect();
    // Checksums and signatures before the images they describe, so a host never finds an
    // image without them.
    names.sort_by_key(|name| (name.ends_with(".raw"), name.clone()));
    let mut uploads = Vec::new();
    for name in &names {
        let path = out_dir.join(name);
        let sha256 = match local.get(name) {
            Some(entry) => entry.sha256.clone(),
            None => {
                let file = std::fs::File::open(&path).map_err(|e| {
                    StepError::Permanent(format!("reading {}: {e}", path.display()))
                })?;
                crate::digest::sha256_hex(file)
                    .map_err(|e| StepError::Permanent(format!("reading {}: {e}", path.display())))?
            }
        };
        let outcome = context
            .worker
            .storage
            .put_file(&PutRequest {
                key: name,
                path: &path,
                sha256: &sha256,
                content_type: content_type_of(name),
                cache_control: cache_control_of(name),
            })
            .await?;
        tracing::info!(job = context.job.id, key = %name, outcome = ?outcome, "published");
        if outcome == PutOutcome::Uploaded {
            count_uploaded(&path);
        }
        uploads.push(json!({
            "key": name,
            "uploaded": outcome == PutOutcome::Uploaded,
        }));
    }
    context
        .record(json!({ "published": publication.as_str(), "uploads": uploads }))
        .await?;
    Ok(())
}

/// Adds the size of the uploaded file at `path` to the uploaded bytes.
pub fn count_uploaded(path: &std::path::Path) {
    if let Ok(metadata) = std::fs::metadata(path) {
        crate::metrics::global()
            .uploaded_bytes
            .inc_by(metadata.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestEntry;

    fn manifest(entries: &[(&str, char)]) -> Manifest {
        let mut manifest = Manifest::default();
        for (file, digit) in entries {
            manifest
                .upsert(ManifestEntry {
                    sha256: digit.to_string().repeat(64),
                    file: (*file).into(),
                })
                .unwrap();
        }
        manifest
    }

    #[test]
    fn a_build_is_new_unchanged_or_a_replacement() {
        let local = manifest(&[("alloy-1.2.3-amd64.raw", 'a'), ("alloy-1.2.3.raw", 'a')]);
        assert_eq!(compare(&local, &manifest(&[])).0, Publication::New);
        assert_eq!(
            compare(
                &local,
                &manifest(&[("alloy-1.2.3-amd64.raw", 'a'), ("alloy-1.2.3.raw", 'a')])
            )
            .0,
            Publication::Unchanged
        );
        let (publication, differing) =
            compare(&local, &manifest(&[("alloy-1.2.3-amd64.raw", 'b')]));
        assert_eq!(publication, Publication::Replaced);
        assert_eq!(differing.len(), 1);
        assert!(differing[0].contains("alloy-1.2.3-amd64.raw"));
    }
}
