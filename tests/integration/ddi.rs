//! The signed dm-verity image (`build --format ddi`), read by the tools hosts and operators
//! use: `systemd-dissect` (a signed system extension), `veritysetup` (the hash tree),
//! `openssl cms` (the root hash's signature), and compared with what `systemd-repart` 257
//! makes from the same squashfs and key in the trixie host root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use alloy_sysext_automation::arch::Arch;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::host::Host;

const VERSION: &str = "1.17.1";

/// A key and certificate made by `keygen --x509`.
pub(crate) struct VerityKeys {
    dir: PathBuf,
}

impl VerityKeys {
    pub(crate) fn key(&self) -> PathBuf {
        self.dir.join("verity.key")
    }
    pub(crate) fn certificate(&self) -> PathBuf {
        self.dir.join("verity.crt")
    }
}

fn keygen_x509(algorithm: &str) -> VerityKeys {
    let dir = tempfile::Builder::new()
        .prefix(&format!("verity-keys-{algorithm}-"))
        .tempdir()
        .unwrap()
        .keep();
    run_ok(
        cli()
            .args(["keygen", "--x509", "--algorithm", algorithm, "--out"])
            .arg(&dir),
    );
    VerityKeys { dir }
}

pub(crate) fn rsa_verity_keys() -> &'static VerityKeys {
    static KEYS: OnceLock<VerityKeys> = OnceLock::new();
    KEYS.get_or_init(|| keygen_x509("rsa-4096"))
}

pub(crate) fn ecdsa_verity_keys() -> &'static VerityKeys {
    static KEYS: OnceLock<VerityKeys> = OnceLock::new();
    KEYS.get_or_init(|| keygen_x509("ecdsa-p256"))
}

/// Builds `zip` for `arch` into `out` with `--format squashfs,ddi`, signed by `keys`, with
/// `extra` arguments; returns what it printed.
fn build_ddi(zip: &Path, out: &Path, arch: Arch, keys: &VerityKeys, extra: &[&str]) -> String {
    let (key, certificate) = (keys.key(), keys.certificate());
    let mut args = vec![
        "--arch",
        arch.upstream_name(),
        "--format",
        "squashfs,ddi",
        "--verity-key",
        key.to_str().unwrap(),
        "--verity-certificate",
        certificate.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    build_signed(VERSION, zip, out, &args)
}

/// An upstream-like zip for `arch` whose binary is `size` bytes of noise after its ELF
/// header.
fn incompressible_zip(dir: &Path, arch: Arch, size: usize) -> PathBuf {
    let mut binary = fake_binary(arch, 64, 1);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while binary.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        binary.extend_from_slice(&state.to_le_bytes());
    }
    let path = dir.join(format!("alloy-linux-{arch}-noise.zip"));
    write_zip(&path, &[(&format!("alloy-linux-{arch}"), &binary)]);
    path
}

/// `sfdisk --json` of `image`: its partitions.
pub(crate) fn partitions(image: &Path) -> Vec<Value> {
    let output = run_ok(Command::new("sfdisk").arg("--json").arg(image));
    let table: Value = serde_json::from_slice(&output.stdout).unwrap();
    table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone()
}

/// The bytes of partition `index` of `image`, as `sfdisk --json` places it.
pub(crate) fn partition_bytes(image: &Path, index: usize) -> Vec<u8> {
    let partition = &partitions(image)[index];
    let start = partition["start"].as_u64().unwrap() as usize * 512;
    let size = partition["size"].as_u64().unwrap() as usize * 512;
    fs::read(image).unwrap()[start..start + size].to_vec()
}

