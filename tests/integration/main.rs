//! Scenario tests: the CLI as users run it, checked with the tools hosts and operators use
//! (`unsquashfs`, `systemd-dissect`, the kernel's squashfs, `gpg` with systemd-sysupdate's
//! flags).

mod app_server;
mod app_setup;
mod asset_downloads;
mod bad_input;
mod command_rules;
mod common;
mod config_command;
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
mod public_base_url;
mod retention;
mod s3_server;
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
