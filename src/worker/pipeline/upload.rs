//! Step 3: the images, their `.sha256` and `.asc` files and provenance records, into
//! storage — unless the build repository's `SHA256SUMS` already lists this build with the
//! same hashes, in which case nothing at all is published again (the daily churn of SPEC §2
//! cannot happen).
//!
//! A provenance record is written once per image bytes: when storage holds a record (and its
//! signature) for the same image digest already, from an earlier job or an earlier attempt of
//! this one, it stays as it is, naming what started the build that first published the image.
//! Only a record of other bytes (a `/rebuild` that changed the image) is replaced.

use std::path::{Path, PathBuf};

use super::build::local_manifest;
use super::build_repository::{check_published_signer, published_manifest, published_signature};
use super::put::put_file;
use super::{StepContext, StepError};
use crate::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use crate::database::job_result::{Publication, Upload};
use crate::manifest::Manifest;
use crate::provenance::{RECORD_SUFFIX, read_record, record_file_name, record_signature_file_name};
use crate::settings::channels::Channel;
use crate::signing::PublicKey;
use crate::storage::{PutOutcome, Storage};
use crate::version::Version;

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

/// A file of the build that goes to storage.
pub struct Publishable {
    pub key: String,
    pub path: PathBuf,
    pub sha256: String,
}

/// Whether `name` is a provenance record or its signature.
fn is_record_file(name: &str) -> bool {
    name.ends_with(RECORD_SUFFIX) || name.ends_with(&format!("{RECORD_SUFFIX}.asc"))
}

/// The files of the build in `out_dir` that go to storage, in the order they are put:
/// checksums and signatures, then provenance records (each after its signature), then the
/// images they describe, so a host never finds an image without them. `local` is the
/// build's manifest (the images' hashes).
pub fn publishable_files(out_dir: &Path, local: &Manifest) -> Result<Vec<Publishable>, StepError> {
    let mut names = Vec::new();
    // An entry that cannot be read is an error: skipping it would publish without it.
    for entry in std::fs::read_dir(out_dir).map_err(StepError::work_dir("listing", out_dir))? {
        let name = entry
            .map_err(StepError::work_dir("listing", out_dir))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !name.starts_with('.') && name != MANIFEST_FILE && name != MANIFEST_SIGNATURE_FILE {
            names.push(name);
        }
    }
    names.sort_by_key(|name| {
        (
            name.ends_with(".raw"),
            is_record_file(name),
            name.ends_with(RECORD_SUFFIX),
            name.clone(),
        )
    });
    let mut files = Vec::new();
    for name in names {
        let path = out_dir.join(&name);
        let sha256 = match local.get(&name) {
            Some(entry) => entry.sha256.clone(),
            None => {
                let file =
                    std::fs::File::open(&path).map_err(StepError::work_dir("reading", &path))?;
                crate::artifacts::digest::sha256_hex(file)
                    .map_err(StepError::work_dir("reading", &path))?
            }
        };
        files.push(Publishable {
            key: name,
            path,
            sha256,
        });
    }
    Ok(files)
}

/// The provenance records (and their signatures) of `local`'s images that stay as `channel`
/// holds them in `storage`, by file name: those naming the same image (file name and
/// digest), with a signature beside them that `key` (the server's) verifies. Any other is
/// replaced, with a warning: a record that cannot be read, one of other bytes, or one signed
/// by another key (an earlier key, or whoever else could write to the bucket). Without a
/// key, none stays.
pub async fn kept_records(
    storage: &Storage,
    channel: &Channel,
    local: &Manifest,
    key: Option<&PublicKey>,
) -> Result<Vec<String>, StepError> {
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    for entry in local.entries() {
        let (record, signature) = (
            record_file_name(&entry.file),
            record_signature_file_name(&entry.file),
        );
        let Some(stored) = storage.get(&channel.key(&record)).await? else {
            continue;
        };
        let same_image = match read_record(&stored) {
            Ok(statement) => statement.image().is_some_and(|image| {
                image.name == entry.file && image.digest.sha256 == entry.sha256
            }),
            Err(error) => {
                tracing::warn!(record = %channel.key(&record), %error, "the record in storage cannot be read; it is replaced");
                false
            }
        };
        if !same_image {
            continue;
        }
        let signed = match storage.get(&channel.key(&signature)).await? {
            Some(asc) => key.verify_detached(stored.as_slice(), &asc).is_ok(),
            None => false,
        };
        if signed {
            kept.push(record);
            kept.push(signature);
        } else {
            tracing::warn!(record = %channel.key(&record), "the record in storage is not signed by this server's key; it is replaced");
        }
    }
    Ok(kept)
}

