//! The command line: one subcommand per file, each a thin layer over the library, and the
//! progress lines they print (`progress`).

mod build;
mod check;
mod config;
mod keygen;
mod plan;
mod progress;
mod public_keys;
mod rebuild_check;
mod serve;
mod verify;
mod withdraw;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps Grafana Alloy current on Flatcar Container Linux hosts: builds the systemd-sysext
/// image from an upstream release, signs it with OpenPGP, and maintains the signed
/// SHA256SUMS manifest that systemd-sysupdate reads.
#[derive(Debug, Parser)]
#[command(
    name = "alloy-sysext-automation",
    version = alloy_sysext_automation::build_info::VERSION_LINE
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Build(build::BuildArgs),
    Check(check::CheckArgs),
    Config(config::ConfigArgs),
    Keygen(keygen::KeygenArgs),
    Plan(plan::PlanArgs),
    RebuildCheck(rebuild_check::RebuildCheckArgs),
    Serve(serve::ServeArgs),
    Verify(verify::VerifyArgs),
    Withdraw(withdraw::WithdrawArgs),
}

/// Parses the command line, runs the subcommand, and turns its error into a message and a
/// non-zero exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build::run(args),
        Command::Check(args) => check::run(args),
        Command::Config(args) => config::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Plan(args) => plan::run(args),
        Command::RebuildCheck(args) => rebuild_check::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Withdraw(args) => withdraw::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
