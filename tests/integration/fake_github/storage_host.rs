//! A storage host apart from the API (as `objects.githubusercontent.com` is on the real
//! GitHub): a second loopback listener that serves the assets, to which the asset API
//! redirects once a test asks for it, and which remembers the credentials each request came
//! with.

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;

use super::auth::authorization;
use super::{FakeGitHub, Shared, assets, lock};

/// One request the storage host answered.
#[derive(Clone, Debug)]
pub struct StorageRequest {
    pub path: String,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
}

#[derive(Default)]
pub(super) struct StorageHostState {
    /// The host's URL, once it runs: the asset API redirects there instead of to itself.
    pub(super) url: Option<String>,
    requests: Vec<StorageRequest>,
}

impl FakeGitHub {
    /// Starts the storage host on another port, and makes the asset API redirect there.
    pub fn serve_assets_from_another_host(&self) -> String {
        let runtime = self.runtime.as_ref().expect("the fake is running");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/storage/{id}", get(assets::asset_storage))
            .layer(axum::middleware::from_fn_with_state(
                self.model.clone(),
                remember,
            ))
            .with_state(self.model.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        self.model().storage_host.url = Some(url.clone());
        url
    }

    /// The requests the storage host has answered, in order.
    pub fn storage_host_requests(&self) -> Vec<StorageRequest> {
        self.model().storage_host.requests.clone()
    }
}

async fn remember(State(model): State<Shared>, request: Request, next: Next) -> Response {
    lock(&model).storage_host.requests.push(StorageRequest {
        path: request.uri().path().to_owned(),
        authorization: authorization(request.headers()).map(str::to_owned),
    });
    next.run(request).await
}
