//! An S3-compatible bucket (Cloudflare R2 in production), through the AWS SDK.
//!
//! Settings made for R2: region `auto` by default, request checksums only when an operation
//! requires them and response checksums validated only when required (R2 refuses some of the
//! checksum headers the SDK sends by default), and no reliance on virtual-hosted bucket
//! names unless asked. Files are streamed from disk, never read whole into memory; files over
//! 64 MiB go up in 16 MiB parts, and a multipart upload that fails is aborted so no parts are
//! left behind to be billed.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::{
    CopyOutcome, DeleteOutcome, PutOutcome, PutRequest, StorageConfigError, StorageError,
    checked_copy_keys, checked_sha256, sha256_of_bytes, validate_key,
};
use crate::secret::Secret;

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// The size of each part of a multipart upload (the last one may be smaller).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// An existing object without `sha256` metadata is downloaded and compared only up to this
/// size; a larger one is uploaded again.
pub const COMPARE_BY_DOWNLOAD_LIMIT: u64 = 1024 * 1024;
/// The user metadata key holding the object's sha256 (`x-amz-meta-sha256`).
pub const SHA256_METADATA: &str = "sha256";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const MAX_ATTEMPTS: u32 = 3;

/// What it takes to reach a bucket. `Debug` never shows the credentials.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// `https://<account>.r2.cloudflarestorage.com`, or any S3-compatible endpoint.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// `https://host/bucket/key` instead of `https://bucket.host/key`.
    pub force_path_style: bool,
}

/// A bucket on an S3-compatible server.
#[derive(Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    endpoint: String,
    region: String,
    force_path_style: bool,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .finish_non_exhaustive()
    }
}

impl S3Storage {
    /// A client for `settings.bucket`; checks the settings but sends nothing.
    pub fn new(settings: S3Settings) -> Result<S3Storage, StorageConfigError> {
        let endpoint = settings.endpoint.trim_end_matches('/').to_owned();
        check_endpoint(&endpoint)?;
        if settings.bucket.is_empty()
            || settings.bucket.contains(['/', '\\', '?', '#'])
            || settings
                .bucket
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(StorageConfigError::Invalid {
                variable: "R2_BUCKET",
                reason: format!("{:?} is not a bucket name", settings.bucket),
            });
        }
        let credentials = Credentials::new(
            settings.access_key_id.expose(),
            settings.secret_access_key.expose(),
            None,
            None,
            "alloy-sysext-automation",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                    .build_https(),
            )
            .force_path_style(settings.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .build();
        Ok(S3Storage {
            client: Client::from_conf(config),
            bucket: settings.bucket,
            endpoint,
            region: settings.region,
            force_path_style: settings.force_path_style,
        })
    }

