//! Writing a DDI from a squashfs image, and reading one back.
//!
//! Writing reads the squashfs twice: once for the seed (every identifier and the salt come
//! from it, and the leaves' hashes need the salt), then once more to hash the leaves while
//! copying the data into place. The hash tree, the signature partition and the table
//! follow, and a last read hashes the finished image for its `.sha256`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::arch::Arch;
use crate::ddi::certificate::VeritySigner;
use crate::ddi::gpt::{GptError, TableEntry, read_table, write_table};
use crate::ddi::layout::{DiskLayout, SIGNATURE_PARTITION_SIZE};
use crate::ddi::partition::PartitionRole;
use crate::ddi::seed::{ImageSeed, SeedHasher};
use crate::ddi::signature::{SignatureError, SignaturePartition};
use crate::ddi::verity::{BLOCK_SIZE, LeafHasher, RootHash, VerityParams, hash_area_size};

/// The read buffer for the data partition's two reads.
const READ_BUFFER: usize = 1 << 20;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdiSummary {
    pub root_hash: RootHash,
    /// The seed every identifier comes from (`systemd-repart --seed=` rebuilds the image
    /// from the same squashfs with it).
    pub seed: ImageSeed,
    pub arch: Arch,
    /// Sizes in bytes: the whole image, and its data and hash partitions.
    pub size: u64,
    pub data_size: u64,
    pub hash_size: u64,
    /// sha256 of the whole image, lowercase hex.
    pub sha256: String,
    /// The signature partition's content.
    pub signature: SignaturePartition,
}

