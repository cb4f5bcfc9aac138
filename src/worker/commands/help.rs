//! `/help`: replies with the list of commands and who may run them.

use super::CommandAnswer;
use crate::worker::replies;

/// The reply to `/help`, in Markdown.
pub const HELP: &str = "\
Commands are written on a line of their own, at the start of the line, one per line. \
Commands in code blocks, quotes and HTML comments are ignored.

| Command | What it does | Who may use it |
|---|---|---|
| `/build X.Y.Z` | Builds and publishes the Alloy X.Y.Z sysext images, if that version is not published yet. | Users with admin, maintain or write permission on the build repository |
| `/rebuild X.Y.Z` | Builds and publishes the Alloy X.Y.Z sysext images again, replacing the published ones. | Users with admin, maintain or write permission on the build repository |
| `/build X.Y.Z --dry-run` | Replies with what that build would do (the uploads, the `SHA256SUMS` lines, the release, each consumer's pull request and its diff) without doing any of it. `/rebuild X.Y.Z --dry-run` plans a rebuild. In the build repository only; one per comment. | Users with admin, maintain or write permission on the build repository |
| `/withdraw X.Y.Z reason` | Takes Alloy X.Y.Z out of the signed `SHA256SUMS` so that no host installs it, marks its release withdrawn with the reason (the rest of the line, optional), closes open consumer pull requests for it and moves consumers that pin it to the newest version still published. Only `/rebuild X.Y.Z` publishes it again. | Users with admin, maintain or write permission on the build repository |
| `/promote X.Y.Z` | With release channels (`publish.channels`), copies Alloy X.Y.Z from the last channel that lists it into the next one, so that the hosts and consumers following that channel get it. | Users with admin, maintain or write permission on the build repository |
| `/status` | Replies with the newest built images, the channels and their planned promotions, the withdrawn versions and the latest jobs. | Anyone |
| `/help` | Replies with this message. | Anyone |

A version is three numbers such as `1.17.1` (a leading `v` is fine); pre-releases such as \
`1.10.0-rc.1` are not published.

A comment gets one reply with the answers to all its commands. An accepted build gets an \
:eyes: reaction and a report when it ends. A request for a version whose build is queued \
joins that job (a `/rebuild` makes it a rebuild); one user may have at most 3 queued jobs.
";

/// The answer to `/help`: the text above.
pub(crate) fn run() -> CommandAnswer {
    CommandAnswer::Text(replies::help())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::commands::parse_comment;
    use crate::worker::commands::parser::COMMAND_WORDS;

    #[test]
    fn help_lists_every_command_and_who_may_run_it() {
        for word in COMMAND_WORDS {
            assert!(HELP.contains(&format!("`/{word}")), "{word}");
        }
        assert!(HELP.contains("admin, maintain or write permission"));
        // The help text's own example lines are not commands (none starts a line).
        assert_eq!(parse_comment(HELP), vec![]);
    }
}
