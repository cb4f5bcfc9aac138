//! The S3 storage against a real S3-compatible server (moto), through a proxy that counts
//! requests and fails them on purpose.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use alloy_sysext_automation::storage::{
    DeleteOutcome, IMMUTABLE, PutOutcome, PutRequest, SHORT_LIVED, Storage, StorageError,
};
use sha2::{Digest, Sha256};

use crate::s3_server::{ACCESS_KEY_ID, BUCKET, S3Server, SECRET_ACCESS_KEY};

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes `data` to `dir/name` and returns its path and sha256.
fn file(dir: &Path, name: &str, data: &[u8]) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    fs::write(&path, data).unwrap();
    (path, sha256(data))
}

fn put<'a>(
    key: &'a str,
    path: &'a Path,
    sha256: &'a str,
    cache_control: &'a str,
) -> PutRequest<'a> {
    PutRequest {
        key,
        path,
        sha256,
        content_type: "application/octet-stream",
        cache_control,
    }
}

#[tokio::test]
async fn uploads_skip_unchanged_objects_and_replace_changed_ones() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = file(dir.path(), "image", b"squashfs image bytes");
    let key = "alloy-1.17.1-amd64.raw";

    assert_eq!(
        storage
            .put_file(&put(key, &path, &digest, IMMUTABLE))
            .await
            .unwrap(),
        PutOutcome::Uploaded
    );
    let (data, headers) = s3.object(key).expect("the object is there");
    assert_eq!(data, b"squashfs image bytes");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["cache-control"], IMMUTABLE);
    assert_eq!(headers["x-amz-meta-sha256"], digest);
    assert_eq!(s3.keys(), [key]);
    assert_eq!(s3.put_count(), 1);
    // No checksum headers beyond what S3 requires (R2 refuses some of the SDK's defaults),
    // and the body is streamed, not signed.
    let upload = s3
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    let checksum_headers: Vec<&String> = upload
        .headers
        .keys()
        .filter(|name| name.starts_with("x-amz-checksum") || name.contains("sdk-checksum"))
        .collect();
    assert!(checksum_headers.is_empty(), "{:?}", upload.headers);
    assert_eq!(upload.headers["content-length"], "20");
    assert_eq!(upload.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");

    // The same file again: a HEAD, and no upload.
    let before = s3.request_count();
    assert_eq!(
        storage
            .put_file(&put(key, &path, &digest, IMMUTABLE))
            .await
            .unwrap(),
        PutOutcome::Unchanged
    );
    assert_eq!(s3.put_count(), 1);
    let new: Vec<_> = s3.requests()[before..]
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(new, ["HEAD"]);

    // Changed content under the same key is uploaded.
    let (path, new_digest) = file(dir.path(), "image", b"squashfs image bytes, rebuilt");
    assert_eq!(
        storage
            .put_file(&put(key, &path, &new_digest, IMMUTABLE))
            .await
            .unwrap(),
        PutOutcome::Uploaded
    );
    let (data, headers) = s3.object(key).unwrap();
    assert_eq!(data, b"squashfs image bytes, rebuilt");
    assert_eq!(headers["x-amz-meta-sha256"], new_digest);
    assert_eq!(s3.put_count(), 2);

    // Same bytes, new Cache-Control: uploaded again so the new header takes effect.
    assert_eq!(
        storage
            .put_file(&put(key, &path, &new_digest, SHORT_LIVED))
            .await
            .unwrap(),
        PutOutcome::Uploaded
    );
    assert_eq!(s3.object(key).unwrap().1["cache-control"], SHORT_LIVED);

    // `get` reads objects back; a missing key is None, not an error.
    assert_eq!(
        storage.get(key).await.unwrap().unwrap(),
        b"squashfs image bytes, rebuilt"
    );
    assert_eq!(storage.get("no/such/key").await.unwrap(), None);
    assert_eq!(s3.put_count(), 3);
}

