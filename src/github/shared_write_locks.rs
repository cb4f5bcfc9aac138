//! Writes to one repository, one at a time across the replicas that share a database.
//!
//! [`super::api::GitHubApi`] already runs one write to a repository at a time within a
//! process; with several replicas, a job on one and the leader's replies on another could
//! still write to the same repository at once (two commits racing for one branch head). A
//! client given [`SharedWriteLocks`] takes the repository's shared lock around each write as
//! well. What the lock is made of (a PostgreSQL advisory lock) is not this module's concern.

use std::future::Future;
use std::pin::Pin;

/// The lock of a repository once taken, or why it could not be.
pub type Locking<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn SharedWriteLock>, String>> + Send + 'a>>;

/// Takes the lock of one repository shared by every replica.
pub trait SharedWriteLocks: Send + Sync {
    /// Waits for `repository`'s lock (`owner/name`, any case), or says why it cannot be had.
    fn lock<'a>(&'a self, repository: &'a str) -> Locking<'a>;
}

/// One repository's lock, held until released (or until the process dies).
pub trait SharedWriteLock: Send {
    fn release(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}
