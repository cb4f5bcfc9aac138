//! For the DDI tests: keys and certificates, made once per test binary (RSA 4096 takes a
//! while) and written out as PEM files for the tools that check our output, and running
//! those tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::arch::Arch;
use crate::ddi::certificate::{VerityCertificate, VerityKey, VerityKeyAlgorithm, VeritySigner};
use crate::ddi::image::{DdiSummary, write_ddi};

/// A signer and its files.
pub struct TestSigner {
    pub signer: VeritySigner,
    pub dir: PathBuf,
}

impl TestSigner {
    fn new(algorithm: VerityKeyAlgorithm, name: &str) -> TestSigner {
        let key = VerityKey::generate(algorithm).unwrap();
        let certificate = VerityCertificate::self_signed(&key, name, 30).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("verity-keys-")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::write(dir.join("key.pem"), key.to_pkcs8_pem().unwrap().expose()).unwrap();
        std::fs::write(dir.join("cert.pem"), certificate.to_pem()).unwrap();
        TestSigner {
            signer: VeritySigner::new(key, certificate).unwrap(),
            dir,
        }
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    pub fn certificate_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
}

pub fn rsa() -> &'static TestSigner {
    static SIGNER: OnceLock<TestSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TestSigner::new(VerityKeyAlgorithm::Rsa4096, "Test RSA"))
}

pub fn ecdsa() -> &'static TestSigner {
    static SIGNER: OnceLock<TestSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TestSigner::new(VerityKeyAlgorithm::EcdsaP256, "Test ECDSA"))
}

/// Another ECDSA signer with the same name as [`ecdsa`]'s: a certificate that must not be
/// taken for it.
pub fn other_ecdsa() -> &'static TestSigner {
    static SIGNER: OnceLock<TestSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TestSigner::new(VerityKeyAlgorithm::EcdsaP256, "Test ECDSA"))
}

/// Writes the DDI of the squashfs image `data` for `arch`, signed by `signer`, to `path`.
pub fn write_ddi_file(path: &Path, data: &Path, arch: Arch, signer: &TestSigner) -> DdiSummary {
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    write_ddi(data, arch, &signer.signer, &mut file, path).unwrap()
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

/// Runs `command`, panicking unless it failed; returns its exit code and stderr.
pub fn run_fail(command: &mut Command) -> (Option<i32>, String) {
    let output = command.output().expect("the command starts");
    assert!(
        !output.status.success(),
        "{command:?} succeeded but should have failed"
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
