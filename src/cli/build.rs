//! `build`: one version and architecture, from a zip or from the upstream release.

use std::path::{Path, PathBuf};
use std::time::Instant;

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::artifacts::image_format::ImageFormat;
use alloy_sysext_automation::artifacts::{BuildOutput, BuildRequest, build_into_dir};
use alloy_sysext_automation::ddi::VeritySigner;
use alloy_sysext_automation::ddi::key_source::VeritySignerSource;
use alloy_sysext_automation::github::api::{Auth, DEFAULT_API_URL, GitHubApi};
use alloy_sysext_automation::github::rate_limit::RetryPolicy;
use alloy_sysext_automation::github::release_asset::PublicReleases;
use alloy_sysext_automation::manifest::Upsert;
use alloy_sysext_automation::provenance::{
    BuildOrigin, CheckedAsset, record_file_name, record_signature_file_name,
};
use alloy_sysext_automation::secret::Secret;
use alloy_sysext_automation::signing::key_source::KeySource;
use alloy_sysext_automation::sysext::{Compression, SquashfsOptions};
use alloy_sysext_automation::version::Version;
use anyhow::Context;
use clap::Args;

use super::progress::TerminalProgress;

/// Build the sysext image for one Alloy version and architecture, sign it, and add it to
/// SHA256SUMS in the output directory.
///
/// Writes alloy-<V>-<arch>.raw with .sha256 and .asc, its provenance record
/// alloy-<V>-<arch>.raw.intoto.json (the upstream asset and its sha256, the settings, this
/// tool's version) with its .asc, the compatibility copy alloy-<V>.raw with its own .sha256
/// and .asc, SHA256SUMS (created, or edited in place) and SHA256SUMS.gpg. With --format ddi,
/// also the signed dm-verity disk image alloy-<V>-<arch>.ddi.raw with its .sha256, .asc and
/// provenance record, listed in SHA256SUMS right after the image. Nothing in --out changes
/// unless the whole build succeeds. The same zip, settings and keys always give byte-identical images.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  alloy-sysext-automation build --version 1.17.1 --zip alloy-linux-amd64.zip --out out/\n  alloy-sysext-automation build --version 1.17.1 --arch arm64 --out out/   # downloads the asset\n  alloy-sysext-automation build --version 1.17.1 --zip alloy-linux-amd64.zip --out out/ --format squashfs,ddi --verity-key keys/verity.key --verity-certificate keys/verity.crt\n\nEnvironment:\n  GPG_PRIVATE_KEY          base64 of an armored, unprotected secret key\n  SIGNING_KEY_PATH         path of an armored secret key\n  VERITY_SIGNING_KEY_PATH  path of the PEM key that signs DDI root hashes (--format ddi)\n  VERITY_SIGNING_KEY       the same key as PEM text\n  VERITY_CERTIFICATE_PATH  path of its PEM certificate\n  VERITY_CERTIFICATE       the same certificate as PEM text\n  GITHUB_TOKEN             token for downloads (optional; raises the rate limit)"
)]
pub struct BuildArgs {
    /// Alloy version to build, MAJOR.MINOR.PATCH (a leading `v` is accepted).
    #[arg(long, value_parser = parse_version)]
    version: Version,

    /// Architecture: amd64 or arm64.
    #[arg(long, default_value = "amd64", value_parser = parse_arch)]
    arch: Arch,

    /// The upstream release zip (alloy-linux-<arch>.zip). Without it, the asset of release
    /// v<VERSION> is downloaded from GitHub and checked against its published sha256. The
    /// provenance record names a given zip as that asset, not checked against the release.
    #[arg(long, value_name = "FILE")]
    zip: Option<PathBuf>,

    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Squashfs compression: xz (dictionary = block size, like mksquashfs -Xdict-size 100%),
    /// zstd, or gzip.
    #[arg(long, default_value = "xz", value_parser = ["xz", "zstd", "gzip"])]
    compression: String,

