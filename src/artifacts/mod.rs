//! Building the published files for one version and architecture into a directory.
//!
//! This is the whole image pipeline short of publishing: take the upstream zip, extract and
//! check the binary, write the squashfs image, check, hash, sign and copy it in one read, and
//! write the image's provenance record (signed too), and merge it into `SHA256SUMS`. Every
//! file is written under a temporary name and renamed only when all of them are ready, images
//! first and the manifest last, so a failure leaves the directory as it was and a reader never
//! sees a manifest that points at a missing image.
//!
//! With a verity signer in the request, the signed dm-verity disk image ([`crate::ddi`]) is
//! written from the finished squashfs image and staged beside it, with its own `.sha256`,
//! `.asc` and provenance record, and listed in `SHA256SUMS` right after the image.
//!
//! The binary is compressed while it is still being extracted ([`growing_file`]), the zip is
//! hashed for the record meanwhile, and each output is hashed on the way through the copy that
//! reads it ([`tee_reader`], [`digest`]).

pub mod digest;
pub mod growing_file;
pub mod image_format;
pub mod tee_reader;

use std::fs;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::arch::Arch;
use crate::artifacts::digest::sha256sum_line;
use crate::artifacts::growing_file::GrowingFile;
use crate::artifacts::tee_reader::TeeReader;
use crate::ddi::{DdiError, DdiSummary, VeritySigner, write_ddi};
use crate::manifest::{Manifest, ManifestEntry, ManifestError, Upsert};
use crate::provenance::record::BuiltDigests;
use crate::provenance::{
    BuildOrigin, Statement, ddi_record_of, record_file_name, record_of, record_signature_file_name,
};
use crate::signing::detached::SignedDataHash;
use crate::signing::{SigningError, SigningKey};
use crate::sysext::inspect::{BlockCheck, ExpectedBinary, InspectError, check_layout};
use crate::sysext::squashfs::{SquashfsError, WrittenImage, write_squashfs_from};
use crate::sysext::{ImageLayout, SquashfsOptions};
use crate::upstream::elf::{ElfError, check_elf_arch};
use crate::upstream::zip_entry::{ExtractedEntry, ZipEntryError, extract_entry};
use crate::version::Version;

/// The manifest file name systemd-sysupdate fetches.
pub const MANIFEST_FILE: &str = "SHA256SUMS";
/// Its detached signature.
pub const MANIFEST_SIGNATURE_FILE: &str = "SHA256SUMS.gpg";

/// Everything that decides what is built.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub version: Version,
    pub arch: Arch,
    /// The upstream release zip.
    pub zip: PathBuf,
    /// The entry in the zip that holds the binary (`alloy-linux-amd64`).
    pub binary_entry: String,
    /// The extension name (`alloy`): image file names, binary and unit names.
    pub image_name: String,
    pub squashfs: SquashfsOptions,
    /// Also write `<name>-<version>.raw` with its own `.sha256` and `.asc`. Only amd64
    /// builds write it, whatever this says: the name carries no architecture, and older
    /// consumers are amd64.
    pub compat_name: bool,
    /// Refuse a binary larger than this.
    pub max_binary_size: u64,
    /// Where the zip came from and what started the build, for the provenance record.
    pub origin: BuildOrigin,
    /// Also write the signed dm-verity image `<name>-<version>-<arch>.ddi.raw` (with its
    /// `.sha256`, its provenance record, `.asc` files when there is an OpenPGP key, and its
    /// line in `SHA256SUMS`), its root hash signed by this.
    pub ddi_signer: Option<VeritySigner>,
}

