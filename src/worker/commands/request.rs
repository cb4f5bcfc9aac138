//! What a command runs with (the comment that holds it, its delivery, the worker), and who
//! may run it: the one permission check for every command that publishes.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OnceCell;

use super::Command;
use crate::github::collaborators;
use crate::worker::Worker;
use crate::worker::inbox::HandlingError;
use crate::worker::replies::Audience;
use crate::worker::routing::CommentPosted;

/// The permissions on the build repository that may run the commands that publish.
const WRITE_PERMISSIONS: [&str; 3] = ["admin", "maintain", "write"];

/// The commands of one comment, being run.
pub struct CommandRequest<'a> {
    pub worker: &'a Worker,
    /// The delivery that brought the comment.
    pub delivery_id: &'a str,
    pub comment: &'a CommentPosted,
    /// Who reads the reply.
    pub audience: Audience<'a>,
    /// The commenter's permission on the build repository, once asked.
    permission: OnceCell<String>,
    /// Whether a dry run of this comment has started.
    dry_run_started: AtomicBool,
}

/// Whether the commenter may run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permitted {
    Yes,
    /// Refused: the command publishes, and the commenter's permission (as GitHub names it)
    /// is not enough.
    No {
        permission: String,
    },
}

impl<'a> CommandRequest<'a> {
    pub fn new(
        worker: &'a Worker,
        delivery_id: &'a str,
        comment: &'a CommentPosted,
        audience: Audience<'a>,
    ) -> CommandRequest<'a> {
        CommandRequest {
            worker,
            delivery_id,
            comment,
            audience,
            permission: OnceCell::new(),
            dry_run_started: AtomicBool::new(false),
        }
    }

    /// True the first time it is asked: a comment gets one dry run, since each builds the
    /// images and fills a reply of its own.
    pub fn start_dry_run(&self) -> bool {
        !self.dry_run_started.swap(true, Ordering::Relaxed)
    }

    /// Whether the commenter may run `command`: anyone may run the commands that only
    /// answer; those that publish need admin, maintain or write permission on the build
    /// repository.
    pub async fn check_permission(&self, command: &Command) -> Result<Permitted, HandlingError> {
        if !command.needs_write_permission() {
            return Ok(Permitted::Yes);
        }
        let permission = self.permission().await?;
        Ok(if WRITE_PERMISSIONS.contains(&permission) {
            Permitted::Yes
        } else {
            Permitted::No {
                permission: permission.to_owned(),
            }
        })
    }

    /// The commenter's permission on the build repository, as GitHub names it, asked of
    /// GitHub once per comment: `/build` and `/rebuild` publish from there, whatever
    /// repository the comment is in.
    async fn permission(&self) -> Result<&str, HandlingError> {
        let permission = self
            .permission
            .get_or_try_init(|| async {
                let build_repo = &self.worker.services.settings.build_repo.repo;
                let auth = self
                    .worker
                    .auth_for_repository(build_repo)
                    .await
                    .map_err(HandlingError::BuildRepository)?;
                let found = collaborators::permission(
                    &self.worker.services.github,
                    auth,
                    build_repo,
                    &self.comment.user,
                )
                .await?;
                Ok::<_, HandlingError>(found.permission)
            })
            .await?;
        Ok(permission)
    }
}