/// For a build published already with the same hashes: puts this build's record (and its
/// signature) of each image whose record storage lost, or holds one this server's key does
/// not verify — when the published `SHA256SUMS.gpg` is this server's (or one it may
/// replace), so that hosts trust the key the record is signed with. The images stay.
async fn repair_records(
    context: &StepContext<'_>,
    channel: &Channel,
    local: &Manifest,
) -> Result<(), StepError> {
    let repo = &context.settings.build_repo.repo;
    let auth = context.auth_for(repo).await?;
    if let Some(signature) = published_signature(context, auth, channel).await?
        && check_published_signer(context, repo, &signature.content).is_err()
    {
        return Ok(());
    }
    let key = context.signing_key.public_key();
    let kept = kept_records(context.storage, channel, local, Some(&key)).await?;
    let signature_suffix = format!("{RECORD_SUFFIX}.asc");
    for file in publishable_files(&context.out_dir(), local)? {
        let is_record = file.key.ends_with(RECORD_SUFFIX) || file.key.ends_with(&signature_suffix);
        if is_record && !kept.contains(&file.key) {
            let key = channel.key(&file.key);
            put_file(context, &key, &file.path, &file.sha256).await?;
            tracing::warn!(job = context.job.id, %key, "the record of a published image was missing or not this server's; put again");
        }
    }
    Ok(())
}

/// Why a build that compares as `publication` (with the `differing` files) is not
/// published: a replacement asked for by no `/rebuild`.
pub fn refusal(
    publication: Publication,
    differing: &[String],
    rebuild: bool,
    version: &Version,
) -> Option<String> {
    (publication == Publication::Replaced && !rebuild).then(|| format!(
        "{}. Builds are reproducible, so the inputs differ from the published build (another upstream binary or other image settings). Nothing was changed; comment `/rebuild {version}` to replace the published images.",
        differing.join("; "),
    ))
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let local = local_manifest(context)?;
    let channel = context.publish_channel()?;
    let (published, _) = published_manifest(context, &channel).await?;
    let (publication, differing) = compare(&local, &published);
    if let Some(refused) = refusal(
        publication,
        &differing,
        context.job.rebuild,
        &context.job.version,
    ) {
        return Err(StepError::Permanent(refused));
    }
    if publication != Publication::Unchanged {
        // Nothing goes to storage that the manifest step would then refuse to list: a
        // replaced image under a signature hosts cannot check would reach them unlisted.
        let repo = &context.settings.build_repo.repo;
        let auth = context.auth_for(repo).await?;
        if let Some(signature) = published_signature(context, auth, &channel).await? {
            check_published_signer(context, repo, &signature.content)?;
        }
    }
    if publication == Publication::Unchanged {
        tracing::info!(
            job = context.job.id,
            "this build is published already with the same hashes; nothing to upload"
        );
        repair_records(context, &channel, &local).await?;
        // An earlier attempt of this job that published these hashes, then stopped, keeps
        // its word: the job published them, and its report says so.
        context
            .record(|result| {
                result.published.get_or_insert(publication);
            })
            .await?;
        return Ok(());
    }
    // Files of this version waiting to leave the channel's storage (it was withdrawn or
    // pruned) stay: they are about to be listed again. Jobs run one at a time, so no sweep
    // runs in between.
    let kept = context
        .database
        .cancel_removals_of(&context.job.version, &channel.manifest_key())
        .await?;
    if kept > 0 {
        tracing::info!(
            job = context.job.id,
            kept,
            "files waiting to leave storage stay: this version is published again"
        );
    }
    let kept = kept_records(
        context.storage,
        &channel,
        &local,
        Some(&context.signing_key.public_key()),
    )
    .await?;
    let mut uploads = Vec::new();
    for file in publishable_files(&context.out_dir(), &local)? {
        let key = channel.key(&file.key);
        if kept.contains(&file.key) {
            tracing::info!(job = context.job.id, %key, "kept: storage holds the record of this image already");
            continue;
        }
        let outcome = put_file(context, &key, &file.path, &file.sha256).await?;
        tracing::info!(job = context.job.id, %key, outcome = ?outcome, "published");
        uploads.push(Upload {
            key,
            uploaded: outcome == PutOutcome::Uploaded,
        });
    }
    context
        .record(|result| {
            result.published = Some(publication);
            result.uploads = Some(uploads);
        })
        .await?;
    Ok(())
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
    fn checksums_and_signatures_go_first_then_records_then_images() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "alloy-1.2.3-amd64.raw",
            "alloy-1.2.3-amd64.raw.asc",
            "alloy-1.2.3-amd64.raw.intoto.json",
            "alloy-1.2.3-amd64.raw.intoto.json.asc",
            "alloy-1.2.3-amd64.raw.sha256",
            "alloy-1.2.3.raw",
            "alloy-1.2.3.raw.asc",
            "alloy-1.2.3.raw.sha256",
            "SHA256SUMS",
            "SHA256SUMS.gpg",
            ".alloy-1.2.3.raw.tmp",
        ] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let local = manifest(&[("alloy-1.2.3-amd64.raw", 'a')]);
        let files = publishable_files(dir.path(), &local).unwrap();
        let keys: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alloy-1.2.3-amd64.raw.asc",
                "alloy-1.2.3-amd64.raw.sha256",
                "alloy-1.2.3.raw.asc",
                "alloy-1.2.3.raw.sha256",
                "alloy-1.2.3-amd64.raw.intoto.json.asc",
                "alloy-1.2.3-amd64.raw.intoto.json",
                "alloy-1.2.3-amd64.raw",
                "alloy-1.2.3.raw",
            ]
        );
        // A listed image's hash comes from the manifest; any other file's from its bytes.
        assert_eq!(files[6].sha256, "a".repeat(64));
        assert_eq!(
            files[5].sha256,
            crate::artifacts::digest::sha256_hex(&b"alloy-1.2.3-amd64.raw.intoto.json"[..])
                .unwrap()
        );
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