impl BuildRequest {
    /// Today's defaults for `version` and `arch`: extension `alloy`, binary
    /// `alloy-linux-<arch>`, xz with 128 KiB blocks, compatibility name on (for amd64), and
    /// the zip taken as the asset of release `v<version>` of `grafana/alloy`, given as a file
    /// on the command line.
    pub fn new(version: Version, arch: Arch, zip: PathBuf) -> Self {
        BuildRequest {
            origin: BuildOrigin::command_line(&version, arch),
            version,
            arch,
            zip,
            binary_entry: format!("alloy-linux-{}", arch.upstream_name()),
            image_name: "alloy".to_owned(),
            squashfs: SquashfsOptions::default(),
            compat_name: true,
            max_binary_size: crate::upstream::zip_entry::DEFAULT_MAX_BINARY_SIZE,
            ddi_signer: None,
        }
    }

    /// `alloy-1.17.1-amd64.raw`: the name hosts match with `alloy-@v-amd64.raw`.
    pub fn image_file_name(&self) -> String {
        format!("{}-{}-{}.raw", self.image_name, self.version, self.arch)
    }

    /// `alloy-1.17.1-amd64.ddi.raw`: the signed dm-verity image, which hosts opt in to with
    /// `alloy-@v-amd64.ddi.raw`.
    pub fn ddi_file_name(&self) -> String {
        crate::ddi::ddi_file_name(&self.image_file_name())
    }

    /// `alloy-1.17.1.raw`: the compatibility name older consumers use.
    pub fn compat_file_name(&self) -> String {
        format!("{}-{}.raw", self.image_name, self.version)
    }
}

/// The steps of a build, reported as they start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStep {
    Compress,
    Verify,
    Sign,
    Ddi,
    Manifest,
}

impl BuildStep {
    /// A one-word name: `compress`, `check`, `sign`, `manifest`.
    pub fn name(self) -> &'static str {
        match self {
            BuildStep::Compress => "compress",
            BuildStep::Verify => "check",
            BuildStep::Sign => "sign",
            BuildStep::Ddi => "ddi",
            BuildStep::Manifest => "manifest",
        }
    }

    /// What the step does, for a progress display.
    pub fn describe(self) -> &'static str {
        match self {
            BuildStep::Compress => "extracting the binary and compressing the image",
            BuildStep::Verify => "checking the image",
            BuildStep::Sign => "hashing and signing",
            BuildStep::Ddi => "writing the signed dm-verity image",
            BuildStep::Manifest => "updating SHA256SUMS",
        }
    }
}

/// Where a build reports its progress (a terminal spinner, a log, or nothing).
pub trait BuildProgress {
    fn step(&self, step: BuildStep);
}

/// Reports nothing.
pub struct NoProgress;

impl BuildProgress for NoProgress {
    fn step(&self, _: BuildStep) {}
}

/// One file that the build wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// Every file written or replaced, in the order they were put in place.
    pub files: Vec<OutputFile>,
    /// sha256 of the image (all names carry the same bytes).
    pub image_sha256: String,
    /// sha256 and size of the upstream binary inside the image.
    pub binary_sha256: String,
    pub binary_size: u64,
    /// How the manifest changed for the image.
    pub manifest_change: Upsert,
    /// How it changed for the DDI, when there is one.
    pub ddi_manifest_change: Option<Upsert>,
    /// The image's provenance record, as written beside it.
    pub record: Statement,
    /// The signed dm-verity image, when the request asked for one.
    pub ddi: Option<DdiSummary>,
}

impl BuildOutput {
    /// The entry for the file called `name`, if it was written.
    pub fn file(&self, name: &str) -> Option<&OutputFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Why a build failed. Nothing in the output directory has changed when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Zip(#[from] ZipEntryError),
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error(transparent)]
    Squashfs(#[from] SquashfsError),
    #[error("the image failed its own check: {0}")]
    SelfCheck(#[from] InspectError),
    #[error(
        "{zip} has sha256 {actual}, but it was checked to have {expected} when it was downloaded: it changed since; nothing was built"
    )]
    ZipChanged {
        zip: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("writing the dm-verity image: {0}")]
    Ddi(#[from] DdiError),
    #[error("the signature just made does not verify with its own key: {0}")]
    SignatureSelfCheck(SigningError),
    #[error("{path}: {source}")]
    Manifest { path: String, source: ManifestError },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BuildError + use<> {
    let path = path.display().to_string();
    move |source| BuildError::Io {
        action,
        path,
        source,
    }
}

/// Ends the growing binary with an error if the extraction thread panics, so that its
/// readers do not wait for data that will never come.
struct FinishOnPanic<'a>(&'a GrowingFile);

impl Drop for FinishOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .finish(Err("the extraction stopped unexpectedly".into()));
        }
    }
}

