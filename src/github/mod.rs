//! Talking to GitHub's REST API: one file per resource (releases, issues, webhook
//! deliveries, …), each call made through the one client in [`api`], which authenticates,
//! retries, honours rate limits, times out, counts and logs every request. Beside them:
//! the App's JWTs ([`app_jwt`]), installation tokens and what each may reach
//! ([`installation_tokens`], [`token_scope`]), values escaped for URLs ([`url`]), and text
//! made inert for the Markdown of the App's comments and pull requests ([`markdown`]).

pub mod api;
pub mod app;
pub mod app_jwt;
pub mod app_manifests;
pub mod branches;
pub mod collaborators;
pub mod contents;
pub mod hook_deliveries;
pub mod installation_tokens;
pub mod installations;
pub mod issues;
pub mod markdown;
pub mod pulls;
pub mod rate_limit;
pub mod reactions;
pub mod release_asset;
pub mod releases;
pub mod repos;
pub mod shared_write_locks;
pub mod token_scope;
mod transport;
pub mod url;
