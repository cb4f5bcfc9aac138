#!/usr/bin/env bash
# Benchmark: does the TUKLIB_FAST_UNALIGNED_ACCESS define in .cargo/config.toml change the
# images? Builds the project twice into two target directories, once as configured and once
# with CFLAGS_x86_64_unknown_linux_gnu set but empty, so that the bundled liblzma (and every
# other C library built here) is compiled without the define, then builds the same image with
# each binary at the xz levels whose settings differ (0 and 3: hash-chain match finders in
# fast mode; 4 and 6: the binary tree in normal mode, nice length 16 and 64; 7-9 only differ
# from 6 in the dictionary, which is the block size here) and with zstd and gzip. Prints each
# image's sha256 from both binaries, whether they are equal, and how long each build took.
# Exits 1 if any pair differs.
#
#   benches/unaligned_define.sh
#   PROFILE=release SIZE=133169152 benches/unaligned_define.sh
#
# cargo's [env] does not override a variable the environment already has (unless the entry
# says `force = true`), so an empty CFLAGS_x86_64_unknown_linux_gnu wins over the configured
# one; the script checks, in what liblzma-sys's build script printed, that the first build
# saw the define and the second did not.
#
# PROFILE is the cargo profile (dev by default: its dependencies, liblzma included, are
# built at opt-level 3 as in release; see Cargo.toml). OFF_TARGET is the second target directory
# (default target/unaligned-define-off; a full build, a few GB). The input is BENCH_BINARY if
# set, else the first SIZE bytes (64 MiB by default) of the Rust toolchain's
# librustc_driver (real x86-64 machine code), else generated data. Needs GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/input_zip.sh
PROFILE=${PROFILE:-dev}
SIZE=${SIZE:-67108864}
OFF_TARGET=${OFF_TARGET:-$PWD/target/unaligned-define-off}
ON_TARGET=${CARGO_TARGET_DIR:-$PWD/target}
DEFINE=-DTUKLIB_FAST_UNALIGNED_ACCESS=1

[ -x /usr/bin/time ] || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time
}
case $PROFILE in
    dev) profile_dir=debug ;;
    *) profile_dir=$PROFILE ;;
esac

grep -q -- "CFLAGS_x86_64_unknown_linux_gnu = \"$DEFINE\"" .cargo/config.toml || {
    echo ".cargo/config.toml does not set CFLAGS_x86_64_unknown_linux_gnu = \"$DEFINE\"" >&2
    exit 2
}

# cargo_build TARGET_DIR ENV...: builds the binary into TARGET_DIR with ENV (env(1) syntax)
# and prints the wall time in seconds.
cargo_build() {
    local target=$1
    shift
    /usr/bin/time -f %e -o "$target.build-time" \
        env "$@" CARGO_TARGET_DIR="$target" \
        cargo build --locked --quiet --profile "$PROFILE" --bin alloy-sysext-automation >&2
    cat "$target.build-time"
    rm "$target.build-time"
}

# cflags_seen TARGET_DIR: what liblzma-sys's newest build script run read from
# CFLAGS_x86_64_unknown_linux_gnu, as cc printed it (`Some(...)` or `None`).
cflags_seen() {
    local output
    output=$(ls -t "$1/$profile_dir"/build/liblzma-sys-*/output | head -n 1)
    grep -q '^cargo:rustc-link-lib=static=lzma$' "$output" || {
        echo "$output: liblzma-sys did not build its bundled xz" >&2
        exit 2
    }
    sed -n 's/^CFLAGS_x86_64_unknown_linux_gnu = //p' "$output"
}

echo "building as configured into $ON_TARGET ..." >&2
on_build=$(cargo_build "$ON_TARGET" -u CFLAGS_x86_64_unknown_linux_gnu)
echo "building without the define into $OFF_TARGET ..." >&2
off_build=$(cargo_build "$OFF_TARGET" CFLAGS_x86_64_unknown_linux_gnu=)
on_flags=$(cflags_seen "$ON_TARGET")
off_flags=$(cflags_seen "$OFF_TARGET")
if [ "$on_flags" != "Some($DEFINE)" ] || [ "$off_flags" != "Some()" ]; then
    echo "liblzma-sys was not built as intended: as configured it saw $on_flags," \
        "without the define $off_flags" >&2
    exit 2
fi
on_tool=$ON_TARGET/$profile_dir/alloy-sysext-automation
off_tool=$OFF_TARGET/$profile_dir/alloy-sysext-automation

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
make_input_zip "$SIZE"

# image TOOL NAME COMPRESSION LEVEL: builds the image into out-NAME; prints its wall time.
image() {
    rm -rf "out-$2"
    /usr/bin/time -f %e -o time.out "$1" build --version 1.17.1 --zip alloy-linux-amd64.zip \
        --out "out-$2" --no-sign --no-compat-name --source-date-epoch 1700000000 \
        --compression "$3" --compression-level "$4" >/dev/null
    cat time.out
}

echo
echo "input: $input; profile $PROFILE; $(nproc) cores"
echo "cargo build (s): with the define $on_build, without it $off_build"
echo
echo "| image | sha256 with the define | sha256 without it | same bytes | build with (s) | build without (s) |"
echo "|---|---|---|---|---|---|"
differ=0
for setting in "xz 0" "xz 3" "xz 4" "xz 6" "zstd 15" "gzip 9"; do
    read -r compression level <<<"$setting"
    on_time=$(image "$on_tool" on "$compression" "$level")
    off_time=$(image "$off_tool" off "$compression" "$level")
    on_sha=$(sha256sum out-on/alloy-1.17.1-amd64.raw | cut -d' ' -f1)
    off_sha=$(sha256sum out-off/alloy-1.17.1-amd64.raw | cut -d' ' -f1)
    same=yes
    [ "$on_sha" = "$off_sha" ] || { same=NO; differ=1; }
    echo "| $compression $level | $on_sha | $off_sha | $same | $on_time | $off_time |"
done
echo
if ((differ)); then
    echo "the define CHANGES the bytes of some images"
    exit 1
fi
echo "the define leaves every image's bytes unchanged"