#[tokio::test]
async fn objects_from_the_old_pipeline_are_compared_by_content_when_small() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let headers = [
        ("Content-Type", "text/plain"),
        ("Cache-Control", SHORT_LIVED),
    ];
    fn put_text<'a>(key: &'a str, path: &'a Path, digest: &'a str) -> PutRequest<'a> {
        PutRequest {
            content_type: "text/plain",
            ..put(key, path, digest, SHORT_LIVED)
        }
    }

    // A small object without sha256 metadata and the same content: downloaded, compared,
    // and left alone.
    let manifest = b"0123abcd  alloy-1.17.1-amd64.raw\n";
    s3.put_raw("SHA256SUMS", manifest, &headers);
    let (path, digest) = file(dir.path(), "SHA256SUMS", manifest);
    assert_eq!(
        storage
            .put_file(&put_text("SHA256SUMS", &path, &digest))
            .await
            .unwrap(),
        PutOutcome::Unchanged
    );
    assert_eq!(s3.put_count(), 0);
    let (_, stored) = s3.object("SHA256SUMS").unwrap();
    assert!(!stored.contains_key("x-amz-meta-sha256"), "{stored:?}");

    // Different content of the same size: uploaded, with the metadata.
    s3.put_raw("SHA256SUMS", &manifest.map(|b| b ^ 1), &headers);
    assert_eq!(
        storage
            .put_file(&put_text("SHA256SUMS", &path, &digest))
            .await
            .unwrap(),
        PutOutcome::Uploaded
    );
    let (data, stored) = s3.object("SHA256SUMS").unwrap();
    assert_eq!(data, manifest);
    assert_eq!(stored["x-amz-meta-sha256"], digest);

    // Over 1 MiB without metadata: not downloaded, uploaded again.
    let big = vec![7u8; 2 * 1024 * 1024];
    s3.put_raw("big.raw", &big, &headers);
    let (path, digest) = file(dir.path(), "big.raw", &big);
    let before = s3.request_count();
    assert_eq!(
        storage
            .put_file(&put_text("big.raw", &path, &digest))
            .await
            .unwrap(),
        PutOutcome::Uploaded
    );
    let methods: Vec<_> = s3.requests()[before..]
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["HEAD", "PUT"]);
}

/// 70 MiB of deterministic, incompressible bytes.
fn write_large_file(path: &Path, size: usize) -> String {
    let mut file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        for word in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        let n = chunk.len().min(size - written);
        file.write_all(&chunk[..n]).unwrap();
        hasher.update(&chunk[..n]);
        written += n;
    }
    file.flush().unwrap();
    hex::encode(hasher.finalize())
}

#[tokio::test]
async fn large_files_go_up_in_parts_and_arrive_intact() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.raw");
    let size = 70 * 1024 * 1024;
    let digest = write_large_file(&path, size);
    let key = "alloy-9.9.9-arm64.raw";

    assert_eq!(
        storage
            .put_file(&put(key, &path, &digest, IMMUTABLE))
            .await
            .unwrap(),
        PutOutcome::Uploaded
    );
    let writes: Vec<String> = s3
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" || r.method == "POST")
        .map(|r| {
            let query = r.target.split_once('?').map_or("", |(_, q)| q);
            let params: HashMap<&str, &str> =
                query.split('&').filter_map(|p| p.split_once('=')).collect();
            match (r.method.as_str(), params.get("partNumber")) {
                ("PUT", Some(part)) => format!("part {part}"),
                ("POST", None) if query == "uploads" => "create".to_owned(),
                ("POST", None) if params.contains_key("uploadId") => "complete".to_owned(),
                _ => format!("{} {}", r.method, r.target),
            }
        })
        .collect();
    // Create, five parts of 16 MiB (the last 6 MiB), complete.
    assert_eq!(
        writes,
        [
            "create", "part 1", "part 2", "part 3", "part 4", "part 5", "complete"
        ],
        "{:?}",
        s3.requests()
    );
    let (data, headers) = s3.object(key).unwrap();
    assert_eq!(data.len(), size);
    assert_eq!(sha256(&data), digest);
    assert_eq!(headers["x-amz-meta-sha256"], digest);
    assert_eq!(headers["cache-control"], IMMUTABLE);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(s3.open_multipart_uploads(), 0);

    // Unchanged, it is not sent again.
    let puts = s3.put_count();
    assert_eq!(
        storage
            .put_file(&put(key, &path, &digest, IMMUTABLE))
            .await
            .unwrap(),
        PutOutcome::Unchanged
    );
    assert_eq!(s3.put_count(), puts);
}