/// The signature partition's JSON object (up to the first NUL).
pub(crate) fn signature_json(image: &Path) -> (String, Value) {
    let bytes = partition_bytes(image, 2);
    let end = bytes.iter().position(|&b| b == 0).unwrap();
    assert!(bytes[end..].iter().all(|&b| b == 0));
    let text = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

/// `8-4-4-4-12` of 32 hex digits.
pub(crate) fn as_uuid(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn certificate_der_sha256(certificate: &Path) -> String {
    let der = run_ok(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(certificate),
    )
    .stdout;
    hex::encode(Sha256::digest(der))
}

#[test]
fn the_ddi_is_a_signed_system_extension_that_veritysetup_and_openssl_accept() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Amd64, 1 << 20);
    let out = work.path().join("out");
    let keys = rsa_verity_keys();
    build_ddi(&zip, &out, Arch::Amd64, keys, &[]);
    assert_eq!(
        dir_listing(&out),
        [
            "SHA256SUMS",
            "SHA256SUMS.gpg",
            "alloy-1.17.1-amd64.ddi.raw",
            "alloy-1.17.1-amd64.ddi.raw.asc",
            "alloy-1.17.1-amd64.ddi.raw.intoto.json",
            "alloy-1.17.1-amd64.ddi.raw.intoto.json.asc",
            "alloy-1.17.1-amd64.ddi.raw.sha256",
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
    let ddi = out.join("alloy-1.17.1-amd64.ddi.raw");
    let ddi_bytes = fs::read(&ddi).unwrap();
    assert_eq!(
        fs::read_to_string(out.join("alloy-1.17.1-amd64.ddi.raw.sha256")).unwrap(),
        format!(
            "{}  alloy-1.17.1-amd64.ddi.raw\n",
            hex::encode(Sha256::digest(&ddi_bytes))
        )
    );
    // Listed right after the squashfs image.
    let squashfs_sha256 = hex::encode(Sha256::digest(
        fs::read(out.join("alloy-1.17.1-amd64.raw")).unwrap(),
    ));
    assert_eq!(
        fs::read_to_string(out.join("SHA256SUMS")).unwrap(),
        format!(
            "{squashfs_sha256}  alloy-1.17.1-amd64.raw\n{}  alloy-1.17.1-amd64.ddi.raw\n",
            hex::encode(Sha256::digest(&ddi_bytes))
        )
    );
    let gpg = Gpg::new();
    let keyring = gpg.keyring(&ed25519_keys().public());
    assert!(gpg.sysupdate_verify(&keyring, &out.join("alloy-1.17.1-amd64.ddi.raw.asc"), &ddi));
    assert!(gpg.sysupdate_verify(
        &keyring,
        &out.join("SHA256SUMS.gpg"),
        &out.join("SHA256SUMS")
    ));
    // The data partition is the squashfs image, zero-filled to a whole block.
    let squashfs = fs::read(out.join("alloy-1.17.1-amd64.raw")).unwrap();
    let data = partition_bytes(&ddi, 0);
    assert_eq!(data.len(), squashfs.len().next_multiple_of(4096));
    assert!(data[..squashfs.len()] == squashfs[..]);

    let (_, signature) = signature_json(&ddi);
    let root_hash = signature["rootHash"].as_str().unwrap().to_owned();
    assert_eq!(
        signature["certificateFingerprint"],
        certificate_der_sha256(&keys.certificate())
    );

    // systemd-dissect takes the extension name from the file name, as hosts do.
    let host_dir = work.path().join("extensions");
    fs::create_dir(&host_dir).unwrap();
    let image = host_dir.join("alloy.raw");
    fs::write(&image, &ddi_bytes).unwrap();
    let output = run_ok(
        Command::new("systemd-dissect")
            .args(["--json=short"])
            .arg(&image)
            .env("SYSTEMD_COLORS", "0"),
    );
    let dissected: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(dissected["name"], "alloy.raw");
    assert_eq!(dissected["size"], ddi_bytes.len());
    assert_eq!(
        dissected["extensionRelease"],
        serde_json::json!(["ID=_any", "ARCHITECTURE=x86-64"])
    );
    assert_eq!(dissected["useSystemExtension"], true);
    let mounts: Vec<(String, String, String, String, Value)> = dissected["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["designator"].as_str().unwrap().to_owned(),
                m["partition_label"].as_str().unwrap().to_owned(),
                m["partition_uuid"].as_str().unwrap().to_owned(),
                m["fstype"].as_str().unwrap().to_owned(),
                m["verity"].clone(),
            )
        })
        .collect();
    let signature_uuid = partitions(&ddi)[2]["uuid"].as_str().unwrap().to_lowercase();
    assert_eq!(
        mounts,
        [
            (
                "root".to_owned(),
                "root-x86-64".to_owned(),
                as_uuid(&root_hash[..32]),
                "squashfs".to_owned(),
                Value::from("signed")
            ),
            (
                "root-verity".to_owned(),
                "root-x86-64-verity".to_owned(),
                as_uuid(&root_hash[32..]),
                "DM_verity_hash".to_owned(),
                Value::Null
            ),
            (
                "root-verity-sig".to_owned(),
                "root-x86-64-verity-sig".to_owned(),
                signature_uuid,
                "verity_hash_signature".to_owned(),
                Value::Null
            ),
        ]
    );

    // veritysetup, given the root hash from the signature partition.
    let data_file = work.path().join("data.img");
    let hash_file = work.path().join("hash.img");
    fs::write(&data_file, &data).unwrap();
    fs::write(&hash_file, partition_bytes(&ddi, 1)).unwrap();
    let verify = || {
        let mut command = Command::new("veritysetup");
        command
            .arg("verify")
            .arg(&data_file)
            .arg(&hash_file)
            .arg(&root_hash);
        command
    };
    run_ok(&mut verify());
    flip_byte(&data_file, 5000);
    let stderr = run_fail(&mut verify());
    assert_eq!(
        stderr,
        "Verification failed at position 4096.\nVerification of data area failed.\n"
    );

    // openssl, given the root hash's text as the signed content.
    let content = work.path().join("roothash.txt");
    fs::write(&content, &root_hash).unwrap();
    let p7s = work.path().join("sig.p7s");
    let der = run_ok(
        Command::new("base64").arg("-d").stdin(
            fs::File::open(write_text(
                work.path(),
                "sig.b64",
                signature["signature"].as_str().unwrap(),
            ))
            .unwrap(),
        ),
    )
    .stdout;
    fs::write(&p7s, der).unwrap();
    let cms_verify = |ca: &Path| {
        let mut command = Command::new("openssl");
        command
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
            .arg(&p7s)
            .arg("-content")
            .arg(&content)
            .arg("-CAfile")
            .arg(ca)
            .args(["-out", "/dev/null"]);
        command
    };
    run_ok(&mut cms_verify(&keys.certificate()));
    let stderr = run_fail(&mut cms_verify(&ecdsa_verity_keys().certificate()));
    assert!(
        stderr.contains("Verify error: self-signed certificate"),
        "{stderr}"
    );
}

