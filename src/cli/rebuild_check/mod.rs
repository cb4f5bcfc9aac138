//! `rebuild-check`: builds a published image again from the upstream asset its signed record
//! names, with the settings it records, and compares the bytes. Reading the published files
//! is [`published`]'s, the upstream download [`upstream`]'s; the build is the library's, the
//! same `build` runs, and so is naming the first difference
//! ([`alloy_sysext_automation::provenance::difference`]).

mod published;
mod report;
mod upstream;

use std::path::{Path, PathBuf};

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::artifacts::image_format::ImageFormat;
use alloy_sysext_automation::artifacts::{
    BuildOutput, MANIFEST_FILE, MANIFEST_SIGNATURE_FILE, build_into_dir,
};
use alloy_sysext_automation::build_info::VERSION_LINE;
use alloy_sysext_automation::ddi::VerityCertificate;
use alloy_sysext_automation::ddi::check::{check_ddi, same_data};
use alloy_sysext_automation::github::api::{DEFAULT_API_URL, GitHubApi};
use alloy_sysext_automation::github::rate_limit::RetryPolicy;
use alloy_sysext_automation::manifest::image_name::ImageFileName;
use alloy_sysext_automation::manifest::verify::{Check, CheckKind, manifest_failure};
use alloy_sysext_automation::manifest::{Manifest, ManifestEntry};
use alloy_sysext_automation::provenance::difference::{
    Rebuilt, first_difference, unreproducible_setting,
};
use alloy_sysext_automation::provenance::origin::DEFAULT_UPSTREAM_REPOSITORY;
use alloy_sysext_automation::provenance::{Statement, record_file_name};
use alloy_sysext_automation::secret::Secret;
use alloy_sysext_automation::version::Version;
use anyhow::Context;
use clap::{ArgGroup, Args};

use self::published::{CheckedRecord, Published};
use self::report::{ImageOutcome, RebuildStep, Report, StepResult, entry_count, print_lines};
use self::upstream::{check_trusted, download_recorded};
use super::progress::TerminalProgress;
use super::public_keys::PublicKeyArgs;
use super::verify::read_verity_certificate;
use super::verify::source::Source;

/// Build a published image again from upstream and compare its bytes with the published
/// image's.
///
/// Reads SHA256SUMS and SHA256SUMS.gpg from a base URL (--url, what hosts download from) or
/// a directory (--dir) and checks the signature with the public key, then for the image of
/// --version (default: the newest version SHA256SUMS lists) of each listed architecture (or
/// --arch): its sha256 against SHA256SUMS, and its provenance record
/// (<image>.intoto.json): its .asc with the same key, and that it names this image by name
/// and sha256. The record names the upstream repository, release, asset and its sha256, the
/// binary's sha256 and every setting that changes the image's bytes.
///
/// A record that names another upstream repository than --upstream-repo is refused before
/// anything is downloaded. Otherwise the asset is downloaded from GitHub and checked against
/// the sha256 in the record and the digest GitHub gives for the asset (the release's
/// SHA256SUMS when GitHub gives none); either mismatch refuses it. The image is then built
/// again with the recorded settings, into a temporary directory, by the same code `build`
/// runs, and its sha256 compared with the published image's. A DDI listed for the version
/// (alloy-<V>-<arch>.ddi.raw) is checked against the squashfs image rebuilt from its
/// record: its data partition byte for byte, its hash partition against the dm-verity tree
/// of that data, and its signature partition with --verity-certificate, since only the
/// key's holder can make that one again.
///
/// Prints every check with its result, one per line (or one JSON document with --json), and
/// "identical" for an image whose rebuild has the published bytes. Exits 0 only when every
/// image checked is identical. Otherwise exits 1 and names the first difference it finds,
/// in this order: a recorded setting this version cannot reproduce; the version of this
/// tool that made the record against this one (the same version gives the same bytes; a
/// version that changes them says so in its changelog); the binary's sha256 in the record
/// against the one in the upstream zip; the first file in the image whose content, mode,
/// owner or mtime differs; else that the images differ though no file does.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("source").required(true).args(["url", "dir"])),
    after_help = "Examples:\n  alloy-sysext-automation rebuild-check --url https://images.example.com/ --keyring /etc/systemd/import-pubring.gpg\n  alloy-sysext-automation rebuild-check --dir out/ --version 1.17.1 --arch amd64 --public-key signing-key.pub.asc\n\nEnvironment:\n  GITHUB_TOKEN    token for the download (optional; raises the rate limit)\n  GITHUB_API_URL  GitHub REST API base, as --github-api-url"
)]
pub struct RebuildCheckArgs {
    /// The base URL hosts download from (a transfer definition's Path=), such as
    /// https://example.com/images/. http and https only.
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// A directory holding SHA256SUMS, SHA256SUMS.gpg, the images and their records.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    #[command(flatten)]
    keys: PublicKeyArgs,