#[tokio::test]
async fn a_failed_multipart_upload_is_aborted() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.raw");
    let digest = write_large_file(&path, 65 * 1024 * 1024);
    // The second part fails on every attempt the SDK makes.
    s3.fail_matching(10, "PUT", "partNumber=2");

    let error = storage
        .put_file(&put("large.raw", &path, &digest, IMMUTABLE))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("UploadPart"), "{error}");
    assert!(error.to_string().contains("SlowDown"), "{error}");
    let requests = s3.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "DELETE" && r.target.contains("uploadId=")),
        "{requests:?}"
    );
    assert_eq!(s3.open_multipart_uploads(), 0);
    assert_eq!(s3.keys(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failing_server_gives_transient_errors_then_recovers() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = file(dir.path(), "SHA256SUMS", b"manifest\n");
    let request = PutRequest {
        content_type: "text/plain",
        ..put("SHA256SUMS", &path, &digest, SHORT_LIVED)
    };

    // A short blip is absorbed by the SDK's retries.
    s3.fail_for(1);
    assert_eq!(
        storage.put_file(&request).await.unwrap(),
        PutOutcome::Uploaded
    );
    assert_eq!(s3.requests()[0].status, 503);

    // Failing for longer than the retries last: a transient error, for puts and gets.
    s3.set_failing(true);
    let (path, digest) = file(dir.path(), "SHA256SUMS", b"manifest, version 2\n");
    let request = PutRequest {
        content_type: "text/plain",
        ..put("SHA256SUMS", &path, &digest, SHORT_LIVED)
    };
    let error = storage.put_file(&request).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(matches!(error, StorageError::Remote { .. }), "{error:?}");
    let error = storage.get("SHA256SUMS").await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("SlowDown"), "{error}");
    assert_eq!(s3.object("SHA256SUMS").unwrap().0, b"manifest\n");

    // Once it stops failing, the same put goes through.
    s3.set_failing(false);
    assert_eq!(
        storage.put_file(&request).await.unwrap(),
        PutOutcome::Uploaded
    );
    assert_eq!(s3.object("SHA256SUMS").unwrap().0, b"manifest, version 2\n");
}

#[tokio::test]
async fn permanent_errors_are_not_transient() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = file(dir.path(), "f", b"x");
    let mut env: HashMap<&str, String> = s3.env().into_iter().collect();
    env.insert("R2_BUCKET", "no-such-bucket".to_owned());
    let storage = Storage::from_env(|name| env.get(name).cloned(), dir.path()).unwrap();
    let error = storage
        .put_file(&put("f", &path, &digest, IMMUTABLE))
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("NoSuchBucket"), "{error}");
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(SECRET_ACCESS_KEY), "{shown}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = file(dir.path(), "f", b"x");
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("R2_ENDPOINT", endpoint.as_str()),
        ("R2_BUCKET", BUCKET),
        ("R2_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("R2_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("S3_FORCE_PATH_STYLE", "true"),
    ];
    let lookup = |name: &str| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let storage = Storage::from_env(lookup, dir.path()).unwrap();
    let error = storage
        .put_file(&put("f", &path, &digest, IMMUTABLE))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(!format!("{error} {error:?}").contains(SECRET_ACCESS_KEY));
}

#[tokio::test]
async fn an_empty_file_is_stored() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = file(dir.path(), "empty", b"");
    let request = put("empty", &path, &digest, IMMUTABLE);
    assert_eq!(
        storage.put_file(&request).await.unwrap(),
        PutOutcome::Uploaded
    );
    assert_eq!(s3.object("empty").unwrap().0, b"");
    assert_eq!(
        storage.put_file(&request).await.unwrap(),
        PutOutcome::Unchanged
    );
}

#[tokio::test]
async fn hostile_keys_are_refused_before_any_request() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = file(dir.path(), "f", b"x");
    for key in [
        "../outside",
        "images/../../outside",
        "/absolute",
        "back\\slash",
        "nul\0byte",
        "",
    ] {
        let error = storage
            .put_file(&put(key, &path, &digest, IMMUTABLE))
            .await
            .unwrap_err();
        assert!(
            matches!(error, StorageError::InvalidKey { .. }),
            "{key:?}: {error}"
        );
        assert!(!error.is_transient());
        assert!(storage.get(key).await.is_err(), "{key:?}");
    }
    assert_eq!(s3.request_count(), 0, "{:?}", s3.requests());
    assert!(s3.keys().is_empty());
}

/// The methods of the requests the proxy saw from the `from`th on.
fn methods_since(s3: &S3Server, from: usize) -> Vec<String> {
    s3.requests()[from..]
        .iter()
        .map(|r| r.method.clone())
        .collect()
}

#[tokio::test]
async fn a_delete_removes_the_object_and_a_second_finds_it_absent() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    for key in [
        "SHA256SUMS",
        "alloy-1.2.3-amd64.raw",
        "canary/alloy-1.2.3-amd64.raw",
        "canary/alloy-1.2.3-amd64.raw.asc",
    ] {
        s3.put_raw(key, b"bytes", &[]);
    }

    assert_eq!(
        storage
            .delete("canary/alloy-1.2.3-amd64.raw")
            .await
            .unwrap(),
        DeleteOutcome::Removed
    );
    assert_eq!(s3.object("canary/alloy-1.2.3-amd64.raw"), None);
    assert_eq!(
        s3.keys(),
        [
            "SHA256SUMS",
            "alloy-1.2.3-amd64.raw",
            "canary/alloy-1.2.3-amd64.raw.asc"
        ]
    );
    assert_eq!(methods_since(&s3, 0), ["HEAD", "DELETE"]);

    // Again: nothing there, no error, and nothing else touched.
    let before = s3.request_count();
    assert_eq!(
        storage
            .delete("canary/alloy-1.2.3-amd64.raw")
            .await
            .unwrap(),
        DeleteOutcome::Absent
    );
    assert_eq!(
        storage.delete("never-stored.raw").await.unwrap(),
        DeleteOutcome::Absent
    );
    assert_eq!(
        methods_since(&s3, before),
        ["HEAD", "DELETE", "HEAD", "DELETE"]
    );
    assert_eq!(s3.keys().len(), 3);
}

