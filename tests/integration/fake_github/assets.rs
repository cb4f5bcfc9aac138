//! Release assets: their API (a redirect to storage for `Accept: application/octet-stream`) and
//! the storage host, which can stall in the middle of an asset.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use serde_json::{Value, json};

use super::answers::{Answer, not_found, rfc3339, user};
use super::releases::read_access;
use super::resource::RepoRoute;
use super::{FakeGitHub, Shared, lock};

/// An asset as the fake serves it.
#[derive(Clone)]
pub struct Asset {
    pub name: String,
    pub data: Vec<u8>,
    /// The `digest` field: `Some("sha256:<hex>")`, or `None` as on older releases.
    pub digest: Option<String>,
}

#[derive(Default)]
pub(super) struct AssetState {
    pub(super) assets: HashMap<u64, Asset>,
    /// Asset downloads started, by asset name.
    downloads: Vec<String>,
    delay: Duration,
}

/// An asset, as releases list it.
pub(super) fn asset_json(
    base_url: &str,
    repo: &str,
    tag: &str,
    id: u64,
    asset: &Asset,
    uploaded_at: SystemTime,
) -> Value {
    json!({
        "url": format!("{base_url}/repos/{repo}/releases/assets/{id}"),
        "id": id,
        "node_id": format!("RA_fake{id}"),
        "name": asset.name,
        "label": null,
        "uploader": user("github-actions[bot]"),
        "content_type": "application/zip",
        "state": "uploaded",
        "size": asset.data.len(),
        "digest": asset.digest,
        "download_count": 0,
        "created_at": rfc3339(uploaded_at),
        "updated_at": rfc3339(uploaded_at),
        "browser_download_url": format!("https://github.com/{repo}/releases/download/{tag}/{}", asset.name),
    })
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/repos/{owner}/{repo}/releases/assets/{id}", get(asset_api))
        .route("/storage/{id}", get(asset_storage))
}

impl FakeGitHub {
    /// The names of the assets whose download has started, in order.
    pub fn downloads(&self) -> Vec<String> {
        self.model().assets.downloads.clone()
    }

    /// Makes the storage host send the first half of each asset at once and the rest only
    /// after `delay`, so a test can stop a client in the middle of a download.
    pub fn set_asset_delay(&self, delay: Duration) {
        self.model().assets.delay = delay;
    }
}

async fn asset_api(route: RepoRoute) -> Answer {
    let (id, headers) = (&route.item, &route.headers);
    let storage = {
        let model = route.model();
        read_access(&model, headers, &route.owner, &route.repo)?;
        if !id
            .parse()
            .is_ok_and(|id| model.assets.assets.contains_key(&id))
        {
            return Err(not_found());
        }
        model.storage_host.url.clone().unwrap_or_default()
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.contains("application/octet-stream") {
        // The real API answers JSON metadata here; a client that wants bytes must ask.
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ask for application/octet-stream",
        )
            .into_response());
    }
    Ok(Redirect::to(&format!("{storage}/storage/{id}")).into_response())
}

/// The storage host (a different host on the real GitHub, and here too once
/// [`FakeGitHub::serve_assets_from_another_host`] starts it; it ignores API credentials).
pub(super) async fn asset_storage(State(model): State<Shared>, Path(id): Path<String>) -> Answer {
    let (data, delay) = {
        let mut model = lock(&model);
        let state = &mut model.assets;
        let Some(asset) = id
            .parse()
            .ok()
            .and_then(|id| state.assets.get(&id).cloned())
        else {
            return Err(not_found());
        };
        state.downloads.push(asset.name);
        (asset.data, state.delay)
    };
    if delay.is_zero() {
        return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response());
    }
    let length = data.len();
    let data = Bytes::from(data);
    let (first, rest) = (data.slice(..length / 2), data.slice(length / 2..));
    let chunks = futures_util::stream::unfold(0, move |step| {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                1 => {
                    tokio::time::sleep(delay).await;
                    Some((Ok(rest), 2))
                }
                _ => None,
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}
