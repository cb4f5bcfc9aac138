#!/usr/bin/env bash
# Fuzzing: every parser that reads what strangers write (comment commands, versions, the
# Butane editor, SHA256SUMS manifests, consumer settings in TOML, webhook routing) against
# at least a million generated inputs each, with the property tests' generators and
# invariants (tests/properties/targets.rs). Prints, per parser, the cases run, the failures
# found (an invariant broken or a panic, with the first inputs shown) and the time taken;
# exits non-zero when anything failed.
#
#   benches/fuzz_parsers.sh                        # 1,000,000 cases per parser
#   benches/fuzz_parsers.sh --cases 100000 butane  # fewer cases, one parser
#   benches/fuzz_parsers.sh --seed 7               # other inputs
#
# This crate is built optimized in the test profile, whose dependencies are optimized
# already, so nothing else is rebuilt; overflow checks and debug assertions stay on, so an
# arithmetic overflow counts as a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --quiet --example fuzz_parsers
exec target/debug/examples/fuzz_parsers "$@"
