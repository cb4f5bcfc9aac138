//! The App itself (`GET /app`).

use serde::Deserialize;

use super::api::{ApiError, Auth, GitHubApi};

/// The App, as far as the server needs to know it.
#[derive(Debug, Clone, Deserialize)]
pub struct App {
    /// The App's URL name; its comments are signed `{slug}[bot]`.
    pub slug: String,
}

/// The App whose credentials the client has.
pub async fn authenticated_app(api: &GitHubApi) -> Result<App, ApiError> {
    api.get_json("/app", Auth::App).await
}
