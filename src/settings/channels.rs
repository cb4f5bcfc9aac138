//! Release channels: `publish.channels = ["canary", "stable"]` stages a rollout. Each
//! channel is a signed `SHA256SUMS` of its own, with the files it lists beside it: the last
//! channel at the root of the storage (and of the build repository), where hosts have always
//! read, every other one under a prefix named after it (`canary/`). A build publishes to the
//! first channel; a promotion copies a version into the next one.
//!
//! With the default of one channel (`["stable"]`) everything is at the root, as without
//! channels.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};

/// At most this many channels.
pub const MAX_CHANNELS: usize = 8;

/// A channel's name: lowercase letters, digits and `-`, starting with a letter, at most 32
/// characters. It names a storage prefix and a directory of the build repository, and it is
/// shown in comments, so nothing else is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelName(String);

/// What a channel's name must be, for errors.
pub const CHANNEL_NAME_EXPECTED: &str =
    "lowercase letters, digits and -, starting with a letter, at most 32 characters";

impl ChannelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChannelName {
    type Error = String;

    fn try_from(name: String) -> Result<ChannelName, String> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name.as_bytes()[0].is_ascii_lowercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(ChannelName(name))
        } else {
            let shown: String = name.chars().take(40).collect();
            Err(format!(
                "{shown:?} is no channel name: {CHANNEL_NAME_EXPECTED}"
            ))
        }
    }
}

impl std::str::FromStr for ChannelName {
    type Err = String;

    fn from_str(name: &str) -> Result<ChannelName, String> {
        ChannelName::try_from(name.to_owned())
    }
}

impl From<ChannelName> for String {
    fn from(name: ChannelName) -> String {
        name.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel with where its files are: `prefix` is empty for the last channel (the root)
/// and `name/` for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: ChannelName,
    pub prefix: String,
}

impl Channel {
    /// The storage key (and build repository path) of the channel's copy of `file`.
    pub fn key(&self, file: &str) -> String {
        format!("{}{file}", self.prefix)
    }

    /// Where the channel's `SHA256SUMS` is, in storage and in the build repository.
    pub fn manifest_key(&self) -> String {
        self.key(MANIFEST_FILE)
    }

    /// Where the channel's `SHA256SUMS.gpg` is.
    pub fn signature_key(&self) -> String {
        self.key(MANIFEST_SIGNATURE_FILE)
    }

    /// Whether the channel's files are at the root.
    pub fn is_root(&self) -> bool {
        self.prefix.is_empty()
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.name, f)
    }
}

/// The configured channels, in rollout order. Never empty once settings are validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels(Vec<Channel>);

impl Channels {
    /// The channels named `names`, in order; the last at the root.
    pub fn new(names: &[ChannelName]) -> Channels {
        let last = names.len().saturating_sub(1);
        Channels(
            names
                .iter()
                .enumerate()
                .map(|(index, name)| Channel {
                    name: name.clone(),
                    prefix: if index == last {
                        String::new()
                    } else {
                        format!("{name}/")
                    },
                })
                .collect(),
        )
    }

    /// Checks `names` as `publish.channels`: one to [`MAX_CHANNELS`], each once.
    pub fn check(names: &[ChannelName]) -> Result<(), String> {
        if names.is_empty() {
            return Err("publish.channels is empty: name at least one channel".into());
        }
        if names.len() > MAX_CHANNELS {
            return Err(format!(
                "publish.channels names {} channels: at most {MAX_CHANNELS}",
                names.len()
            ));
        }
        for (index, name) in names.iter().enumerate() {
            if names[..index].contains(name) {
                return Err(format!("publish.channels names {name} twice"));
            }
        }
        Ok(())
    }

    pub fn all(&self) -> &[Channel] {
        &self.0
    }

    /// Where builds publish.
    pub fn first(&self) -> &Channel {
        &self.0[0]
    }

    /// The channel at the root: the default for consumers.
    pub fn last(&self) -> &Channel {
        &self.0[self.0.len() - 1]
    }

    /// The channel named `name`.
    pub fn get(&self, name: &ChannelName) -> Option<&Channel> {
        self.0.iter().find(|channel| &channel.name == name)
    }

    /// The channel a promotion from `name` goes to; `None` after the last.
    pub fn after(&self, name: &ChannelName) -> Option<&Channel> {
        let index = self.0.iter().position(|channel| &channel.name == name)?;
        self.0.get(index + 1)
    }

    /// Whether there is more than one channel.
    pub fn staged(&self) -> bool {
        self.0.len() > 1
    }

    /// `canary, stable`, for messages.
    pub fn names(&self) -> String {
        self.0
            .iter()
            .map(|channel| channel.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The default: one channel, at the root.
pub fn default_channel_names() -> Vec<ChannelName> {
    vec![ChannelName("stable".into())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<ChannelName> {
        list.iter().map(|name| name.parse().unwrap()).collect()
    }

    #[test]
    fn the_last_channel_is_at_the_root_and_the_others_under_their_name() {
        let channels = Channels::new(&names(&["canary", "beta", "stable"]));
        let keys: Vec<String> = channels.all().iter().map(Channel::manifest_key).collect();
        assert_eq!(keys, ["canary/SHA256SUMS", "beta/SHA256SUMS", "SHA256SUMS"]);
        assert_eq!(channels.first().name.as_str(), "canary");
        assert_eq!(channels.last().name.as_str(), "stable");
        assert!(channels.last().is_root());
        assert_eq!(
            channels.first().key("alloy-1.2.3-amd64.raw"),
            "canary/alloy-1.2.3-amd64.raw"
        );
        let canary = "canary".parse().unwrap();
        assert_eq!(channels.after(&canary).unwrap().name.as_str(), "beta");
        let stable = "stable".parse().unwrap();
        assert_eq!(channels.after(&stable), None);
        assert_eq!(channels.names(), "canary, beta, stable");
    }

    #[test]
    fn one_channel_is_the_root() {
        let channels = Channels::new(&default_channel_names());
        assert_eq!(channels.first(), channels.last());
        assert_eq!(channels.first().manifest_key(), "SHA256SUMS");
        assert_eq!(channels.first().signature_key(), "SHA256SUMS.gpg");
        assert!(!channels.staged());
    }

    #[test]
    fn names_are_plain_lowercase_words() {
        for good in ["canary", "stable", "wave-2", "a"] {
            assert!(good.parse::<ChannelName>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "Canary",
            "2nd",
            "-x",
            "a/b",
            "..",
            "a b",
            "a_b",
            "ca\nnary",
            "é",
            "abcdefghijklmnopqrstuvwxyz0123456",
        ] {
            let error = bad.parse::<ChannelName>().unwrap_err();
            assert!(error.ends_with(CHANNEL_NAME_EXPECTED), "{bad}: {error}");
        }
    }

    #[test]
    fn a_channel_list_is_not_empty_and_names_each_once() {
        assert!(Channels::check(&names(&["canary", "stable"])).is_ok());
        assert_eq!(
            Channels::check(&[]).unwrap_err(),
            "publish.channels is empty: name at least one channel"
        );
        assert_eq!(
            Channels::check(&names(&["a", "b", "a"])).unwrap_err(),
            "publish.channels names a twice"
        );
        let many: Vec<String> = (0..9).map(|i| format!("c{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            Channels::check(&names(&many)).unwrap_err(),
            "publish.channels names 9 channels: at most 8"
        );
    }
}