    /// Compression level: xz 0-9 (default 6), zstd 1-22 (default 15), gzip 1-9 (default 9).
    #[arg(long, value_name = "N")]
    compression_level: Option<u32>,

    /// Squashfs block size: a power of two from 4K to 1M (bytes, or with a K or M suffix).
    #[arg(long, default_value = "128K", value_parser = parse_block_size)]
    block_size: u32,

    /// Modification time of every file in the image, in seconds since 1970.
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        default_value_t = 0,
        value_name = "SECONDS"
    )]
    source_date_epoch: u32,

    /// Threads compressing the image (0: one per core). The image is byte-identical
    /// whatever the number.
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,

    /// Do not write the compatibility copy alloy-<V>.raw (only amd64 builds write it: the
    /// name has no architecture).
    #[arg(long)]
    no_compat_name: bool,

    /// Armored OpenPGP secret key to sign with (default: $GPG_PRIVATE_KEY or
    /// $SIGNING_KEY_PATH).
    #[arg(long, value_name = "FILE", conflicts_with = "no_sign")]
    signing_key: Option<PathBuf>,

    /// Build without signatures: no .asc files and no SHA256SUMS.gpg (hosts will refuse such
    /// a manifest).
    #[arg(long)]
    no_sign: bool,

    /// Image formats to write, comma-separated or repeated: squashfs (alloy-<V>-<arch>.raw,
    /// which is always written: it is what SHA256SUMS and the provenance record describe)
    /// and ddi (alloy-<V>-<arch>.ddi.raw: the same file system in a GPT disk image with its
    /// dm-verity hash tree and the root hash signed with --verity-key, which the kernel
    /// checks on every read after the extension is merged).
    #[arg(
        long = "format",
        value_name = "FORMAT",
        value_delimiter = ',',
        default_value = "squashfs",
        value_parser = parse_format
    )]
    formats: Vec<ImageFormat>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1; RSA or ECDSA P-256) that signs the DDI's
    /// root hash (default: $VERITY_SIGNING_KEY_PATH or $VERITY_SIGNING_KEY). Made by
    /// `keygen --x509`.
    #[arg(long, value_name = "FILE")]
    verity_key: Option<PathBuf>,

    /// PEM X.509 certificate of --verity-key, which hosts trust in /etc/verity.d/ (default:
    /// $VERITY_CERTIFICATE_PATH or $VERITY_CERTIFICATE).
    #[arg(long, value_name = "FILE")]
    verity_certificate: Option<PathBuf>,

    /// Refuse a binary that inflates to more than this (bytes, or with a K, M or G suffix).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    max_binary_size: u64,

    /// The upstream repository to download releases from (and that the provenance record
    /// names).
    #[arg(long, default_value = "grafana/alloy", value_name = "OWNER/NAME")]
    upstream_repo: String,

    /// GitHub REST API base (GitHub Enterprise or a test server).
    #[arg(long, env = "GITHUB_API_URL", default_value = DEFAULT_API_URL, value_name = "URL")]
    github_api_url: String,
}

fn parse_version(s: &str) -> Result<Version, String> {
    s.parse()
        .map_err(|e: alloy_sysext_automation::version::InvalidVersion| e.to_string())
}

fn parse_format(s: &str) -> Result<ImageFormat, String> {
    s.parse().map_err(
        |e: alloy_sysext_automation::artifacts::image_format::UnknownImageFormat| e.to_string(),
    )
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
        .map_err(|e: alloy_sysext_automation::arch::UnknownArch| e.to_string())
}

/// `131072`, `128K`, `1M`, `1G` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, multiplier) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t.trim_end_matches('K').to_owned(), 1u64 << 10),
        t if t.ends_with('M') => (t.trim_end_matches('M').to_owned(), 1 << 20),
        t if t.ends_with('G') => (t.trim_end_matches('G').to_owned(), 1 << 30),
        t => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{s:?} is not a size such as 131072, 128K or 1M"))
}

