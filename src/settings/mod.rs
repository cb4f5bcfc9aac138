//! What the server builds and where: the upstream release, the image, the build
//! repository, the public URL, the upstream check's schedule and the consumer repositories.
//! Read from the TOML file `CONFIG_FILE`: every table and key may be left out and keeps its
//! built-in default (today's deployment), an unknown one is refused, and `validate` brings
//! every value to its normal form and checks it. The same structs write the file back out
//! (`config` shows them), with the same keys.
//!
//! [`consumer_check`] holds the checks a consumer's fields pass wherever the consumer comes
//! from: this file or a repository's own enrollment file.

pub mod channels;
pub mod consumer_check;
pub mod public_base_url;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::artifacts::image_format::ImageFormat;
use crate::settings::channels::{Channel, ChannelName, Channels};
use crate::settings::consumer_check::{
    BRANCH_EXPECTED, InvalidField, check_consumer_fields, is_branch_name,
};
use crate::sysext::compression::Compression;

/// Where Alloy's releases come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// `owner/name`.
    pub repo: String,
    /// The release asset, with `{arch}` for the architecture.
    pub asset: String,
    /// The binary inside the asset's zip, with `{arch}`.
    pub binary: String,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            repo: "grafana/alloy".into(),
            asset: "alloy-linux-{arch}.zip".into(),
            binary: "alloy-linux-{arch}".into(),
        }
    }
}

impl UpstreamSettings {
    pub fn asset_name(&self, arch: Arch) -> String {
        self.asset.replace("{arch}", arch.upstream_name())
    }

    pub fn binary_name(&self, arch: Arch) -> String {
        self.binary.replace("{arch}", arch.upstream_name())
    }
}

/// What image is built.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSettings {
    pub name: String,
    #[serde(with = "arch_names")]
    pub arches: Vec<Arch>,
    /// Two keys in the file: `compression` (the algorithm) and `compression_level`.
    #[serde(flatten, with = "compression_keys")]
    pub compression: Compression,
    /// Also publish `<name>-X.Y.Z.raw` (amd64 only).
    pub compat_name: bool,
    /// The formats each version and architecture is published in: always `squashfs`
    /// (`<name>-V-ARCH.raw`), and `ddi` for the signed dm-verity image
    /// (`<name>-V-ARCH.ddi.raw`) too, which needs the verity key and certificate.
    #[serde(with = "format_names")]
    pub formats: Vec<ImageFormat>,
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            name: "alloy".into(),
            arches: vec![Arch::Amd64],
            compression: Compression::default(),
            compat_name: true,
            formats: vec![ImageFormat::Squashfs],
        }
    }
}

impl ImageSettings {
    /// Whether the signed dm-verity image is published too.
    pub fn publishes_ddi(&self) -> bool {
        self.formats.contains(&ImageFormat::Ddi)
    }
}

/// `image.formats` as the file writes it: format names.
mod format_names {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::artifacts::image_format::{ImageFormat, UnknownImageFormat};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<ImageFormat>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|name| {
                name.parse().map_err(|e: UnknownImageFormat| {
                    serde::de::Error::custom(format!("image.formats: {e}"))
                })
            })
            .collect()
    }

    pub fn serialize<S: Serializer>(
        formats: &[ImageFormat],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(formats.iter().map(|format| format.name()))
    }
}

/// `image.arches` as the file writes it: architecture names.
mod arch_names {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::arch::{Arch, UnknownArch};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Arch>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|name| {
                name.parse().map_err(|e: UnknownArch| {
                    serde::de::Error::custom(format!("image.arches: {e}"))
                })
            })
            .collect()
    }

    pub fn serialize<S: Serializer>(arches: &[Arch], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(arches.iter().map(|arch| arch.upstream_name()))
    }
}

/// `image.compression` and `image.compression_level`, the two keys of one [`Compression`]:
/// either may be left out, the algorithm then being xz and the level the algorithm's
/// default. The level's range is for `Settings::validate` to check.
mod compression_keys {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::sysext::compression::Compression;

    /// Takes only its two keys and leaves the rest of `[image]`, unknown ones included,
    /// to `ImageSettings`.
    #[derive(Deserialize)]
    struct Written {
        compression: Option<String>,
        compression_level: Option<u32>,
    }