    /// `s3 bucket B at https://… (path style, region auto)`.
    pub fn describe(&self) -> String {
        let style = if self.force_path_style {
            "path style"
        } else {
            "virtual-hosted style"
        };
        format!(
            "s3 bucket {} at {} ({style}, region {})",
            self.bucket, self.endpoint, self.region
        )
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Uploads `request.path` as `request.key` with `x-amz-meta-sha256`, Content-Type and
    /// Cache-Control, unless the object is there already with the same sha256, size,
    /// Content-Type and Cache-Control. An object without the sha256 metadata (uploaded by
    /// other tools) is compared by downloading it when it is at most 1 MiB, else uploaded.
    pub async fn put_file(&self, request: &PutRequest<'_>) -> Result<PutOutcome, StorageError> {
        let (sha256, size) = checked_file(request).await?;
        if self.is_unchanged(request, &sha256, size).await? {
            tracing::debug!(key = request.key, "unchanged in the bucket, not uploaded");
            return Ok(PutOutcome::Unchanged);
        }
        if size > MULTIPART_THRESHOLD {
            self.put_multipart(request, &sha256, size).await?;
        } else {
            self.put_single(request, &sha256, size).await?;
        }
        tracing::info!(key = request.key, size, bucket = %self.bucket, "uploaded");
        Ok(PutOutcome::Uploaded)
    }

    /// Whether an object with this key and the same content is there already: what
    /// [`Self::put_file`] would leave alone.
    pub async fn holds(&self, request: &PutRequest<'_>) -> Result<bool, StorageError> {
        let (sha256, size) = checked_file(request).await?;
        self.is_unchanged(request, &sha256, size).await
    }

    /// The object's body, or `None` when there is no such key.
    async fn body(&self, key: &str) -> Result<Option<ByteStream>, StorageError> {
        validate_key(key)?;
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.body)),
            Err(error)
                if error.as_service_error().is_some_and(|e| e.is_no_such_key())
                    || status_of(&error) == Some(404) && error.code() != Some("NoSuchBucket") =>
            {
                Ok(None)
            }
            Err(error) => Err(remote_error("GET", key, error)),
        }
    }

    /// The object's content, or `None` when there is no such key.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(body) = self.body(key).await? else {
            return Ok(None);
        };
        let data = body.collect().await.map_err(|e| body_error(key, &e))?;
        Ok(Some(data.into_bytes().to_vec()))
    }

    /// The sha256 (lowercase hex) of the object's content, read as it arrives rather than
    /// held whole; `None` when there is no such key.
    pub async fn sha256_of(&self, key: &str) -> Result<Option<String>, StorageError> {
        let Some(mut body) = self.body(key).await? else {
            return Ok(None);
        };
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| body_error(key, &e))? {
            sha2::Digest::update(&mut hasher, &chunk);
        }
        Ok(Some(hex::encode(sha2::Digest::finalize(hasher))))
    }

    /// Deletes the object. S3 answers a delete of a missing key as a success, so the
    /// object is looked up first (`HEAD`) to tell [`DeleteOutcome::Removed`] from
    /// [`DeleteOutcome::Absent`]. The delete is sent either way: a `HEAD` cannot tell a
    /// missing key from a missing bucket, and a missing bucket must be an error, not an
    /// object found absent.
    pub async fn delete(&self, key: &str) -> Result<DeleteOutcome, StorageError> {
        validate_key(key)?;
        let existed = self.head(key).await?.is_some();
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => {}
            // Some S3-compatible servers answer a missing key with a 404.
            Err(error)
                if status_of(&error) == Some(404) && error.code() != Some("NoSuchBucket") =>
            {
                return Ok(DeleteOutcome::Absent);
            }
            Err(error) => return Err(remote_error("DELETE", key, error)),
        }
        if !existed {
            return Ok(DeleteOutcome::Absent);
        }
        tracing::info!(key, bucket = %self.bucket, "deleted");
        Ok(DeleteOutcome::Removed)
    }

    /// Copies the object `from` to `to` inside the bucket with one `CopyObject`: the server
    /// copies the bytes, nothing passes through here. The copy keeps the source's
    /// Content-Type, Cache-Control and `x-amz-meta-sha256`, so [`Self::put_file`] and
    /// [`Self::holds`] find it unchanged exactly as they find an upload of the same file.
    /// A single `CopyObject` copies objects of up to 5 GB, far above an image's size.
    pub async fn copy(&self, from: &str, to: &str) -> Result<CopyOutcome, StorageError> {
        checked_copy_keys(from, to)?;
        match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(copy_source(&self.bucket, from))
            .metadata_directive(MetadataDirective::Copy)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error)
                if error.code() == Some("NoSuchKey")
                    || status_of(&error) == Some(404) && error.code() != Some("NoSuchBucket") =>
            {
                tracing::debug!(from, to, "nothing to copy: the source is not in the bucket");
                return Ok(CopyOutcome::SourceAbsent);
            }
            Err(error) => {
                let mut error = remote_error("COPY", from, error);
                if let StorageError::Remote { message, .. } = &mut error {
                    *message = format!("to {to:?}: {message}");
                }
                return Err(error);
            }
        }
        tracing::info!(from, to, bucket = %self.bucket, "copied");
        Ok(CopyOutcome::Copied)
    }

    async fn head(&self, key: &str) -> Result<Option<HeadObjectOutput>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output)),
            Err(error)
                if error.as_service_error().is_some_and(|e| e.is_not_found())
                    || status_of(&error) == Some(404) =>
            {
                Ok(None)
            }
            Err(error) => Err(remote_error("HEAD", key, error)),
        }
    }

    async fn is_unchanged(
        &self,
        request: &PutRequest<'_>,
        sha256: &str,
        size: u64,
    ) -> Result<bool, StorageError> {
        let Some(head) = self.head(request.key).await? else {
            return Ok(false);
        };
        let same_headers = head.content_length() == i64::try_from(size).ok()
            && same_header_value(head.content_type(), request.content_type)
            && same_header_value(head.cache_control(), request.cache_control);
        if !same_headers {
            return Ok(false);
        }
        if let Some(existing) = head.metadata().and_then(|m| m.get(SHA256_METADATA)) {
            return Ok(existing.eq_ignore_ascii_case(sha256));
        }
        if size > COMPARE_BY_DOWNLOAD_LIMIT {
            return Ok(false);
        }
        Ok(self
            .get(request.key)
            .await?
            .is_some_and(|data| sha256_of_bytes(&data) == sha256))
    }

    async fn put_single(
        &self,
        request: &PutRequest<'_>,
        sha256: &str,
        size: u64,
    ) -> Result<(), StorageError> {
        let body = file_part(request.path, 0, size).await?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(request.key)
            .body(body)
            .content_length(length(size))
            .content_type(request.content_type)
            .cache_control(request.cache_control)
            .metadata(SHA256_METADATA, sha256)
            .send()
            .await
            .map_err(|e| remote_error("PUT", request.key, e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        request: &PutRequest<'_>,
        sha256: &str,
        size: u64,
    ) -> Result<(), StorageError> {
        let key = request.key;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(request.content_type)
            .cache_control(request.cache_control)
            .metadata(SHA256_METADATA, sha256)
            .send()
            .await
            .map_err(|e| remote_error("CreateMultipartUpload", key, e))?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(StorageError::Remote {
                operation: "CreateMultipartUpload",
                key: key.to_owned(),
                transient: true,
                message: "the answer has no upload id".to_owned(),
            });
        };
        // Aborts the upload if this future fails or is dropped before completing.
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: Some(upload_id.clone()),
        };
        match self.upload_parts(request.path, key, &upload_id, size).await {
            Ok(()) => {
                guard.upload_id = None;
                Ok(())
            }
            Err(error) => {
                guard.upload_id = None;
                self.abort(key, &upload_id).await;
                Err(error)
            }
        }
    }

    async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
        size: u64,
    ) -> Result<(), StorageError> {
        let mut parts = Vec::new();
        let mut offset = 0;
        while offset < size {
            let part_number = i32::try_from(parts.len() + 1).expect("fewer than 2^31 parts");
            let part_length = PART_SIZE.min(size - offset);
            let body = file_part(path, offset, part_length).await?;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .content_length(length(part_length))
                .body(body)
                .send()
                .await
                .map_err(|e| remote_error("UploadPart", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .build(),
            );
            offset += part_length;
        }
        tracing::debug!(key, parts = parts.len(), "all parts uploaded");
        // Completing makes the object visible: the parts took a while, and the lease they
        // were sent under may have passed to another replica since.
        crate::fence::check().await?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| remote_error("CompleteMultipartUpload", key, e))?;
        Ok(())
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        abort_upload(&self.client, &self.bucket, key, upload_id).await;
    }
}

