//! Runs every parser's property (the generators and invariants of the property tests) on
//! at least a million generated inputs each, counting failures and panics rather than
//! stopping at the first, and prints what it found. Run by `benches/fuzz_parsers.sh`.
//!
//! Usage: `fuzz_parsers [--cases N] [--seed N] [NAME…]` (names as printed; default all).

#[path = "../tests/properties/targets.rs"]
mod targets;

use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use targets::Verdict;

/// How many failing inputs are printed per parser.
const SHOWN_FAILURES: u64 = 3;

struct Options {
    cases: u64,
    seed: u64,
    only: Vec<String>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        cases: 1_000_000,
        seed: 11,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| {
            args.next()
                .and_then(|n| n.replace('_', "").parse::<u64>().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--cases" => options.cases = number("--cases")?,
            "--seed" => options.seed = number("--seed")?,
            name if !name.starts_with('-') => options.only.push(name.to_owned()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

/// The totals of one parser's run.
struct Report {
    cases: u64,
    failures: u64,
}

fn fuzz<S>(
    name: &str,
    strategy: S,
    check: fn(&S::Value) -> Verdict,
    options: &Options,
) -> Option<Report>
where
    S: Strategy,
    S::Value: Debug,
{
    if !options.only.is_empty() && !options.only.iter().any(|o| o == name) {
        return None;
    }
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&options.seed.to_le_bytes());
    seed[8..8 + name.len().min(24)].copy_from_slice(&name.as_bytes()[..name.len().min(24)]);
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let started = Instant::now();
    let mut failures = 0;
    for case in 0..options.cases {
        let value = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree.current(),
            Err(reason) => {
                println!("{name}: could not generate case {case}: {reason}");
                failures += 1;
                continue;
            }
        };
        let verdict =
            panic::catch_unwind(AssertUnwindSafe(|| check(&value))).unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(format!("panicked: {message}"))
            });
        if let Err(reason) = verdict {
            failures += 1;
            if failures <= SHOWN_FAILURES {
                println!("{name}: case {case} failed: {reason}\n  input: {value:?}");
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{name:<22} {:>10} cases {failures:>6} failures {seconds:>8.1} s {:>8.1} µs/case",
        options.cases,
        seconds * 1e6 / options.cases.max(1) as f64
    );
    Some(Report {
        cases: options.cases,
        failures,
    })
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("fuzz_parsers: {message}");
            std::process::exit(2);
        }
    };
    // Panics are counted and shown by `fuzz`, not printed as they happen.
    panic::set_hook(Box::new(|_| {}));
    println!(
        "{} cases per parser, seed {} (parser, cases, failures, time)",
        options.cases, options.seed
    );
    let reports = [
        fuzz(
            "commands",
            targets::comments(),
            targets::check_comment,
            &options,
        ),
        fuzz(
            "commands-noise",
            targets::comment_noise(),
            targets::check_comment_noise,
            &options,
        ),
        fuzz(
            "versions",
            targets::versions(),
            targets::check_versions,
            &options,
        ),
        fuzz(
            "butane",
            targets::butane_files(),
            targets::check_butane,
            &options,
        ),
        fuzz(
            "butane-hostile",
            targets::hostile_butane_files(),
            targets::check_hostile_butane,
            &options,
        ),
        fuzz(
            "manifest",
            targets::manifests(),
            targets::check_manifest,
            &options,
        ),
        fuzz(
            "manifest-noise",
            targets::manifest_noise(),
            targets::check_manifest_noise,
            &options,
        ),
        fuzz(
            "consumers-toml",
            targets::consumer_tables(),
            targets::check_consumers,
            &options,
        ),
        fuzz(
            "enrollment-toml",
            targets::enrollment_files(),
            targets::check_enrollment,
            &options,
        ),
        fuzz(
            "settings-noise",
            targets::settings_noise(),
            targets::check_settings_noise,
            &options,
        ),
        fuzz(
            "routing",
            targets::deliveries(),
            targets::check_delivery,
            &options,
        ),
    ];
    let (cases, failures) = reports
        .iter()
        .flatten()
        .fold((0, 0), |(c, f), r| (c + r.cases, f + r.failures));
    println!("total: {cases} cases, {failures} failures");
    if failures > 0 {
        std::process::exit(1);
    }
}
