//! Keeps Grafana Alloy current on Flatcar hosts: builds the systemd-sysext image of each
//! upstream release in-process, signs it, publishes it with a signed `SHA256SUMS`, and opens
//! pull requests that pin it in the consumers' Butane configs.
//!
//! The library, which knows nothing of GitHub or of the server, and which the CLI and the
//! server share:
//! - [`version`], [`arch`]: the versions and architectures everything is named by;
//! - [`upstream`]: the upstream zip and the binary in it;
//! - [`sysext`]: the image's tree, written and read back as squashfs;
//! - [`artifacts`]: one build, zip in, checked and signed files out;
//! - [`manifest`]: `SHA256SUMS`, the names in it, and checking a published directory;
//! - [`signing`]: OpenPGP keys and detached signatures;
//! - [`ddi`]: the signed dm-verity disk image (DDI) built beside the squashfs image;
//! - [`provenance`]: each image's signed record of how it was made (in-toto, SLSA);
//! - [`build_info`]: this tool's version and the source revision it was built from;
//! - [`butane`]: the pin in a consumer's Butane config, edited and proven to change nothing
//!   else;
//! - [`settings`]: what is built and where (`CONFIG_FILE`);
//! - [`storage`]: the bucket or directory hosts download from;
//! - [`text_diff`]: the unified diff of a planned change of a file;
//!
//! and the App around it:
//! - [`server`]: connections, webhooks in (verified), status, setup;
//! - [`database`]: the inbox, the job queue and what must be remembered;
//! - [`worker`]: deliveries read as events, routed, turned into commands and jobs, and the
//!   job loop that runs the pipeline's steps;
//! - [`github`]: every call to GitHub, through one client;
//! - [`metrics`], [`secret`]: what every part counts, and values that never print.

pub mod arch;
pub mod artifacts;
pub mod build_info;
pub mod butane;
pub mod database;
pub mod ddi;
pub mod fence;
pub mod github;
pub mod manifest;
pub mod metrics;
pub mod provenance;
pub mod secret;
pub mod server;
pub mod settings;
pub mod signing;
pub mod storage;
pub mod sysext;
pub mod text_diff;
pub mod upstream;
pub mod version;
pub mod worker;