fn write_text(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn keys_from_the_environment_sign_the_same_bytes_and_a_missing_one_is_named() {
    let work = tempfile::tempdir().unwrap();
    let (zip, _) = upstream_zip(work.path(), Arch::Arm64, 1 << 20);
    let keys = ecdsa_verity_keys();
    let out = work.path().join("flags");
    build_ddi(&zip, &out, Arch::Arm64, keys, &[]);

    let from_env = work.path().join("env");
    run_ok(
        cli()
            .args([
                "build",
                "--version",
                VERSION,
                "--arch",
                "arm64",
                "--no-sign",
            ])
            .args(["--format", "ddi", "--zip"])
            .arg(&zip)
            .arg("--out")
            .arg(&from_env)
            .env(
                "VERITY_SIGNING_KEY",
                fs::read_to_string(keys.key()).unwrap(),
            )
            .env("VERITY_CERTIFICATE_PATH", keys.certificate()),
    );
    let name = "alloy-1.17.1-arm64.ddi.raw";
    assert!(fs::read(out.join(name)).unwrap() == fs::read(from_env.join(name)).unwrap());
    assert!(!from_env.join(format!("{name}.asc")).exists());

    let missing = work.path().join("missing");
    // `build --format ddi` given the verity key by its flag, and no certificate yet.
    let with_key_only = || {
        let mut command = cli();
        command
            .args([
                "build",
                "--version",
                VERSION,
                "--no-sign",
                "--format",
                "ddi",
            ])
            .arg("--zip")
            .arg(&zip)
            .arg("--out")
            .arg(&missing)
            .arg("--verity-key")
            .arg(keys.key());
        command
    };
    let stderr = run_fail(&mut with_key_only());
    assert_eq!(
        stderr,
        "error: no verity certificate: pass --verity-certificate FILE, or set VERITY_CERTIFICATE_PATH (a PEM file) or VERITY_CERTIFICATE (the PEM text); make a key and certificate with `alloy-sysext-automation keygen --x509 --out keys/`\n"
    );
    assert!(!missing.exists());

    let mismatched = run_fail(
        with_key_only()
            .arg("--verity-certificate")
            .arg(rsa_verity_keys().certificate()),
    );
    assert!(
        mismatched.starts_with(
            "error: the verity signing key does not belong to the certificate (subject CN=Alloy Sysext Verity Signing"
        ),
        "{mismatched}"
    );
    assert!(!mismatched.contains("PRIVATE KEY"), "{mismatched}");
}

/// The fields of a partition `sfdisk --json` shows that do not depend on the data: type,
/// name and attributes.
fn kind(partition: &Value) -> (String, String, String) {
    (
        partition["type"].as_str().unwrap().to_owned(),
        partition["name"].as_str().unwrap().to_owned(),
        partition["attrs"].as_str().unwrap_or("").to_owned(),
    )
}

/// Runs `systemd-repart` 257 in the trixie root with `args`, its files under `/work`.
fn repart(host: &Host, args: &[&str]) {
    let mut all = vec![
        "--offline=yes",
        "--dry-run=no",
        "--empty=create",
        "--size=auto",
    ];
    all.extend_from_slice(args);
    run_ok(
        host.command("systemd-repart", &all)
            .env("SYSTEMD_LOG_LEVEL", "notice"),
    );
}

#[test]
fn systemd_repart_makes_the_same_image_from_the_same_squashfs_seed_and_key() {
    let work = tempfile::tempdir().unwrap();
    let host = Host::new();
    let keys = rsa_verity_keys();
    host.write("/work/key.pem", fs::read(keys.key()).unwrap());
    fs::set_permissions(
        host.path("/work/key.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    host.write("/work/cert.pem", fs::read(keys.certificate()).unwrap());
    for arch in Arch::ALL {
        // Incompressible, so the image is over 4 MiB, where the table is aligned to 1 MiB
        // as for real images. (systemd-repart grows the root partition of smaller disks,
        // whose placement we do not follow.)
        let zip = incompressible_zip(work.path(), arch, 5 << 20);
        let out = work.path().join(format!("out-{arch}"));
        let printed = build_ddi(&zip, &out, arch, keys, &["--compression", "gzip"]);
        let name = format!("alloy-1.17.1-{arch}.ddi.raw");
        let seed = printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: root hash ")))
            .and_then(|rest| rest.split(", seed ").nth(1))
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("build prints the seed:\n{printed}"))
            .to_owned();
        let ours = out.join(&name);
        host.write(
            "/work/alloy.squashfs",
            fs::read(out.join(format!("alloy-1.17.1-{arch}.raw"))).unwrap(),
        );
        let systemd_arch = arch.systemd_name();

        // CopyBlocks= of our squashfs: the whole image, byte for byte.
        host.write(
            "/work/definitions/10-root.conf",
            "[Partition]\nType=root\nCopyBlocks=/work/alloy.squashfs\nVerity=data\nVerityMatchKey=root\n",
        );
        host.write(
            "/work/definitions/20-root-verity.conf",
            "[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\nMinimize=best\n",
        );
        host.write(
            "/work/definitions/30-root-verity-sig.conf",
            "[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n",
        );
        let seed_arg = format!("--seed={seed}");
        let arch_arg = format!("--architecture={systemd_arch}");
        repart(
            &host,
            &[
                "--definitions=/work/definitions",
                &seed_arg,
                &arch_arg,
                "--private-key=/work/key.pem",
                "--certificate=/work/cert.pem",
                &format!("/work/copy-blocks-{arch}.raw"),
            ],
        );
        let reference = host.path(&format!("/work/copy-blocks-{arch}.raw"));
        assert_eq!(partitions(&ours), partitions_renamed(&reference, &ours));
        assert!(
            fs::read(&reference).unwrap() == fs::read(&ours).unwrap(),
            "{arch}: systemd-repart's image differs from ours"
        );

        // --make-ddi=sysext from the image's tree: erofs instead of squashfs, so other
        // data and root hash, but the same kinds of partitions, in the same order, and
        // the same signature partition fields.
        let tree = work.path().join(format!("tree-{arch}"));
        unsquashfs(&out.join(format!("alloy-1.17.1-{arch}.raw")), &tree);
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(&tree)
                .arg(host.path("/work/tree")),
        );
        repart(
            &host,
            &[
                "--make-ddi=sysext",
                "--copy-source=/work/tree",
                &seed_arg,
                &arch_arg,
                "--private-key=/work/key.pem",
                "--certificate=/work/cert.pem",
                &format!("/work/make-ddi-{arch}.raw"),
            ],
        );
        let reference = host.path(&format!("/work/make-ddi-{arch}.raw"));
        let (theirs, ours_parts) = (partitions(&reference), partitions(&ours));
        assert_eq!(
            theirs.iter().map(kind).collect::<Vec<_>>(),
            ours_parts.iter().map(kind).collect::<Vec<_>>()
        );
        assert_eq!(
            ours_parts.iter().map(kind).collect::<Vec<_>>(),
            [
                (
                    arch_type(arch, 0),
                    format!("root-{systemd_arch}"),
                    "GUID:60".to_owned()
                ),
                (
                    arch_type(arch, 1),
                    format!("root-{systemd_arch}-verity"),
                    "GUID:60".to_owned()
                ),
                (
                    arch_type(arch, 2),
                    format!("root-{systemd_arch}-verity-sig"),
                    String::new()
                ),
            ]
        );
        assert_eq!(theirs[2]["size"], ours_parts[2]["size"]);
        assert_eq!(theirs[2]["size"], 32);
        let ((their_text, their_json), (our_text, our_json)) =
            (signature_json(&reference), signature_json(&ours));
        let keys_of = |text: &str| -> Vec<String> {
            text.split("\":")
                .filter_map(|piece| piece.rsplit('"').next().map(str::to_owned))
                .take(3)
                .collect()
        };
        assert_eq!(keys_of(&their_text), keys_of(&our_text));
        assert_eq!(
            keys_of(&our_text),
            ["rootHash", "certificateFingerprint", "signature"]
        );
        assert_eq!(
            their_json["certificateFingerprint"],
            our_json["certificateFingerprint"]
        );
        for (image, json) in [(&reference, &their_json), (&ours, &our_json)] {
            let root_hash = json["rootHash"].as_str().unwrap();
            let parts = partitions(image);
            assert_eq!(
                parts[0]["uuid"].as_str().unwrap().to_lowercase(),
                as_uuid(&root_hash[..32])
            );
            assert_eq!(
                parts[1]["uuid"].as_str().unwrap().to_lowercase(),
                as_uuid(&root_hash[32..])
            );
        }
        let _ = fs::remove_dir_all(host.path("/work/tree"));
    }
}

/// `sfdisk --json`'s partitions of `image` with the node names of `like`'s.
fn partitions_renamed(image: &Path, like: &Path) -> Vec<Value> {
    let (from, to) = (image.display().to_string(), like.display().to_string());
    partitions(image)
        .into_iter()
        .map(|mut p| {
            let node = p["node"].as_str().unwrap().replace(&from, &to);
            p["node"] = node.into();
            p
        })
        .collect()
}

/// The type GUID (as sfdisk prints it) of partition `index` for `arch`.
fn arch_type(arch: Arch, index: usize) -> String {
    let types = match arch {
        Arch::Amd64 => [
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
            "41092B05-9FC8-4523-994F-2DEF0408B176",
        ],
        Arch::Arm64 => [
            "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
            "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
            "6DB69DE6-29F4-4758-A7A5-962190F00CE3",
        ],
    };
    types[index].to_owned()
}
