//! Step 2: the images, built and signed into the job's own output directory.

use std::path::PathBuf;

use super::download::zip_path;
use super::{StepContext, StepError};
use crate::artifacts::{BuildProgress, BuildRequest, BuildStep, MANIFEST_FILE, build_into_dir};
use crate::database::job_result::BuiltImage;
use crate::manifest::Manifest;
use crate::sysext::squashfs::SquashfsOptions;

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
    let path = manifest_path(context);
    let text = std::fs::read_to_string(&path).map_err(StepError::work_dir("reading", &path))?;
    Manifest::parse(&text).map_err(|source| StepError::Manifest {
        what: path.display().to_string(),
        source,
    })
}

pub async fn run(context: &mut StepContext<'_>) -> Result<(), StepError> {
    let settings = context.settings;
    let out_dir = context.out_dir();
    // A fresh directory: its SHA256SUMS then lists exactly this build's files.
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir).map_err(StepError::work_dir("clearing", &out_dir))?;
    }
    let mut images = Vec::new();
    for arch in settings.image.arches.clone() {
        let zip = zip_path(context, arch);
        let request = BuildRequest {
            binary_entry: settings.upstream.binary_name(arch),
            image_name: settings.image.name.clone(),
            squashfs: SquashfsOptions {
                compression: settings.image.compression,
                ..SquashfsOptions::default()
            },
            compat_name: settings.image.compat_name,
            ..BuildRequest::new(context.job.version.clone(), arch, zip)
        };
        let key = context.signing_key.clone();
        let job_id = context.job.id;
        let dir = out_dir.clone();
        let built = tokio::task::spawn_blocking(move || {
            build_into_dir(&request, &dir, Some(&key), &LogProgress(job_id))
                .map(|output| (output, request.image_file_name()))
        })
        .await
        .map_err(StepError::BuildStopped)?;
        let (output, image_file) = built.map_err(|source| StepError::Build { arch, source })?;
        let size = output.file(&image_file).map(|f| f.size).unwrap_or(0);
        crate::metrics::global().built_bytes.inc_by(size);
        images.push(BuiltImage {
            arch,
            url: context.public_base_url.url(&image_file).unwrap_or_default(),
            file: image_file,
            size,
            sha256: output.image_sha256,
            binary_sha256: output.binary_sha256,
        });
    }
    context
        .record(|result| result.images = Some(images))
        .await?;
    Ok(())
}