    #[derive(Serialize)]
    struct Shown {
        compression: &'static str,
        compression_level: u32,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Compression, D::Error> {
        // The two keys reach here apart from the file's text: the error names them.
        let written = Written::deserialize(deserializer).map_err(|e| {
            serde::de::Error::custom(format!("image.compression / image.compression_level: {e}"))
        })?;
        let algorithm = written
            .compression
            .as_deref()
            .unwrap_or(Compression::default().algorithm());
        let compression = Compression::new(algorithm, None)
            .map_err(|e| serde::de::Error::custom(format!("image.compression: {e}")))?;
        Ok(match written.compression_level {
            None => compression,
            Some(level) => match compression {
                Compression::Xz { .. } => Compression::Xz { level },
                Compression::Zstd { .. } => Compression::Zstd { level },
                Compression::Gzip { .. } => Compression::Gzip { level },
            },
        })
    }

    pub fn serialize<S: Serializer>(
        compression: &Compression,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        Shown {
            compression: compression.algorithm(),
            compression_level: compression.level(),
        }
        .serialize(serializer)
    }
}

/// The repository where releases, commands and `SHA256SUMS` live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildRepoSettings {
    /// `owner/name`.
    pub repo: String,
    pub branch: String,
}

impl Default for BuildRepoSettings {
    fn default() -> Self {
        BuildRepoSettings {
            repo: "noahwhite/alloy-sysext-build".into(),
            branch: "main".into(),
        }
    }
}

/// Where published images are read from, and how long withdrawn ones stay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishSettings {
    /// The address hosts download the published files from, ending with `/`. Left out, the
    /// server decides it from where the files are stored ([`public_base_url`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Keys (fingerprints or key IDs) whose signature on the published `SHA256SUMS` this
    /// server may replace with its own: a deliberate change of key, once hosts trust the new
    /// one. A signature by any other key that is not the server's stops the job.
    pub replace_signatures_by: Vec<String>,
    /// Days the files of a version taken out of `SHA256SUMS` stay in storage, for hosts
    /// that were downloading them; then they are deleted.
    pub withdrawn_grace_days: u32,
    /// After a publish, versions beyond the newest this many leave `SHA256SUMS` (and,
    /// after the grace period, storage), unless a consumer's file pins them; 0 keeps all.
    pub keep_versions: u32,
    /// The release channels, in rollout order ([`channels`]): builds publish to the first,
    /// `/promote` moves a version to the next; the last is at the root of the storage.
    pub channels: Vec<ChannelName>,
    /// A version that has been in a channel this many hours, with no failed CI run on a
    /// consumer's pull request for it in that time, is promoted to the next channel; 0
    /// promotes only on `/promote`.
    pub promote_after_hours: u32,
}

/// The longest `publish.promote_after_hours`: ten years.
pub const MAX_PROMOTE_AFTER_HOURS: u32 = 10 * 366 * 24;

impl Default for PublishSettings {
    fn default() -> Self {
        PublishSettings {
            base_url: None,
            replace_signatures_by: Vec::new(),
            withdrawn_grace_days: 7,
            keep_versions: 10,
            channels: channels::default_channel_names(),
            promote_after_hours: 0,
        }
    }
}

impl PublishSettings {
    /// How long files taken out of `SHA256SUMS` stay in storage.
    pub fn withdrawn_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.withdrawn_grace_days) * 24 * 3600)
    }

    /// The channels, in rollout order.
    pub fn channels(&self) -> Channels {
        Channels::new(&self.channels)
    }

    /// How long a version stays in a channel before it is promoted by itself; `None` when
    /// only `/promote` promotes.
    pub fn promote_after(&self) -> Option<std::time::Duration> {
        (self.promote_after_hours > 0)
            .then(|| std::time::Duration::from_secs(u64::from(self.promote_after_hours) * 3600))
    }
}

/// When upstream is checked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// A five-field cron expression in UTC, or `None` (`"off"`).
    #[serde(with = "cron_or_off")]
    pub check_upstream: Option<String>,
    /// The label of tracking issues.
    pub tracking_label: String,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            check_upstream: Some("0 0 * * *".into()),
            tracking_label: "RTB".into(),
        }
    }
}

/// `schedule.check_upstream` as the file writes it: `"off"` (in any case, with any spaces
/// around it) is `None`.
mod cron_or_off {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok((!text.trim().eq_ignore_ascii_case("off")).then_some(text))
    }

    pub fn serialize<S: Serializer>(
        cron: &Option<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(cron.as_deref().unwrap_or("off"))
    }
}

