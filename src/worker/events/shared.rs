//! The parts many payloads share (a repository, an account, the installation), and how a
//! payload's fields are read: a field that is missing, `null` or of another JSON type than
//! GitHub documents reads as absent, so one odd field never makes a whole payload unreadable
//! and the routing decides what its absence means.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value;

/// A repository, as payloads name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Repository {
    /// `owner/name`.
    #[serde(deserialize_with = "lenient")]
    pub full_name: Option<String>,
}

/// A user, a bot or an organisation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Account {
    #[serde(deserialize_with = "lenient")]
    pub login: Option<String>,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", deserialize_with = "lenient")]
    pub kind: Option<String>,
}

/// The installation of the App a delivery is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct InstallationRef {
    #[serde(deserialize_with = "lenient")]
    pub id: Option<i64>,
    /// The account the App is installed on.
    #[serde(deserialize_with = "lenient")]
    pub account: Option<Account>,
}

/// The fields every payload may carry, whatever its event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Envelope {
    /// What happened (`created`, `published`, …); a `repository_dispatch` carries its
    /// `event_type` here.
    #[serde(deserialize_with = "lenient")]
    pub action: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub repository: Option<Repository>,
    /// Who caused the event.
    #[serde(deserialize_with = "lenient")]
    pub sender: Option<Account>,
    #[serde(deserialize_with = "lenient")]
    pub installation: Option<InstallationRef>,
}

impl Envelope {
    /// `owner/name` of the repository the event happened in.
    pub fn repository(&self) -> Option<&str> {
        self.repository.as_ref()?.full_name.as_deref()
    }

    pub fn installation_id(&self) -> Option<i64> {
        self.installation.as_ref()?.id
    }

    pub fn sender_login(&self) -> Option<&str> {
        self.sender.as_ref()?.login.as_deref()
    }
}

/// Reads `payload` as `T`, whose fields are all read with [`lenient`]: a payload that is no
/// JSON object has none of them.
pub(super) fn read<T: DeserializeOwned + Default>(payload: &Value) -> T {
    if payload.is_object() {
        T::deserialize(payload).unwrap_or_default()
    } else {
        T::default()
    }
}

/// A field as `T`, or `None` when it has another JSON type. An array never reads as an
/// object (serde would otherwise fill a struct's fields from it in order).
pub(super) fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    if value.is_array() {
        return Ok(None);
    }
    Ok(T::deserialize(value).ok())
}

/// A list field: the items that are JSON objects, each read as `T`; empty when the field
/// is no list.
pub(super) fn lenient_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let Value::Array(items) = Value::deserialize(deserializer)? else {
        return Ok(Vec::new());
    };
    Ok(items
        .iter()
        .filter(|item| item.is_object())
        .map(read)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_of_another_type_read_as_absent() {
        let envelope: Envelope = read(&json!({
            "action": 5,
            "repository": ["o/r"],
            "sender": {"login": "octocat", "type": null},
            "installation": {"id": "7", "account": {"login": "org"}},
        }));
        assert_eq!(envelope.action, None);
        assert_eq!(envelope.repository, None);
        assert_eq!(envelope.sender_login(), Some("octocat"));
        assert_eq!(envelope.sender.as_ref().unwrap().kind, None);
        assert_eq!(envelope.installation_id(), None);
        assert_eq!(
            envelope.installation.unwrap().account.unwrap().login,
            Some("org".into())
        );
    }

    #[test]
    fn numbers_out_of_range_read_as_absent() {
        let installation: InstallationRef = read(&json!({"id": u64::MAX}));
        assert_eq!(installation.id, None);
        let installation: InstallationRef = read(&json!({"id": 3.0}));
        assert_eq!(installation.id, None);
    }

    #[test]
    fn a_payload_that_is_no_object_has_no_fields() {
        for payload in [json!([]), json!("x"), json!(null), json!(1)] {
            assert_eq!(read::<Envelope>(&payload), Envelope::default());
        }
    }
}
