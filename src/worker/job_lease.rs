//! The lease a running job holds: renewed in the background while the job runs, and
//! checked (and renewed) before each of its writes to GitHub or storage, through the
//! job's [`crate::fence`]. Once another replica has taken the job over, every check fails
//! and the job stops here without writing anything more.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::database::Database;
use crate::database::jobs::JobLease;
use crate::fence::{FenceLost, WriteFence};

/// One claim on one job.
pub struct RunningLease {
    database: Database,
    job: i64,
    lease: JobLease,
    length: Duration,
    lost: AtomicBool,
}

impl RunningLease {
    pub fn new(database: Database, job: i64, lease: JobLease, length: Duration) -> Arc<Self> {
        Arc::new(RunningLease {
            database,
            job,
            lease,
            length,
            lost: AtomicBool::new(false),
        })
    }

    /// True once a renewal found the job taken over.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn lost(&self) -> FenceLost {
        FenceLost {
            what: format!("job {}", self.job),
        }
    }

    /// Renews the lease; false (and lost for good) when the job was taken over. A database
    /// that does not answer cannot say the lease is still held: the write waits for the
    /// next check instead of going out.
    async fn renew(&self) -> Result<(), FenceLost> {
        if self.is_lost() {
            return Err(self.lost());
        }
        match self
            .database
            .renew_job_lease(self.job, &self.lease, self.length)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.lost.store(true, Ordering::SeqCst);
                tracing::warn!(
                    job = self.job,
                    "another replica took the job over; it stops here"
                );
                Err(self.lost())
            }
            Err(error) => {
                tracing::warn!(job = self.job, %error, "could not renew the job's lease");
                Err(FenceLost {
                    what: format!("job {} (its lease could not be renewed: {error})", self.job),
                })
            }
        }
    }

    /// Renews the lease every third of its length until `self` is the last reference or
    /// the lease is lost.
    pub fn keep_renewed(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let lease = Arc::downgrade(self);
        let interval = crate::worker::replica::LeaseTimes::renewal_interval(self.length);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(lease) = lease.upgrade() else {
                    return;
                };
                if lease.renew().await.is_err() && lease.is_lost() {
                    return;
                }
            }
        })
    }

    /// Lets the job go at once (the server stops): another replica resumes it without
    /// waiting for the lease to lapse.
    pub async fn release(&self) {
        // No renewal extends it again from here on.
        self.lost.store(true, Ordering::SeqCst);
        if let Err(error) = self.database.release_job_lease(self.job, &self.lease).await {
            tracing::warn!(job = self.job, %error, "could not release the job's lease; it lapses by itself");
        }
    }
}

impl WriteFence for RunningLease {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), FenceLost>> + Send + '_>> {
        Box::pin(self.renew())
    }
}
