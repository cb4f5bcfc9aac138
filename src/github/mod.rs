//! Talking to GitHub's REST API.

pub mod app_jwt;
pub mod client;
pub mod rate_limit;
pub mod release_asset;
