//! Shared test helpers: stand-in upstream zips, the CLI, and the real host tools.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use alloy_sysext_automation::arch::Arch;

/// A stand-in for the upstream binary: a 64-bit ELF header for `arch`, then `size` bytes of
/// deterministic content that mixes incompressible and compressible runs, like a real binary.
pub fn fake_binary(arch: Arch, size: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    data.resize(16, 0);
    data.extend_from_slice(&2u16.to_le_bytes()); // e_type = ET_EXEC
    data.extend_from_slice(&arch.elf_machine().to_le_bytes());
    data.resize(64, 0);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(4) {
            data.extend(std::iter::repeat_n((state >> 8) as u8, 512));
        } else {
            data.extend_from_slice(&state.to_le_bytes());
        }
    }
    data.truncate(size);
    data
}

/// Writes a zip with `entries` to `path`.
pub fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let file = fs::File::create(path).unwrap();
    let mut writer = zip::ZipWriter::new(file);
    for (name, data) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap();
}

/// An upstream-like zip for `arch` in `dir`, holding `alloy-linux-<arch>`; returns the zip's
/// path and the binary.
pub fn upstream_zip(dir: &Path, arch: Arch, size: usize) -> (PathBuf, Vec<u8>) {
    let binary = fake_binary(arch, size, 7);
    let path = dir.join(format!("alloy-linux-{arch}.zip"));
    write_zip(&path, &[(&format!("alloy-linux-{arch}"), &binary)]);
    (path, binary)
}

/// A file under `tests/fixtures/`.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// Every environment variable the binary reads: a test sets those it wants, and the
/// machine's own never leak in.
pub const BINARY_ENV: &[&str] = &[
    "APP_ID",
    "CONFIG_FILE",
    "DATABASE_URL",
    "DATA_DIR",
    "GITHUB_API_URL",
    "GITHUB_ORGANIZATION",
    "GITHUB_TOKEN",
    "GITHUB_URL",
    "GPG_PRIVATE_KEY",
    "JOB_RETRY_SECONDS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "PORT",
    "PRIVATE_KEY",
    "PRIVATE_KEY_PATH",
    "PUBLIC_URL",
    "R2_ACCESS_KEY_ID",
    "R2_BUCKET",
    "R2_ENDPOINT",
    "R2_SECRET_ACCESS_KEY",
    "RETENTION_DAYS",
    "S3_FORCE_PATH_STYLE",
    "S3_REGION",
    "SIGNING_KEY_PATH",
    "SOURCE_DATE_EPOCH",
    "STATUS_PUBLIC",
    "STATUS_TOKEN",
    "TRUSTED_PROXY_HEADER",
    "VERITY_CERTIFICATE",
    "VERITY_CERTIFICATE_PATH",
    "VERITY_SIGNING_KEY",
    "VERITY_SIGNING_KEY_PATH",
    "WEBHOOK_SECRET",
];

/// The CLI binary, with none of the variables it reads set.
pub fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alloy-sysext-automation"));
    for name in BINARY_ENV {
        command.env_remove(name);
    }
    command
}

/// Runs `command`, panicking with its output unless it succeeded.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `command`, panicking unless it failed; returns its stderr.
pub fn run_fail(command: &mut Command) -> String {
    let output = command.output().expect("the command starts");
    assert!(
        !output.status.success(),
        "{command:?} succeeded but should have failed\nstdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `build` for `version` from `zip` into `out`, signed with the shared Ed25519 key,
/// with `extra` arguments; returns what it printed.
pub fn build_signed(version: &str, zip: &Path, out: &Path, extra: &[&str]) -> String {
    let output = run_ok(
        cli()
            .args(["build", "--version", version, "--zip"])
            .arg(zip)
            .arg("--out")
            .arg(out)
            .arg("--signing-key")
            .arg(ed25519_keys().secret())
            .args(extra),
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Extracts `image` into `dest` with `unsquashfs`.
pub fn unsquashfs(image: &Path, dest: &Path) {
    run_ok(Command::new("unsquashfs").arg("-d").arg(dest).arg(image));
}

/// A key pair made by `keygen`, shared by all tests of one algorithm (RSA 4096 is slow).
pub struct Keys {
    pub dir: PathBuf,
}

impl Keys {
    pub fn secret(&self) -> PathBuf {
        self.dir.join("signing-key.asc")
    }
    pub fn public(&self) -> PathBuf {
        self.dir.join("signing-key.pub.asc")
    }
    pub fn base64(&self) -> String {
        fs::read_to_string(self.dir.join("GPG_PRIVATE_KEY.b64"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

fn keygen(algorithm: &str) -> Keys {
    let dir = tempfile::Builder::new()
        .prefix(&format!("keys-{algorithm}-"))
        .tempdir()
        .unwrap()
        .keep();
    run_ok(
        cli()
            .args(["keygen", "--algorithm", algorithm, "--out"])
            .arg(&dir),
    );
    Keys { dir }
}

pub fn ed25519_keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| keygen("ed25519"))
}

pub fn rsa_keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| keygen("rsa4096"))
}

/// A GnuPG home and keyring for the checks a host makes.
pub struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Gpg { home }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new("gpg");
        command.env("GNUPGHOME", self.home.path());
        command
    }

    /// A keyring file holding the armored public key at `public_key`, made the way the README
    /// tells operators to make `/etc/systemd/import-pubring.gpg`.
    pub fn keyring(&self, public_key: &Path) -> PathBuf {
        let keyring = self.home.path().join(format!(
            "import-pubring-{}.gpg",
            public_key.file_name().unwrap().to_string_lossy()
        ));
        run_ok(
            self.command()
                .args(["--batch", "--no-default-keyring", "--keyring"])
                .arg(&keyring)
                .arg("--import")
                .arg(public_key),
        );
        keyring
    }

    /// Runs gpg exactly as systemd-sysupdate does (SPEC §4); true when it accepts.
    pub fn sysupdate_verify(&self, keyring: &Path, signature: &Path, data: &Path) -> bool {
        let output = self
            .command()
            .args([
                "--no-options",
                "--no-default-keyring",
                "--batch",
                "--trust-model=always",
            ])
            .arg(format!("--keyring={}", keyring.display()))
            .arg("--verify")
            .arg(signature)
            .arg(data)
            .output()
            .expect("gpg runs (install gnupg)");
        output.status.success()
    }
}

/// The names of the regular files in `dir`, sorted.
pub fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Flips one bit of the byte at `offset` in the file.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

/// The primary fingerprint of the public key in `path`, as `verify` prints it.
pub fn key_fingerprint(path: &Path) -> String {
    alloy_sysext_automation::signing::PublicKey::from_file(path)
        .unwrap()
        .fingerprint()
}