async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let result = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    match result {
        Ok(_) => tracing::info!(key, "aborted the failed multipart upload"),
        Err(error) => tracing::warn!(
            key,
            upload_id,
            error = %remote_error("AbortMultipartUpload", key, error),
            "could not abort a failed multipart upload; its parts stay until the bucket's \
             lifecycle rule removes them"
        ),
    }
}

/// Aborts a multipart upload that was neither completed nor aborted, when the future doing
/// it is dropped (a cancelled job, a shutdown).
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, bucket, key) =
                (self.client.clone(), self.bucket.clone(), self.key.clone());
            runtime.spawn(async move { abort_upload(&client, &bucket, &key, &upload_id).await });
        }
    }
}

/// `length` bytes of the file at `path` from `offset`, streamed from disk as the request
/// body (and read again from disk if the SDK retries).
async fn file_part(path: &Path, offset: u64, length: u64) -> Result<ByteStream, StorageError> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(length))
        .build()
        .await
        .map_err(|e| {
            StorageError::io(
                format!("reading {}", path.display()),
                std::io::Error::other(error_chain(&e)),
            )
        })
}

/// Whether a stored header value is `wanted`, ignoring case and spaces (a server may store
/// `text/plain;charset=utf-8` for `text/plain; charset=utf-8`).
fn same_header_value(stored: Option<&str>, wanted: &str) -> bool {
    let normalize = |value: &str| {
        value
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    stored.is_some_and(|stored| normalize(stored) == normalize(wanted))
}

/// The `x-amz-copy-source` value for `key` in `bucket`: `bucket/key`, URL-encoded as S3
/// decodes it. Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) and the `/`
/// between segments is percent-encoded, so a `+` stays a plus rather than a space, and a
/// `?` does not start a version id.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut encoded = String::with_capacity(bucket.len() + key.len() + 1);
    for byte in bucket.bytes().chain([b'/']).chain(key.bytes()) {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn length(size: u64) -> i64 {
    i64::try_from(size).expect("file sizes fit in i64")
}

fn check_endpoint(endpoint: &str) -> Result<(), StorageConfigError> {
    let invalid = |reason: &str| {
        Err(StorageConfigError::Invalid {
            variable: "R2_ENDPOINT",
            reason: reason.to_owned(),
        })
    };
    let Some(rest) = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
    else {
        return invalid("must start with https:// (or http://)");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return invalid(
            "must not contain credentials; use R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY",
        );
    }
    if authority.is_empty()
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return invalid("has no valid host");
    }
    Ok(())
}

fn status_of<E>(error: &SdkError<E>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

/// S3 error codes worth retrying later, whatever their HTTP status.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
];

/// A body that broke off while it was read: worth another try.
fn body_error(key: &str, error: &(dyn std::error::Error + 'static)) -> StorageError {
    StorageError::Remote {
        operation: "GET",
        key: key.to_owned(),
        transient: true,
        message: format!("reading the body: {}", error_chain(error)),
    }
}

/// A storage error from an SDK error: transient for network errors, timeouts, 5xx and
/// throttling; permanent otherwise. The SDK's messages never hold credentials: they travel
/// only as a signature in the `Authorization` header, which no error shows.
fn remote_error<E>(operation: &'static str, key: &str, error: SdkError<E>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (transient, message) = match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = error.code();
            let transient = status >= 500
                || status == 429
                || code.is_some_and(|code| TRANSIENT_CODES.contains(&code));
            let message = match (code, error.message()) {
                (Some(code), Some(message)) => format!("HTTP {status}, {code}: {message}"),
                (Some(code), None) => format!("HTTP {status}, {code}"),
                (None, _) => format!("HTTP {status}"),
            };
            (transient, message)
        }
        SdkError::TimeoutError(_) => (true, "timed out".to_owned()),
        SdkError::DispatchFailure(failure) => (!failure.is_user(), error_chain(&error)),
        // An answer that could not be read: cut short, or garbled on the way.
        SdkError::ResponseError(response) => (
            true,
            format!(
                "HTTP {}, unreadable answer: {}",
                response.raw().status().as_u16(),
                error_chain(&error)
            ),
        ),
        SdkError::ConstructionFailure(_) => (
            false,
            format!("could not make the request: {}", error_chain(&error)),
        ),
        _ => (false, error_chain(&error)),
    };
    StorageError::Remote {
        operation,
        key: key.to_owned(),
        transient,
        message,
    }
}

