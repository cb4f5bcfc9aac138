//! Step 2: the images (and, with `ddi` in `image.formats`, their signed dm-verity images),
//! built and signed into the job's own output directory, each with its provenance record: the asset it was built from and what that was checked against (from
//! the download step), and what started the job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::download::{checked_asset_in, zip_path_in};
use super::{StepContext, StepError};
use crate::artifacts::{BuildProgress, BuildRequest, BuildStep, MANIFEST_FILE, build_into_dir};
use crate::database::job_result::BuiltImage;
use crate::database::jobs::{Job, TriggerSource};
use crate::ddi::VeritySigner;
use crate::manifest::Manifest;
use crate::provenance::{BuildOrigin, BuilderKind, StartEvent, StartedBy};
use crate::settings::Settings;
use crate::settings::public_base_url::PublicBaseUrl;
use crate::signing::SigningKey;
use crate::sysext::squashfs::SquashfsOptions;
use crate::version::Version;

/// Logs the build's steps.
struct LogProgress(i64);

impl BuildProgress for LogProgress {
    fn step(&self, step: BuildStep) {
        tracing::info!(job = self.0, step = step.name(), "{}", step.describe());
    }
}

/// The build's `SHA256SUMS`: every image file of this build with its hash.
pub fn manifest_path(context: &StepContext<'_>) -> PathBuf {
    context.out_dir().join(MANIFEST_FILE)
}

/// The build's manifest, as [`manifest_path`] holds it.
pub fn local_manifest(context: &StepContext<'_>) -> Result<Manifest, StepError> {
    read_local_manifest(&manifest_path(context))
}

/// The build's manifest at `path`.
pub fn read_local_manifest(path: &Path) -> Result<Manifest, StepError> {
    let text = std::fs::read_to_string(path).map_err(StepError::work_dir("reading", path))?;
    Manifest::parse(&text).map_err(|source| StepError::Manifest {
        what: path.display().to_string(),
        source,
    })
}

/// What started `job`, as its images' provenance records say.
pub fn started_by(job: &Job) -> StartedBy {
    let trigger = &job.trigger;
    let event = match trigger.source {
        TriggerSource::Comment => StartEvent::Comment,
        TriggerSource::Release => StartEvent::Release,
        TriggerSource::RepositoryDispatch => StartEvent::RepositoryDispatch,
        TriggerSource::WorkflowDispatch => StartEvent::WorkflowDispatch,
        TriggerSource::Schedule => StartEvent::Schedule,
        TriggerSource::Cli => StartEvent::CommandLine,
    };
    StartedBy {
        event,
        repository: trigger.repository.clone(),
        issue: trigger.issue_number,
        comment: trigger.comment_id,
        user: trigger.user.clone(),
        rebuild: job.rebuild,
    }
}

/// The images of one version to build, and where.
pub struct ImagesToBuild<'a> {
    pub version: &'a Version,
    /// Where the download step left the assets, checked.
    pub zip_dir: &'a Path,
    pub out_dir: &'a Path,
    /// Signs the images and their records; unsigned without one.
    pub key: Option<&'a Arc<SigningKey>>,
    /// Signs the DDIs' root hashes, when `image.formats` includes `ddi`.
    pub verity_signer: Option<&'a Arc<VeritySigner>>,
    /// What the records say started the build.
    pub started_by: &'a StartedBy,
    /// The job the build's progress is logged for.
    pub progress_of: i64,
}

/// Builds every configured architecture's image of `what.version` from the assets in
/// `what.zip_dir` into `what.out_dir`, as `build` does, each with its provenance record,
/// and with `ddi` in `image.formats` each image's DDI right after it; each image's URL is
/// under `base_url`, in the first channel, where builds publish.
pub async fn build_images(
    settings: &Settings,
    base_url: &PublicBaseUrl,
    what: &ImagesToBuild<'_>,
) -> Result<Vec<BuiltImage>, StepError> {
    let ImagesToBuild {
        version,
        zip_dir,
        out_dir,
        key,
        verity_signer,
        started_by,
        progress_of,
    } = *what;
    let ddi_signer = match (settings.image.publishes_ddi(), verity_signer) {
        (false, _) => None,
        (true, Some(signer)) => Some(VeritySigner::clone(signer)),
        (true, None) => {
            return Err(StepError::Permanent(
                "image.formats includes ddi, but the server has no verity key and certificate: set VERITY_SIGNING_KEY_PATH and VERITY_CERTIFICATE_PATH (or VERITY_SIGNING_KEY and VERITY_CERTIFICATE) and restart".into(),
            ));
        }
    };
    let mut images = Vec::new();
    for arch in settings.image.arches.clone() {
        let zip = zip_path_in(zip_dir, settings, arch);
        let origin = BuildOrigin {
            repository: settings.upstream.repo.clone(),
            tag: version.tag(),
            asset: settings.upstream.asset_name(arch),
            checked: Some(checked_asset_in(zip_dir, settings, arch)?),
            builder: BuilderKind::Server,
            started_by: started_by.clone(),
        };
        let request = BuildRequest {
            origin,
            binary_entry: settings.upstream.binary_name(arch),
            image_name: settings.image.name.clone(),
            squashfs: SquashfsOptions {
                compression: settings.image.compression,
                ..SquashfsOptions::default()
            },
            compat_name: settings.image.compat_name,
            ddi_signer: ddi_signer.clone(),
            ..BuildRequest::new(version.clone(), arch, zip)
        };
        let key = key.cloned();
        let dir = out_dir.to_owned();
        let built = tokio::task::spawn_blocking(move || {
            build_into_dir(&request, &dir, key.as_deref(), &LogProgress(progress_of))
                .map(|output| (output, request.image_file_name(), request.ddi_file_name()))
        })
        .await
        .map_err(StepError::BuildStopped)?;
        let (output, image_file, ddi_file) =
            built.map_err(|source| StepError::Build { arch, source })?;
        let url = |file: &str| {
            base_url
                .url(&settings.publish.channels().first().key(file))
                .unwrap_or_default()
        };
        let size = output.file(&image_file).map(|f| f.size).unwrap_or(0);
        images.push(BuiltImage {
            arch,
            url: url(&image_file),
            file: image_file,
            size,
            sha256: output.image_sha256,
            binary_sha256: output.binary_sha256.clone(),
        });
        if let Some(ddi) = output.ddi {
            images.push(BuiltImage {
                arch,
                url: url(&ddi_file),
                file: ddi_file,
                size: ddi.size,
                sha256: ddi.sha256,
                binary_sha256: output.binary_sha256,
            });
        }
    }
    Ok(images)
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let out_dir = context.out_dir();
    // A fresh directory: its SHA256SUMS then lists exactly this build's files.
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir).map_err(StepError::work_dir("clearing", &out_dir))?;
    }
    let started_by = started_by(&context.job);
    let what = ImagesToBuild {
        version: &context.job.version,
        zip_dir: &context.work_dir,
        out_dir: &out_dir,
        key: Some(context.signing_key),
        verity_signer: context.verity_signer,
        started_by: &started_by,
        progress_of: context.job.id,
    };
    let images = build_images(context.settings, context.public_base_url, &what).await?;
    for image in &images {
        crate::metrics::global().built_bytes.inc_by(image.size);
    }
    context
        .record(|result| result.images = Some(images))
        .await?;
    Ok(())
}
