//! The image itself, read by the real tools.

use std::fs;
use std::path::Path;
use std::process::Command;

use alloy_sysext_automation::arch::Arch;
use alloy_sysext_automation::provenance::read_record;
use sha2::{Digest, Sha256};

use crate::common::*;

const VERSION: &str = "1.17.1";

fn build(zip: &Path, out: &Path, arch: Arch, extra: &[&str]) {
    let mut args = vec!["--arch", arch.upstream_name()];
    args.extend_from_slice(extra);
    build_signed(VERSION, zip, out, &args);
}

/// `unsquashfs -lln` as (permissions, owner, path) triples, and the dates it shows.
fn listing(image: &Path) -> (Vec<(String, String, String)>, Vec<String>) {
    let output = run_ok(
        Command::new("unsquashfs")
            .arg("-lln")
            .arg(image)
            .env("TZ", "UTC"),
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut entries = Vec::new();
    let mut dates = Vec::new();
    for line in text.lines().filter(|l| l.contains("squashfs-root")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // perms owner size date time path
        assert_eq!(fields.len(), 6, "unexpected unsquashfs line {line:?}");
        entries.push((
            fields[0].to_owned(),
            fields[1].to_owned(),
            fields[5].to_owned(),
        ));
        if fields[5] != "squashfs-root" {
            dates.push(format!("{} {}", fields[3], fields[4]));
        }
    }
    (entries, dates)
}

fn expected_listing() -> Vec<(String, String, String)> {
    [
        ("drwxr-xr-x", ""),
        ("drwxr-xr-x", "/usr"),
        ("drwxr-xr-x", "/usr/lib"),
        ("drwxr-xr-x", "/usr/lib/extension-release.d"),
        (
            "-rw-r--r--",
            "/usr/lib/extension-release.d/extension-release.alloy",
        ),
        ("drwxr-xr-x", "/usr/lib/systemd"),
        ("drwxr-xr-x", "/usr/lib/systemd/system"),
        ("-rw-r--r--", "/usr/lib/systemd/system/alloy.service"),
        ("drwxr-xr-x", "/usr/local"),
        ("drwxr-xr-x", "/usr/local/bin"),
        ("-rwxr-xr-x", "/usr/local/bin/alloy"),
    ]
    .into_iter()
    .map(|(perms, path)| {
        (
            perms.to_owned(),
            "0/0".to_owned(),
            format!("squashfs-root{path}"),
        )
    })
    .collect()
}

/// Loop-mounts `image` read-only at `mount_point` (created), runs `look` on it, unmounts.
fn with_mounted<T>(image: &Path, mount_point: &Path, look: impl FnOnce(&Path) -> T) -> T {
    fs::create_dir(mount_point).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(image)
            .arg(mount_point),
    );
    let seen = look(mount_point);
    run_ok(Command::new("umount").arg(mount_point));
    seen
}

/// A file seen through the mount: relative path, mode, uid, gid, contents (None for dirs).
type MountedEntry = (String, u32, u32, u32, Option<Vec<u8>>);

/// Every file under `root`, sorted by path.
fn walk(root: &Path) -> Vec<MountedEntry> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let contents = if meta.is_dir() {
                stack.push(path.clone());
                None
            } else {
                Some(fs::read(&path).unwrap())
            };
            found.push((
                relative,
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                contents,
            ));
        }
    }
    found.sort();
    found
}

