//! Talking to GitHub's REST API.

pub mod api;
pub mod app_jwt;
pub mod client;
pub mod installation_tokens;
pub mod rate_limit;
pub mod release_asset;
