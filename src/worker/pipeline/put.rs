//! One file into storage, as `upload` and `manifest` put them: with its content type and
//! cache policy, and counted in the uploaded bytes when it was sent.

use std::path::Path;

use super::{StepContext, StepError};
use crate::storage::{PutOutcome, PutRequest, cache_control_of, content_type_of};

/// How the file at `path` (content hash `sha256`) is put under `key`.
pub fn put_request<'a>(key: &'a str, path: &'a Path, sha256: &'a str) -> PutRequest<'a> {
    PutRequest {
        key,
        path,
        sha256,
        content_type: content_type_of(key),
        cache_control: cache_control_of(key),
    }
}

/// Puts the file at `path` under `key`; `sha256` is its content's hash.
pub async fn put_file(
    context: &StepContext<'_>,
    key: &str,
    path: &Path,
    sha256: &str,
) -> Result<PutOutcome, StepError> {
    let outcome = context
        .storage
        .put_file(&put_request(key, path, sha256))
        .await?;
    if outcome == PutOutcome::Uploaded
        && let Ok(metadata) = std::fs::metadata(path)
    {
        crate::metrics::global()
            .uploaded_bytes
            .inc_by(metadata.len());
    }
    Ok(outcome)
}