#[test]
fn amd64_image_has_the_sysext_layout_for_unsquashfs() {
    let work = tempfile::tempdir().unwrap();
    let (zip, binary) = upstream_zip(work.path(), Arch::Amd64, 3 << 20);
    let out = work.path().join("out");
    build(&zip, &out, Arch::Amd64, &[]);

    assert_eq!(
        dir_listing(&out),
        [
            "SHA256SUMS",
            "SHA256SUMS.gpg",
            "alloy-1.17.1-amd64.raw",
            "alloy-1.17.1-amd64.raw.asc",
            "alloy-1.17.1-amd64.raw.intoto.json",
            "alloy-1.17.1-amd64.raw.intoto.json.asc",
            "alloy-1.17.1-amd64.raw.sha256",
            "alloy-1.17.1.raw",
            "alloy-1.17.1.raw.asc",
            "alloy-1.17.1.raw.sha256",
        ]
    );
    let image = out.join("alloy-1.17.1-amd64.raw");
    let stat = run_ok(Command::new("unsquashfs").arg("-s").arg(&image));
    let stat = String::from_utf8_lossy(&stat.stdout);
    assert!(stat.contains("Compression xz"), "{stat}");
    assert!(stat.contains("Block size 131072"), "{stat}");
    let (entries, dates) = listing(&image);
    assert_eq!(entries, expected_listing());
    assert!(dates.iter().all(|d| d == "1970-01-01 00:00"), "{dates:?}");

    let extracted = work.path().join("extracted");
    unsquashfs(&image, &extracted);
    assert_eq!(
        fs::read(extracted.join("usr/local/bin/alloy")).unwrap(),
        binary
    );
    assert_eq!(
        fs::read_to_string(extracted.join("usr/lib/extension-release.d/extension-release.alloy"))
            .unwrap(),
        "ID=_any\nARCHITECTURE=x86-64\n"
    );
    let unit = fs::read_to_string(extracted.join("usr/lib/systemd/system/alloy.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/alloy run /var/mnt/storage/alloy/config.alloy\n")
    );

    // The compatibility copy is the same image, and the .sha256 files are sha256sum's format.
    assert_eq!(
        fs::read(&image).unwrap(),
        fs::read(out.join("alloy-1.17.1.raw")).unwrap()
    );
    let check = run_ok(Command::new("sha256sum").current_dir(&out).args([
        "--check",
        "alloy-1.17.1-amd64.raw.sha256",
        "alloy-1.17.1.raw.sha256",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        "alloy-1.17.1-amd64.raw: OK\nalloy-1.17.1.raw: OK\n"
    );
    let manifest = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let sha = fs::read_to_string(out.join("alloy-1.17.1-amd64.raw.sha256")).unwrap();
    assert_eq!(
        manifest, sha,
        "SHA256SUMS lists exactly the arch-named image"
    );

    // The provenance record names the image, the zip and the binary by their sha256, the
    // settings, and this tool.
    let record =
        read_record(&fs::read(out.join("alloy-1.17.1-amd64.raw.intoto.json")).unwrap()).unwrap();
    let image_sha256 = hex::encode(Sha256::digest(fs::read(&image).unwrap()));
    let subject = record.image().unwrap();
    assert_eq!(
        (subject.name.as_str(), subject.digest.sha256.as_str()),
        ("alloy-1.17.1-amd64.raw", image_sha256.as_str())
    );
    let upstream = record.upstream_asset().unwrap();
    assert_eq!(
        (
            upstream.repository.as_str(),
            upstream.tag.as_str(),
            upstream.asset.as_str()
        ),
        ("grafana/alloy", "v1.17.1", "alloy-linux-amd64.zip")
    );
    assert_eq!(
        upstream.sha256,
        hex::encode(Sha256::digest(fs::read(&zip).unwrap()))
    );
    assert!(upstream.checked_against.is_empty());
    assert_eq!(
        record.binary_sha256(),
        Some(hex::encode(Sha256::digest(&binary)).as_str())
    );
    let settings = &record.predicate.build_definition.external_parameters.image;
    assert_eq!(
        (
            settings.compression.as_str(),
            settings.compression_level,
            settings.block_size,
            settings.source_date_epoch
        ),
        ("xz", 6, 131072, 0)
    );
    assert_eq!(
        record.builder_version(),
        alloy_sysext_automation::build_info::VERSION_LINE
    );
}

#[test]
fn source_date_epoch_sets_every_entry_mtime() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 1 << 20);
    let out = work.path().join("out");
    run_ok(
        cli()
            .args(["build", "--version", VERSION, "--no-sign", "--zip"])
            .arg(&zip)
            .arg("--out")
            .arg(&out)
            .env("SOURCE_DATE_EPOCH", "1700000000"),
    );
    let (entries, dates) = listing(&out.join("alloy-1.17.1-amd64.raw"));
    assert_eq!(entries, expected_listing());
    assert_eq!(dates.len(), 10);
    assert!(dates.iter().all(|d| d == "2023-11-14 22:13"), "{dates:?}");
    // The record says so; unsigned, it has no signature.
    let record =
        read_record(&fs::read(out.join("alloy-1.17.1-amd64.raw.intoto.json")).unwrap()).unwrap();
    let settings = &record.predicate.build_definition.external_parameters.image;
    assert_eq!(settings.source_date_epoch, 1_700_000_000);
    assert!(!out.join("alloy-1.17.1-amd64.raw.intoto.json.asc").exists());
}