/// The read buffer of the one read after writing: large enough that the disk and the hashes
/// see few calls.
const READ_BACK_BUFFER: usize = 1 << 20;

/// Everything that needs the finished image's bytes, fed from the one read of it: its
/// sha256, the hash its signature is checked against, the check of its stored blocks and
/// the copy under the compatibility name. (The signer pulls the same bytes.)
struct ReadBack<W: Write> {
    sha256: Sha256,
    size: u64,
    blocks: BlockCheck,
    signature_hash: Option<SignedDataHash>,
    copy: Option<BufWriter<W>>,
}

impl<W: Write> Write for ReadBack<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sha256.update(buf);
        self.size += buf.len() as u64;
        self.blocks.write_all(buf)?;
        if let Some(hash) = &mut self.signature_hash {
            hash.write_all(buf)?;
        }
        if let Some(copy) = &mut self.copy {
            copy.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.copy {
            Some(copy) => copy.flush(),
            None => Ok(()),
        }
    }
}

/// A file waiting under a temporary name in the output directory.
struct Staged {
    temp: NamedTempFile,
    name: String,
    size: u64,
    sha256: String,
}

/// Builds the image for `request` into `out_dir` (created if missing) and updates
/// `SHA256SUMS` there. With `key`, writes `.asc` signatures and `SHA256SUMS.gpg`; without,
/// writes neither and removes a `SHA256SUMS.gpg` that would no longer match.
pub fn build_into_dir(
    request: &BuildRequest,
    out_dir: &Path,
    key: Option<&SigningKey>,
    progress: &dyn BuildProgress,
) -> Result<BuildOutput, BuildError> {
    request.squashfs.validate()?;
    let directory = lock_output_dir(out_dir)?;

    progress.step(BuildStep::Compress);
    let binary = new_temp(out_dir, &request.binary_entry)?;
    let layout = ImageLayout::sysext(&request.image_name, request.arch, binary.path().to_owned());
    let image_name = request.image_file_name();
    let mut image = new_temp(out_dir, &image_name)?;
    let (extracted, written, zip_sha256) =
        extract_and_compress(request, &layout, &binary, &mut image)?;
    if let Some(checked) = &request.origin.checked
        && checked.sha256 != zip_sha256
    {
        return Err(BuildError::ZipChanged {
            zip: request.zip.display().to_string(),
            expected: checked.sha256.clone(),
            actual: zip_sha256,
        });
    }

    // The image's tables and small files are checked first; its data is checked in the one
    // read that also hashes, signs and copies it. (Its superblock, at the start, is written
    // last, so nothing can hash it in order while it is being written.)
    progress.step(BuildStep::Verify);
    let binary_check = ExpectedBinary {
        size: extracted.size,
        sha256: &extracted.sha256,
        stored_blocks: written.binary_blocks.as_ref(),
    };
    let blocks = check_layout(image.path(), &layout, request.squashfs.mtime, binary_check)?;
    drop(binary);

    progress.step(BuildStep::Sign);
    let (image_sha256, mut staged) = sign_and_stage_images(request, out_dir, image, key, blocks)?;
    let record = record_of(
        request,
        &layout,
        BuiltDigests {
            image_sha256: &image_sha256,
            zip_sha256: &zip_sha256,
            binary: &extracted,
        },
    );
    stage_record(out_dir, &image_name, &record, key, &mut staged)?;

    let mut listed = vec![ManifestEntry {
        sha256: image_sha256.clone(),
        file: image_name.clone(),
    }];
    let ddi = match &request.ddi_signer {
        Some(signer) => {
            progress.step(BuildStep::Ddi);
            // The squashfs image, staged first, still waits under its temporary name.
            let squashfs = staged[0].temp.path().to_owned();
            let summary = stage_ddi(request, out_dir, &squashfs, signer, key, &mut staged)?;
            let ddi_name = request.ddi_file_name();
            let ddi_record = ddi_record_of(&record, &ddi_name, &summary.sha256);
            stage_record(out_dir, &ddi_name, &ddi_record, key, &mut staged)?;
            listed.push(ManifestEntry {
                sha256: summary.sha256.clone(),
                file: ddi_name,
            });
            Some(summary)
        }
        None => None,
    };

    progress.step(BuildStep::Manifest);
    let changes = stage_manifest(out_dir, &listed, key, &mut staged)?;

    let files = put_in_place(out_dir, staged)?;
    if key.is_none() {
        remove_stale_manifest_signature(out_dir)?;
    }
    directory.sync_all().map_err(io_error("writing", out_dir))?;

    Ok(BuildOutput {
        files,
        image_sha256,
        binary_sha256: extracted.sha256,
        binary_size: extracted.size,
        manifest_change: changes[0],
        ddi_manifest_change: changes.get(1).copied(),
        record,
        ddi,
    })
}

