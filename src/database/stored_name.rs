//! Enums the database stores as text: each value has one name, used in the column, in the
//! JSON the API serves and on the status page. A name the code does not know is a corrupt
//! row, never a silent default.

/// Gives `$name` (an enum declared beside it, with `#[serde(rename_all = ...)]` spelling
/// the same names) `ALL`, `as_str`, `parse` and `Display`, from one list of its values and
/// their names. `$what` names the column in errors ("job state").
macro_rules! stored_name {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The name, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value named `text`, as stored; any other name is a corrupt row.
            pub fn parse(text: &str) -> Result<$name, $crate::database::DatabaseError> {
                $name::ALL
                    .into_iter()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| {
                        $crate::database::DatabaseError::Corrupt(format!(
                            concat!("unknown ", $what, " {:?}"),
                            text
                        ))
                    })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use stored_name;

#[cfg(test)]
mod tests {
    use crate::database::deliveries::DeliveryState;
    use crate::database::installations::InstallationState;
    use crate::database::job_steps::{Step, StepOutcome};
    use crate::database::jobs::{JobKind, JobState, TriggerSource};
    use crate::database::storage_removals::RemovalReason;

    /// Each value's serde name is its stored name, and reads back as itself.
    fn same_names<T>(all: &[T], as_str: fn(&T) -> &'static str)
    where
        T: serde::Serialize + std::fmt::Debug,
    {
        for value in all {
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::Value::from(as_str(value)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn serde_and_the_database_use_the_same_names() {
        same_names(&Step::ALL, |v| v.as_str());
        same_names(&StepOutcome::ALL, |v| v.as_str());
        same_names(&JobKind::ALL, |v| v.as_str());
        same_names(&JobState::ALL, |v| v.as_str());
        same_names(&TriggerSource::ALL, |v| v.as_str());
        same_names(&InstallationState::ALL, |v| v.as_str());
        same_names(&DeliveryState::ALL, |v| v.as_str());
        same_names(&RemovalReason::ALL, |v| v.as_str());
    }

    #[test]
    fn a_stored_name_reads_back_and_an_unknown_one_is_corrupt() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()).unwrap(), state);
        }
        let error = InstallationState::parse("frozen").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the database holds something unreadable: unknown installation state \"frozen\""
        );
    }
}