    /// The version whose images to rebuild (default: the newest SHA256SUMS lists).
    #[arg(long, value_name = "VERSION")]
    version: Option<Version>,

    /// Rebuild only this architecture's image (default: every one listed for the version).
    #[arg(long, value_parser = parse_arch)]
    arch: Option<Arch>,

    /// The only upstream repository downloads may come from: a record that names another
    /// is refused before anything is downloaded.
    #[arg(long, default_value = DEFAULT_UPSTREAM_REPOSITORY, value_name = "OWNER/NAME")]
    upstream_repo: String,

    /// GitHub REST API base (GitHub Enterprise or a test server).
    #[arg(long, env = "GITHUB_API_URL", default_value = DEFAULT_API_URL, value_name = "URL")]
    github_api_url: String,

    /// Threads compressing the rebuilt image (0: one per core). The image is byte-identical
    /// whatever the number.
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,

    /// The PEM X.509 certificate hosts trust for DDIs: a DDI's signature partition, which
    /// only the key's holder can make again, is checked with it (without it, only the DDI's
    /// data and hash partitions are compared with the rebuild).
    #[arg(long, env = "VERITY_CERTIFICATE_PATH", value_name = "FILE")]
    verity_certificate: Option<PathBuf>,

    /// Print one JSON document instead of lines, for scripts.
    #[arg(long)]
    json: bool,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
        .map_err(|e: alloy_sysext_automation::arch::UnknownArch| e.to_string())
}

pub fn run(args: RebuildCheckArgs) -> anyhow::Result<()> {
    let keys = args.keys.load()?;
    let verity_certificate = args
        .verity_certificate
        .as_deref()
        .map(read_verity_certificate)
        .transpose()?;
    let (source, described) = match (&args.url, &args.dir) {
        (Some(url), _) => (Source::url(url)?, url.clone()),
        (None, Some(dir)) => (Source::Dir(dir.clone()), dir.display().to_string()),
        (None, None) => unreachable!("clap requires one of the source options"),
    };
    let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty());
    // Someone is waiting at a terminal: a rate limit that lasts longer than a minute fails
    // with GitHub's message rather than leaving the command silent for an hour.
    let policy = RetryPolicy {
        max_wait: std::time::Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    let work = tempfile::Builder::new()
        .prefix("alloy-sysext-rebuild-check.")
        .tempdir()
        .context("creating a temporary directory to rebuild in")?;
    for part in [PUBLISHED, UPSTREAM, REBUILT] {
        let dir = work.path().join(part);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The client's request queue lives on the runtime.
    let _runtime_entered = runtime.enter();
    let github =
        GitHubApi::with_personal_token(&args.github_api_url, token.map(Secret::new), policy)?;
    let mut report = Report {
        source: described,
        upstream_repo: args.upstream_repo.clone(),
        rebuilt_by: VERSION_LINE,
        signed_by: None,
        version: None,
        checks: Vec::new(),
        images: Vec::new(),
        ok: false,
        error: None,
    };
    let rebuild = RebuildCheck {
        published: Published {
            source: &source,
            keys: &keys,
        },
        github: &github,
        args: &args,
        verity_certificate: verity_certificate.as_ref(),
        work: work.path(),
        runtime: &runtime,
        progress: TerminalProgress::new(),
    };
    rebuild.run(&mut report);
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|check| !check.ok)
        .map(|check| format!("{}: {}", check.file, check.detail))
        .collect();
    if report.error.is_none() && !failed.is_empty() {
        report.error = Some(failed.join("; "));
    }
    report.ok = report.error.is_none();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("writing the report as JSON")?
        );
    } else {
        print_lines(&report);
    }
    match report.error {
        Some(error) => Err(anyhow::anyhow!(error)),
        None => Ok(()),
    }
}

