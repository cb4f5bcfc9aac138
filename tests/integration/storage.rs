//! The S3 storage against a real S3-compatible server (moto), through a proxy that counts
//! requests and fails them on purpose.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use alloy_sysext_automation::storage::{
    CopyOutcome, DeleteOutcome, IMMUTABLE, PutOutcome, PutRequest, SHORT_LIVED, Storage,
    StorageError, cache_control_of, content_type_of,
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
    // Its hash, read as the body arrives, as a promotion checks its copies.
    assert_eq!(storage.sha256_of(key).await.unwrap(), Some(digest.clone()));
    assert_eq!(
        storage.sha256_of("alloy-0.0.0-arm64.raw").await.unwrap(),
        None
    );
    // The same of a local directory.
    let local_dir = tempfile::tempdir().unwrap();
    let local = Storage::from_env(|_| None, local_dir.path()).unwrap();
    local
        .put_file(&put(key, &path, &digest, IMMUTABLE))
        .await
        .unwrap();
    assert_eq!(local.sha256_of(key).await.unwrap(), Some(digest.clone()));
    assert_eq!(
        local.sha256_of("alloy-0.0.0-arm64.raw").await.unwrap(),
        None
    );

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

/// The request for the file at `path` under `key` as the pipeline puts it: Content-Type and
/// Cache-Control from the key.
fn published<'a>(key: &'a str, path: &'a Path, sha256: &'a str) -> PutRequest<'a> {
    PutRequest {
        key,
        path,
        sha256,
        content_type: content_type_of(key),
        cache_control: cache_control_of(key),
    }
}

/// The headers of a stored object that make it "the same file" to a later put.
fn identity(headers: &HashMap<String, String>) -> [&str; 4] {
    [
        "content-type",
        "cache-control",
        "x-amz-meta-sha256",
        "content-length",
    ]
    .map(|name| headers.get(name).map_or("(none)", String::as_str))
}

#[tokio::test]
async fn a_copied_object_is_the_uploaded_one_and_a_later_put_of_it_is_skipped() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let (image, image_digest) = file(dir.path(), "image", b"squashfs image bytes");
    let (manifest, manifest_digest) = file(dir.path(), "SHA256SUMS", b"abc  alloy.raw\n");
    let files = [
        ("alloy-1.2.3-amd64.raw", &image, &image_digest),
        ("SHA256SUMS", &manifest, &manifest_digest),
    ];
    for (name, path, digest) in files {
        let key = format!("canary/{name}");
        assert_eq!(
            storage
                .put_file(&published(&key, path, digest))
                .await
                .unwrap(),
            PutOutcome::Uploaded
        );
    }
    let puts = s3.put_count();

    // To the next channel's prefix, and to the bucket's root (the last channel's place).
    for to_prefix in ["beta/", ""] {
        for (name, path, digest) in files {
            let (from, to) = (format!("canary/{name}"), format!("{to_prefix}{name}"));
            let before = s3.request_count();
            assert_eq!(storage.copy(&from, &to).await.unwrap(), CopyOutcome::Copied);
            // One request: the server copies, no byte passes through the client.
            let requests = &s3.requests()[before..];
            assert_eq!(requests.len(), 1, "{requests:?}");
            assert_eq!(requests[0].method, "PUT");
            assert_eq!(
                requests[0].target,
                format!("/{BUCKET}/{to}?x-id=CopyObject")
            );
            assert_eq!(
                requests[0].headers["x-amz-copy-source"],
                format!("{BUCKET}/{from}")
            );
            assert_eq!(requests[0].headers["x-amz-metadata-directive"], "COPY");
            assert_eq!(requests[0].status, 200);

            let (source_data, source_headers) = s3.object(&from).unwrap();
            let (data, headers) = s3.object(&to).unwrap();
            assert_eq!(data, source_data);
            assert_eq!(identity(&headers), identity(&source_headers));
            assert_eq!(
                storage.get(&to).await.unwrap().unwrap(),
                fs::read(path).unwrap()
            );

            // The same file put at the destination, as a publish of that channel would:
            // a HEAD finds it there, nothing is sent.
            let before = s3.request_count();
            let request = published(&to, path, digest);
            assert!(storage.holds(&request).await.unwrap(), "{to}");
            assert_eq!(
                storage.put_file(&request).await.unwrap(),
                PutOutcome::Unchanged,
                "{to}"
            );
            assert_eq!(methods_since(&s3, before), ["HEAD", "HEAD"], "{to}");
        }
    }
    // The copies' headers are the ones the keys call for.
    let headers = s3.object("beta/SHA256SUMS").unwrap().1;
    assert_eq!(headers["cache-control"], SHORT_LIVED);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["x-amz-meta-sha256"], manifest_digest);
    let headers = s3.object("alloy-1.2.3-amd64.raw").unwrap().1;
    assert_eq!(headers["cache-control"], IMMUTABLE);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-amz-meta-sha256"], image_digest);
    // Four copies (the proxy counts them as writes), no upload; the sources stay.
    assert_eq!(s3.put_count(), puts + 4);
    assert_eq!(
        s3.keys(),
        [
            "SHA256SUMS",
            "alloy-1.2.3-amd64.raw",
            "beta/SHA256SUMS",
            "beta/alloy-1.2.3-amd64.raw",
            "canary/SHA256SUMS",
            "canary/alloy-1.2.3-amd64.raw",
        ]
    );
}