#[test]
fn systemd_dissect_sees_an_extension_for_the_system() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 1 << 20);
    let out = work.path().join("out");
    build(&zip, &out, Arch::Amd64, &[]);

    // systemd takes the extension name from the file name: check it as hosts see it.
    let host_dir = work.path().join("extensions");
    fs::create_dir(&host_dir).unwrap();
    fs::copy(
        out.join("alloy-1.17.1-amd64.raw"),
        host_dir.join("alloy.raw"),
    )
    .unwrap();
    let output = run_ok(
        Command::new("systemd-dissect")
            .arg("--no-pager")
            .arg(host_dir.join("alloy.raw"))
            .env("SYSTEMD_COLORS", "0"),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("ID=_any"), "{text}");
    assert!(text.contains("ARCHITECTURE=x86-64"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim().trim_start_matches("Use As:").trim()
                == "\u{2713} extension for system"),
        "systemd-dissect does not offer the image as a system extension:\n{text}"
    );
}

#[test]
fn the_kernel_mounts_the_image_with_the_same_files() {
    let work = tempfile::tempdir().unwrap();
    let (zip, binary) = upstream_zip(work.path(), Arch::Amd64, 2 << 20);
    let out = work.path().join("out");
    build(&zip, &out, Arch::Amd64, &[]);
    let image = out.join("alloy-1.17.1-amd64.raw");

    let found = with_mounted(&image, &work.path().join("mnt"), walk);

    let unit = alloy_sysext_automation::sysext::layout::ALLOY_SERVICE_UNIT
        .as_bytes()
        .to_vec();
    let expected: Vec<MountedEntry> = vec![
        ("usr".into(), 0o755, 0, 0, None),
        ("usr/lib".into(), 0o755, 0, 0, None),
        ("usr/lib/extension-release.d".into(), 0o755, 0, 0, None),
        (
            "usr/lib/extension-release.d/extension-release.alloy".into(),
            0o644,
            0,
            0,
            Some(b"ID=_any\nARCHITECTURE=x86-64\n".to_vec()),
        ),
        ("usr/lib/systemd".into(), 0o755, 0, 0, None),
        ("usr/lib/systemd/system".into(), 0o755, 0, 0, None),
        (
            "usr/lib/systemd/system/alloy.service".into(),
            0o644,
            0,
            0,
            Some(unit),
        ),
        ("usr/local".into(), 0o755, 0, 0, None),
        ("usr/local/bin".into(), 0o755, 0, 0, None),
        ("usr/local/bin/alloy".into(), 0o755, 0, 0, Some(binary)),
    ];
    assert_eq!(found.len(), expected.len());
    for (found, expected) in found.iter().zip(&expected) {
        assert_eq!(found.0, expected.0);
        assert_eq!(
            (found.1, found.2, found.3),
            (expected.1, expected.2, expected.3),
            "{}",
            found.0
        );
        assert!(found.4 == expected.4, "contents of {} differ", found.0);
    }
}