/// An error and its sources, `: `-separated (without the SDK's `Debug` dump).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// The request's key checked, and its file's sha256 (checked against the one given) and
/// size.
async fn checked_file(request: &PutRequest<'_>) -> Result<(String, u64), StorageError> {
    validate_key(request.key)?;
    let sha256 = checked_sha256(request)?;
    let size = tokio::fs::metadata(request.path)
        .await
        .map_err(|e| StorageError::io(format!("reading {}", request.path.display()), e))?
        .len();
    Ok((sha256, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_compare_without_case_or_spaces() {
        let wanted = "text/plain; charset=utf-8";
        assert!(same_header_value(Some("text/plain; charset=utf-8"), wanted));
        assert!(same_header_value(Some("text/plain;charset=UTF-8"), wanted));
        assert!(!same_header_value(Some("text/plain"), wanted));
        assert!(!same_header_value(None, wanted));
    }

    #[test]
    fn copy_sources_are_url_encoded_but_keep_their_slashes() {
        assert_eq!(
            copy_source("images", "canary/alloy-1.2.3-amd64.raw"),
            "images/canary/alloy-1.2.3-amd64.raw"
        );
        assert_eq!(
            copy_source("images", "canary/alloy 1.2.3+build?x=1&y%~ü.raw"),
            "images/canary/alloy%201.2.3%2Bbuild%3Fx%3D1%26y%25~%C3%BC.raw"
        );
    }

    #[test]
    fn endpoints_must_be_urls_without_credentials() {
        check_endpoint("https://acct.r2.cloudflarestorage.com").unwrap();
        check_endpoint("http://127.0.0.1:9000").unwrap();
        for bad in [
            "acct.r2.cloudflarestorage.com",
            "https://",
            "https://k:s@host",
            "ftp://x",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
