//! What `rebuild-check` found, step by step and image by image: printed one check per
//! line, or as one JSON document (`--json`) in the shape `verify`'s report has.

use alloy_sysext_automation::manifest::verify::{Check, CheckKind};
use alloy_sysext_automation::provenance::difference::Difference;
use alloy_sysext_automation::provenance::read::UpstreamAsset;
use alloy_sysext_automation::version::Version;
use serde::Serialize;

/// What a step of `rebuild-check` was about: the checks it shares with `verify`, and its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Step {
    Published(CheckKind),
    Rebuild(RebuildStep),
}

/// The steps only `rebuild-check` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildStep {
    /// The record's upstream repository is the trusted one.
    UpstreamRepository,
    /// The record's settings are ones this version builds with.
    Settings,
    /// The upstream asset, downloaded and checked against the record and GitHub's digest.
    UpstreamAsset,
    /// The image built again from the record.
    Rebuild,
    /// The rebuilt image's sha256 against the published one's; for a DDI, its data and hash
    /// partitions against the rebuilt image and the tree made from it, and its signature
    /// partition against the verity certificate.
    Compare,
}

/// One step, and its result.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub file: String,
    pub check: Step,
    pub ok: bool,
    pub detail: String,
}

impl From<Check> for StepResult {
    fn from(check: Check) -> Self {
        StepResult {
            file: check.file,
            check: Step::Published(check.check),
            ok: check.ok,
            detail: check.detail,
        }
    }
}

impl StepResult {
    pub fn rebuild(file: &str, step: RebuildStep, ok: bool, detail: String) -> Self {
        StepResult {
            file: file.to_owned(),
            check: Step::Rebuild(step),
            ok,
            detail,
        }
    }
}

/// What became of one image.
#[derive(Debug, Serialize)]
pub struct ImageOutcome {
    pub file: String,
    pub published_sha256: Option<String>,
    /// The upstream asset its record names, once the record passed.
    pub upstream: Option<UpstreamAsset>,
    /// The version of this tool that made the record.
    pub built_by: Option<String>,
    pub rebuilt_sha256: Option<String>,
    /// Whether the rebuild has the published image's bytes.
    pub identical: bool,
    /// The first difference found, when the rebuild does not.
    pub difference: Option<Difference>,
}

impl ImageOutcome {
    pub fn new(file: &str) -> Self {
        ImageOutcome {
            file: file.to_owned(),
            published_sha256: None,
            upstream: None,
            built_by: None,
            rebuilt_sha256: None,
            identical: false,
            difference: None,
        }
    }
}

/// Everything `rebuild-check` found, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The directory or base URL read.
    pub source: String,
    /// The only upstream repository downloads came from.
    pub upstream_repo: String,
    /// This tool, which rebuilt the images.
    pub rebuilt_by: &'static str,
    /// The fingerprint of the key that signed SHA256SUMS, when the signature is good.
    pub signed_by: Option<String>,
    /// The version whose images were rebuilt.
    pub version: Option<Version>,
    pub checks: Vec<StepResult>,
    pub images: Vec<ImageOutcome>,
    /// Whether every image rebuilt identical.
    pub ok: bool,
    /// What failed, when something did.
    pub error: Option<String>,
}

/// `1 entry`, `3 entries`.
pub fn entry_count(count: usize) -> String {
    match count {
        1 => "1 entry".to_owned(),
        n => format!("{n} entries"),
    }
}

/// The report as lines: the source, then each check with its result (`ok`, `FAILED`, and
/// for the comparison `identical` or `DIFFERENT`).
pub fn print_lines(report: &Report) {
    println!("source: {}", report.source);
    for check in &report.checks {
        let result = match (check.check, check.ok) {
            (Step::Rebuild(RebuildStep::Compare), true) => "identical",
            (Step::Rebuild(RebuildStep::Compare), false) => "DIFFERENT",
            (_, true) => "ok",
            (_, false) => "FAILED",
        };
        println!("{result:<9} {}: {}", check.file, check.detail);
    }
}
