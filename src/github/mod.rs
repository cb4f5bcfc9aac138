//! Talking to GitHub's REST API.

pub mod api;
pub mod app_jwt;
pub mod branches;
pub mod client;
pub mod collaborators;
pub mod contents;
pub mod installation_tokens;
pub mod issues;
pub mod pulls;
pub mod rate_limit;
pub mod reactions;
pub mod release_asset;
pub mod releases;
pub mod token_scope;
pub mod url;
