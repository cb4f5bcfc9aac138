#!/usr/bin/env bash
# Benchmark: `alloy-sysext-automation build` against the old shell pipeline (unzip,
# mksquashfs -comp xz -Xdict-size 100%, sha256sum, two gpg --detach-sign --armor) on the
# same 127 MB binary, several runs each, all cores. Prints the median wall time and peak
# memory (RSS) of each, their ratio, and zstd's size and speed against xz. One more `build`
# under strace counts the bytes read back from the image after it was written.
#
#   benches/image_build.sh            # RUNS=5 by default
#   RUNS=3 BENCH_BINARY=/path/to/alloy-linux-amd64 benches/image_build.sh
#
# The input is BENCH_BINARY if set, else the first 127 MB of the Rust toolchain's
# librustc_driver (real x86-64 machine code, compressing much like a Go binary), else
# generated data. Needs squashfs-tools, gnupg, unzip, GNU time and strace; installs them with
# apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/input_zip.sh
RUNS=${RUNS:-5}
SIZE=133169152

missing=()
command -v mksquashfs >/dev/null || missing+=(squashfs-tools)
command -v gpg >/dev/null || missing+=(gnupg)
command -v unzip >/dev/null || missing+=(unzip)
[ -x /usr/bin/time ] || missing+=(time)
command -v strace >/dev/null || missing+=(strace)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release --quiet
tool=$PWD/target/release/alloy-sysext-automation
work=$(mktemp -d)
trap 'gpgconf --homedir "$work/gnupg" --kill all 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

make_input_zip "$SIZE"

export GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'Bench <bench@example.org>' rsa4096 sign never 2>/dev/null
"$tool" keygen --out keys --algorithm rsa4096 >/dev/null 2>&1

old_pipeline() {
    rm -rf old && mkdir -p old/tree/usr/local/bin old/tree/usr/lib/systemd/system old/tree/usr/lib/extension-release.d
    cd old
    unzip -q ../alloy-linux-amd64.zip
    install -m 0755 alloy-linux-amd64 tree/usr/local/bin/alloy
    printf 'ID=_any\nARCHITECTURE=x86-64\n' > tree/usr/lib/extension-release.d/extension-release.alloy
    cp "$OLDPWD/unit" tree/usr/lib/systemd/system/alloy.service
    mksquashfs tree alloy-1.17.1-amd64.raw -comp xz -Xdict-size 100% -noappend -all-root -quiet >/dev/null
    sha256sum alloy-1.17.1-amd64.raw > alloy-1.17.1-amd64.raw.sha256
    cp alloy-1.17.1-amd64.raw.sha256 SHA256SUMS
    gpg --batch --yes --detach-sign --armor alloy-1.17.1-amd64.raw
    gpg --batch --yes --detach-sign --armor --output SHA256SUMS.gpg SHA256SUMS
}
printf '[Unit]\nDescription=Grafana Alloy\n' > unit

# measure NAME COMMAND...: runs it, appends "wall_seconds peak_rss_kib" to NAME.times.
measure() {
    local name=$1
    shift
    /usr/bin/time -f "%e %M" -o time.out "$@" >/dev/null
    cat time.out >> "$name.times"
}
export -f old_pipeline
ours() {
    rm -rf "out-$1" && "$tool" build --version 1.17.1 --zip alloy-linux-amd64.zip --out "out-$1" \
        --signing-key keys/signing-key.asc --no-compat-name --compression "$1"
}
export -f ours
export tool

for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS" >&2
    measure old bash -c old_pipeline
    measure xz bash -c 'ours xz'
    measure zstd bash -c 'ours zstd'
done

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
wall() { cut -d' ' -f1 "$1.times" | median; }
rss() { cut -d' ' -f2 "$1.times" | sort -n | tail -n 1; }
size() { stat -c %s "$1"; }

old_wall=$(wall old); xz_wall=$(wall xz); zstd_wall=$(wall zstd)
echo
echo "input: $input, $(nproc) cores, $RUNS runs each (median wall time, highest peak RSS)"
echo
echo "| pipeline | wall (s) | vs old | peak RSS (MiB) | image (MiB) |"
echo "|---|---|---|---|---|"
row() {
    awk -v n="$1" -v w="$2" -v o="$old_wall" -v r="$3" -v s="$4" \
        'BEGIN {printf "| %s | %.1f | %.2fx | %.0f | %.1f |\n", n, w, w / o, r / 1024, s / 1048576}'
}
row "old: unzip + mksquashfs xz + sha256sum + gpg x2" "$old_wall" "$(rss old)" "$(size old/alloy-1.17.1-amd64.raw)"
row "build (xz, default)" "$xz_wall" "$(rss xz)" "$(size out-xz/alloy-1.17.1-amd64.raw)"
row "build --compression zstd (level 15)" "$zstd_wall" "$(rss zstd)" "$(size out-zstd/alloy-1.17.1-amd64.raw)"

# Reads of the image after writing it: every read(2) and pread64(2) on the build's temporary
# image file (strace -y names the file behind each descriptor), against the image's size.
strace -f -y -e trace=read,pread64 -o reads.trace bash -c 'ours xz' >/dev/null 2>&1
python3 - "$(size out-xz/alloy-1.17.1-amd64.raw)" <<'PY'
import re, sys
image_size = int(sys.argv[1])
image = re.compile(r'^(\d+) +(?:read|pread64)\(\d+<[^>]*/\.alloy-1\.17\.1-amd64\.raw\.[^>/]*\.tmp>')
result = re.compile(r'= (\d+)$')
read = 0
waiting = set()  # threads whose read of the image strace split around another thread's call
for line in open("reads.trace"):
    line = line.rstrip()
    pid = line.split(" ", 1)[0]
    if image.match(line):
        if line.endswith("<unfinished ...>"):
            waiting.add(pid)
            continue
    elif not (pid in waiting and "resumed>" in line):
        continue
    waiting.discard(pid)
    m = result.search(line)
    if m:
        read += int(m.group(1))
print()
print(f"image read back after writing (checked, hashed, signed in that read): {read} bytes = "
      f"{read / image_size:.3f}x its {image_size} bytes")
PY
