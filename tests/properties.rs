//! Property tests of the parsers that read what strangers write: comment commands,
//! versions, the Butane editor, `SHA256SUMS` manifests, consumer settings in TOML and
//! webhook routing. Each runs a few hundred generated cases here; `benches/fuzz_parsers.sh`
//! runs the same generators and invariants a million times each.

#[path = "properties/targets.rs"]
mod targets;

use std::fmt::Debug;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use targets::Verdict;

/// Runs `check` on `cases` values of `strategy`; a failure is shrunk to a minimal input,
/// which the panic message shows. The inputs are the same on every run, so that a failure
/// is one of the change under test; `benches/fuzz_parsers.sh --seed N` explores others.
fn run<S>(cases: u32, strategy: S, check: fn(&S::Value) -> Verdict)
where
    S: Strategy,
    S::Value: Debug,
{
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    if let Err(error) = runner.run(&strategy, |value| {
        check(&value).map_err(TestCaseError::fail)
    }) {
        panic!("{error}");
    }
}

#[test]
fn commands_are_read_only_where_a_reader_sees_them() {
    run(500, targets::comments(), targets::check_comment);
}

#[test]
fn command_parser_survives_any_comment() {
    run(400, targets::comment_noise(), targets::check_comment_noise);
}

#[test]
fn versions_read_back_and_order_like_systemd() {
    run(500, targets::versions(), targets::check_versions);
}

#[test]
fn butane_edit_changes_only_the_pin_lines() {
    run(300, targets::butane_files(), targets::check_butane);
}

#[test]
fn butane_edit_with_hostile_lines_is_refused_or_changes_only_what_it_reports() {
    run(
        300,
        targets::hostile_butane_files(),
        targets::check_hostile_butane,
    );
}

#[test]
fn manifests_print_and_parse_as_themselves_in_systemd_order() {
    run(300, targets::manifests(), targets::check_manifest);
}

#[test]
fn manifest_parser_survives_any_text() {
    run(
        300,
        targets::manifest_noise(),
        targets::check_manifest_noise,
    );
}

#[test]
fn consumer_settings_accept_only_safe_values() {
    run(300, targets::consumer_tables(), targets::check_consumers);
}

#[test]
fn enrollment_files_accept_only_safe_values_for_their_own_repository() {
    run(300, targets::enrollment_files(), targets::check_enrollment);
}

#[test]
fn settings_parser_survives_any_text() {
    run(
        300,
        targets::settings_noise(),
        targets::check_settings_noise,
    );
}

#[test]
fn routing_survives_any_delivery() {
    run(500, targets::deliveries(), targets::check_delivery);
}