impl ScheduleSettings {
    /// The first check time strictly after `after`, if checks are on.
    pub fn next_check(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let cron: croner::Cron = self.check_upstream.as_deref()?.parse().ok()?;
        cron.find_next_occurrence(&after, false).ok()
    }

    /// The last check time at or before `now`, if checks are on.
    pub fn last_check(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let cron: croner::Cron = self.check_upstream.as_deref()?.parse().ok()?;
        cron.find_previous_occurrence(&now, true).ok()
    }
}

/// A repository whose Butane file pins the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    /// `owner/name`.
    pub repo: String,
    /// The Butane file in it.
    pub path: String,
    /// The branch pull requests go to.
    pub base: String,
    #[serde(default)]
    pub assignees: Vec<String>,
    /// The channel whose versions its pull requests pin; the last channel when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelName>,
}

/// What an enrollment file (`.github/alloy-sysext.toml` in a repository that asks for pull
/// requests) holds: the repository itself is the one the file is in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Enrollment {
    path: String,
    base: String,
    #[serde(default)]
    assignees: Vec<String>,
    #[serde(default)]
    channel: Option<ChannelName>,
}

impl ConsumerSettings {
    /// Checks every field; the error names the key at fault (`repo`, `path`, `base` or
    /// `assignees`).
    pub fn validate(&self) -> Result<(), InvalidField> {
        if !is_repo_name(&self.repo) {
            return Err(InvalidField {
                key: "repo".into(),
                value: self.repo.clone(),
                expected: "expected owner/name",
            });
        }
        check_consumer_fields(&self.path, &self.base, &self.assignees)
    }

    /// The consumer `repo` describes in its enrollment file `content`, checked as
    /// `CONFIG_FILE` consumers are; the error names the key at fault. The file is a
    /// stranger's: nothing in it is trusted until it passes.
    ///
    /// ```
    /// use alloy_sysext_automation::settings::ConsumerSettings;
    /// let consumer = ConsumerSettings::from_enrollment(
    ///     "acme/fleet",
    ///     b"path = \"hosts/node.bu\"\nbase = \"main\"\n",
    /// )
    /// .unwrap();
    /// assert_eq!(consumer.path, "hosts/node.bu");
    /// let refused = ConsumerSettings::from_enrollment("acme/fleet", b"path = \"../x\"\nbase = \"main\"\n");
    /// assert!(refused.unwrap_err().starts_with("path = \"../x\" is not valid"));
    /// ```
    pub fn from_enrollment(repo: &str, content: &[u8]) -> Result<ConsumerSettings, String> {
        let text =
            std::str::from_utf8(content).map_err(|_| "the file is not UTF-8 text".to_owned())?;
        let enrollment: Enrollment = toml::from_str(text).map_err(|e| {
            // The parser's message may quote a value of any length, and may not name the
            // key ("duplicate key"): the line it points at does.
            let mut message: String = e.message().chars().take(300).collect();
            if let Some(span) = e.span() {
                let mut at = span.start.min(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let start = text[..at].rfind('\n').map_or(0, |at| at + 1);
                let number = text[..start].matches('\n').count() + 1;
                let line: String = text[start..]
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(100)
                    .collect();
                message.push_str(&format!(" (line {number}: {line})"));
            }
            message
        })?;
        let consumer = ConsumerSettings {
            repo: repo.to_owned(),
            path: enrollment.path,
            base: enrollment.base,
            assignees: enrollment.assignees,
            channel: enrollment.channel,
        };
        consumer.validate().map_err(|e| e.to_string())?;
        Ok(consumer)
    }
}

/// Everything above. A table or key the file leaves out keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub upstream: UpstreamSettings,
    pub image: ImageSettings,
    pub build_repo: BuildRepoSettings,
    pub publish: PublishSettings,
    pub schedule: ScheduleSettings,
    pub consumers: Vec<ConsumerSettings>,
}

/// A settings file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading CONFIG_FILE {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("CONFIG_FILE {path}: {message}")]
    Invalid { path: String, message: String },
}

/// `owner/name` with GitHub's characters only.
fn is_repo_name(text: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    matches!(text.split_once('/'), Some((owner, name)) if ok(owner) && ok(name))
}

/// `key = "value" is not valid: expected`.
fn invalid(key: &str, value: &str, expected: &str) -> String {
    format!("{key} = {value:?} is not valid: {expected}")
}

