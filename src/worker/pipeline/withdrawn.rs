//! The guard that keeps a withdrawn version unpublished: a build of it stops before it
//! downloads, uploads or lists anything, unless it is a `/rebuild` (the one way back).

use super::{StepContext, StepError};
use crate::database::jobs::TriggerSource;
use crate::database::withdrawals::Withdrawal;

/// Stops the job when its version is withdrawn and it is not a rebuild.
pub async fn refuse_unless_rebuild(context: &StepContext<'_>) -> Result<(), StepError> {
    if context.job.rebuild {
        return Ok(());
    }
    match context.database.withdrawal(&context.job.version).await? {
        Some(withdrawal) => Err(StepError::Permanent(refusal(&withdrawal))),
        None => Ok(()),
    }
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
        withdrawal.source = TriggerSource::Cli;
        withdrawal.withdrawn_by = None;
        assert!(
            refusal(&withdrawal).starts_with("1.2.3 was withdrawn on the command line (job #7)")
        );
    }
}
