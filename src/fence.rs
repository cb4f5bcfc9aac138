//! Fencing: writes to the world outside (GitHub, storage) made on behalf of a lease — a
//! job's, or the leader's — are made only while that lease is still this replica's.
//!
//! A replica that was paused or cut off may wake up after its lease lapsed and another
//! replica took the work over. Whatever it then tries to write must not land. The work runs
//! inside [`fenced`], and every write path ([`crate::github::api::GitHubApi`]'s writes,
//! [`crate::storage::Storage`]'s put, copy and delete) calls [`check`] first: it renews the
//! lease, and fails with [`FenceLost`] once the lease has passed to another. The fence is a
//! task-local, so the code between knows nothing of leases; work started outside a fence
//! (the CLI, a single-replica start-up) is not fenced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The lease the writes of a task are made under.
pub trait WriteFence: Send + Sync {
    /// Ok while the lease is still held (renewing it); [`FenceLost`] once it is not.
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), FenceLost>> + Send + '_>>;
}

/// The lease passed to another replica: the write was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} passed to another replica; nothing more is written for it here")]
pub struct FenceLost {
    /// What the lease was for: `job 7`, `the leader lease`.
    pub what: String,
}

tokio::task_local! {
    static FENCE: Arc<dyn WriteFence>;
}

/// Runs `work` with its writes fenced by `fence`.
pub async fn fenced<F: Future>(fence: Arc<dyn WriteFence>, work: F) -> F::Output {
    FENCE.scope(fence, work).await
}

/// Before a write: Ok when the current task runs under no fence, or under one whose lease
/// is still held.
pub async fn check() -> Result<(), FenceLost> {
    match FENCE.try_with(Arc::clone) {
        Ok(fence) => fence.check().await,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct Flag {
        held: AtomicBool,
        checks: AtomicUsize,
    }

    impl WriteFence for Flag {
        fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), FenceLost>> + Send + '_>> {
            Box::pin(async move {
                self.checks.fetch_add(1, Ordering::SeqCst);
                if self.held.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err(FenceLost {
                        what: "job 7".into(),
                    })
                }
            })
        }
    }

    #[tokio::test]
    async fn a_write_checks_the_fence_of_its_task_only() {
        assert_eq!(check().await, Ok(()), "outside a fence, writes go");
        let flag = Arc::new(Flag {
            held: AtomicBool::new(true),
            checks: AtomicUsize::new(0),
        });
        let fence: Arc<dyn WriteFence> = flag.clone();
        fenced(fence, async {
            assert_eq!(check().await, Ok(()));
            flag.held.store(false, Ordering::SeqCst);
            let lost = check().await.unwrap_err();
            assert_eq!(
                lost.to_string(),
                "job 7 passed to another replica; nothing more is written for it here"
            );
        })
        .await;
        assert_eq!(flag.checks.load(Ordering::SeqCst), 2);
        assert_eq!(check().await, Ok(()), "the fence ends with its work");
    }
}
