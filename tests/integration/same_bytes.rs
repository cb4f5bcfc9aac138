//! The same zip and settings give the same image bytes on every machine.
//!
//! Each test builds an image with `build` from a binary generated here (the same bytes
//! everywhere), with every setting that changes bytes given explicitly, and compares its
//! sha256 with a value pinned below, observed when the value was last changed. Every machine
//! that runs the suite checks the same values, so a difference means the output depends on
//! the machine: its CPU, core count, allocator, file system or C library. Each image is built
//! on one thread and on several, which must give the same bytes too.
//!
//! A change to the tool that changes the bytes (the unit file, the layout, a compressor's
//! version in Cargo.lock) also fails here: the pinned values then change with it, and that
//! version's release notes say that it builds other bytes than the versions before.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::sysext::squashfs::StoredBlock;
use alloy_sysext_automation::sysext::{Compression, ImageLayout, SquashfsOptions, write_squashfs};
use sha2::{Digest, Sha256};

use crate::common::*;

const VERSION: &str = "1.17.1";
const SOURCE_DATE_EPOCH: &str = "1700000000";
/// More threads than the machines the suite runs on have cores, so the blocks really are
/// compressed out of order.
const MANY_THREADS: &str = "4";

/// sha256 of [`binary`]'s bytes. When only this fails, the test's input changed, not the
/// image builder.
const BINARY_SHA256: &str = "5b2ff2e166a84ae3cd69306ee519ec93be8cdcb0f487534656644c602622da15";

const XZ_IMAGE_SHA256: &str = "bdef017134d52a99b7989a6a55620ef3d87a7638f37b887509d2fd14c1e932eb";
const ZSTD_IMAGE_SHA256: &str = "13a448747dd0b14802a0d2214e31340e1a71aeeedb52fcdf9890a5556072cdb8";
const GZIP_IMAGE_SHA256: &str = "036045a65d137275989eca5a394bbcf9094ecd7165047c7c4dd08a1256feda31";

/// 3.25 MiB and a bit that reach every way a block of the binary is stored: an ELF header
/// and blocks that compress (the seeded stand-in binary), an all-zero block (a hole), a block
/// of noise that does not compress (stored as it is), and a short last block. (The unit and
/// extension-release files share a fragment in every image.)
fn binary() -> Vec<u8> {
    const BLOCK: usize = 128 << 10;
    let mut data = fake_binary(Arch::Amd64, 16 * BLOCK, 15);
    data.extend(std::iter::repeat_n(0u8, BLOCK));
    let mut state = 0x853c_49e6_748f_ea9bu64;
    for _ in 0..BLOCK / 8 {
        // xorshift64*: every byte varies, so no compressor finds anything to save.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.extend(fake_binary(Arch::Amd64, 8 * BLOCK + 5_000, 16));
    data
}

/// The upstream-like zip holding [`binary`], deflated, with fixed times and permissions, so
/// the zip too is the same on every machine.
fn zip(dir: &Path) -> PathBuf {
    let binary = binary();
    assert_eq!(
        hex::encode(Sha256::digest(&binary)),
        BINARY_SHA256,
        "the generated binary changed; the images below are built from it"
    );
    let path = dir.join("alloy-linux-amd64.zip");
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::from_date_and_time(2024, 1, 2, 3, 4, 5).unwrap())
        .unix_permissions(0o755);
    let mut writer = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    writer.start_file("alloy-linux-amd64", options).unwrap();
    writer.write_all(&binary).unwrap();
    writer.finish().unwrap();
    path
}

/// Builds the unsigned image from `zip` on `threads` threads; returns its sha256.
fn image_sha256(zip: &Path, out: &Path, compression: &str, level: &str, threads: &str) -> String {
    run_ok(
        cli()
            .args(["build", "--version", VERSION, "--arch", "amd64", "--zip"])
            .arg(zip)
            .arg("--out")
            .arg(out)
            .args(["--compression", compression, "--compression-level", level])
            .args([
                "--block-size",
                "128K",
                "--source-date-epoch",
                SOURCE_DATE_EPOCH,
            ])
            .args(["--threads", threads, "--no-compat-name", "--no-sign"]),
    );
    let image = fs::read(out.join(format!("alloy-{VERSION}-amd64.raw"))).unwrap();
    hex::encode(Sha256::digest(image))
}

fn assert_pinned(compression: &str, level: &str, pinned: &str) {
    let work = tempfile::tempdir().unwrap();
    let zip = zip(work.path());
    let one = image_sha256(&zip, &work.path().join("one"), compression, level, "1");
    let many = image_sha256(
        &zip,
        &work.path().join("many"),
        compression,
        level,
        MANY_THREADS,
    );
    assert_eq!(
        one, many,
        "the {compression} image built on 1 thread differs from the one built on \
         {MANY_THREADS}: the output depends on the number of threads"
    );
    assert_eq!(
        one, pinned,
        "the {compression} image has other bytes on this machine than where its sha256 was \
         pinned: the output depends on the machine it is built on (unless this version of \
         the tool changed the bytes on purpose; then the pinned value changes with it and \
         its release notes say so)"
    );
}

#[test]
fn xz_image_has_the_pinned_bytes_on_one_thread_and_on_several() {
    assert_pinned("xz", "6", XZ_IMAGE_SHA256);
}

#[test]
fn zstd_image_has_the_pinned_bytes_on_one_thread_and_on_several() {
    assert_pinned("zstd", "15", ZSTD_IMAGE_SHA256);
}

#[test]
fn gzip_image_has_the_pinned_bytes_on_one_thread_and_on_several() {
    assert_pinned("gzip", "9", GZIP_IMAGE_SHA256);
}

#[test]
fn the_input_reaches_every_way_a_block_is_stored() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("alloy-linux-amd64");
    fs::write(&path, binary()).unwrap();
    let layout = ImageLayout::sysext("alloy", Arch::Amd64, path);
    let options = SquashfsOptions {
        compression: Compression::Zstd { level: 1 },
        ..SquashfsOptions::default()
    };
    let image = work.path().join("image.raw");
    let written = write_squashfs(&layout, &options, fs::File::create(&image).unwrap()).unwrap();
    let kinds: String = written
        .binary_blocks
        .expect("the binary is larger than a block")
        .blocks
        .iter()
        .map(|block| match block {
            StoredBlock::Hole => '0',
            StoredBlock::Bytes {
                compressed: true, ..
            } => 'c',
            StoredBlock::Bytes {
                compressed: false, ..
            } => '=',
        })
        .collect();
    // Blocks that compress, the hole, the noise stored as it is, and more that compress, the
    // last of them short.
    assert_eq!(kinds, "cccccccccccccccc0=ccccccccc");
}
