//! Commands in GitHub issue and pull request comments: `/build 1.17.1`, `/rebuild 1.17.1`,
//! their dry runs (`/build 1.17.1 --dry-run`), `/withdraw 1.17.1 reason`, `/promote 1.17.1`,
//! `/status` and `/help`.
//!
//! A command is a line of its own that starts with the command word (after at most three
//! spaces, as Markdown allows before a paragraph). Text a reader does not see as the comment
//! author's own words is skipped: fenced code blocks, indented code, block quotes and HTML
//! comments. That keeps a quoted reply, a pasted log or an issue template's hidden hints from
//! starting builds.
//!
//! [`parser`] finds the commands; each command has a file of its own here ([`build`],
//! [`rebuild`], [`dry_run`], [`status`], [`help`]) with what it does when a comment asks for it, given a
//! [`request::CommandRequest`], which also holds the one permission check every command
//! that publishes goes through. What is done with the comment as a whole (one reply,
//! refusals answered at most hourly, the delivery's outcome) is the worker's inbox's
//! (`crate::worker::inbox`).
//!
//! ```
//! use alloy_sysext_automation::worker::commands::{parse_comment, Command};
//! let found = parse_comment("Looks good.\n\n/build v1.17.1\n> /rebuild 1.0.0\n");
//! assert_eq!(found, vec![Ok(Command::Build("1.17.1".parse().unwrap()))]);
//! ```

pub mod build;
pub mod dry_run;
pub mod help;
pub mod parser;
pub mod promote;
pub mod rebuild;
pub mod request;
pub mod status;
pub mod withdraw;

use std::fmt;

use crate::version::Version;
use crate::worker::inbox::HandlingError;
use crate::worker::replies::BuildAnswer;
pub use help::HELP;
pub use parser::{CommandError, MAX_COMMANDS_PER_COMMENT, MAX_REASON_CHARS, parse_comment};
use request::CommandRequest;

/// A command found in a comment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `/build X.Y.Z`: build and publish the images for a version not yet published.
    Build(Version),
    /// `/rebuild X.Y.Z`: build and publish the images again, even if they exist.
    Rebuild(Version),
    /// `/build X.Y.Z --dry-run` (or `/rebuild X.Y.Z --dry-run` when `rebuild`): reply with
    /// what that job would do, doing none of it.
    DryRun { version: Version, rebuild: bool },
    /// `/withdraw X.Y.Z [reason]`: take a published version out of `SHA256SUMS`, mark its
    /// release, and move consumers off it.
    Withdraw {
        version: Version,
        reason: Option<String>,
    },
    /// `/promote X.Y.Z`: copy a published version into the next release channel and list
    /// it there.
    Promote(Version),
    /// `/status`: report what the App is doing.
    Status,
    /// `/help`: reply with [`HELP`].
    Help,
}

impl Command {
    /// The command word without its slash: `build`, `rebuild`, `status` or `help` (a dry
    /// run is named by the command it plans).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Build(_) | Command::DryRun { rebuild: false, .. } => "build",
            Command::Rebuild(_) | Command::DryRun { rebuild: true, .. } => "rebuild",
            Command::Withdraw { .. } => "withdraw",
            Command::Promote(_) => "promote",
            Command::Status => "status",
            Command::Help => "help",
        }
    }

    /// Whether the comment's author needs admin, maintain or write permission on the build
    /// repository for the command to run: true for the commands that publish images, and
    /// for their dry runs, which build the images too and show what publishing would change.
    pub fn needs_write_permission(&self) -> bool {
        match self {
            Command::Build(_)
            | Command::Rebuild(_)
            | Command::DryRun { .. }
            | Command::Withdraw { .. }
            | Command::Promote(_) => true,
            Command::Status | Command::Help => false,
        }
    }
}

/// Shows the command as it would be typed, e.g. `/build 1.17.1` or `/build 1.17.1 --dry-run`.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Build(version) | Command::Rebuild(version) | Command::Promote(version) => {
                write!(f, "/{} {version}", self.name())
            }
            Command::DryRun { version, .. } => write!(f, "/{} {version} --dry-run", self.name()),
            Command::Withdraw { version, reason } => {
                write!(f, "/withdraw {version}")?;
                match reason {
                    Some(reason) => write!(f, " {reason}"),
                    None => Ok(()),
                }
            }
            Command::Status | Command::Help => write!(f, "/{}", self.name()),
        }
    }
}

/// What running a command gives the comment's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommandAnswer {
    /// A part of the reply.
    Text(String),
    /// What became of a build asked for.
    Build(BuildAnswer),
    /// This comment asked for the same before: answered or queued then.
    AskedBefore,
}

impl Command {
    /// Does what the command asks, for a commenter who may run it (see
    /// [`CommandRequest::check_permission`]).
    pub(crate) async fn run(
        &self,
        request: &CommandRequest<'_>,
    ) -> Result<CommandAnswer, HandlingError> {
        match self {
            Command::Build(version) => build::run(request, version).await,
            Command::Rebuild(version) => rebuild::run(request, version).await,
            Command::DryRun { version, rebuild } => dry_run::run(request, version, *rebuild).await,
            Command::Withdraw { version, reason } => {
                withdraw::run(request, version, reason.as_deref()).await
            }
            Command::Promote(version) => promote::run(request, version).await,
            Command::Status => Ok(status::run(request).await?),
            Command::Help => Ok(help::run()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn names_and_permissions() {
        let cases = [
            (Command::Build(v("1.0.0")), "build", true, "/build 1.0.0"),
            (
                Command::Rebuild(v("1.0.0")),
                "rebuild",
                true,
                "/rebuild 1.0.0",
            ),
            (
                Command::DryRun {
                    version: v("1.0.0"),
                    rebuild: false,
                },
                "build",
                true,
                "/build 1.0.0 --dry-run",
            ),
            (
                Command::DryRun {
                    version: v("1.0.0"),
                    rebuild: true,
                },
                "rebuild",
                true,
                "/rebuild 1.0.0 --dry-run",
            ),
            (
                Command::Withdraw {
                    version: v("1.0.0"),
                    reason: Some("crashes on start".into()),
                },
                "withdraw",
                true,
                "/withdraw 1.0.0 crashes on start",
            ),
            (
                Command::Withdraw {
                    version: v("1.0.0"),
                    reason: None,
                },
                "withdraw",
                true,
                "/withdraw 1.0.0",
            ),
            (
                Command::Promote(v("1.0.0")),
                "promote",
                true,
                "/promote 1.0.0",
            ),
            (Command::Status, "status", false, "/status"),
            (Command::Help, "help", false, "/help"),
        ];
        for (command, name, write, shown) in cases {
            assert_eq!(command.name(), name);
            assert_eq!(command.needs_write_permission(), write, "{name}");
            assert_eq!(command.to_string(), shown);
            // A command shown is parsed back to itself.
            assert_eq!(parse_comment(shown), vec![Ok(command)]);
        }
    }
}