/// Why a DDI could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{0} is empty: a DDI needs at least one data block")]
    EmptyData(String),
    #[error(transparent)]
    Gpt(#[from] GptError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the signature just made does not verify with its own certificate: {0}")]
    SignatureSelfCheck(SignatureError),
    #[error("{path} is not a system extension DDI: {reason}")]
    NotDdi { path: String, reason: String },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DdiError + use<> {
    let path = path.display().to_string();
    move |source| DdiError::Io {
        action,
        path,
        source,
    }
}

/// Writes the DDI of the squashfs image at `squashfs` for `arch`, signed by `signer`, into
/// `dest` (replacing what it held), which is named `dest_path` in errors.
pub fn write_ddi(
    squashfs: &Path,
    arch: Arch,
    signer: &VeritySigner,
    dest: &mut File,
    dest_path: &Path,
) -> Result<DdiSummary, DdiError> {
    let mut source = File::open(squashfs).map_err(io_error("opening", squashfs))?;
    let (seed, squashfs_size) = seed_of(&mut source, squashfs)?;
    if squashfs_size == 0 {
        return Err(DdiError::EmptyData(squashfs.display().to_string()));
    }
    let params = VerityParams {
        salt: seed.verity_salt(),
        uuid: seed.verity_uuid(),
    };
    let data_size = squashfs_size.next_multiple_of(BLOCK_SIZE as u64);
    let layout = DiskLayout::new(data_size, hash_area_size(data_size / BLOCK_SIZE as u64));

    dest.set_len(0)
        .and_then(|()| dest.set_len(layout.disk_size))
        .map_err(io_error("writing", dest_path))?;
    dest.seek(SeekFrom::Start(layout.data_offset))
        .map_err(io_error("writing", dest_path))?;
    source.rewind().map_err(io_error("reading", squashfs))?;
    let mut leaves = LeafHasher::new(params.salt);
    copy_hashing(
        &mut BufReader::with_capacity(READ_BUFFER, &mut source),
        squashfs,
        &mut BufWriter::with_capacity(READ_BUFFER, &mut *dest),
        dest_path,
        |bytes| leaves.update(bytes),
    )?;
    let tree = leaves
        .finish()
        .ok_or_else(|| DdiError::EmptyData(squashfs.display().to_string()))?;
    let root_hash = tree.root_hash();

    let signature = SignaturePartition::sign(root_hash, signer)?;
    signature
        .verify(signer.certificate())
        .map_err(DdiError::SignatureSelfCheck)?;
    let signature_bytes = signature.to_partition_bytes()?;
    write_at(dest, layout.hash_offset, &tree.to_bytes(&params))
        .map_err(io_error("writing", dest_path))?;
    write_at(dest, layout.signature_offset, &signature_bytes)
        .map_err(io_error("writing", dest_path))?;

    let entries = table_entries(&layout, arch, root_hash, &seed);
    write_table(dest, &layout, seed.disk_guid(), &entries)?;
    dest.flush().map_err(io_error("writing", dest_path))?;

    dest.rewind().map_err(io_error("reading", dest_path))?;
    let mut sha256 = Sha256::new();
    let size = io::copy(
        &mut BufReader::with_capacity(READ_BUFFER, &mut *dest),
        &mut Inspect(|bytes: &[u8]| sha256.update(bytes)),
    )
    .map_err(io_error("reading", dest_path))?;
    Ok(DdiSummary {
        root_hash,
        seed,
        arch,
        size,
        data_size: layout.data_size,
        hash_size: layout.hash_size,
        sha256: hex::encode(sha256.finalize()),
        signature,
    })
}

/// The three entries, in order.
fn table_entries(
    layout: &DiskLayout,
    arch: Arch,
    root_hash: RootHash,
    seed: &ImageSeed,
) -> Vec<TableEntry> {
    let entry = |role: PartitionRole, uuid: Uuid, offset: u64, size: u64| TableEntry {
        type_guid: role.type_guid(arch),
        uuid,
        label: role.label(arch),
        attributes: role.attributes(),
        offset,
        size,
    };
    let signature_type = PartitionRole::RootVeritySig.type_guid(arch);
    vec![
        entry(
            PartitionRole::Root,
            root_hash.data_partition_uuid(),
            layout.data_offset,
            layout.data_size,
        ),
        entry(
            PartitionRole::RootVerity,
            root_hash.hash_partition_uuid(),
            layout.hash_offset,
            layout.hash_size,
        ),
        entry(
            PartitionRole::RootVeritySig,
            seed.partition_uuid(signature_type),
            layout.signature_offset,
            SIGNATURE_PARTITION_SIZE,
        ),
    ]
}

/// The seed of the data partition (the squashfs zero-filled to whole blocks), and the
/// squashfs's size.
fn seed_of(source: &mut File, path: &Path) -> Result<(ImageSeed, u64), DdiError> {
    let mut hasher = SeedHasher::default();
    let size = io::copy(
        &mut BufReader::with_capacity(READ_BUFFER, source),
        &mut Inspect(|bytes: &[u8]| hasher.update(bytes)),
    )
    .map_err(io_error("reading", path))?;
    let padding = size.next_multiple_of(BLOCK_SIZE as u64) - size;
    hasher.update(&vec![0; padding as usize]);
    Ok((hasher.finish(), size))
}

/// Copies `reader` to `writer`, showing each piece to `inspect` on the way.
fn copy_hashing(
    reader: &mut impl io::BufRead,
    reader_path: &Path,
    writer: &mut impl Write,
    writer_path: &Path,
    mut inspect: impl FnMut(&[u8]),
) -> Result<(), DdiError> {
    loop {
        let buffer = reader
            .fill_buf()
            .map_err(io_error("reading", reader_path))?;
        if buffer.is_empty() {
            break;
        }
        inspect(buffer);
        writer
            .write_all(buffer)
            .map_err(io_error("writing", writer_path))?;
        let n = buffer.len();
        reader.consume(n);
    }
    writer.flush().map_err(io_error("writing", writer_path))
}

fn write_at(file: &mut File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

/// A writer that only shows each piece to a function.
struct Inspect<F: FnMut(&[u8])>(F);

impl<F: FnMut(&[u8])> Write for Inspect<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (self.0)(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One partition of a DDI that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdiPartition {
    pub role: PartitionRole,
    pub type_guid: Uuid,
    pub uuid: Uuid,
    pub label: String,
    /// GPT attribute bits.
    pub attributes: u64,
    /// Byte offset and size in the image.
    pub offset: u64,
    pub size: u64,
}

/// A DDI as read back: its partitions in order and its signature partition's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdiImage {
    pub arch: Arch,
    pub disk_guid: Uuid,
    /// Root, root-verity, root-verity-sig.
    pub partitions: Vec<DdiPartition>,
    pub signature: SignaturePartition,
}

impl DdiImage {
    /// Reads the table and the signature partition of the DDI `file` (named `path` in
    /// errors). It must have exactly the three partitions of a system extension, in order,
    /// for one architecture.
    pub fn read(file: &mut File, path: &Path) -> Result<DdiImage, DdiError> {
        let not_ddi = |reason: String| DdiError::NotDdi {
            path: path.display().to_string(),
            reason,
        };
        file.rewind().map_err(io_error("reading", path))?;
        let table = read_table(&mut *file)?;
        let mut partitions = Vec::new();
        let mut arch = None;
        for (entry, expected) in table.entries.iter().zip(PartitionRole::ALL) {
            let (role, entry_arch) = PartitionRole::of_type_guid(entry.type_guid)
                .ok_or_else(|| not_ddi(format!("partition type {}", entry.type_guid)))?;
            if role != expected || arch.is_some_and(|a| a != entry_arch) {
                return Err(not_ddi(format!(
                    "partition {} is {role} for {entry_arch}, expected {expected}",
                    partitions.len() + 1
                )));
            }
            arch = Some(entry_arch);
            partitions.push(DdiPartition {
                role,
                type_guid: entry.type_guid,
                uuid: entry.uuid,
                label: entry.label.clone(),
                attributes: entry.attributes,
                offset: entry.offset,
                size: entry.size,
            });
        }
        let (Some(arch), 3) = (arch, table.entries.len()) else {
            return Err(not_ddi(format!(
                "{} partitions, expected root, root-verity and root-verity-sig",
                table.entries.len()
            )));
        };
        let signature_partition = &partitions[2];
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(signature_partition.offset))
            .and_then(|_| {
                (&mut *file)
                    .take(signature_partition.size)
                    .read_to_end(&mut bytes)
            })
            .map_err(io_error("reading", path))?;
        let signature = SignaturePartition::from_partition_bytes(&bytes)?;
        Ok(DdiImage {
            arch,
            disk_guid: table.disk_guid,
            partitions,
            signature,
        })
    }

    /// The partition with `role`.
    pub fn partition(&self, role: PartitionRole) -> &DdiPartition {
        self.partitions
            .iter()
            .find(|p| p.role == role)
            .expect("a read DDI has all three partitions")
    }

    /// A reader of the partition with `role` in `file` (the file this was read from).
    pub fn partition_reader<'f>(
        &self,
        file: &'f mut File,
        role: PartitionRole,
    ) -> io::Result<io::Take<&'f mut File>> {
        let partition = self.partition(role);
        file.seek(SeekFrom::Start(partition.offset))?;
        Ok(file.take(partition.size))
    }
}
