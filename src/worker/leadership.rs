//! The leader: one replica at a time runs the inbox and the scheduled tasks (the upstream
//! check, the missed-delivery sweep, the storage removal sweep and the due promotions). Each
//! replica tries to take the `leader` lease every third of its length; the holder renews
//! it, and gives it up when it stops, so another takes over at once. A holder that dies
//! leaves it to another replica once it lapses. The leader's writes to GitHub and storage
//! are fenced with the lease's generation ([`LeaderFence`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::replica::{LeaseTimes, ReplicaId};
use crate::database::Database;
use crate::fence::{FenceLost, WriteFence};

/// The name of the leader's lease.
pub const LEADER_LEASE: &str = "leader";

/// Whether this replica leads, as the lease loop last found.
#[derive(Clone)]
pub struct Leadership {
    database: Database,
    owner: ReplicaId,
    length: Duration,
    generation: watch::Receiver<Option<i64>>,
}

impl Leadership {
    /// Starts trying to take the leader lease for `owner`, until `shutdown`; then gives it
    /// up.
    pub fn start(
        database: Database,
        owner: ReplicaId,
        length: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Leadership, tokio::task::JoinHandle<()>) {
        let (sender, generation) = watch::channel(None);
        let leadership = Leadership {
            database: database.clone(),
            owner: owner.clone(),
            length,
            generation,
        };
        let task = tokio::spawn(async move {
            if database.backend() == crate::database::Backend::Sqlite
                && let Err(error) = database.release_all_leases().await
            {
                tracing::warn!(%error, "could not give up the leases of the previous run; they lapse by themselves");
            }
            let interval = LeaseTimes::renewal_interval(length);
            loop {
                let held = match database
                    .acquire_lease(LEADER_LEASE, owner.as_str(), length)
                    .await
                {
                    Ok(held) => held,
                    Err(error) => {
                        tracing::warn!(%error, "could not take or renew the leader lease");
                        None
                    }
                };
                let before = *sender.borrow();
                if before != held {
                    match held {
                        Some(generation) => {
                            tracing::info!(replica = %owner, generation, "this replica leads: it runs the inbox and the scheduled tasks")
                        }
                        None => tracing::info!(replica = %owner, "another replica leads"),
                    }
                    sender.send_replace(held);
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    sender.send_replace(None);
                    if let Err(error) = database.release_lease(LEADER_LEASE, owner.as_str()).await {
                        tracing::warn!(%error, "could not give the leader lease up; it lapses by itself");
                    }
                    return;
                }
            }
        });
        (leadership, task)
    }

    /// The generation of the leader lease this replica holds, if it leads.
    pub fn generation(&self) -> Option<i64> {
        *self.generation.borrow()
    }

    /// True while this replica leads.
    pub fn is_leader(&self) -> bool {
        self.generation().is_some()
    }

    /// Waits until this replica leads or `shutdown` turns true.
    pub async fn wait_to_lead(&self, shutdown: &mut watch::Receiver<bool>) {
        let mut generation = self.generation.clone();
        loop {
            if generation.borrow_and_update().is_some() || *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = generation.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The fence for work done as the leader of `generation`.
    pub fn fence(&self, generation: i64) -> Arc<dyn WriteFence> {
        Arc::new(LeaseFence {
            database: self.database.clone(),
            name: LEADER_LEASE,
            owner: self.owner.clone(),
            generation,
            length: self.length,
        })
    }
}

/// Writes made under a named lease go only while this replica still holds it with the
/// same generation (renewing it for `length`).
pub struct LeaseFence {
    pub database: Database,
    pub name: &'static str,
    pub owner: ReplicaId,
    pub generation: i64,
    pub length: Duration,
}

impl WriteFence for LeaseFence {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), FenceLost>> + Send + '_>> {
        Box::pin(async move {
            let lost = || FenceLost {
                what: format!("the {} lease", self.name),
            };
            match self
                .database
                .renew_lease(self.name, self.owner.as_str(), self.generation, self.length)
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(lost()),
                Err(error) => {
                    tracing::warn!(lease = self.name, %error, "could not renew a lease");
                    Err(lost())
                }
            }
        })
    }
}
