#!/usr/bin/env bash
# Benchmark: `build` of the same 127 MB binary with and without the signed dm-verity image
# (`--format squashfs` against `--format squashfs,ddi`), several runs each, all cores.
# Prints the median wall time and peak memory (RSS) of each, the time `build`'s own `ddi`
# step took (writing and signing the DDI, as `build` reports it), and the sizes of the
# squashfs image and of the DDI. The step time is the figure to read on a busy machine: the
# wall times of whole builds move with whatever else runs.
#
#   benches/ddi_build.sh                       # RUNS=5, the release build
#   RUNS=3 PROFILE=dev benches/ddi_build.sh    # the dev build (dependencies optimized)
#   RUNS=3 BENCH_BINARY=/path/to/alloy-linux-amd64 benches/ddi_build.sh
#
# The input is BENCH_BINARY if set, else the first 127 MB of the Rust toolchain's
# librustc_driver (real x86-64 machine code, compressing much like a Go binary), else
# generated data. The verity key is RSA 4096, `keygen --x509`'s default. Needs GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/input_zip.sh
RUNS=${RUNS:-5}
PROFILE=${PROFILE:-release}
SIZE=133169152

[ -x /usr/bin/time ] || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time
}

case "$PROFILE" in
    release) cargo build --release --quiet; tool=$PWD/target/release/alloy-sysext-automation ;;
    dev) cargo build --quiet; tool=$PWD/target/debug/alloy-sysext-automation ;;
    *) echo "PROFILE must be release or dev" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

make_input_zip "$SIZE"

"$tool" keygen --out keys >/dev/null 2>&1
"$tool" keygen --x509 --out verity >/dev/null 2>&1

# measure NAME FORMATS: one build, appending "wall_seconds peak_rss_kib" to NAME.times.
measure() {
    rm -rf "out-$1"
    local ddi=()
    if [ "$2" = squashfs,ddi ]; then
        ddi=(--verity-key verity/verity.key --verity-certificate verity/verity.crt)
    fi
    /usr/bin/time -f "%e %M" -o time.out "$tool" build --version 1.17.1 \
        --zip alloy-linux-amd64.zip --out "out-$1" --signing-key keys/signing-key.asc \
        --no-compat-name --format "$2" "${ddi[@]}" > build.out
    cat time.out >> "$1.times"
    # build's own step times: `time: compress 9.8s, check 0.1s, sign 1.2s, ddi 0.7s, …`.
    sed -n 's/.*[ ,]ddi \([0-9.]*\)s.*/\1/p' build.out >> "$1.ddi_step"
}

for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS" >&2
    measure squashfs squashfs
    measure ddi squashfs,ddi
done

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
wall() { cut -d' ' -f1 "$1.times" | median; }
rss() { cut -d' ' -f2 "$1.times" | sort -n | tail -n 1; }
size() { stat -c %s "$1"; }

squashfs_wall=$(wall squashfs); ddi_wall=$(wall ddi)
raw=$(size out-ddi/alloy-1.17.1-amd64.raw); ddi=$(size out-ddi/alloy-1.17.1-amd64.ddi.raw)
echo
echo "input: $input, $(nproc) cores, $PROFILE build, $RUNS runs each (median wall time, highest peak RSS)"
echo
echo "| build | wall (s) | vs squashfs | peak RSS (MiB) | files (bytes) |"
echo "|---|---|---|---|---|"
awk -v w="$squashfs_wall" -v r="$(rss squashfs)" -v s="$raw" \
    'BEGIN {printf "| --format squashfs | %.1f | 1.00x | %.0f | .raw %d |\n", w, r / 1024, s}'
awk -v w="$ddi_wall" -v o="$squashfs_wall" -v r="$(rss ddi)" -v s="$raw" -v d="$ddi" \
    'BEGIN {printf "| --format squashfs,ddi | %.1f | %.2fx | %.0f | .raw %d, .ddi.raw %d (+%.1f%%) |\n", w, w / o, r / 1024, s, d, (d - s) * 100 / s}'
echo
echo "build's ddi step (writing, hashing and signing the DDI): median $(median < ddi.ddi_step) s of $(wc -l < ddi.ddi_step) runs"
awk -v a="$squashfs_wall" -v b="$ddi_wall" 'BEGIN {printf "whole builds: the median with the DDI minus the median without: %.1f s\n", b - a}'
