//! Interoperability of the signing module with real GnuPG.
//!
//! Hosts verify our releases with GnuPG 2.2 using exactly
//! `gpg --no-options --no-default-keyring --batch --trust-model=always
//! --keyring=<pubring> --verify <sig> <data>`, with a keyring made by
//! importing the armored public key. These tests run that command (plus
//! `--homedir` pointing at a fresh temporary GnuPG home, so nothing touches
//! the user's keys) against signatures made by this crate, and load keys made
//! by real GnuPG. `gpg` must be installed: without it these tests fail.

use std::{
    fs::{self, File},
    io::{BufWriter, Seek, SeekFrom, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use alloy_sysext_automation::signing::{KeyAlgorithm, PublicKey, SigningError, SigningKey};
use base64::Engine as _;
use tempfile::TempDir;

/// A temporary GnuPG home; its gpg-agent is stopped when it is dropped.
struct GnupgHome {
    dir: TempDir,
}

impl GnupgHome {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gpg-test-")
            .tempdir()
            .expect("creating a temporary GnuPG home");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .expect("restricting the GnuPG home");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs gpg with `--homedir` set to this home, failing the test if gpg
    /// cannot be started at all.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("gpg")
            .arg("--homedir")
            .arg(self.path())
            .args(args)
            .env("GNUPGHOME", self.path())
            .output()
            .expect("running gpg (GnuPG must be installed for these tests)")
    }

    /// Runs gpg and fails the test unless it succeeds; returns stdout.
    fn run_ok(&self, args: &[&str]) -> Vec<u8> {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Imports an armored public key into `<home>/pubring.gpg` the way hosts
    /// build their keyring, and returns the keyring's path.
    fn import_keyring(&self, armored_public_key: &str) -> PathBuf {
        let key_file = self.path().join("key.asc");
        fs::write(&key_file, armored_public_key).expect("writing the public key");
        let keyring = self.path().join("pubring.gpg");
        self.run_ok(&[
            "--no-default-keyring",
            "--keyring",
            path_str(&keyring),
            "--import",
            path_str(&key_file),
        ]);
        keyring
    }

    /// Verifies like a host does; returns whether gpg accepted, and its stderr.
    fn host_verify(&self, keyring: &Path, signature: &Path, data: &Path) -> (bool, String) {
        let keyring_arg = format!("--keyring={}", path_str(keyring));
        let output = self.run(&[
            "--no-options",
            "--no-default-keyring",
            "--batch",
            "--trust-model=always",
            &keyring_arg,
            "--verify",
            path_str(signature),
            path_str(data),
        ]);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Generates a key with `gpg --quick-gen-key ... never` and returns its
    /// fingerprint.
    fn generate(&self, user_id: &str, algorithm: &str, usage: &str, passphrase: &str) -> String {
        self.generate_expiring(user_id, algorithm, usage, passphrase, "never")
    }

    /// Generates a key with `gpg --quick-gen-key` and returns its fingerprint.
    fn generate_expiring(
        &self,
        user_id: &str,
        algorithm: &str,
        usage: &str,
        passphrase: &str,
        expire: &str,
    ) -> String {
        self.run_ok(&[
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            user_id,
            algorithm,
            usage,
            expire,
        ]);
        let listing = self.run_ok(&["--with-colons", "--list-keys", user_id]);
        String::from_utf8_lossy(&listing)
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').find(|field| field.len() == 40))
            .expect("fingerprint in gpg's listing")
            .to_owned()
    }

    /// `gpg --export-secret-keys --armor KEYID | base64 -w0`.
    fn export_secret_base64(&self, key_id: &str, passphrase: &str) -> String {
        let armored = self.run_ok(&[
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
            "--export-secret-keys",
            "--armor",
            key_id,
        ]);
        assert!(armored.starts_with(b"-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        base64::engine::general_purpose::STANDARD.encode(armored)
    }

    /// `gpg --export --armor KEYID`.
    fn export_public(&self, key_id: &str) -> String {
        let armored = self.run_ok(&["--export", "--armor", key_id]);
        String::from_utf8(armored).expect("armored output is text")
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        // Best effort: a leftover agent is harmless, only untidy.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.path())
            .args(["--kill", "all"])
            .output();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The generated test key of `algorithm`, shared by all tests of this
/// binary (RSA 4096 generation is slow).
fn generated(algorithm: KeyAlgorithm) -> &'static SigningKey {
    static RSA: OnceLock<SigningKey> = OnceLock::new();
    static ED25519: OnceLock<SigningKey> = OnceLock::new();
    let cell = match algorithm {
        KeyAlgorithm::Rsa4096 => &RSA,
        KeyAlgorithm::Ed25519 => &ED25519,
    };
    cell.get_or_init(|| {
        SigningKey::generate(algorithm, "Interop Test <interop@example.org>")
            .expect("generating a key")
    })
}

/// Writes `len` bytes of deterministic pseudo-random data.
fn write_big_file(path: &Path, len: usize) {
    let mut out = BufWriter::new(File::create(path).expect("creating the data file"));
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut written = 0;
    while written < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bytes = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let n = bytes.len().min(len - written);
        out.write_all(&bytes[..n]).expect("writing the data file");
        written += n;
    }
    out.flush().expect("writing the data file");
}

/// Flips the lowest bit of the byte at `offset` in the file.
fn flip_byte(path: &Path, offset: u64) {
    let mut file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .expect("opening the file to change");
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(offset)).expect("seeking");
    std::io::Read::read_exact(&mut file, &mut byte).expect("reading");
    byte[0] ^= 0x01;
    file.seek(SeekFrom::Start(offset)).expect("seeking");
    file.write_all(&byte).expect("writing");
}

/// Signs the file at `data` with `key`, writing `<data>.asc`.
fn sign_file(key: &SigningKey, data: &Path) -> PathBuf {
    let signature = key
        .sign_detached(File::open(data).expect("opening the data"))
        .expect("signing");
    let path = data.with_extension("asc");
    fs::write(&path, signature).expect("writing the signature");
    path
}

/// Signs a small text and a multi-megabyte file with `key`, checks that
/// gpg accepts both, and that it rejects them once one byte changes.
fn assert_gpg_accepts_then_rejects_tampering(key: &SigningKey, armored_public_key: &str) {
    let work = TempDir::new().expect("temporary directory");
    let gpg = GnupgHome::new();
    let keyring = gpg.import_keyring(armored_public_key);
    let public = PublicKey::from_armored(armored_public_key).expect("loading the public key");

    let small = work.path().join("SHA256SUMS");
    fs::write(
        &small,
        "ffdc107b18618da6c17ef6ff8b1d14dcf50a402418f358e0d3215ad1da891518  alloy-1.13.1-amd64.raw\n",
    )
    .expect("writing the small file");
    let big = work.path().join("alloy.raw");
    write_big_file(&big, 24 * 1024 * 1024 + 7);

    for (data, offset) in [(&small, 3), (&big, 13 * 1024 * 1024)] {
        let signature = sign_file(key, data);

        let (good, stderr) = gpg.host_verify(&keyring, &signature, data);
        assert!(good, "gpg rejected our signature of {data:?}: {stderr}");
        assert!(stderr.contains("Good signature"), "{stderr}");
        assert!(stderr.contains(&key.signing_fingerprint()), "{stderr}");
        public
            .verify_detached(
                File::open(data).expect("opening"),
                &fs::read(&signature).expect("reading"),
            )
            .expect("our own verification agrees with gpg");

        flip_byte(data, offset);
        let (good, stderr) = gpg.host_verify(&keyring, &signature, data);
        assert!(
            !good,
            "gpg accepted a signature over changed data: {stderr}"
        );
        assert!(stderr.contains("BAD signature"), "{stderr}");
        let err = public
            .verify_detached(
                File::open(data).expect("opening"),
                &fs::read(&signature).expect("reading"),
            )
            .expect_err("changed data must not verify");
        assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");
    }
}

#[test]
fn generated_rsa4096_key_signatures_verify_with_gpg() {
    let key = generated(KeyAlgorithm::Rsa4096);
    let public = key.public_key().to_armored().expect("exporting");
    assert_gpg_accepts_then_rejects_tampering(key, &public);
}

#[test]
fn generated_ed25519_key_signatures_verify_with_gpg() {
    let key = generated(KeyAlgorithm::Ed25519);
    let public = key.public_key().to_armored().expect("exporting");
    assert_gpg_accepts_then_rejects_tampering(key, &public);
}

#[test]
fn generated_secret_key_imports_into_gpg() {
    // The exported secret key is usable by GnuPG itself (e.g. to keep a
    // backup in a normal keyring), and gpg sees the same fingerprint.
    let key = generated(KeyAlgorithm::Ed25519);
    let gpg = GnupgHome::new();
    let secret_file = gpg.path().join("secret.asc");
    fs::write(&secret_file, key.to_armored().expect("exporting")).expect("writing");
    gpg.run_ok(&["--batch", "--import", path_str(&secret_file)]);
    let listing = gpg.run_ok(&["--with-colons", "--list-secret-keys"]);
    let listing = String::from_utf8_lossy(&listing);
    assert!(listing.contains(&key.fingerprint()), "{listing}");
    assert!(
        listing.contains("Interop Test <interop@example.org>"),
        "{listing}"
    );
}

/// Loads a gpg-made key from its `GPG_PRIVATE_KEY` form, signs with it, and
/// checks gpg accepts the signature with a keyring of gpg's own public
/// export. Also checks the reverse: our verification of gpg's signature.
/// Returns the loaded key.
fn assert_gpg_key_interoperates(signer_home: &GnupgHome, fingerprint: &str) -> SigningKey {
    let key = SigningKey::from_base64_armored(&signer_home.export_secret_base64(fingerprint, ""))
        .expect("loading the gpg-made key");
    assert_eq!(key.fingerprint(), fingerprint);

    let public_export = signer_home.export_public(fingerprint);
    let verifier = GnupgHome::new();
    let keyring = verifier.import_keyring(&public_export);
    let work = TempDir::new().expect("temporary directory");
    let data = work.path().join("SHA256SUMS");
    write_big_file(&data, 3 * 1024 * 1024);

    let signature = sign_file(&key, &data);
    let (good, stderr) = verifier.host_verify(&keyring, &signature, &data);
    assert!(good, "gpg rejected our signature: {stderr}");
    assert!(stderr.contains(&key.signing_fingerprint()), "{stderr}");

    // gpg's own detached signature verifies with our PublicKey.
    let gpg_signature = work.path().join("SHA256SUMS.gpg");
    signer_home.run_ok(&[
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--local-user",
        fingerprint,
        "--output",
        path_str(&gpg_signature),
        "--detach-sign",
        path_str(&data),
    ]);
    let public = PublicKey::from_armored(&public_export).expect("loading gpg's public key");
    assert_eq!(public.fingerprint(), fingerprint);
    public
        .verify_detached(
            File::open(&data).expect("opening"),
            &fs::read(&gpg_signature).expect("reading"),
        )
        .expect("gpg's signature verifies");

    flip_byte(&data, 1_000_000);
    let (good, stderr) = verifier.host_verify(&keyring, &signature, &data);
    assert!(!good, "gpg accepted changed data: {stderr}");
    let err = public
        .verify_detached(
            File::open(&data).expect("opening"),
            &fs::read(&gpg_signature).expect("reading"),
        )
        .expect_err("changed data");
    assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");
    key
}

#[test]
fn gpg_made_rsa4096_key_signs_for_gpg() {
    let home = GnupgHome::new();
    let fingerprint = home.generate("RSA Test <rsa@example.org>", "rsa4096", "sign", "");
    let key = assert_gpg_key_interoperates(&home, &fingerprint);
    assert_eq!(key.signing_fingerprint(), fingerprint);
    assert_eq!(key.user_id().as_deref(), Some("RSA Test <rsa@example.org>"));
}

#[test]
fn gpg_made_ed25519_key_signs_for_gpg() {
    let home = GnupgHome::new();
    let fingerprint = home.generate("Ed Test <ed@example.org>", "ed25519", "sign", "");
    let key = assert_gpg_key_interoperates(&home, &fingerprint);
    assert_eq!(key.signing_fingerprint(), fingerprint);
}

#[test]
fn gpg_made_key_with_encryption_subkey_signs_with_primary() {
    // "default default": a signing primary plus an encryption-only subkey,
    // which must not be used for signing.
    let home = GnupgHome::new();
    let fingerprint = home.generate("Default <default@example.org>", "default", "default", "");
    let key = assert_gpg_key_interoperates(&home, &fingerprint);
    assert_eq!(key.signing_fingerprint(), fingerprint);
    assert_eq!(
        key.public_key().to_armored().map(|t| t.is_empty()).ok(),
        Some(false)
    );
}

#[test]
fn gpg_made_key_with_signing_subkey_signs_with_subkey() {
    let home = GnupgHome::new();
    let fingerprint = home.generate("Subkey <subkey@example.org>", "default", "default", "");
    home.run_ok(&[
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-add-key",
        &fingerprint,
        "ed25519",
        "sign",
        "never",
    ]);
    let key = assert_gpg_key_interoperates(&home, &fingerprint);
    assert_ne!(
        key.signing_fingerprint(),
        fingerprint,
        "the signing subkey signs, like gpg"
    );

    // An export without the primary's secret part (gpg --export-secret-subkeys)
    // still signs, with the subkey.
    let subkeys_only = home.run_ok(&[
        "--batch",
        "--export-secret-subkeys",
        "--armor",
        &fingerprint,
    ]);
    let stubbed = SigningKey::from_armored(&String::from_utf8_lossy(&subkeys_only))
        .expect("loading a subkeys-only export");
    assert_eq!(stubbed.signing_fingerprint(), key.signing_fingerprint());
}

#[test]
fn gpg_export_without_signing_secret_is_a_clear_error() {
    // Only the encryption subkey's secret is exported: nothing can sign.
    let home = GnupgHome::new();
    let fingerprint = home.generate("Stub <stub@example.org>", "default", "default", "");
    let exported = home.run_ok(&[
        "--batch",
        "--export-secret-subkeys",
        "--armor",
        &fingerprint,
    ]);
    let err = SigningKey::from_armored(&String::from_utf8_lossy(&exported))
        .expect_err("no signing secret");
    assert!(
        matches!(err, SigningError::SecretMaterialMissing { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&fingerprint), "{err}");
}

#[test]
fn passphrase_protected_gpg_key_is_a_clear_error() {
    let home = GnupgHome::new();
    let passphrase = "correct horse battery staple";
    let fingerprint = home.generate("Locked <locked@example.org>", "ed25519", "sign", passphrase);
    let exported = home.export_secret_base64(&fingerprint, passphrase);
    let err = SigningKey::from_base64_armored(&exported).expect_err("locked key");
    assert!(
        matches!(err, SigningError::PassphraseProtected { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("without a passphrase"), "{message}");
    assert!(message.contains(&fingerprint), "{message}");
    assert!(!message.contains(passphrase), "{message}");
}

#[test]
fn expired_gpg_key_is_a_clear_error() {
    let home = GnupgHome::new();
    let fingerprint = home.generate_expiring(
        "Expired <expired@example.org>",
        "ed25519",
        "sign",
        "",
        "seconds=1",
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let exported = home.export_secret_base64(&fingerprint, "");
    let err = SigningKey::from_base64_armored(&exported).expect_err("expired key");
    assert!(matches!(err, SigningError::NoSigningKey { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(err.to_string().contains(&fingerprint), "{err}");
}

fn real_world(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real-world")
        .join(name)
}

#[test]
fn real_world_signature_verifies() {
    let public = PublicKey::from_file(&real_world("alloy-sysext.pub.asc")).expect("loading");
    assert_eq!(
        public.fingerprint(),
        "0768FB9A0C99B895FE5CCC46EDF71D649F349EDE"
    );
    let signature = fs::read(real_world("SHA256SUMS.gpg")).expect("reading the signature");
    public
        .verify_detached(
            File::open(real_world("SHA256SUMS")).expect("opening"),
            &signature,
        )
        .expect("the published signature verifies");

    // The fixture is what gpg on the hosts accepts, too.
    let gpg = GnupgHome::new();
    let keyring = gpg.import_keyring(
        &fs::read_to_string(real_world("alloy-sysext.pub.asc")).expect("reading the key"),
    );
    let (good, stderr) = gpg.host_verify(
        &keyring,
        &real_world("SHA256SUMS.gpg"),
        &real_world("SHA256SUMS"),
    );
    assert!(good, "{stderr}");
}

#[test]
fn real_world_signature_rejects_any_changed_byte() {
    let public = PublicKey::from_file(&real_world("alloy-sysext.pub.asc")).expect("loading");
    let manifest = fs::read(real_world("SHA256SUMS")).expect("reading the manifest");
    let armored = fs::read(real_world("SHA256SUMS.gpg")).expect("reading the signature");

    for offset in 0..manifest.len() {
        let mut changed = manifest.clone();
        changed[offset] ^= 0x01;
        let err = public
            .verify_detached(&changed[..], &armored)
            .expect_err("changed manifest");
        assert!(
            matches!(err, SigningError::BadSignature { .. }),
            "offset {offset}: {err}"
        );
    }

    // The armored file, byte by byte: armor lines, base64 body and armor
    // checksum all count (GnuPG 2.2 rejects a checksum mismatch, and so do
    // we). Only whitespace after the END line is free.
    let text = String::from_utf8(armored.clone()).expect("armored signature is text");
    let end_line = "-----END PGP SIGNATURE-----";
    let armor_end = text.find(end_line).expect("armor END line") + end_line.len();
    for offset in 0..armor_end {
        let mut changed = armored.clone();
        changed[offset] ^= 0x01;
        assert!(
            public.verify_detached(&manifest[..], &changed).is_err(),
            "armored signature changed at offset {offset} still verifies"
        );
    }

    // The signature packet itself, byte by byte. Two places are free, for
    // GnuPG as for us: the unhashed subpacket area (not covered by the
    // signature by design; it holds the issuer key ID as a lookup hint), and
    // the low bits of the RSA value's bit count, which is redundant with
    // its byte length.
    let binary = dearmor(&text);
    public
        .verify_detached(&manifest[..], &binary)
        .expect("the binary form verifies");
    let unhashed = unhashed_area(&binary);
    let bit_count_low_byte = unhashed.end + 2 + 1;
    for offset in (0..binary.len())
        .filter(|offset| !unhashed.contains(offset) && *offset != bit_count_low_byte)
    {
        let mut changed = binary.clone();
        changed[offset] ^= 0x01;
        assert!(
            public.verify_detached(&manifest[..], &changed).is_err(),
            "signature packet changed at offset {offset} still verifies"
        );
    }
}

/// Decodes the body of an ASCII-armored block (without its checksum line).
fn dearmor(text: &str) -> Vec<u8> {
    let body: String = text
        .lines()
        .skip_while(|line| !line.is_empty())
        .take_while(|line| !line.starts_with('=') && !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("armor body is base64")
}

/// Byte range of the unhashed subpacket data in a v4 signature packet with
/// an old-format, two-byte-length header (the layout of the fixture, as
/// `gpg --list-packets` shows: ctb 0x89, hlen 3). It is followed by the
/// two-byte hash prefix, then the RSA value's two-byte bit count.
fn unhashed_area(packet: &[u8]) -> std::ops::Range<usize> {
    assert_eq!(
        packet[0], 0x89,
        "old-format signature packet, two-byte length"
    );
    assert_eq!(packet[3], 4, "version 4 signature");
    let hashed_len = usize::from(u16::from_be_bytes([packet[7], packet[8]]));
    let length_at = 9 + hashed_len;
    let unhashed_len = usize::from(u16::from_be_bytes([
        packet[length_at],
        packet[length_at + 1],
    ]));
    length_at + 2..length_at + 2 + unhashed_len
}
