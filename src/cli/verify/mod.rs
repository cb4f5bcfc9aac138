//! `verify`: what systemd-sysupdate checks on a host, run on a published base URL or a
//! directory. The checks are the library's ([`manifest::verify`]); reading the files is
//! [`source`]'s, over [`http`] for a URL.

mod http;
pub(super) mod source;

use std::io::Write;
use std::path::{Path, PathBuf};

use alloy_sysext_automation::artifacts::image_format::ImageFormat;
use alloy_sysext_automation::artifacts::{MANIFEST_FILE, MANIFEST_SIGNATURE_FILE};
use alloy_sysext_automation::ddi::VerityCertificate;
use alloy_sysext_automation::ddi::check::check_ddi;
use alloy_sysext_automation::manifest::image_name::ImageFileName;
use alloy_sysext_automation::manifest::match_pattern::MatchPattern;
use alloy_sysext_automation::manifest::verify::{
    Candidate, Check, CheckKind, Companion, DEFAULT_MATCH_PATTERN, ImageDigest, Selection,
    VerifyError, check_host_would_install, check_image, check_manifest, check_provenance,
    host_would_install, manifest_failure, select,
};
use alloy_sysext_automation::manifest::{self, Manifest};
use alloy_sysext_automation::provenance::read::UpstreamAsset;
use alloy_sysext_automation::provenance::{record_file_name, record_signature_file_name};
use alloy_sysext_automation::signing::Keyring;
use alloy_sysext_automation::version::Version;
use anyhow::Context;
use clap::{ArgGroup, Args};
use serde::Serialize;

use self::source::{ReadError, Source};
use super::public_keys::PublicKeyArgs;

/// Check published files the way systemd-sysupdate does on a host.
///
/// Reads SHA256SUMS and SHA256SUMS.gpg from a base URL (--url, what hosts download from) or
/// a directory (--dir), verifies the signature with the public key, and tells which image
/// a host with the match pattern would install (the newest version listed). Then checks
/// images: each one's sha256 against SHA256SUMS, its .sha256 file, its .asc signature
/// (with the same key), and its provenance record .intoto.json when it has one (its .asc
/// with the same key, the image's name and sha256 in it), printing the upstream asset the
/// image was built from; an image without a record (published before records existed) is
/// reported as such and passes. A DDI (alloy-<V>-<arch>.ddi.raw) listed in SHA256SUMS is
/// checked the same way, and with --verity-certificate also as a host's kernel reads it (its
/// dm-verity tree, root hash and signature). From a URL the image a host would install is checked, or
/// the one of --version, or every listed file with --all; in a directory every listed file
/// is checked.
/// A listed file that is missing fails its check. Unless --manifest-only, it fails too when
/// no listed file matches the pattern (a host would install nothing) or when the file a
/// host would install is not a release this tool publishes (alloy-1.20.0-rc1-amd64.raw).
///
/// Prints every check with its result (ok or FAILED), one per line, or one JSON document
/// with --json. Exits 1 when any check fails, naming the failures.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["url", "dir"])))]
pub struct VerifyArgs {
    /// The base URL hosts download from (a transfer definition's Path=), such as
    /// https://example.com/images/. http and https only.
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// A directory holding SHA256SUMS, SHA256SUMS.gpg and the images.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    #[command(flatten)]
    keys: PublicKeyArgs,

    /// The file names a host downloads, as its transfer definition's MatchPattern=: @v
    /// stands for the version, read as systemd does (ASCII letters, digits and .,_-+ up to
    /// the first occurrence of what follows @v) and ordered as systemd orders versions.
    #[arg(long, value_name = "PATTERN", default_value = DEFAULT_MATCH_PATTERN)]
    match_pattern: MatchPattern,

    /// Check the image of this version (the file the match pattern names for it) instead
    /// of the newest.
    #[arg(long, value_name = "VERSION", conflicts_with = "all")]
    version: Option<Version>,

    /// Check every listed file (the default with --dir).
    #[arg(long)]
    all: bool,

    /// Check only the manifest's signature and format, not the files it lists.
    #[arg(long, conflicts_with_all = ["version", "all"])]
    manifest_only: bool,

    /// The PEM X.509 certificate hosts trust for DDIs (in /etc/verity.d/): each checked
    /// DDI (alloy-<V>-<arch>.ddi.raw) is then also read as a host's kernel reads it: its
    /// dm-verity tree recomputed from its data, its partition UUIDs and the root hash its
    /// signature partition names, and that signature with this certificate.
    #[arg(long, env = "VERITY_CERTIFICATE_PATH", value_name = "FILE")]
    verity_certificate: Option<PathBuf>,

    /// Print one JSON document instead of lines, for scripts.
    #[arg(long)]
    json: bool,
}