fn parse_block_size(s: &str) -> Result<u32, String> {
    let size = parse_size(s)?;
    let size = u32::try_from(size).map_err(|_| format!("{s:?} is too large for a block"))?;
    SquashfsOptions {
        block_size: size,
        ..SquashfsOptions::default()
    }
    .validate()
    .map_err(|e| e.to_string())?;
    Ok(size)
}

pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let compression = Compression::new(&args.compression, args.compression_level)?;
    // The key is loaded first, so a bad key fails before any download or build.
    let key = if args.no_sign {
        None
    } else {
        let source = KeySource::resolve(args.signing_key.clone(), |name| std::env::var(name).ok())?;
        Some(source.load()?)
    };
    let ddi_signer = verity_signer(&args)?;

    let progress = TerminalProgress::new();
    let downloaded_zip;
    let (zip, checked) = match &args.zip {
        Some(zip) => (zip.clone(), None),
        None => {
            let (temp, checked) = download_zip(&args, &progress)?;
            downloaded_zip = temp;
            (downloaded_zip.path().to_owned(), Some(checked))
        }
    };

    let mut request = BuildRequest::new(args.version.clone(), args.arch, zip);
    request.origin = BuildOrigin {
        repository: args.upstream_repo.clone(),
        checked,
        ..BuildOrigin::command_line(&args.version, args.arch)
    };
    request.squashfs = SquashfsOptions {
        compression,
        block_size: args.block_size,
        mtime: args.source_date_epoch,
        threads: args.threads,
    };
    request.compat_name = !args.no_compat_name;
    request.max_binary_size = args.max_binary_size;
    request.ddi_signer = ddi_signer;
    let output = build_into_dir(&request, &args.out, key.as_ref(), &progress);
    progress.finish();
    let output = output.with_context(|| {
        format!(
            "building {} {} for {} (nothing in {} was changed)",
            request.image_name,
            request.version,
            request.arch,
            args.out.display()
        )
    })?;
    print_summary(&request, &args.out, &output, started);
    println!("  time: {}", progress.step_times(Instant::now()));
    Ok(())
}

/// The key and certificate that sign the DDI, with --format ddi; loaded now, so that a bad
/// key fails before any download or build.
fn verity_signer(args: &BuildArgs) -> anyhow::Result<Option<VeritySigner>> {
    if !args.formats.contains(&ImageFormat::Ddi) {
        if args.verity_key.is_some() || args.verity_certificate.is_some() {
            anyhow::bail!(
                "--verity-key and --verity-certificate sign the DDI image: add --format ddi, or leave them out"
            );
        }
        return Ok(None);
    }
    let source = VeritySignerSource::resolve(
        args.verity_key.clone(),
        args.verity_certificate.clone(),
        |name| std::env::var(name).ok(),
    )?;
    Ok(Some(source.load()?))
}

/// Downloads the release asset into a temporary file in the output directory; gives the file
/// and what it was checked against.
fn download_zip(
    args: &BuildArgs,
    progress: &TerminalProgress,
) -> anyhow::Result<(tempfile::NamedTempFile, CheckedAsset)> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let asset_name = format!("alloy-linux-{}.zip", args.arch);
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{asset_name}."))
        .suffix(".tmp")
        .tempfile_in(&args.out)
        .with_context(|| format!("creating a temporary file in {}", args.out.display()))?;
    let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let downloaded = runtime.block_on(async {
        // Someone is waiting at a terminal: a rate limit that lasts longer than a minute
        // fails with GitHub's message rather than leaving the command silent for an hour.
        let policy = RetryPolicy {
            max_wait: std::time::Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let api =
            GitHubApi::with_personal_token(&args.github_api_url, token.map(Secret::new), policy)?;
        let upstream = PublicReleases {
            api: &api,
            auth: Auth::Personal,
            acting_repository: &args.upstream_repo,
            repo: &args.upstream_repo,
        };
        progress.spinner(&format!(
            "looking up {} {}",
            args.upstream_repo,
            args.version.tag()
        ));
        let release = upstream.release(&args.version.tag()).await?;
        progress.download(&format!("downloading {asset_name}"), 0);
        let downloaded = upstream
            .download_checked(&release, &asset_name, temp.path(), &|done, total| {
                progress.bytes(done, total)
            })
            .await?;
        anyhow::Ok(downloaded)
    });
    progress.finish();
    let downloaded = downloaded?;
    let against: Vec<&str> = downloaded
        .checked_against
        .iter()
        .map(|check| check.describe())
        .collect();
    eprintln!(
        "downloaded {} ({} bytes), sha256 {} matches {}",
        downloaded.name,
        downloaded.size,
        downloaded.sha256,
        against.join(" and ")
    );
    let checked = CheckedAsset {
        asset: downloaded.name,
        sha256: downloaded.sha256,
        checked_against: downloaded.checked_against,
    };
    Ok((temp, checked))
}

