//! The upstream watch: [`watch`] asks whether an Alloy release is newer than the newest
//! published image and queues its build; [`schedule`] runs that check at start and on
//! `schedule.check_upstream`, retrying failures, and keeps the last result for the status
//! page.

pub mod schedule;
pub mod watch;