/// Everything `verify` found, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    /// The directory or base URL read.
    source: String,
    match_pattern: String,
    /// The fingerprint of the key that signed SHA256SUMS, when the signature is good.
    signed_by: Option<String>,
    /// The versions SHA256SUMS lists, oldest first.
    versions: Vec<String>,
    /// The newest listed file the match pattern picks: what a host installs.
    host_would_install: Option<Candidate>,
    checks: Vec<Check>,
    /// The upstream asset each checked image was built from, as its provenance record (and
    /// the record's signature) says: images without a record, or whose record failed, are
    /// not listed.
    provenance: Vec<ImageProvenance>,
    /// Whether every check passed.
    ok: bool,
    /// What failed, when something did.
    error: Option<String>,
}

/// Where an image came from.
#[derive(Debug, Serialize)]
struct ImageProvenance {
    file: String,
    upstream: UpstreamAsset,
}

/// The verity certificate (PEM) at `path`, which `verify` and `rebuild-check` check DDIs'
/// signatures with.
pub(crate) fn read_verity_certificate(path: &std::path::Path) -> anyhow::Result<VerityCertificate> {
    let context = || format!("reading the verity certificate {}", path.display());
    let pem = std::fs::read_to_string(path).with_context(context)?;
    VerityCertificate::from_pem(&pem).with_context(context)
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
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
    let selection = match (&args.version, args.all, &source) {
        (Some(version), _, _) => Selection::Version(version.clone()),
        (None, true, _) | (None, false, Source::Dir(_)) => Selection::All,
        (None, false, Source::Url(_)) => Selection::Newest,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut report = Report {
        source: described,
        match_pattern: args.match_pattern.to_string(),
        signed_by: None,
        versions: Vec::new(),
        host_would_install: None,
        checks: Vec::new(),
        provenance: Vec::new(),
        ok: false,
        error: None,
    };
    let checks = Checks {
        source: &source,
        keys: &keys,
        pattern: &args.match_pattern,
        selection: &selection,
        manifest_only: args.manifest_only,
        verity_certificate: verity_certificate.as_ref(),
    };
    runtime.block_on(checks.run(&mut report));
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|check| !check.ok)
        .map(|check| format!("{}: {}", check.file, check.detail))
        .collect();
    if report.error.is_none() && !failed.is_empty() {
        report.error = Some(format!(
            "{} of {} checks failed: {}",
            failed.len(),
            report.checks.len(),
            failed.join("; ")
        ));
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

/// What to check, and where to read it.
struct Checks<'a> {
    source: &'a Source,
    keys: &'a Keyring,
    pattern: &'a MatchPattern,
    selection: &'a Selection,
    manifest_only: bool,
    verity_certificate: Option<&'a VerityCertificate>,
}

impl Checks<'_> {
    async fn run(&self, report: &mut Report) {
        let manifest = match self.manifest(report).await {
            Ok(manifest) => manifest,
            Err(error) => {
                report.checks.push(manifest_failure(&error));
                report.error = Some(error.to_string());
                return;
            }
        };
        report.host_would_install = host_would_install(&manifest, self.pattern);
        if self.manifest_only {
            return;
        }
        // In every mode: --all or a directory checks every listed file, but what a host
        // installs is what the files are published for.
        if let Some(failed) = check_host_would_install(&manifest, self.pattern) {
            report.checks.push(failed);
        }
        let entries = match select(&manifest, self.pattern, self.selection) {
            Ok(entries) => entries,
            // Already a failed check, and there is nothing to check for a host.
            Err(VerifyError::NothingMatches { .. }) => Vec::new(),
            Err(error) => {
                report.error = Some(error.to_string());
                return;
            }
        };
        for entry in entries {
            let (checks, upstream) = self.image(entry).await;
            report.checks.extend(checks);
            if let Some(upstream) = upstream {
                report.provenance.push(ImageProvenance {
                    file: entry.file.clone(),
                    upstream,
                });
            }
        }
    }

    /// Reads and checks the manifest and its signature; records the passed checks.
    async fn manifest(&self, report: &mut Report) -> Result<Manifest, VerifyError> {
        let manifest = self.source.required(MANIFEST_FILE).await?;
        let signature = self.source.required(MANIFEST_SIGNATURE_FILE).await?;
        let verified = check_manifest(&manifest, &signature, self.keys)?;
        report.signed_by = Some(verified.signed_by.clone());
        report.versions = listed_versions(&verified.manifest);
        report.checks.push(Check::passed(
            MANIFEST_SIGNATURE_FILE,
            CheckKind::ManifestSignature,
            format!(
                "good signature by {} on {MANIFEST_FILE}",
                verified.signed_by
            ),
        ));
        report.checks.push(Check::passed(
            MANIFEST_FILE,
            CheckKind::ManifestFormat,
            format!(
                "{} entries, versions: {}",
                verified.manifest.entries().len(),
                report.versions.join(", ")
            ),
        ));
        Ok(verified.manifest)
    }

    /// The checks of one listed image (its name checked by the manifest's parser: a bare
    /// file name, so it stays under the base URL or directory), and the upstream asset its
    /// provenance record names, when the record passed.
    async fn image(&self, entry: &manifest::ManifestEntry) -> (Vec<Check>, Option<UpstreamAsset>) {
        let mut digest = ImageDigest::default();
        // A DDI checked with the certificate is read again, locally: from a URL it is kept
        // in a temporary file as it streams by.
        let verity = match (self.verity_certificate, ImageFileName::parse(&entry.file)) {
            (Some(certificate), Some(parsed)) if parsed.format == ImageFormat::Ddi => {
                match tempfile::NamedTempFile::new() {
                    Ok(copy) => Some((certificate, copy)),
                    Err(error) => {
                        return (
                            vec![Check::failed(
                                &entry.file,
                                CheckKind::Verity,
                                format!("cannot be checked: making a temporary file: {error}"),
                            )],
                            None,
                        );
                    }
                }
            }
            _ => None,
        };
        let streamed = match &verity {
            Some((_, copy)) => {
                let mut both = Both(&mut digest, copy.as_file());
                self.source.stream(&entry.file, &mut both).await
            }
            None => self.source.stream(&entry.file, &mut digest).await,
        };
        if let Err(error) = streamed {
            let detail = match error {
                ReadError::Missing(reason) => format!("is missing: {reason}"),
                ReadError::Failed(reason) => format!("cannot be read: {reason}"),
            };
            return (
                vec![Check::failed(&entry.file, CheckKind::Sha256, detail)],
                None,
            );
        }
        let image_sha256 = digest.sha256_hex();
        let sha256_file = self.companion(&format!("{}.sha256", entry.file)).await;
        let signature = self.companion(&format!("{}.asc", entry.file)).await;
        let mut checks = check_image(entry, digest, &sha256_file, &signature, self.keys);
        let record = self.companion(&record_file_name(&entry.file)).await;
        let record_signature = self
            .companion(&record_signature_file_name(&entry.file))
            .await;
        let provenance =
            check_provenance(entry, &image_sha256, &record, &record_signature, self.keys);
        checks.extend(provenance.checks);
        if let Some((certificate, copy)) = verity {
            checks.push(verity_check(&entry.file, copy.path(), certificate));
        }
        (checks, provenance.upstream)
    }

    async fn companion(&self, file: &str) -> Companion {
        match self.source.small(file).await {
            Ok(bytes) => Companion::Found(bytes),
            Err(ReadError::Missing(reason)) => Companion::Missing(reason),
            Err(ReadError::Failed(reason)) => Companion::Unreadable(reason),
        }
    }
}

