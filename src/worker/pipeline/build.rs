//! Step 2: the images, built and signed into the job's own output directory.

use serde_json::json;

use super::download::zip_path;
use super::{JobContext, StepError};
use crate::artifacts::{BuildProgress, BuildRequest, BuildStep, build_into_dir};
use crate::sysext::squashfs::SquashfsOptions;

/// Logs the build's steps.
struct LogProgress(i64);

impl BuildProgress for LogProgress {
    fn step(&self, step: BuildStep) {
        tracing::info!(job = self.0, step = step.name(), "{}", step.describe());
    }
}

pub async fn run(context: &mut JobContext<'_>) -> Result<(), StepError> {
    let worker = context.worker;
    let settings = &worker.settings;
    let out_dir = context.out_dir();
    // A fresh directory: its SHA256SUMS then lists exactly this build's files.
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir)
            .map_err(|e| StepError::Transient(format!("clearing {}: {e}", out_dir.display())))?;
    }
    let mut images = Vec::new();
    for arch in settings.image.arches.clone() {
        let zip = zip_path(context, arch);
        if !zip.is_file() {
            // Resumed without its downloads (the work directory was cleaned).
            super::download::run(context).await?;
        }
        let request = BuildRequest {
            binary_entry: settings.upstream.binary_name(arch),
            image_name: settings.image.name.clone(),
            squashfs: SquashfsOptions {
                compression: settings.image.compression,
                ..SquashfsOptions::default()
            },
            compat_name: settings.image.compat_name,
            ..BuildRequest::new(context.version.clone(), arch, zip)
        };
        let key = worker.signing_key.clone();
        let job_id = context.job.id;
        let dir = out_dir.clone();
        let built = tokio::task::spawn_blocking(move || {
            build_into_dir(&request, &dir, Some(&key), &LogProgress(job_id))
                .map(|output| (output, request.image_file_name()))
        })
        .await
        .map_err(|e| StepError::Permanent(format!("the build stopped unexpectedly: {e}")))?;
        let (output, image_file) =
            built.map_err(|e| StepError::Permanent(format!("building for {arch}: {e}")))?;
        let size = output.file(&image_file).map(|f| f.size).unwrap_or(0);
        crate::metrics::global().built_bytes.inc_by(size);
        images.push(json!({
            "arch": arch.to_string(),
            "file": image_file,
            "size": size,
            "sha256": output.image_sha256,
            "binary_sha256": output.binary_sha256,
            "url": settings.publish.url(&image_file),
        }));
    }
    context.record(json!({ "images": images })).await?;
    Ok(())
}