#[tokio::test]
async fn a_failed_delete_names_the_key_leaves_the_object_and_can_be_made_again() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let key = "alloy-1.2.3-amd64.raw.sha256";
    s3.put_raw(key, b"digest", &[]);

    // The delete itself refused for as long as the SDK retries (3 attempts): transient,
    // and named.
    s3.fail_matching(3, "DELETE", key);
    let error = storage.delete(key).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        matches!(&error, StorageError::Remote { operation: "DELETE", key: k, .. } if k == key),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("S3 DELETE of {key:?} failed: HTTP 503, SlowDown")),
        "{error}"
    );
    assert_eq!(s3.object(key).unwrap().0, b"digest");

    // A server that fails everything: the lookup before it fails, transiently.
    s3.set_failing(true);
    let error = storage.delete(key).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        matches!(
            &error,
            StorageError::Remote {
                operation: "HEAD",
                ..
            }
        ),
        "{error:?}"
    );
    s3.set_failing(false);
    assert_eq!(s3.object(key).unwrap().0, b"digest");

    // Once the server answers, the same delete goes through.
    assert_eq!(storage.delete(key).await.unwrap(), DeleteOutcome::Removed);
    assert!(s3.keys().is_empty());
}

#[tokio::test]
async fn a_delete_in_a_missing_bucket_is_a_permanent_error_not_an_absent_object() {
    let s3 = S3Server::start();
    let mut env: HashMap<&str, String> = s3.env().into_iter().collect();
    env.insert("R2_BUCKET", "no-such-bucket".to_owned());
    let storage =
        Storage::from_env(|name| env.get(name).cloned(), Path::new("/nonexistent")).unwrap();
    let error = storage.delete("alloy-1.2.3-amd64.raw").await.unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(
        matches!(
            &error,
            StorageError::Remote {
                operation: "DELETE",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("NoSuchBucket"), "{error}");
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(SECRET_ACCESS_KEY), "{shown}");
        assert!(!shown.contains(ACCESS_KEY_ID), "{shown}");
    }
}

#[tokio::test]
async fn a_delete_refuses_hostile_keys_before_any_request() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    s3.put_raw("outside", b"keep", &[]);
    for key in ["../outside", "a/../outside", "/outside", "back\\slash", ""] {
        let error = storage.delete(key).await.unwrap_err();
        assert!(
            matches!(error, StorageError::InvalidKey { .. }),
            "{key:?}: {error}"
        );
    }
    assert_eq!(s3.request_count(), 0, "{:?}", s3.requests());
    assert_eq!(s3.keys(), ["outside"]);
}

#[test]
fn settings_name_what_is_missing_and_never_show_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let lookup = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let error = Storage::from_env(
        lookup(&[
            ("R2_ENDPOINT", "https://acct.r2.cloudflarestorage.com"),
            ("R2_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ]),
        dir.path(),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("R2_BUCKET and R2_ACCESS_KEY_ID are missing"),
        "{message}"
    );
    assert!(!message.contains(SECRET_ACCESS_KEY));
    assert!(!format!("{error:?}").contains(SECRET_ACCESS_KEY));

    let storage = Storage::from_env(
        lookup(&[
            ("R2_ENDPOINT", "https://acct.r2.cloudflarestorage.com/"),
            ("R2_BUCKET", BUCKET),
            ("R2_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("R2_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ]),
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        storage.describe(),
        format!(
            "s3 bucket {BUCKET} at https://acct.r2.cloudflarestorage.com (virtual-hosted style, region auto)"
        )
    );
    for shown in [
        storage.describe(),
        format!("{storage:?}"),
        storage.to_string(),
    ] {
        assert!(!shown.contains(SECRET_ACCESS_KEY), "{shown}");
        assert!(!shown.contains(ACCESS_KEY_ID), "{shown}");
    }

    let local = Storage::from_env(lookup(&[]), dir.path()).unwrap();
    assert_eq!(
        local.describe(),
        format!("directory {}", dir.path().join("images").display())
    );
}