/// Writes to two writers.
struct Both<'a, A: Write, B: Write>(&'a mut A, B);

impl<A: Write, B: Write> Write for Both<'_, A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// The check of the DDI `file`, read from `path`, with `certificate`.
fn verity_check(file: &str, path: &Path, certificate: &VerityCertificate) -> Check {
    let checked = std::fs::File::open(path)
        .map_err(|error| error.to_string())
        .and_then(|mut opened| {
            check_ddi(&mut opened, Path::new(file), Some(certificate)).map_err(|e| e.to_string())
        });
    let named_arch = ImageFileName::parse(file).and_then(|name| name.arch);
    let checked = checked.and_then(|checked| checked.named(named_arch).map_err(|e| e.to_string()));
    match checked {
        Ok(checked) => Check::passed(
            file,
            CheckKind::Verity,
            format!(
                "dm-verity tree matches the data, root hash {} signed by {} ({})",
                checked.root_hash,
                certificate.subject(),
                checked.certificate_fingerprint
            ),
        ),
        Err(reason) => Check::failed(file, CheckKind::Verity, reason),
    }
}

/// The versions listed, oldest first, without repeats (a file name without a version is
/// shown whole).
fn listed_versions(manifest: &Manifest) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for entry in manifest.entries() {
        let shown = match ImageFileName::parse(&entry.file) {
            Some(parsed) => parsed.version.to_string(),
            None => entry.file.clone(),
        };
        if !versions.contains(&shown) {
            versions.push(shown);
        }
    }
    versions
}

fn print_lines(report: &Report) {
    println!("source: {}", report.source);
    match &report.host_would_install {
        Some(candidate) => println!(
            "a host with MatchPattern={} installs {} (version {})",
            report.match_pattern, candidate.file, candidate.version
        ),
        None if report.signed_by.is_some() => println!(
            "a host with MatchPattern={} installs nothing: no listed file matches",
            report.match_pattern
        ),
        None => {}
    }
    for check in &report.checks {
        let result = if check.ok { "ok" } else { "FAILED" };
        println!("{result:<7} {}: {}", check.file, check.detail);
    }
}