/// Writes the DDI of the staged `squashfs` image and stages it onto `staged` with its
/// `.sha256`, and its `.asc` when there is a `key` (checked, as the image's is).
fn stage_ddi(
    request: &BuildRequest,
    out_dir: &Path,
    squashfs: &Path,
    signer: &VeritySigner,
    key: Option<&SigningKey>,
    staged: &mut Vec<Staged>,
) -> Result<DdiSummary, BuildError> {
    let name = request.ddi_file_name();
    let mut temp = new_temp(out_dir, &name)?;
    let temp_path = temp.path().to_owned();
    let summary = write_ddi(
        squashfs,
        request.arch,
        signer,
        temp.as_file_mut(),
        &temp_path,
    )?;
    let signature = match key {
        Some(key) => {
            let read = |file: &mut File| {
                file.rewind()?;
                Ok::<_, io::Error>(BufReader::with_capacity(
                    READ_BACK_BUFFER,
                    file.try_clone()?,
                ))
            };
            let reader = read(temp.as_file_mut()).map_err(io_error("reading", &temp_path))?;
            let signature = key.sign_detached(reader)?;
            let reader = read(temp.as_file_mut()).map_err(io_error("reading", &temp_path))?;
            key.public_key()
                .verify_detached(reader, signature.as_bytes())
                .map_err(BuildError::SignatureSelfCheck)?;
            Some(signature)
        }
        None => None,
    };
    staged.push(Staged {
        temp,
        name: name.clone(),
        size: summary.size,
        sha256: summary.sha256.clone(),
    });
    staged.push(stage_text(
        new_temp(out_dir, &name)?,
        format!("{name}.sha256"),
        &sha256sum_line(&summary.sha256, &name),
    )?);
    if let Some(signature) = signature {
        staged.push(stage_text(
            new_temp(out_dir, &name)?,
            format!("{name}.asc"),
            &signature,
        )?);
    }
    Ok(summary)
}

/// Creates `out_dir` if missing and locks it: builds into one directory take turns, as
/// each edits the same `SHA256SUMS`. The lock lasts as long as the returned handle.
fn lock_output_dir(out_dir: &Path) -> Result<File, BuildError> {
    fs::create_dir_all(out_dir).map_err(io_error("creating", out_dir))?;
    let directory = fs::File::open(out_dir).map_err(io_error("opening", out_dir))?;
    directory
        .lock()
        .map_err(io_error("locking (another build is using it?)", out_dir))?;
    Ok(directory)
}