#[tokio::test]
async fn a_copy_source_is_url_encoded_as_s3_reads_it() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    // A `+` left as it is would read as a space, a `?` as the start of a version id.
    let from = "canary/alloy 1.2.3+build.1?x=ü-amd64.raw";
    let to = "stable/alloy 1.2.3+build.1?x=ü-amd64.raw";
    s3.put_raw(from, b"bytes", &[]);
    let before = s3.request_count();
    assert_eq!(storage.copy(from, to).await.unwrap(), CopyOutcome::Copied);
    assert_eq!(
        s3.requests()[before].headers["x-amz-copy-source"],
        format!("{BUCKET}/canary/alloy%201.2.3%2Bbuild.1%3Fx%3D%C3%BC-amd64.raw")
    );
    assert_eq!(s3.object(to).unwrap().0, b"bytes");
    assert_eq!(s3.keys(), [from, to]);
}

#[tokio::test]
async fn a_copy_of_a_missing_source_is_source_absent_and_creates_nothing() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    s3.put_raw("beta/alloy-1.2.3-amd64.raw", b"beta's own", &[]);
    for (from, to) in [
        ("canary/alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw"),
        // A destination that exists is left as it is.
        ("canary/alloy-1.2.3-amd64.raw", "beta/alloy-1.2.3-amd64.raw"),
    ] {
        let before = s3.request_count();
        assert_eq!(
            storage.copy(from, to).await.unwrap(),
            CopyOutcome::SourceAbsent
        );
        assert_eq!(methods_since(&s3, before), ["PUT"]);
        assert_eq!(s3.requests()[before].status, 404);
    }
    assert_eq!(s3.keys(), ["beta/alloy-1.2.3-amd64.raw"]);
    assert_eq!(
        s3.object("beta/alloy-1.2.3-amd64.raw").unwrap().0,
        b"beta's own"
    );
}

#[tokio::test]
async fn a_copy_in_a_missing_bucket_is_a_permanent_error_not_an_absent_source() {
    let s3 = S3Server::start();
    let mut env: HashMap<&str, String> = s3.env().into_iter().collect();
    env.insert("R2_BUCKET", "no-such-bucket".to_owned());
    let storage =
        Storage::from_env(|name| env.get(name).cloned(), Path::new("/nonexistent")).unwrap();
    let error = storage
        .copy("canary/alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw")
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(
        matches!(
            &error,
            StorageError::Remote { operation: "COPY", key, .. } if key == "canary/alloy-1.2.3-amd64.raw"
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(
            "S3 COPY of \"canary/alloy-1.2.3-amd64.raw\" failed: to \"alloy-1.2.3-amd64.raw\": HTTP 404, NoSuchBucket"
        ),
        "{error}"
    );
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(SECRET_ACCESS_KEY), "{shown}");
        assert!(!shown.contains(ACCESS_KEY_ID), "{shown}");
    }
}

#[tokio::test]
async fn a_failed_copy_is_transient_names_both_keys_and_can_be_made_again() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let (from, to) = ("canary/alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw");
    s3.put_raw(from, b"image", &[]);
    // Refused for as long as the SDK retries (3 attempts).
    s3.fail_matching(3, "PUT", &format!("/{BUCKET}/{to}"));
    let error = storage.copy(from, to).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().starts_with(&format!(
            "S3 COPY of {from:?} failed: to {to:?}: HTTP 503, SlowDown"
        )),
        "{error}"
    );
    assert_eq!(s3.keys(), [from]);
    assert_eq!(methods_since(&s3, 0), ["PUT", "PUT", "PUT"]);

    assert_eq!(storage.copy(from, to).await.unwrap(), CopyOutcome::Copied);
    assert_eq!(s3.object(to).unwrap().0, b"image");
}

