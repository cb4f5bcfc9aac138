//! Who this replica is, and how long its leases last.

use std::time::Duration;

/// This process, among the replicas that share the database: host name, process id and a
/// random part (a restarted process on the same host is another replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// The id of this process, made once at start.
    pub fn of_this_process() -> ReplicaId {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let random: u32 = rand::random();
        ReplicaId(format!("{host}-{}-{random:08x}", std::process::id()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long leases last unless renewed; each is renewed every third of its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    /// A running job's (`JOB_LEASE_SECONDS`, default 60): a replica killed mid-job leaves
    /// the job to another this long after its last renewal.
    pub job: Duration,
    /// The leader's (`LEADER_LEASE_SECONDS`, default 30): the inbox and the scheduled
    /// tasks move to another replica this long after the leader's last renewal.
    pub leader: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        LeaseTimes {
            job: Duration::from_secs(60),
            leader: Duration::from_secs(30),
        }
    }
}

impl LeaseTimes {
    /// How often a lease of `length` is renewed.
    pub fn renewal_interval(length: Duration) -> Duration {
        (length / 3).max(Duration::from_millis(200))
    }
}