/// A new temporary file in `out_dir`, named after its `purpose`. Published files are
/// world-readable; only their temporary names are private.
fn new_temp(out_dir: &Path, purpose: &str) -> Result<NamedTempFile, BuildError> {
    tempfile::Builder::new()
        .prefix(&format!(".{purpose}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(out_dir)
        .map_err(io_error("creating a temporary file in", out_dir))
}

/// Extracts the binary from the zip into `binary` on another thread while the image is
/// compressed from it into `image`, as its bytes arrive, and hashes the zip on a third.
/// Returns the binary, the image and the zip's sha256.
fn extract_and_compress(
    request: &BuildRequest,
    layout: &ImageLayout,
    binary: &NamedTempFile,
    image: &mut NamedTempFile,
) -> Result<(ExtractedEntry, WrittenImage, String), BuildError> {
    let binary_path = binary.path().to_owned();
    let binary_writer = binary
        .as_file()
        .try_clone()
        .map_err(io_error("writing", &binary_path))?;
    let growing = GrowingFile::new(&binary_path);
    let (extracted, written, abandoned, zip_sha256) = std::thread::scope(|scope| {
        let zip_hash = scope.spawn(|| {
            File::open(&request.zip)
                .and_then(crate::artifacts::digest::sha256_hex)
                .map_err(io_error("reading", &request.zip))
        });
        let extraction = scope.spawn(|| {
            let _ends_the_file_on_panic = FinishOnPanic(&growing);
            let mut writer = growing.writer(binary_writer);
            let extracted = extract_entry(
                &request.zip,
                &request.binary_entry,
                request.max_binary_size,
                &mut writer,
            );
            growing.finish(extracted.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            extracted
        });
        let written = (|| {
            let header = growing
                .reader()
                .map_err(io_error("reading", &binary_path))?;
            check_elf_arch(header, &request.binary_entry, request.arch)?;
            let open =
                |_: &Path| -> io::Result<Box<dyn Read + Send>> { Ok(Box::new(growing.reader()?)) };
            let dest = BufWriter::new(image.as_file_mut());
            Ok::<_, BuildError>(write_squashfs_from(layout, &request.squashfs, dest, &open)?)
        })();
        // Once the image cannot be made, the rest of the binary is not worth extracting.
        let abandoned = written.is_err() && growing.abandon();
        let extracted = extraction.join().map_err(|_| BuildError::Io {
            action: "extracting",
            path: request.binary_entry.clone(),
            source: io::Error::other("the extraction stopped unexpectedly"),
        });
        let zip_sha256 = zip_hash.join().unwrap_or_else(|_| {
            Err(BuildError::Io {
                action: "hashing",
                path: request.zip.display().to_string(),
                source: io::Error::other("the hashing stopped unexpectedly"),
            })
        });
        (extracted, written, abandoned, zip_sha256)
    });
    match (extracted?, written) {
        (Ok(extracted), Ok(written)) => Ok((extracted, written, zip_sha256?)),
        // A failed extraction is the cause of whatever failed with it, unless the build
        // had already given up on it.
        (Err(error), _) if !abandoned => Err(error.into()),
        (_, Err(error)) => Err(error),
        (Err(error), Ok(_)) => Err(error.into()),
    }
}

/// Hashes and signs the checked `image` in one read that also copies it under the
/// compatibility name, and stages it with its copy and their `.sha256` and `.asc` files.
/// Returns the image's sha256 and the staged files, the image first.
fn sign_and_stage_images(
    request: &BuildRequest,
    out_dir: &Path,
    mut image: NamedTempFile,
    key: Option<&SigningKey>,
    blocks: BlockCheck,
) -> Result<(String, Vec<Staged>), BuildError> {
    let image_name = request.image_file_name();
    let image_target = out_dir.join(&image_name);
    let compat_name =
        (request.compat_name && request.arch == Arch::Amd64).then(|| request.compat_file_name());
    let compat = compat_name
        .as_deref()
        .map(|name| new_temp(out_dir, name))
        .transpose()?;
    let compat_target = compat_name.as_ref().map(|name| out_dir.join(name));
    let read = read_back(
        image.as_file_mut(),
        &image_target,
        key,
        blocks,
        compat
            .as_ref()
            .map(NamedTempFile::as_file)
            .zip(compat_target.as_deref()),
    )?;
    let (image_sha256, image_size, image_signature) = (read.sha256, read.size, read.signature);

    let mut staged = vec![Staged {
        temp: image,
        name: image_name.clone(),
        size: image_size,
        sha256: image_sha256.clone(),
    }];
    let mut image_names = vec![image_name];
    if let (Some(temp), Some(name)) = (compat, compat_name) {
        staged.push(Staged {
            temp,
            name: name.clone(),
            size: image_size,
            sha256: image_sha256.clone(),
        });
        image_names.push(name);
    }
    for name in &image_names {
        staged.push(stage_text(
            new_temp(out_dir, name)?,
            format!("{name}.sha256"),
            &sha256sum_line(&image_sha256, name),
        )?);
        if let Some(signature) = &image_signature {
            staged.push(stage_text(
                new_temp(out_dir, name)?,
                format!("{name}.asc"),
                signature,
            )?);
        }
    }
    Ok((image_sha256, staged))
}

/// Stages the provenance `record` of the image `image_name` onto `staged`, with its
/// signature when there is a `key` (checked, as the image's is).
fn stage_record(
    out_dir: &Path,
    image_name: &str,
    record: &Statement,
    key: Option<&SigningKey>,
    staged: &mut Vec<Staged>,
) -> Result<(), BuildError> {
    let name = record_file_name(image_name);
    let text = record.to_json();
    staged.push(stage_text(new_temp(out_dir, &name)?, name, &text)?);
    if let Some(key) = key {
        let signature = key.sign_detached(text.as_bytes())?;
        key.public_key()
            .verify_detached(text.as_bytes(), signature.as_bytes())
            .map_err(BuildError::SignatureSelfCheck)?;
        let name = record_signature_file_name(image_name);
        staged.push(stage_text(new_temp(out_dir, &name)?, name, &signature)?);
    }
    Ok(())
}

/// Adds the `listed` images (the squashfs image first, then its DDI) to the `SHA256SUMS`
/// in `out_dir` (or a new one) and stages the result onto `staged`, with its signature when
/// there is a `key`. Returns how the manifest changed for each, in the same order.
fn stage_manifest(
    out_dir: &Path,
    listed: &[ManifestEntry],
    key: Option<&SigningKey>,
    staged: &mut Vec<Staged>,
) -> Result<Vec<Upsert>, BuildError> {
    let manifest_path = out_dir.join(MANIFEST_FILE);
    let mut manifest = match fs::read_to_string(&manifest_path) {
        Ok(text) => Manifest::parse(&text).map_err(|source| BuildError::Manifest {
            path: manifest_path.display().to_string(),
            source,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Manifest::default(),
        Err(e) => return Err(io_error("reading", &manifest_path)(e)),
    };
    let mut changes = Vec::new();
    for entry in listed {
        changes.push(
            manifest
                .upsert(entry.clone())
                .map_err(|source| BuildError::Manifest {
                    path: manifest_path.display().to_string(),
                    source,
                })?,
        );
    }
    let manifest_text = manifest.render();
    staged.push(stage_text(
        new_temp(out_dir, MANIFEST_FILE)?,
        MANIFEST_FILE.to_owned(),
        &manifest_text,
    )?);
    if let Some(key) = key {
        let signature = key.sign_detached(manifest_text.as_bytes())?;
        key.public_key()
            .verify_detached(manifest_text.as_bytes(), signature.as_bytes())
            .map_err(BuildError::SignatureSelfCheck)?;
        staged.push(stage_text(
            new_temp(out_dir, MANIFEST_SIGNATURE_FILE)?,
            MANIFEST_SIGNATURE_FILE.to_owned(),
            &signature,
        )?);
    }
    Ok(changes)
}

/// Puts every staged file in place: on disk first, then renamed, in order (images before
/// the manifest that names them), so that a crash never leaves a manifest pointing at a
/// missing image.
fn put_in_place(out_dir: &Path, staged: Vec<Staged>) -> Result<Vec<OutputFile>, BuildError> {
    for file in &staged {
        file.temp
            .as_file()
            .sync_all()
            .map_err(io_error("writing", file.temp.path()))?;
    }
    let mut files = Vec::new();
    for file in staged {
        let target = out_dir.join(&file.name);
        file.temp
            .persist(&target)
            .map_err(|e| io_error("renaming into", &target)(e.error))?;
        files.push(OutputFile {
            name: file.name,
            size: file.size,
            sha256: file.sha256,
        });
    }
    Ok(files)
}

/// Removes the `SHA256SUMS.gpg` in `out_dir`, if any: an unsigned build has just replaced
/// the manifest it signed.
fn remove_stale_manifest_signature(out_dir: &Path) -> Result<(), BuildError> {
    let signature_path = out_dir.join(MANIFEST_SIGNATURE_FILE);
    match fs::remove_file(&signature_path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing the stale", &signature_path)(e)),
    }
}

/// What the one read of the finished image found.
struct ReadImage {
    sha256: String,
    size: u64,
    signature: Option<String>,
}

/// Reads the finished `image` once, from the start: hashes it, signs it with `key`, checks
/// its stored blocks and the new signature, and copies it to `copy`.
fn read_back(
    image: &mut File,
    image_path: &Path,
    key: Option<&SigningKey>,
    blocks: BlockCheck,
    copy: Option<(&File, &Path)>,
) -> Result<ReadImage, BuildError> {
    let copy_path = copy.map(|(_, path)| path).unwrap_or(image_path);
    let copy = match copy {
        Some((file, path)) => Some(BufWriter::with_capacity(
            READ_BACK_BUFFER,
            file.try_clone().map_err(io_error("writing", path))?,
        )),
        None => None,
    };
    image.rewind().map_err(io_error("reading", image_path))?;
    let sinks = ReadBack {
        sha256: Sha256::new(),
        size: 0,
        blocks,
        signature_hash: key.map(|_| SignedDataHash::for_our_signatures()),
        copy,
    };
    let mut tee = TeeReader::new(BufReader::with_capacity(READ_BACK_BUFFER, &*image), sinks);
    let signed = match key {
        Some(key) => key.sign_detached(&mut tee).map(Some),
        None => io::copy(&mut tee, &mut io::sink())
            .map(|_| None)
            .map_err(|source| SigningError::ReadData { source }),
    };
    let (sinks, copy_error) = tee.into_copy();
    if let Some(error) = copy_error {
        return Err(io_error("copying the image to", copy_path)(error));
    }
    let signature = match signed {
        Ok(signature) => signature,
        Err(SigningError::ReadData { source }) => {
            return Err(io_error("reading", image_path)(source));
        }
        Err(error) => return Err(error.into()),
    };
    let ReadBack {
        sha256,
        size,
        blocks,
        signature_hash,
        copy,
    } = sinks;
    if let Some(copy) = copy {
        copy.into_inner()
            .map_err(|e| io_error("copying the image to", copy_path)(e.into_error()))?;
    }
    blocks.finish()?;
    if let (Some(key), Some(signature), Some(hash)) = (key, &signature, signature_hash) {
        key.public_key()
            .verify_detached_hashed(hash, signature.as_bytes())
            .map_err(BuildError::SignatureSelfCheck)?;
    }
    Ok(ReadImage {
        sha256: hex::encode(sha256.finalize()),
        size,
        signature,
    })
}

fn stage_text(mut temp: NamedTempFile, name: String, text: &str) -> Result<Staged, BuildError> {
    temp.write_all(text.as_bytes())
        .and_then(|()| temp.flush())
        .map_err(io_error("writing", temp.path()))?;
    Ok(Staged {
        temp,
        name,
        size: text.len() as u64,
        sha256: crate::artifacts::digest::sha256_hex(text.as_bytes())
            .expect("hashing memory cannot fail"),
    })
}