#[tokio::test]
async fn a_copy_replaces_what_the_destination_held() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = file(dir.path(), "image", b"rebuilt image");
    let (from, to) = ("canary/alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw");
    storage
        .put_file(&published(from, &path, &digest))
        .await
        .unwrap();
    // An older object under the destination, with other headers and no sha256 metadata.
    s3.put_raw(
        to,
        b"first image, longer than the new one",
        &[
            ("Content-Type", "text/plain"),
            ("Cache-Control", SHORT_LIVED),
        ],
    );
    assert_eq!(storage.copy(from, to).await.unwrap(), CopyOutcome::Copied);
    let (data, headers) = s3.object(to).unwrap();
    assert_eq!(data, b"rebuilt image");
    assert_eq!(
        identity(&headers),
        ["application/octet-stream", IMMUTABLE, digest.as_str(), "13"]
    );
    assert_eq!(
        storage
            .put_file(&published(to, &path, &digest))
            .await
            .unwrap(),
        PutOutcome::Unchanged
    );
}

#[tokio::test]
async fn a_copy_refuses_hostile_keys_before_any_request() {
    let s3 = S3Server::start();
    let storage = s3.storage();
    s3.put_raw("canary/x", b"keep", &[]);
    for key in [
        "../outside",
        "canary/../../outside",
        "/absolute",
        "back\\slash",
        "nul\0byte",
        "new\nline",
        "",
    ] {
        for (from, to) in [("canary/x", key), (key, "x")] {
            let error = storage.copy(from, to).await.unwrap_err();
            assert!(
                matches!(&error, StorageError::InvalidKey { key: refused, .. } if refused == key),
                "{from:?} -> {to:?}: {error}"
            );
            assert!(!error.is_transient());
        }
    }
    // A copy onto itself is refused too: S3 would refuse it, and it would change nothing.
    let error = storage.copy("canary/x", "canary/x").await.unwrap_err();
    assert!(
        matches!(&error, StorageError::InvalidRequest { key, .. } if key == "canary/x"),
        "{error:?}"
    );
    assert_eq!(s3.request_count(), 0, "{:?}", s3.requests());
    assert_eq!(s3.keys(), ["canary/x"]);
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_local_copy_is_the_stored_file_and_a_later_put_of_it_is_skipped() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_env(|_| None, dir.path()).unwrap();
    let images = dir.path().join("images");
    let (path, digest) = file(dir.path(), "image", b"squashfs image bytes");
    let from = "canary/alloy-1.2.3-amd64.raw";
    assert_eq!(
        storage
            .put_file(&published(from, &path, &digest))
            .await
            .unwrap(),
        PutOutcome::Uploaded
    );

    for to in ["beta/alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw"] {
        assert_eq!(storage.copy(from, to).await.unwrap(), CopyOutcome::Copied);
        assert_eq!(
            storage.get(to).await.unwrap().unwrap(),
            b"squashfs image bytes"
        );
        let stored = images.join(to);
        assert_eq!(
            fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // A copy, not a link: the source is a file of its own.
        assert_ne!(
            fs::metadata(&stored).unwrap().ino(),
            fs::metadata(images.join(from)).unwrap().ino()
        );
        let request = published(to, &path, &digest);
        assert!(storage.holds(&request).await.unwrap(), "{to}");
        let inode = fs::metadata(&stored).unwrap().ino();
        assert_eq!(
            storage.put_file(&request).await.unwrap(),
            PutOutcome::Unchanged
        );
        assert_eq!(fs::metadata(&stored).unwrap().ino(), inode);
    }
    // The new directory is readable by hosts, and no temporary file is left.
    assert_eq!(
        fs::metadata(images.join("beta"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(names_in(&images.join("beta")), ["alloy-1.2.3-amd64.raw"]);
    assert_eq!(
        names_in(&images),
        ["alloy-1.2.3-amd64.raw", "beta", "canary"]
    );
    assert_eq!(names_in(&images.join("canary")), ["alloy-1.2.3-amd64.raw"]);
}

#[tokio::test]
async fn a_local_copy_replaces_the_destination_through_a_rename() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_env(|_| None, dir.path()).unwrap();
    let images = dir.path().join("images");
    let (old, old_digest) = file(dir.path(), "old", b"first image, longer than the new one");
    let (new, new_digest) = file(dir.path(), "new", b"rebuilt image");
    let (from, to) = ("canary/alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw");
    storage
        .put_file(&published(to, &old, &old_digest))
        .await
        .unwrap();
    storage
        .put_file(&published(from, &new, &new_digest))
        .await
        .unwrap();
    let before = fs::metadata(images.join(to)).unwrap().ino();

    assert_eq!(storage.copy(from, to).await.unwrap(), CopyOutcome::Copied);
    assert_eq!(fs::read(images.join(to)).unwrap(), b"rebuilt image");
    // A new file renamed over the old one: a reader holding the old one keeps it whole.
    assert_ne!(fs::metadata(images.join(to)).unwrap().ino(), before);
    assert_eq!(names_in(&images), ["alloy-1.2.3-amd64.raw", "canary"]);

    // A directory where the file would go is not replaced: a permanent error naming it,
    // and the temporary file is gone.
    fs::create_dir_all(images.join("beta/alloy-1.2.3-amd64.raw/inside")).unwrap();
    let error = storage
        .copy(from, "beta/alloy-1.2.3-amd64.raw")
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(
        error.to_string().starts_with(&format!(
            "renaming into {}: ",
            images.join("beta/alloy-1.2.3-amd64.raw").display()
        )),
        "{error}"
    );
    assert_eq!(names_in(&images.join("beta")), ["alloy-1.2.3-amd64.raw"]);
}

#[tokio::test]
async fn a_local_copy_of_a_missing_source_is_source_absent_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_env(|_| None, dir.path()).unwrap();
    let images = dir.path().join("images");
    // Not even the root exists yet.
    assert_eq!(
        storage
            .copy(
                "canary/alloy-1.2.3-amd64.raw",
                "stable/alloy-1.2.3-amd64.raw"
            )
            .await
            .unwrap(),
        CopyOutcome::SourceAbsent
    );
    assert!(!images.exists());

    let (path, digest) = file(dir.path(), "image", b"beta's own");
    storage
        .put_file(&published("beta/alloy-1.2.3-amd64.raw", &path, &digest))
        .await
        .unwrap();
    for to in ["stable/alloy-1.2.3-amd64.raw", "beta/alloy-1.2.3-amd64.raw"] {
        assert_eq!(
            storage
                .copy("canary/alloy-1.2.3-amd64.raw", to)
                .await
                .unwrap(),
            CopyOutcome::SourceAbsent
        );
    }
    assert_eq!(names_in(&images), ["beta"]);
    assert_eq!(
        fs::read(images.join("beta/alloy-1.2.3-amd64.raw")).unwrap(),
        b"beta's own"
    );

    // A directory under the source key is no file to copy: a permanent error naming it.
    let error = storage
        .copy("beta", "alloy-1.2.3-amd64.raw")
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "reading {}: it is not a file",
            images.join("beta").display()
        )
    );
    assert_eq!(names_in(&images), ["beta"]);
}

