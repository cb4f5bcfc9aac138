//! `GET /images/{file}`: the published files, when storage is the local directory — a
//! complete systemd-sysupdate source on its own.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::settings::channels::ChannelName;
use crate::storage::{cache_control_of, content_type_of};

/// A bare published file name: no directories, nothing hidden.
fn is_published_name(file: &str) -> bool {
    !file.is_empty()
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

/// A published file's path: a bare name at the root, or under one release channel's prefix
/// (`canary/SHA256SUMS`). The channel is any well-formed name: a file is served only if it
/// is there.
fn is_published_path(path: &str) -> bool {
    match path.split_once('/') {
        None => is_published_name(path),
        Some((channel, file)) => channel.parse::<ChannelName>().is_ok() && is_published_name(file),
    }
}

pub async fn serve_image(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(root) = state.images_dir.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "images are published to S3-compatible storage, not served here\n",
        )
            .into_response();
    };
    if !is_published_path(&file) {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    }
    let path: PathBuf = root.join(&file);
    let opened = match tokio::fs::File::open(&path).await {
        Ok(opened) => opened,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "no such file\n").into_response();
        }
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "serving an image");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n").into_response();
        }
    };
    let length = match opened.metadata().await {
        Ok(metadata) if metadata.is_file() => metadata.len(),
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type_of(&file).to_owned()),
            (header::CACHE_CONTROL, cache_control_of(&file).to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(opened)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_published_names_are_served() {
        for good in [
            "alloy-1.2.3-amd64.raw",
            "SHA256SUMS",
            "SHA256SUMS.gpg",
            "alloy-1.2.3.raw.asc",
        ] {
            assert!(is_published_name(good), "{good}");
        }
        for bad in ["", ".alloy.tmp", "../x", "a/b", "a%2Fb", "a\\b"] {
            assert!(!is_published_name(bad), "{bad}");
        }
        for good in ["canary/SHA256SUMS", "wave-2/alloy-1.2.3-amd64.raw"] {
            assert!(is_published_path(good), "{good}");
        }
        for bad in [
            "canary/../SHA256SUMS",
            "canary/.x",
            "Canary/SHA256SUMS",
            "a/b/c",
            "/SHA256SUMS",
            "canary/",
            "../SHA256SUMS",
        ] {
            assert!(!is_published_path(bad), "{bad}");
        }
        assert_eq!(cache_control_of("SHA256SUMS"), "public, max-age=300");
        assert!(cache_control_of("alloy-1.2.3-amd64.raw").contains("immutable"));
    }
}
