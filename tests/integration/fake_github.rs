//! A fake GitHub REST API on loopback, holding releases and their assets.
//!
//! It behaves like the real one where the client depends on it: releases are found by tag,
//! asset downloads need `Accept: application/octet-stream` and answer with a redirect to
//! the storage host, and unknown things are 404 with GitHub's error body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::json;

/// An asset as the fake serves it.
#[derive(Clone)]
pub struct Asset {
    pub name: String,
    pub data: Vec<u8>,
    /// The `digest` field: `Some("sha256:<hex>")`, or `None` as on older releases.
    pub digest: Option<String>,
}

#[derive(Default)]
struct Model {
    /// (repo, tag) -> asset ids
    releases: HashMap<(String, String), Vec<u64>>,
    assets: HashMap<u64, Asset>,
    next_id: u64,
    /// Asset downloads served, by asset name.
    downloads: Vec<String>,
}

/// The running fake; dropping it stops the server.
pub struct FakeGitHub {
    pub url: String,
    model: Arc<Mutex<Model>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeGitHub {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let model = Arc::new(Mutex::new(Model::default()));
        let app = Router::new()
            .route(
                "/repos/{owner}/{repo}/releases/tags/{tag}",
                get(release_by_tag),
            )
            .route("/repos/{owner}/{repo}/releases/assets/{id}", get(asset_api))
            .route("/storage/{id}", get(asset_storage))
            .fallback(|| async { not_found() })
            .with_state(model.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGitHub {
            url: format!("http://{address}"),
            model,
            _runtime: runtime,
        }
    }

    /// Publishes release `tag` in `repo` with `assets`.
    pub fn add_release(&self, repo: &str, tag: &str, assets: Vec<Asset>) {
        let mut model = self.model.lock().unwrap();
        let mut ids = Vec::new();
        for asset in assets {
            model.next_id += 1;
            let id = model.next_id;
            model.assets.insert(id, asset);
            ids.push(id);
        }
        model
            .releases
            .insert((repo.to_owned(), tag.to_owned()), ids);
    }

    /// The names of the assets downloaded so far.
    pub fn downloads(&self) -> Vec<String> {
        self.model.lock().unwrap().downloads.clone()
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        ),
    )
        .into_response()
}

async fn release_by_tag(
    State(model): State<Arc<Mutex<Model>>>,
    Path((owner, repo, tag)): Path<(String, String, String)>,
) -> Response {
    let model = model.lock().unwrap();
    let Some(ids) = model
        .releases
        .get(&(format!("{owner}/{repo}"), tag.clone()))
    else {
        return not_found();
    };
    let assets: Vec<_> = ids
        .iter()
        .map(|id| {
            let asset = &model.assets[id];
            json!({
                "id": id,
                "name": asset.name,
                "size": asset.data.len(),
                "digest": asset.digest,
                "content_type": "application/zip",
                "state": "uploaded",
                "url": format!("/repos/{owner}/{repo}/releases/assets/{id}"),
                "browser_download_url": format!("https://github.com/{owner}/{repo}/releases/download/{tag}/{}", asset.name),
            })
        })
        .collect();
    axum::Json(json!({
        "id": 1,
        "tag_name": tag,
        "name": tag,
        "draft": false,
        "prerelease": false,
        "body": "release notes",
        "html_url": format!("https://github.com/{owner}/{repo}/releases/tag/{tag}"),
        "assets": assets,
    }))
    .into_response()
}

async fn asset_api(
    State(model): State<Arc<Mutex<Model>>>,
    Path((_owner, _repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if !model.lock().unwrap().assets.contains_key(&id) {
        return not_found();
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.contains("application/octet-stream") {
        // The real API answers JSON metadata here; a client that wants bytes must ask.
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ask for application/octet-stream",
        )
            .into_response();
    }
    Redirect::to(&format!("/storage/{id}")).into_response()
}

async fn asset_storage(State(model): State<Arc<Mutex<Model>>>, Path(id): Path<u64>) -> Response {
    let mut model = model.lock().unwrap();
    let Some(asset) = model.assets.get(&id).cloned() else {
        return not_found();
    };
    model.downloads.push(asset.name.clone());
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        asset.data,
    )
        .into_response()
}