#[tokio::test]
async fn a_local_copy_refuses_hostile_keys_before_touching_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_env(|_| None, dir.path()).unwrap();
    let images = dir.path().join("images");
    fs::create_dir_all(images.join("canary")).unwrap();
    fs::write(images.join("canary/x"), b"keep").unwrap();
    fs::write(dir.path().join("outside"), b"outside").unwrap();
    for key in [
        "../outside",
        "canary/../../outside",
        "/absolute",
        "back\\slash",
        "nul\0byte",
        "",
    ] {
        for (from, to) in [("canary/x", key), (key, "x")] {
            let error = storage.copy(from, to).await.unwrap_err();
            assert!(
                matches!(&error, StorageError::InvalidKey { key: refused, .. } if refused == key),
                "{from:?} -> {to:?}: {error}"
            );
        }
    }
    let error = storage.copy("canary/x", "canary/x").await.unwrap_err();
    assert!(
        matches!(&error, StorageError::InvalidRequest { key, .. } if key == "canary/x"),
        "{error:?}"
    );
    assert_eq!(fs::read(dir.path().join("outside")).unwrap(), b"outside");
    assert_eq!(names_in(dir.path()), ["images", "outside"]);
    assert_eq!(names_in(&images), ["canary"]);
    assert_eq!(names_in(&images.join("canary")), ["x"]);
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
