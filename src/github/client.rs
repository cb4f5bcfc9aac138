//! Building an API client for github.com, a GitHub Enterprise server or a test server.

use octocrab::Octocrab;

/// The public API; `GITHUB_API_URL` points elsewhere.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("GITHUB_API_URL {url:?} is not a usable URL: {source}")]
    BadUrl {
        url: String,
        source: octocrab::Error,
    },
    #[error("cannot set up the GitHub client: {0}")]
    Build(octocrab::Error),
}

/// A client for the API at `api_url`, authenticated with `token` when one is given.
pub fn api_client(api_url: &str, token: Option<&str>) -> Result<Octocrab, ClientError> {
    let mut builder =
        Octocrab::builder()
            .base_uri(api_url)
            .map_err(|source| ClientError::BadUrl {
                url: api_url.to_owned(),
                source,
            })?;
    if let Some(token) = token {
        builder = builder.personal_token(token.to_owned());
    }
    builder.build().map_err(ClientError::Build)
}
