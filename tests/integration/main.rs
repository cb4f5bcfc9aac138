//! Scenario tests: the CLI as users run it, checked with the tools hosts and operators use
//! (`unsquashfs`, `systemd-dissect`, the kernel's squashfs, `gpg` with systemd-sysupdate's
//! flags).

mod app_server;
mod app_setup;
mod asset_downloads;
mod bad_input;
mod channel_hosts;
mod channels;
mod command_rules;
mod common;
mod config_command;
mod ddi;
mod ddi_pipeline;
mod download;
mod fake_github;
mod host;
mod hosts;
mod http;
mod image;
mod manifest_updates;
mod pipeline;
mod pipeline_resume;
mod plan;
mod plan_comment;
// A throwaway PostgreSQL server, shared with the library's unit tests; each scenario uses
// part of it.
#[allow(dead_code)]
#[path = "../support/postgres.rs"]
pub(crate) mod postgres_server;
mod prune;
mod public_base_url;
mod rebuild_check;
mod replicas;
mod replicated_start;
mod retention;
mod s3_server;
mod same_bytes;
mod serve_process;
mod server;
mod shutdown;
mod signatures;
mod status_page;
mod storage;
mod storage_removals;
mod strangers;
mod test_app;
mod upstream_watch;
mod verify;
mod verify_hosts;
mod verify_url;
mod withdraw;
mod withdraw_command;
mod withdraw_hosts;