fn print_summary(request: &BuildRequest, out: &Path, output: &BuildOutput, started: Instant) {
    println!(
        "Built {} {} for {} in {:.1}s ({}, {} KiB blocks, mtime {})",
        request.image_name,
        request.version,
        request.arch,
        started.elapsed().as_secs_f64(),
        request.squashfs.compression,
        request.squashfs.block_size / 1024,
        request.squashfs.mtime,
    );
    println!(
        "  binary {} ({} bytes), sha256 {}",
        request.binary_entry, output.binary_size, output.binary_sha256
    );
    let shown: Vec<String> = output
        .files
        .iter()
        .map(|f| out.join(&f.name).display().to_string())
        .collect();
    let width = shown.iter().map(String::len).max().unwrap_or(0);
    for (path, file) in shown.iter().zip(&output.files) {
        println!(
            "  {path:<width$}  {:>10}  {}",
            human_size(file.size),
            file.sha256
        );
    }
    let change = |change: Upsert| match change {
        Upsert::Added => "added",
        Upsert::Replaced => "replaced (the version was listed with another hash)",
        Upsert::Unchanged => "unchanged (already listed with this hash)",
    };
    println!(
        "  SHA256SUMS entry for {}: {}",
        request.image_file_name(),
        change(output.manifest_change)
    );
    if let Some(ddi_change) = output.ddi_manifest_change {
        println!(
            "  SHA256SUMS entry for {}: {}",
            request.ddi_file_name(),
            change(ddi_change)
        );
    }
    if let (Some(ddi), Some(signer)) = (&output.ddi, &request.ddi_signer) {
        println!(
            "  {}: root hash {}, seed {}, signed by {} (sha256 fingerprint {})",
            request.ddi_file_name(),
            ddi.root_hash,
            ddi.seed,
            signer.certificate().subject(),
            ddi.signature.certificate_fingerprint
        );
    }
    let image = request.image_file_name();
    let signed = output
        .file(&record_signature_file_name(&image))
        .map_or("", |_| ", signed");
    let records = match output.ddi {
        Some(_) => format!(
            "{} and {}",
            record_file_name(&image),
            record_file_name(&request.ddi_file_name())
        ),
        None => record_file_name(&image),
    };
    match output.record.upstream_asset() {
        Some(asset) => println!("  provenance: {records}{signed}: {}", asset.describe()),
        None => println!("  provenance: {records}{signed}"),
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_sysext_automation::upstream::zip_entry::DEFAULT_MAX_BINARY_SIZE;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("131072"), Ok(131072));
        assert_eq!(parse_size("128K"), Ok(131072));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("1G"), Ok(DEFAULT_MAX_BINARY_SIZE));
        assert!(parse_size("lots").is_err());
        assert!(parse_block_size("100K").is_err());
        assert!(parse_block_size("2M").is_err());
        assert_eq!(parse_block_size("4K"), Ok(4096));
    }
}