/// The parts of the temporary directory: the published images as read, the upstream
/// zips, and a directory per rebuilt image.
const PUBLISHED: &str = "published";
const UPSTREAM: &str = "upstream";
const REBUILT: &str = "rebuilt";

/// One run: where the published files are, where upstream is, and where to rebuild.
struct RebuildCheck<'a> {
    published: Published<'a>,
    github: &'a GitHubApi,
    args: &'a RebuildCheckArgs,
    verity_certificate: Option<&'a VerityCertificate>,
    /// A temporary directory for the published images, the downloads and the rebuilds.
    work: &'a Path,
    runtime: &'a tokio::runtime::Runtime,
    progress: TerminalProgress,
}

impl RebuildCheck<'_> {
    fn run(&self, report: &mut Report) {
        let verified = match self.runtime.block_on(self.published.manifest()) {
            Ok(verified) => verified,
            Err(error) => {
                report.checks.push(manifest_failure(&error).into());
                report.error = Some(error.to_string());
                return;
            }
        };
        report.signed_by = Some(verified.signed_by.clone());
        report.checks.push(
            Check::passed(
                MANIFEST_SIGNATURE_FILE,
                CheckKind::ManifestSignature,
                format!(
                    "good signature by {} on {MANIFEST_FILE}",
                    verified.signed_by
                ),
            )
            .into(),
        );
        let entries = match self.select(&verified.manifest) {
            Ok((version, entries)) => {
                let which = if self.args.version.is_some() {
                    "as asked"
                } else {
                    "the newest listed"
                };
                let files: Vec<&str> = entries.iter().map(|e| e.file.as_str()).collect();
                report.checks.push(
                    Check::passed(
                        MANIFEST_FILE,
                        CheckKind::ManifestFormat,
                        format!(
                            "{}; version {version} ({which}): {}",
                            entry_count(verified.manifest.entries().len()),
                            files.join(", ")
                        ),
                    )
                    .into(),
                );
                report.version = Some(version);
                entries
            }
            Err(detail) => {
                report
                    .checks
                    .push(Check::failed(MANIFEST_FILE, CheckKind::ManifestFormat, &detail).into());
                report.error = Some(format!("{MANIFEST_FILE}: {detail}"));
                return;
            }
        };
        for entry in entries {
            let outcome = self.image(entry, &mut report.checks);
            report.images.push(outcome);
        }
    }

    /// The version to rebuild and its listed images (those of `--arch` only, with it).
    fn select<'m>(
        &self,
        manifest: &'m Manifest,
    ) -> Result<(Version, Vec<&'m ManifestEntry>), String> {
        let images: Vec<(ImageFileName, &ManifestEntry)> = manifest
            .entries()
            .iter()
            .filter_map(|entry| Some((ImageFileName::parse(&entry.file)?, entry)))
            .filter(|(name, _)| {
                name.arch.is_some() && self.args.arch.is_none_or(|arch| name.arch == Some(arch))
            })
            .collect();
        let for_arch = match self.args.arch {
            Some(arch) => format!(" for {arch}"),
            None => String::new(),
        };
        let version = match &self.args.version {
            Some(version) => version.clone(),
            None => images
                .iter()
                .map(|(name, _)| name.version.clone())
                .max()
                .ok_or_else(|| format!("lists no image{for_arch}"))?,
        };
        let entries: Vec<&ManifestEntry> = images
            .into_iter()
            .filter(|(name, _)| name.version == version)
            .map(|(_, entry)| entry)
            .collect();
        if entries.is_empty() {
            return Err(format!("lists no image of version {version}{for_arch}"));
        }
        Ok((version, entries))
    }

    /// Checks, downloads, rebuilds and compares one image, adding its steps to `checks`.
    fn image(&self, entry: &ManifestEntry, checks: &mut Vec<StepResult>) -> ImageOutcome {
        let mut outcome = ImageOutcome::new(&entry.file);
        let published = self.work.join(PUBLISHED).join(&entry.file);
        let (check, sha256) = self
            .runtime
            .block_on(self.published.image(entry, &published));
        checks.push(check.into());
        let Some(published_sha256) = sha256 else {
            return outcome;
        };
        outcome.published_sha256 = Some(published_sha256.clone());

        let (record_checks, record) = self
            .runtime
            .block_on(self.published.record(entry, &published_sha256));
        checks.extend(record_checks.into_iter().map(StepResult::from));
        let Some(CheckedRecord { statement, bytes }) = record else {
            return outcome;
        };
        let record_file = record_file_name(&entry.file);
        let asset = statement
            .upstream_asset()
            .expect("a read record names its upstream asset");
        outcome.upstream = Some(asset.clone());
        outcome.built_by = Some(statement.builder_version());

        if let Err(refused) = check_trusted(&asset, &self.args.upstream_repo) {
            checks.push(StepResult::rebuild(
                &record_file,
                RebuildStep::UpstreamRepository,
                false,
                refused.to_string(),
            ));
            return outcome;
        }
        checks.push(StepResult::rebuild(
            &record_file,
            RebuildStep::UpstreamRepository,
            true,
            format!(
                "names {}, the trusted upstream repository",
                asset.repository
            ),
        ));

        if let Some(setting) = unreproducible_setting(&bytes, &statement) {
            checks.push(StepResult::rebuild(
                &record_file,
                RebuildStep::Settings,
                false,
                setting.to_string(),
            ));
            outcome.difference = Some(setting);
            return outcome;
        }
        let settings = &statement
            .predicate
            .build_definition
            .external_parameters
            .image;
        checks.push(StepResult::rebuild(
            &record_file,
            RebuildStep::Settings,
            true,
            format!(
                "this version builds with its settings: extension {}, {} level {}, {}-byte blocks, mtime {}",
                settings.name,
                settings.compression,
                settings.compression_level,
                settings.block_size,
                settings.source_date_epoch
            ),
        ));

        let zip = self.work.join(UPSTREAM).join(format!("{}.zip", entry.file));
        let downloaded =
            self.runtime
                .block_on(download_recorded(self.github, &asset, &zip, &self.progress));
        match downloaded {
            Ok(downloaded) => {
                let against: Vec<&str> = downloaded
                    .checked_against
                    .iter()
                    .map(|check| check.describe())
                    .collect();
                checks.push(StepResult::rebuild(
                    &asset.asset,
                    RebuildStep::UpstreamAsset,
                    true,
                    format!(
                        "downloaded from {} {}: sha256 {} matches the record and {}",
                        asset.repository,
                        asset.tag,
                        downloaded.sha256,
                        against.join(" and ")
                    ),
                ));
            }
            Err(refused) => {
                checks.push(StepResult::rebuild(
                    &asset.asset,
                    RebuildStep::UpstreamAsset,
                    false,
                    refused.to_string(),
                ));
                return outcome;
            }
        }

        let rebuilt = self.rebuild(&statement, zip, &entry.file);
        let output = match rebuilt {
            Ok(output) => output,
            Err(failed) => {
                checks.push(StepResult::rebuild(
                    &entry.file,
                    RebuildStep::Rebuild,
                    false,
                    failed,
                ));
                return outcome;
            }
        };
        if let Some(parsed) = ImageFileName::parse(&entry.file)
            && parsed.format == ImageFormat::Ddi
        {
            let squashfs = parsed.in_format(ImageFormat::Squashfs).file_name();
            checks.push(StepResult::rebuild(
                &entry.file,
                RebuildStep::Rebuild,
                true,
                format!(
                    "rebuilt {squashfs} by alloy-sysext-automation {VERSION_LINE} from {} {} {}: sha256 {}",
                    asset.repository, asset.tag, asset.asset, output.image_sha256
                ),
            ));
            let rebuilt = self.rebuild_dir(&entry.file).join(&squashfs);
            let compared = self.compare_ddi(&published, &rebuilt, parsed.arch);
            outcome.identical = compared.is_ok();
            let (ok, detail) = match compared {
                Ok(detail) => (true, detail),
                Err(detail) => (false, detail),
            };
            checks.push(StepResult::rebuild(
                &entry.file,
                RebuildStep::Compare,
                ok,
                detail,
            ));
            return outcome;
        }
        outcome.rebuilt_sha256 = Some(output.image_sha256.clone());
        checks.push(StepResult::rebuild(
            &entry.file,
            RebuildStep::Rebuild,
            true,
            format!(
                "rebuilt by alloy-sysext-automation {VERSION_LINE} from {} {} {}: sha256 {}",
                asset.repository, asset.tag, asset.asset, output.image_sha256
            ),
        ));
        if output.image_sha256 == published_sha256 {
            outcome.identical = true;
            checks.push(StepResult::rebuild(
                &entry.file,
                RebuildStep::Compare,
                true,
                format!("the rebuilt image has the published image's sha256 {published_sha256}"),
            ));
            return outcome;
        }
        let rebuilt_image = self.rebuild_dir(&entry.file).join(&entry.file);
        let difference = first_difference(
            &statement,
            &published,
            &published_sha256,
            Rebuilt {
                image: &rebuilt_image,
                sha256: &output.image_sha256,
                binary_sha256: &output.binary_sha256,
            },
        );
        let detail = match &difference {
            Ok(difference) => difference.to_string(),
            Err(e) => format!("the rebuilt image cannot be read back: {e}"),
        };
        checks.push(StepResult::rebuild(
            &entry.file,
            RebuildStep::Compare,
            false,
            format!(
                "the rebuilt image has sha256 {}, the published one {published_sha256}: {detail}",
                output.image_sha256
            ),
        ));
        outcome.difference = difference.ok();
        outcome
    }

    /// Compares the published DDI at `published` with the squashfs image `rebuilt`: its
    /// data partition byte for byte, its hash partition with the tree made from that data,
    /// and its signature partition with the verity certificate, when there is one; its
    /// partitions must be for `named_arch`, the architecture its name says.
    fn compare_ddi(
        &self,
        published: &Path,
        rebuilt: &Path,
        named_arch: Option<Arch>,
    ) -> Result<String, String> {
        let open = || std::fs::File::open(published).map_err(|e| e.to_string());
        same_data(&mut open()?, published, rebuilt).map_err(|e| e.to_string())?;
        let checked = check_ddi(&mut open()?, published, self.verity_certificate)
            .and_then(|checked| checked.named(named_arch))
            .map_err(|e| e.to_string())?;
        let signature = match self.verity_certificate {
            Some(certificate) => format!(
                "its root hash {} is signed by {} ({})",
                checked.root_hash,
                certificate.subject(),
                checked.certificate_fingerprint
            ),
            None => format!(
                "its signature of root hash {} is not checked: no --verity-certificate",
                checked.root_hash
            ),
        };
        Ok(format!(
            "the data partition is the rebuilt image and the hash partition its dm-verity tree; {signature}"
        ))
    }

    /// Where the image `file` is rebuilt.
    fn rebuild_dir(&self, file: &str) -> PathBuf {
        self.work.join(REBUILT).join(file)
    }

    /// Builds the image of `record` again from `zip`, unsigned, into its own directory.
    fn rebuild(&self, record: &Statement, zip: PathBuf, file: &str) -> Result<BuildOutput, String> {
        let mut request = record
            .build_request(zip)
            .map_err(|e| format!("cannot be rebuilt from its record: {e}"))?;
        request.squashfs.threads = self.args.threads;
        let out = self.rebuild_dir(file);
        let output = build_into_dir(&request, &out, None, &self.progress);
        self.progress.finish();
        output.map_err(|e| format!("the rebuild failed: {e}"))
    }
}
