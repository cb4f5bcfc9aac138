//! The guard that keeps a withdrawn version unpublished: a build of it stops at whatever
//! step it is in (before it downloads, uploads, lists, releases or proposes anything),
//! unless it is a `/rebuild` asked for after the withdrawal (the one way back). A build or
//! rebuild queued before the withdrawal and resumed after it stops too: the withdrawal is
//! the later word.

use super::{StepContext, StepError};
use crate::database::jobs::TriggerSource;
use crate::database::withdrawals::Withdrawal;

/// Stops the job when its version is withdrawn, unless it is a rebuild asked for after
/// the withdrawal.
pub async fn refuse_unless_rebuild(context: &StepContext<'_>) -> Result<(), StepError> {
    match context.database.withdrawal(&context.job.version).await? {
        Some(withdrawal)
            if !rebuilds_after(context.job.rebuild, &context.job.created_at, &withdrawal) =>
        {
            Err(StepError::Permanent(refusal(&withdrawal)))
        }
        _ => Ok(()),
    }
}

/// Whether a job (a rebuild or not, queued at `created_at`) may publish over `withdrawal`.
/// Both times are the database's RFC 3339 UTC timestamps, which order as text.
fn rebuilds_after(rebuild: bool, created_at: &str, withdrawal: &Withdrawal) -> bool {
    rebuild && created_at > withdrawal.withdrawn_at.as_str()
}

/// Why a withdrawn version is not built: who withdrew it, and the way back. The reason, the
/// asker's own words, is left to the status page.
pub fn refusal(withdrawal: &Withdrawal) -> String {
    let by = match (withdrawal.source, withdrawal.withdrawn_by.as_deref()) {
        (TriggerSource::Cli, Some(login)) => format!("by {login} on the command line"),
        (TriggerSource::Cli, None) => "on the command line".to_owned(),
        (_, Some(login)) => format!("by {login}"),
        (_, None) => String::new(),
    };
    let version = &withdrawal.version;
    format!(
        "{version} was withdrawn {by} (job #{job}) and is not published again by a release, a \
         dispatch or the upstream check; comment `/rebuild {version}` to publish it again",
        job = withdrawal.job_id
    )
    .replace("  ", " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_who_withdrew_and_the_way_back() {
        let mut withdrawal = Withdrawal {
            version: "1.2.3".parse().unwrap(),
            source: TriggerSource::Comment,
            withdrawn_by: Some("ann".into()),
            reason: Some("crashes".into()),
            job_id: 7,
            withdrawn_at: "2026-12-03T00:00:00.000000Z".into(),
        };
        assert_eq!(
            refusal(&withdrawal),
            "1.2.3 was withdrawn by ann (job #7) and is not published again by a release, a \
             dispatch or the upstream check; comment `/rebuild 1.2.3` to publish it again"
        );
        assert!(rebuilds_after(
            true,
            "2026-12-03T00:00:01.000000Z",
            &withdrawal
        ));
        assert!(!rebuilds_after(
            true,
            "2026-12-02T23:59:59.000000Z",
            &withdrawal
        ));
        assert!(!rebuilds_after(
            false,
            "2026-12-03T00:00:01.000000Z",
            &withdrawal
        ));
        withdrawal.source = TriggerSource::Cli;
        withdrawal.withdrawn_by = None;
        assert!(
            refusal(&withdrawal).starts_with("1.2.3 was withdrawn on the command line (job #7)")
        );
    }
}
