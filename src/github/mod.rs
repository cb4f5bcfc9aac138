//! Talking to GitHub's REST API.

pub mod client;
pub mod release_asset;