impl Settings {
    /// The settings in `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Settings, SettingsError> {
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: shown.clone(),
            source,
        })?;
        Settings::parse(&text).map_err(|message| SettingsError::Invalid {
            path: shown,
            message,
        })
    }

    /// Settings from TOML `text`: what it leaves out keeps its default. The error names
    /// the key at fault.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let mut settings: Settings = toml::from_str(text).map_err(|e| e.to_string())?;
        settings.validate()?;
        Ok(settings)
    }

    /// The channel `consumer` follows: the one it names, or the last. An enrolled
    /// repository may name a channel this server does not have; the error says so.
    pub fn channel_of(&self, consumer: &ConsumerSettings) -> Result<Channel, String> {
        let channels = self.publish.channels();
        match &consumer.channel {
            None => Ok(channels.last().clone()),
            Some(name) => channels.get(name).cloned().ok_or_else(|| {
                invalid(
                    "channel",
                    name.as_str(),
                    &format!("one of this server's channels ({})", channels.names()),
                )
            }),
        }
    }

    /// Puts the values in the form the rest of the server relies on, then checks every
    /// one; the error names the first key at fault, its value and what was expected.
    /// Settings read from a file and settings made in code both pass here.
    pub fn validate(&mut self) -> Result<(), String> {
        self.normalize();
        let Settings {
            upstream,
            image,
            build_repo,
            publish,
            schedule,
            consumers,
        } = &*self;

        if !is_repo_name(&upstream.repo) {
            return Err(invalid(
                "upstream.repo",
                &upstream.repo,
                "expected owner/name",
            ));
        }
        for (key, value) in [
            ("upstream.asset", &upstream.asset),
            ("upstream.binary", &upstream.binary),
        ] {
            if !value.contains("{arch}") || value.contains(['/', '\\']) || value.starts_with('.') {
                return Err(invalid(
                    key,
                    value,
                    "a file name containing {arch}, without directories",
                ));
            }
        }

        let name_ok = !image.name.is_empty()
            && image
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && image.name.as_bytes()[0].is_ascii_lowercase();
        if !name_ok {
            return Err(invalid(
                "image.name",
                &image.name,
                "lowercase letters, digits and _ (it names files and the systemd unit), starting with a letter",
            ));
        }
        if image.arches.is_empty() {
            return Err("image.arches is empty: list at least one of amd64, arm64".into());
        }
        if !image.formats.contains(&ImageFormat::Squashfs) {
            let names: Vec<String> = image
                .formats
                .iter()
                .map(|format| format!("{:?}", format.name()))
                .collect();
            return Err(format!(
                "image.formats = [{}] is not valid: it must include \"squashfs\" (the image hosts that match alloy-@v-ARCH.raw and consumers' pins use; the DDI is made from it): [\"squashfs\"] or [\"squashfs\", \"ddi\"]",
                names.join(", ")
            ));
        }
        Compression::new(
            image.compression.algorithm(),
            Some(image.compression.level()),
        )
        .map_err(|e| format!("image.compression: {e}"))?;

        if !is_repo_name(&build_repo.repo) {
            return Err(invalid(
                "build_repo.repo",
                &build_repo.repo,
                "expected owner/name",
            ));
        }
        if !is_branch_name(&build_repo.branch) {
            return Err(invalid(
                "build_repo.branch",
                &build_repo.branch,
                BRANCH_EXPECTED,
            ));
        }

        if let Some(base_url) = &publish.base_url
            && !public_base_url::is_plain_base_url(base_url)
        {
            return Err(invalid(
                "publish.base_url",
                base_url,
                "an http:// or https:// URL with a host and no user name, password, query or \
                 fragment",
            ));
        }
        for key in &publish.replace_signatures_by {
            let hex: String = key.chars().filter(|c| !c.is_whitespace()).collect();
            if !matches!(hex.len(), 16 | 40) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "publish.replace_signatures_by",
                    key,
                    "a key's fingerprint (40 hex digits) or key ID (16)",
                ));
            }
        }

        if let Some(cron) = &schedule.check_upstream {
            let fields = cron.split_whitespace().count();
            if fields != 5 || cron.parse::<croner::Cron>().is_err() {
                return Err(invalid(
                    "schedule.check_upstream",
                    cron,
                    "a five-field cron expression in UTC such as \"0 0 * * *\", or \"off\"",
                ));
            }
        }
        let label = &schedule.tracking_label;
        if label.trim().is_empty() || label.len() > 50 || label.contains(',') {
            return Err(invalid(
                "schedule.tracking_label",
                label,
                "a label name (no commas, at most 50 characters)",
            ));
        }

        Channels::check(&publish.channels)?;
        if publish.promote_after_hours > MAX_PROMOTE_AFTER_HOURS {
            return Err(invalid(
                "publish.promote_after_hours",
                &publish.promote_after_hours.to_string(),
                &format!(
                    "at most {MAX_PROMOTE_AFTER_HOURS} (ten years); 0 promotes only on /promote"
                ),
            ));
        }
        let channels = publish.channels();
        for (index, consumer) in consumers.iter().enumerate() {
            consumer
                .validate()
                .map_err(|error| error.under(&format!("consumers[{index}].")).to_string())?;
            if let Some(channel) = &consumer.channel
                && channels.get(channel).is_none()
            {
                return Err(invalid(
                    &format!("consumers[{index}].channel"),
                    channel.as_str(),
                    &format!("one of publish.channels ({})", channels.names()),
                ));
            }
        }
        Ok(())
    }

    /// Each architecture once, in the order given; the cron expression without spaces
    /// around it; the base URL ending with `/`, as file names are appended to it.
    fn normalize(&mut self) {
        let mut arches = Vec::new();
        for arch in &self.image.arches {
            if !arches.contains(arch) {
                arches.push(*arch);
            }
        }
        self.image.arches = arches;
        let mut formats = Vec::new();
        for format in &self.image.formats {
            if !formats.contains(format) {
                formats.push(*format);
            }
        }
        self.image.formats = formats;
        if let Some(cron) = &mut self.schedule.check_upstream {
            *cron = cron.trim().to_owned();
        }
        if let Some(base_url) = &mut self.publish.base_url
            && !base_url.ends_with('/')
        {
            base_url.push('/');
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            upstream: UpstreamSettings::default(),
            image: ImageSettings::default(),
            build_repo: BuildRepoSettings::default(),
            publish: PublishSettings::default(),
            schedule: ScheduleSettings::default(),
            consumers: vec![
                ConsumerSettings {
                    repo: "noahwhite/ghost-stack".into(),
                    path: "opentofu/modules/vultr/instance/userdata/ghost.bu".into(),
                    base: "develop".into(),
                    assignees: vec!["noahwhite".into()],
                    channel: None,
                },
                ConsumerSettings {
                    repo: "officina-pub/infisical-stack".into(),
                    path: "opentofu/modules/server/userdata/infisical.bu.tftpl".into(),
                    base: "main".into(),
                    assignees: vec!["noahwhite".into()],
                    channel: None,
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrollment_is_checked_like_a_configured_consumer() {
        let consumer = ConsumerSettings::from_enrollment(
            "o/r",
            b"path = \"hosts/a b.bu\"\nbase = \"main\"\nassignees = [\"me\"]\n",
        )
        .unwrap();
        assert_eq!(consumer.repo, "o/r");
        assert_eq!(consumer.path, "hosts/a b.bu");
        for (text, key) in [
            ("path = \"/etc/x\"\nbase = \"main\"\n", "path = \"/etc/x\""),
            ("path = \"a\\\\b\"\nbase = \"main\"\n", "path = "),
            ("path = \"x.bu\"\nbase = \"a b\"\n", "base = \"a b\""),
            (
                "path = \"x.bu\"\nbase = \"main\"\nassignees = [\"a_b\"]\n",
                "assignees = \"a_b\"",
            ),
            ("path = \"x.bu\"\n", "base"),
            ("path = \"x.bu\"\nbase = \"main\"\nlabels = []\n", "labels"),
        ] {
            let error = ConsumerSettings::from_enrollment("o/r", text.as_bytes()).unwrap_err();
            assert!(error.contains(key), "{text:?} gave {error}");
        }
        assert!(ConsumerSettings::from_enrollment("o/r", b"\xff").is_err());
    }

    #[test]
    fn a_consumer_follows_the_channel_it_names_or_the_last() {
        let settings = Settings::parse(
            "[publish]\nchannels = [\"canary\", \"stable\"]\n\
             [[consumers]]\nrepo = \"a/b\"\npath = \"x.bu\"\nbase = \"main\"\nchannel = \"canary\"\n\
             [[consumers]]\nrepo = \"c/d\"\npath = \"x.bu\"\nbase = \"main\"\n",
        )
        .unwrap();
        let follows: Vec<String> = settings
            .consumers
            .iter()
            .map(|c| settings.channel_of(c).unwrap().name.to_string())
            .collect();
        assert_eq!(follows, ["canary", "stable"]);
        let enrolled = ConsumerSettings::from_enrollment(
            "o/r",
            b"path = \"x.bu\"\nbase = \"main\"\nchannel = \"beta\"\n",
        )
        .unwrap();
        assert_eq!(
            settings.channel_of(&enrolled).unwrap_err(),
            "channel = \"beta\" is not valid: one of this server's channels (canary, stable)"
        );
        let refused = ConsumerSettings::from_enrollment(
            "o/r",
            b"path = \"x.bu\"\nbase = \"main\"\nchannel = \"../x\"\n",
        )
        .unwrap_err();
        assert!(refused.contains("is no channel name"), "{refused}");
    }

    /// The example in the README, which is also the defaults.
    const EXAMPLE: &str = r#"
[upstream]
repo = "grafana/alloy"
asset = "alloy-linux-{arch}.zip"
binary = "alloy-linux-{arch}"

[image]
name = "alloy"
arches = ["amd64"]            # "arm64" too
compression = "xz"
compat_name = true            # also publish alloy-X.Y.Z.raw
formats = ["squashfs"]        # add "ddi" for the signed dm-verity image alloy-X.Y.Z-ARCH.ddi.raw

[build_repo]                  # where SHA256SUMS is committed, releases and commands live
repo = "noahwhite/alloy-sysext-build"
branch = "main"

[publish]
# base_url = "https://images.example.com/"  # where hosts download from; left out: with R2,
#   https://ghost-sysext-images.separationofconcerns.dev/; with the local directory,
#   PUBLIC_URL + /images/ (and without PUBLIC_URL, no public address)
replace_signatures_by = []    # keys whose SHA256SUMS.gpg may be replaced (a key change)
withdrawn_grace_days = 7      # days a withdrawn or pruned version's files stay in storage
keep_versions = 10            # versions SHA256SUMS keeps (and older ones consumers pin); 0: all
channels = ["stable"]         # release channels, first to last; e.g. ["canary", "stable"]
promote_after_hours = 0       # hours in a channel before a version moves on by itself; 0: /promote only

[schedule]
check_upstream = "0 0 * * *"  # cron, UTC; "off" to disable
tracking_label = "RTB"

[[consumers]]
repo = "noahwhite/ghost-stack"
path = "opentofu/modules/vultr/instance/userdata/ghost.bu"
base = "develop"
assignees = ["noahwhite"]

[[consumers]]
repo = "officina-pub/infisical-stack"
path = "opentofu/modules/server/userdata/infisical.bu.tftpl"
base = "main"
assignees = ["noahwhite"]
"#;

    #[test]
    fn the_documented_example_is_the_defaults() {
        assert_eq!(Settings::parse(EXAMPLE).unwrap(), Settings::default());
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
        assert_eq!(Settings::load(None).unwrap(), Settings::default());
    }

    #[test]
    fn partial_files_keep_the_other_defaults() {
        let settings = Settings::parse(
            "[image]\narches = [\"amd64\", \"arm64\"]\ncompression = \"zstd\"\ncompression_level = 9\n[schedule]\ncheck_upstream = \"off\"\n[publish]\nbase_url = \"http://127.0.0.1:3000/images\"\nconsumers = []\n",
        );
        // `consumers` after a table header belongs to that table: refused, naming it.
        let error = settings.unwrap_err();
        assert!(error.contains("consumers"), "{error}");
        let settings = Settings::parse(
            "consumers = []\n[image]\narches = [\"amd64\", \"arm64\"]\ncompression = \"zstd\"\ncompression_level = 9\n[schedule]\ncheck_upstream = \"off\"\n[publish]\nbase_url = \"http://127.0.0.1:3000/images\"\n",
        )
        .unwrap();
        assert_eq!(settings.image.arches, [Arch::Amd64, Arch::Arm64]);
        assert_eq!(settings.image.compression, Compression::Zstd { level: 9 });
        assert_eq!(settings.schedule.check_upstream, None);
        assert_eq!(
            settings.publish.base_url.as_deref(),
            Some("http://127.0.0.1:3000/images/")
        );
        assert!(settings.consumers.is_empty());
        assert_eq!(settings.build_repo, Settings::default().build_repo);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_the_key() {
        for (text, key) in [
            ("[image]\nnmae = \"alloy\"\n", "nmae"),
            ("[imag]\n", "imag"),
            ("[image]\narches = [\"riscv\"]\n", "image.arches"),
            ("[image]\narches = []\n", "image.arches"),
            ("[image]\nname = \"../x\"\n", "image.name"),
            ("[image]\ncompression = \"lz4\"\n", "image.compression"),
            ("[image]\nformats = [\"erofs\"]\n", "image.formats"),
            ("[image]\nformats = [\"ddi\"]\n", "image.formats"),
            ("[image]\nformats = []\n", "image.formats"),
            ("[image]\ncompression_level = 10\n", "image.compression"),
            (
                "[image]\ncompression_level = \"x\"\n",
                "image.compression_level",
            ),
            (
                "[image]\ncompression = \"zstd\"\ncompression_level = 0\n",
                "image.compression",
            ),
            ("[build_repo]\nrepo = \"noslash\"\n", "build_repo.repo"),
            ("[build_repo]\nbranch = \"a..b\"\n", "build_repo.branch"),
            ("[publish]\nbase_url = \"ftp://x\"\n", "publish.base_url"),
            (
                "[publish]\nreplace_signatures_by = [\"not hex\"]\n",
                "publish.replace_signatures_by",
            ),
            (
                "[schedule]\ncheck_upstream = \"every day\"\n",
                "schedule.check_upstream",
            ),
            (
                "[schedule]\ncheck_upstream = \"0 0 0 * * *\"\n",
                "schedule.check_upstream",
            ),
            ("[upstream]\nasset = \"alloy.zip\"\n", "upstream.asset"),
            (
                "[[consumers]]\nrepo = \"a/b\"\npath = \"../etc/passwd\"\nbase = \"main\"\n",
                "consumers[0].path",
            ),
            ("[[consumers]]\nrepo = \"a/b\"\npath = \"x.bu\"\n", "base"),
            (
                "[[consumers]]\nrepo = \"a/b\"\npath = \"x.bu\"\nbase = \"a b\"\n",
                "consumers[0].base",
            ),
            (
                "[[consumers]]\nrepo = \"a/b\"\npath = \"x.bu\"\nbase = \"main\"\nassignees = [\"-x\"]\n",
                "consumers[0].assignees",
            ),
            (
                "[[consumers]]\nrepo = \"a/b\"\npath = \"x.bu\"\nbase = \"main\"\nlabels = []\n",
                "labels",
            ),
            ("[publish]\nchannels = []\n", "publish.channels is empty"),
            (
                "[publish]\npromote_after_hours = 4000000000\n",
                "publish.promote_after_hours",
            ),
            (
                "[publish]\nchannels = [\"a\", \"a\"]\n",
                "publish.channels names a twice",
            ),
            ("[publish]\nchannels = [\"../x\"]\n", "channels"),
            ("[publish]\nchannels = [\"Canary\"]\n", "no channel name"),
            (
                "[[consumers]]\nrepo = \"a/b\"\npath = \"x.bu\"\nbase = \"main\"\nchannel = \"canary\"\n",
                "consumers[0].channel = \"canary\" is not valid: one of publish.channels (stable)",
            ),
        ] {
            let error = Settings::parse(text).unwrap_err();
            assert!(error.contains(key), "{text:?} gave {error}");
        }
    }

    #[test]
    fn validate_checks_settings_made_in_code_too() {
        assert_eq!(Settings::default().validate(), Ok(()));
        type Spoil = fn(&mut Settings);
        let cases: [(Spoil, &str); 6] = [
            (|s| s.image.arches.clear(), "image.arches"),
            (
                |s| s.publish.base_url = Some("images.example.test/".into()),
                "publish.base_url",
            ),
            (
                |s| s.upstream.binary = "bin/{arch}".into(),
                "upstream.binary",
            ),
            (
                |s| s.image.compression = Compression::Xz { level: 42 },
                "image.compression",
            ),
            (
                |s| s.schedule.tracking_label = "a,b".into(),
                "schedule.tracking_label",
            ),
            (|s| s.consumers[1].repo = "x".into(), "consumers[1].repo"),
        ];
        for (spoil, key) in cases {
            let mut settings = Settings::default();
            spoil(&mut settings);
            let error = settings.validate().unwrap_err();
            assert!(error.starts_with(key), "{key}: {error}");
        }
    }

    #[test]
    fn a_bad_file_is_named_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "[schedule]\ncheck_upstream = \" 0 0 * * \"\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(error.starts_with("CONFIG_FILE "), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("schedule.check_upstream"), "{error}");
        std::fs::write(&path, "[image]\narches = [\"amd64\", \"riscv\"]\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("image.arches: "), "{error}");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn architectures_are_kept_once_and_a_cron_trimmed() {
        let settings = Settings::parse(
            "[image]\narches = [\"arm64\", \"amd64\", \"arm64\"]\n[schedule]\ncheck_upstream = \" 5 4 * * * \"\n",
        )
        .unwrap();
        assert_eq!(settings.image.arches, [Arch::Arm64, Arch::Amd64]);
        assert_eq!(
            settings.schedule.check_upstream.as_deref(),
            Some("5 4 * * *")
        );
    }

    #[test]
    fn settings_made_in_code_are_normalized_as_a_file_is() {
        let mut settings = Settings::default();
        settings.image.arches = vec![Arch::Arm64, Arch::Amd64, Arch::Arm64];
        settings.schedule.check_upstream = Some(" 5 4 * * * ".into());
        settings.publish.base_url = Some("http://127.0.0.1:3000/images".into());
        settings.validate().unwrap();
        assert_eq!(settings.image.arches, [Arch::Arm64, Arch::Amd64]);
        assert_eq!(
            settings.schedule.check_upstream.as_deref(),
            Some("5 4 * * *")
        );
        assert_eq!(
            settings.publish.base_url.as_deref(),
            Some("http://127.0.0.1:3000/images/")
        );
    }

    #[test]
    fn formats_are_read_each_once_and_must_include_squashfs() {
        let settings =
            Settings::parse("[image]\nformats = [\"squashfs\", \"ddi\", \"ddi\"]\n").unwrap();
        assert_eq!(
            settings.image.formats,
            [ImageFormat::Squashfs, ImageFormat::Ddi]
        );
        assert!(settings.image.publishes_ddi());
        assert!(!Settings::default().image.publishes_ddi());
        let unknown =
            Settings::parse("[image]\nformats = [\"squashfs\", \"erofs\"]\n").unwrap_err();
        assert!(
            unknown.contains("image.formats: unknown image format \"erofs\": use squashfs or ddi"),
            "{unknown}"
        );
        assert_eq!(
            Settings::parse("[image]\nformats = [\"ddi\"]\n").unwrap_err(),
            "image.formats = [\"ddi\"] is not valid: it must include \"squashfs\" (the image hosts that match alloy-@v-ARCH.raw and consumers' pins use; the DDI is made from it): [\"squashfs\"] or [\"squashfs\", \"ddi\"]"
        );
    }

    #[test]
    fn a_level_alone_is_xz_at_that_level() {
        let settings = Settings::parse("[image]\ncompression_level = 9\n").unwrap();
        assert_eq!(settings.image.compression, Compression::Xz { level: 9 });
        let settings = Settings::parse("[image]\ncompression = \"gzip\"\n").unwrap();
        assert_eq!(settings.image.compression, Compression::Gzip { level: 9 });
    }

    #[test]
    fn settings_written_out_read_back_the_same() {
        let mut settings = Settings::default();
        settings.image.compression = Compression::Zstd { level: 3 };
        settings.image.arches = vec![Arch::Arm64, Arch::Amd64];
        settings.schedule.check_upstream = None;
        let text = toml::to_string(&settings).unwrap();
        for written in [
            "arches = [\"arm64\", \"amd64\"]",
            "compression = \"zstd\"",
            "compression_level = 3",
            "check_upstream = \"off\"",
        ] {
            assert!(text.contains(written), "{written}: {text}");
        }
        assert_eq!(Settings::parse(&text).unwrap(), settings);
        assert_eq!(
            Settings::parse(&toml::to_string(&Settings::default()).unwrap()).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn the_schedule_gives_the_next_check() {
        let settings = Settings::default();
        let after = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let next = settings.schedule.next_check(after).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-03-02T00:00:00+00:00");
    }

    #[test]
    fn names_are_filled_in_per_architecture() {
        let settings = Settings::default();
        assert_eq!(
            settings.upstream.asset_name(Arch::Arm64),
            "alloy-linux-arm64.zip"
        );
        assert_eq!(
            settings.upstream.binary_name(Arch::Amd64),
            "alloy-linux-amd64"
        );
    }
}
