# Sourced by the build benchmarks (image_build.sh, ddi_build.sh, unaligned_define.sh):
# `make_input_zip SIZE` writes alloy-linux-amd64.zip, holding the binary alloy-linux-amd64,
# in the current directory, and sets `input` to a description of that binary. The binary is
# BENCH_BINARY if set, else the first SIZE bytes of the Rust toolchain's librustc_driver
# (real x86-64 machine code, compressing much like a Go binary), else SIZE bytes of
# generated data.

# size_text BYTES: "N MiB" when BYTES is whole MiB, else "N bytes".
size_text() {
    if (($1 % 1048576 == 0)); then echo "$(($1 / 1048576)) MiB"; else echo "$1 bytes"; fi
}

make_input_zip() {
    local size=$1 driver
    driver=$(ls "$(rustc --print sysroot)"/lib/librustc_driver-*.so 2>/dev/null | head -n 1 || true)
    if [ -n "${BENCH_BINARY:-}" ]; then
        cp "$BENCH_BINARY" alloy-linux-amd64
        input="$BENCH_BINARY"
    elif [ -n "$driver" ] && [ "$(stat -c %s "$driver")" -ge "$size" ]; then
        head -c "$size" "$driver" > alloy-linux-amd64
        input="first $(size_text "$size") of $(basename "$driver")"
    else
        python3 -c "
import random, sys
random.seed(1)
out = bytearray(b'\x7fELF\x02\x01\x01' + bytes(9) + b'\x02\x00\x3e\x00')
while len(out) < $size:
    out += random.randbytes(4096) if random.random() < 0.5 else bytes([random.randrange(8)]) * 4096
sys.stdout.buffer.write(out[:$size])" > alloy-linux-amd64
        input="generated data, $(size_text "$size")"
    fi
    python3 -c "
import zipfile
with zipfile.ZipFile('alloy-linux-amd64.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    z.write('alloy-linux-amd64')"
    rm alloy-linux-amd64
}