#[test]
fn builds_are_byte_identical_across_directories_and_times() {
    for arch in [Arch::Amd64, Arch::Arm64] {
        let work = tempfile::tempdir().unwrap();
        let (zip, _) = upstream_zip(work.path(), arch, 2 << 20);
        let first = work.path().join("first");
        let second = work.path().join("elsewhere/second");
        build(&zip, &first, arch, &[]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        build(&zip, &second, arch, &[]);
        let name = format!("alloy-1.17.1-{arch}.raw");
        let a = fs::read(first.join(&name)).unwrap();
        let b = fs::read(second.join(&name)).unwrap();
        assert!(a == b, "{name} differs between two builds");
        assert_eq!(
            fs::read(first.join("SHA256SUMS")).unwrap(),
            fs::read(second.join("SHA256SUMS")).unwrap()
        );
    }
}

#[test]
fn arm64_image_declares_arm64() {
    let work = tempfile::tempdir().unwrap();
    let (zip, binary) = upstream_zip(work.path(), Arch::Arm64, 1 << 20);
    let out = work.path().join("out");
    // The compatibility name has no architecture: only amd64 images get it.
    build(&zip, &out, Arch::Arm64, &[]);
    assert_eq!(
        dir_listing(&out),
        [
            "SHA256SUMS",
            "SHA256SUMS.gpg",
            "alloy-1.17.1-arm64.raw",
            "alloy-1.17.1-arm64.raw.asc",
            "alloy-1.17.1-arm64.raw.intoto.json",
            "alloy-1.17.1-arm64.raw.intoto.json.asc",
            "alloy-1.17.1-arm64.raw.sha256",
        ]
    );
    let extracted = work.path().join("x");
    unsquashfs(&out.join("alloy-1.17.1-arm64.raw"), &extracted);
    assert_eq!(
        fs::read_to_string(extracted.join("usr/lib/extension-release.d/extension-release.alloy"))
            .unwrap(),
        "ID=_any\nARCHITECTURE=arm64\n"
    );
    assert_eq!(
        fs::read(extracted.join("usr/local/bin/alloy")).unwrap(),
        binary
    );
}

#[test]
fn zstd_and_gzip_images_are_readable_by_unsquashfs() {
    for (compression, name) in [("zstd", "zstd"), ("gzip", "gzip")] {
        let work = tempfile::tempdir().unwrap();
        let (zip, binary) = upstream_zip(work.path(), Arch::Amd64, 1 << 20);
        let out = work.path().join("out");
        build(
            &zip,
            &out,
            Arch::Amd64,
            &["--compression", compression, "--block-size", "64K"],
        );
        let image = out.join("alloy-1.17.1-amd64.raw");
        let stat = run_ok(Command::new("unsquashfs").arg("-s").arg(&image));
        let stat = String::from_utf8_lossy(&stat.stdout);
        assert!(stat.contains(&format!("Compression {name}")), "{stat}");
        assert!(stat.contains("Block size 65536"), "{stat}");
        let extracted = work.path().join("x");
        unsquashfs(&image, &extracted);
        assert_eq!(
            fs::read(extracted.join("usr/local/bin/alloy")).unwrap(),
            binary
        );
    }
}

#[test]
fn thread_count_does_not_change_the_image() {
    let work = tempfile::tempdir().unwrap();
    let (zip, binary) = upstream_zip(work.path(), Arch::Amd64, 3 << 20);
    let mut images = Vec::new();
    for threads in ["1", "2", "5"] {
        let out = work.path().join(format!("threads-{threads}"));
        build(
            &zip,
            &out,
            Arch::Amd64,
            &["--threads", threads, "--no-compat-name"],
        );
        images.push(fs::read(out.join("alloy-1.17.1-amd64.raw")).unwrap());
    }
    assert!(
        images.iter().all(|image| *image == images[0]),
        "the images differ"
    );

    // What several threads wrote reads back, with unsquashfs and with the kernel.
    let image = work.path().join("threads-5/alloy-1.17.1-amd64.raw");
    let extracted = work.path().join("extracted");
    unsquashfs(&image, &extracted);
    assert!(fs::read(extracted.join("usr/local/bin/alloy")).unwrap() == binary);
    let mounted = with_mounted(&image, &work.path().join("mnt"), |root| {
        fs::read(root.join("usr/local/bin/alloy"))
    });
    assert!(mounted.unwrap() == binary);
}
