//! `alloy-sysext-automation`: builds, signs and verifies Grafana Alloy sysext images.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
