//! A fake GitHub on loopback: a stateful model of the parts of GitHub the CLI and the App
//! server talk to, which tests set up, drive, break on purpose and inspect.
//!
//! It behaves like the real one where clients depend on it:
//! - releases are found by tag and listed newest first by creation (not by version), a page
//!   at a time with `Link` and `ETag` headers; a conditional request that matches answers 304
//!   without spending the rate limit; asset downloads need `Accept: application/octet-stream`
//!   and answer with a redirect to the storage host;
//! - App routes (`/app...`, `/repos/{o}/{r}/installation`) need an RS256 App JWT, checked as
//!   GitHub does; installation tokens are issued for registered installations, expire, and are
//!   needed on the repository routes, which only reach repositories of the installation's
//!   account (the releases of an upstream repository, one not added with
//!   [`FakeGitHub::add_repo`], are public); a token made for some `repositories` reaches only
//!   those (404 elsewhere), and one made with some `permissions` only the routes they cover
//!   (403);
//! - repositories hold branches, commits (real git object ids: blob, tree and commit shas are
//!   what `git hash-object` gives) and files, changed through the Contents API (every PUT makes
//!   a commit, even one that changes nothing) and the Git refs API; issues and pull requests
//!   share one number space, pull requests are refused as GitHub refuses them (a duplicate, no
//!   commits ahead), and listing them by `head` needs `owner:branch` (a bare branch is ignored);
//! - webhook deliveries are kept, listed newest first with a cursor, and redelivered for real
//!   to the configured target, asynchronously, as GitHub does;
//! - every answer carries a unique `x-github-request-id`, API answers carry the rate-limit
//!   headers, errors have GitHub's `{"message", "documentation_url"}` body (with `errors` on
//!   validation failures), and unknown things are 404;
//! - failures (rate limits, 5xx, any status) can be queued for the next matching request;
//! - every request is logged with its query, body and answer.
//!
//! One concept per file: `app` (the App, its installations and tokens), `auth`, `scope` (what a
//! scoped token reaches), `observe` (the
//! request log, rate limits and injected failures), `webhooks`, `repos` (repositories,
//! branches, commits), `refs`, `contents`, `pulls`, `issues`, `comments`, `collaborators`,
//! `releases`, `assets`, `storage_host` (assets served from another host), what their
//! routes share (`resource`), and helpers (`answers`, `pagination`, `sha1`, `diff`).

// Each scenario module uses only a part of this fake.
#![allow(dead_code)]

mod answers;
mod app;
mod assets;
mod auth;
mod collaborators;
mod comments;
mod contents;
mod diff;
mod issues;
mod manifests;
mod observe;
mod pagination;
mod pulls;
mod refs;
mod releases;
mod repos;
mod resource;
mod scope;
mod sha1;
mod storage_host;
mod webhooks;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;

// What tests name: each scenario module uses some of it.
#[allow(unused_imports)]
pub use self::{
    assets::Asset, comments::FakeComment, issues::FakeIssue, observe::Failure,
    observe::RecordedRequest, pulls::FakePull, releases::FakeRelease, repos::FakeCommit,
    scope::TokenScope, storage_host::StorageRequest, webhooks::FakeDelivery,
};

/// Everything the fake knows, behind one lock.
struct Model {
    /// The fake's own address, for the API URLs in answers.
    base_url: String,
    /// Ids of assets, releases, repositories, issues and pull requests.
    next_id: u64,

    app: app::AppState,
    permissions: collaborators::Permissions,
    comments: comments::CommentState,
    repos: repos::Repos,
    releases: releases::ReleaseState,
    assets: assets::AssetState,
    storage_host: storage_host::StorageHostState,
    hooks: webhooks::HookState,
    manifests: manifests::ManifestState,
    observe: observe::ObserveState,
}

impl Model {
    fn new(base_url: String) -> Self {
        Model {
            base_url,
            next_id: 0,
            app: app::AppState::default(),
            permissions: collaborators::Permissions::default(),
            comments: comments::CommentState::default(),
            repos: repos::Repos::default(),
            releases: releases::ReleaseState::default(),
            assets: assets::AssetState::default(),
            storage_host: storage_host::StorageHostState::default(),
            hooks: webhooks::HookState::default(),
            manifests: manifests::ManifestState::default(),
            observe: observe::ObserveState::default(),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

type Shared = Arc<Mutex<Model>>;

/// The model, even after a panic elsewhere (the fake should keep answering).
fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running fake; dropping it stops the server.
pub struct FakeGitHub {
    pub url: String,
    port: u16,
    model: Shared,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        // A redelivery to a target that does not answer could otherwise hold the drop for
        // the client's whole read timeout.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl FakeGitHub {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{address}");
        let model = Arc::new(Mutex::new(Model::new(url.clone())));
        let app = Router::new()
            .merge(app::routes())
            .merge(manifests::routes())
            .merge(webhooks::routes())
            .merge(collaborators::routes())
            .merge(comments::routes())
            .merge(repos::routes())
            .merge(refs::routes())
            .merge(contents::routes())
            .merge(pulls::routes())
            .merge(issues::routes())
            .merge(releases::routes())
            .merge(assets::routes())
            .fallback(|| async { answers::not_found() })
            .layer(axum::middleware::from_fn_with_state(
                model.clone(),
                scope::enforce,
            ))
            .layer(axum::middleware::from_fn_with_state(
                model.clone(),
                observe::observe,
            ))
            .with_state(model.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGitHub {
            url,
            port: address.port(),
            model,
            runtime: Some(runtime),
        }
    }

    /// The port it listens on at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }
}
