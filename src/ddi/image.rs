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

/// The largest signature partition read: systemd's limit for its JSON.
const MAX_SIGNATURE_PARTITION: u64 = 4 << 20;
/// How much larger than its tree a hash partition may be: room for alignment, and for the
/// slack of small images (below 4 MiB the layout gives the rest of the disk to the tree).
const MAX_HASH_SLACK: u64 = 4 << 20;

/// Refuses partitions whose sizes no DDI has, before anything reads them whole: a data
/// partition that is not whole 4 KiB blocks, a hash partition much larger than the tree
/// of that data, a signature partition larger than systemd reads, or partitions that
/// overlap. The partitions are [root, root-verity, root-verity-sig].
fn check_geometry(partitions: &[DdiPartition]) -> Result<(), String> {
    let [data, hash, signature] = partitions else {
        return Err(format!("{} partitions", partitions.len()));
    };
    if data.size == 0 || !data.size.is_multiple_of(BLOCK_SIZE as u64) {
        return Err(format!(
            "the data partition is {} bytes, not whole {BLOCK_SIZE}-byte blocks",
            data.size
        ));
    }
    let tree = hash_area_size(data.size / BLOCK_SIZE as u64);
    if hash.size > tree + MAX_HASH_SLACK {
        return Err(format!(
            "the hash partition is {} bytes, the tree of the data partition {tree}",
            hash.size
        ));
    }
    if signature.size > MAX_SIGNATURE_PARTITION {
        return Err(format!(
            "the signature partition is {} bytes, more than {MAX_SIGNATURE_PARTITION}",
            signature.size
        ));
    }
    for (i, a) in partitions.iter().enumerate() {
        for b in &partitions[i + 1..] {
            if a.offset < b.offset + b.size && b.offset < a.offset + a.size {
                return Err(format!("the {} and {} partitions overlap", a.role, b.role));
            }
        }
    }
    Ok(())
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
        check_geometry(&partitions).map_err(not_ddi)?;
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;
    use crate::ddi::layout::SECTOR_SIZE;
    use crate::ddi::partition::READ_ONLY;
    use crate::ddi::test_support::{
        TestSigner, ecdsa, other_ecdsa, rsa, run_fail, run_ok, write_ddi_file,
    };

    /// A stand-in for a squashfs image: `size` bytes of deterministic content.
    fn data_file(dir: &Path, size: usize) -> PathBuf {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        data.truncate(size);
        let path = dir.join(format!("data-{size}.squashfs"));
        fs::write(&path, data).unwrap();
        path
    }

    /// Writes the DDI of `data` to `dir/alloy.raw`.
    fn ddi(dir: &Path, data: &Path, arch: Arch, signer: &TestSigner) -> (PathBuf, DdiSummary) {
        let path = dir.join("alloy.raw");
        let summary = write_ddi_file(&path, data, arch, signer);
        (path, summary)
    }

    /// A partition's bytes, copied out to `dir/<designator>`.
    fn extract(image: &Path, role: PartitionRole, dir: &Path) -> PathBuf {
        let mut file = fs::File::open(image).unwrap();
        let ddi = DdiImage::read(&mut file, image).unwrap();
        let mut bytes = Vec::new();
        ddi.partition_reader(&mut file, role)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        let path = dir.join(role.designator());
        fs::write(&path, bytes).unwrap();
        path
    }

    fn sfdisk_json(image: &Path) -> serde_json::Value {
        let output = run_ok(Command::new("sfdisk").arg("--json").arg(image));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    #[test]
    fn sfdisk_reads_the_table_back_on_small_and_large_disks() {
        let dir = tempfile::tempdir().unwrap();
        for (size, arch, first_lba, free) in [
            (
                172 * 4096 - 100,
                Arch::Amd64,
                34,
                "13 free sectors is available in 2 segments (the largest is 3.5 KiB)",
            ),
            (
                1500 * 4096,
                Arch::Arm64,
                2048,
                "7 free sectors is available in 1 segment",
            ),
        ] {
            let data = data_file(dir.path(), size);
            let (image, summary) = ddi(dir.path(), &data, arch, ecdsa());
            let verify = run_ok(Command::new("sfdisk").arg("--verify").arg(&image));
            // The gaps are libfdisk's too: before the first 4 KiB boundary, and after the last
            // one before the backup table.
            assert_eq!(
                String::from_utf8(verify.stdout).unwrap(),
                format!(
                    "{}:\nNo errors detected.\nHeader version: 1.0\nUsing 3 out of 128 partitions.\nA total of {free}.\n",
                    image.display()
                ),
                "{size}"
            );
            let sectors = summary.size / SECTOR_SIZE;
            let layout =
                DiskLayout::new(summary.data_size, hash_area_size(summary.data_size / 4096));
            let name = |role: PartitionRole| role.label(arch);
            let upper = |uuid: Uuid| uuid.to_string().to_uppercase();
            let node = image.display().to_string();
            let partition = |n: u32, offset: u64, size: u64, role: PartitionRole, uuid: Uuid| {
                let mut value = serde_json::json!({
                    "node": format!("{node}{n}"),
                    "start": offset / SECTOR_SIZE,
                    "size": size / SECTOR_SIZE,
                    "type": upper(role.type_guid(arch)),
                    "uuid": upper(uuid),
                    "name": name(role),
                });
                if role.attributes() == READ_ONLY {
                    value["attrs"] = "GUID:60".into();
                }
                value
            };
            let seed = summary.seed;
            let mut read = sfdisk_json(&image);
            // sfdisk's guess at the alignment a new partition would get, not part of the table.
            read["partitiontable"]
                .as_object_mut()
                .unwrap()
                .remove("grain");
            assert_eq!(
                read,
                serde_json::json!({"partitiontable": {
                    "label": "gpt",
                    "id": upper(seed.disk_guid()),
                    "device": node,
                    "unit": "sectors",
                    "firstlba": first_lba,
                    "lastlba": sectors - 34,
                    "sectorsize": 512,
                    "partitions": [
                        partition(1, layout.data_offset, layout.data_size, PartitionRole::Root,
                            summary.root_hash.data_partition_uuid()),
                        partition(2, layout.hash_offset, layout.hash_size, PartitionRole::RootVerity,
                            summary.root_hash.hash_partition_uuid()),
                        partition(3, layout.signature_offset, SIGNATURE_PARTITION_SIZE,
                            PartitionRole::RootVeritySig,
                            seed.partition_uuid(PartitionRole::RootVeritySig.type_guid(arch))),
                    ]
                }})
            );
        }
    }

    #[test]
    fn veritysetup_accepts_the_data_and_hash_partitions_and_catches_a_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path(), 300 * 4096 + 1234);
        let (image, summary) = ddi(dir.path(), &data, Arch::Amd64, rsa());
        let data_partition = extract(&image, PartitionRole::Root, dir.path());
        let hash_partition = extract(&image, PartitionRole::RootVerity, dir.path());
        let original = fs::read(&data).unwrap();
        let copied = fs::read(&data_partition).unwrap();
        assert_eq!(copied[..original.len()], original[..]);
        assert!(copied[original.len()..].iter().all(|&b| b == 0));
        let verify = || {
            let mut command = Command::new("veritysetup");
            command
                .arg("verify")
                .arg(&data_partition)
                .arg(&hash_partition)
                .arg(summary.root_hash.to_hex());
            command
        };
        run_ok(&mut verify());
        let dump = String::from_utf8(
            run_ok(Command::new("veritysetup").arg("dump").arg(&hash_partition)).stdout,
        )
        .unwrap();
        assert!(
            dump.contains(&format!(
                "UUID:            \t{}\n",
                summary.seed.verity_uuid()
            )),
            "{dump}"
        );
        assert!(
            dump.contains(&format!(
                "Salt:            \t{}\n",
                hex::encode(summary.seed.verity_salt())
            )),
            "{dump}"
        );
        let mut flipped = copied;
        flipped[200 * 4096 + 17] ^= 0x01;
        fs::write(&data_partition, flipped).unwrap();
        let (code, stderr) = run_fail(&mut verify());
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            "Verification failed at position 819200.\nVerification of data area failed."
        );
    }

    #[test]
    fn the_signature_verifies_with_openssl_and_only_with_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path(), 50 * 4096);
        for signer in [rsa(), ecdsa()] {
            let (image, summary) = ddi(dir.path(), &data, Arch::Amd64, signer);
            let mut file = fs::File::open(&image).unwrap();
            let read = DdiImage::read(&mut file, &image).unwrap();
            assert_eq!(read.signature, summary.signature);
            assert_eq!(read.signature.root_hash, summary.root_hash.to_hex());
            let p7s = dir.path().join("sig.p7s");
            fs::write(&p7s, read.signature.pkcs7().unwrap()).unwrap();
            let content = dir.path().join("roothash.txt");
            fs::write(&content, summary.root_hash.to_hex()).unwrap();
            let cms_verify = |content: &Path, ca: &Path| {
                let mut command = Command::new("openssl");
                command
                    .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
                    .arg(&p7s)
                    .arg("-content")
                    .arg(content)
                    .arg("-CAfile")
                    .arg(ca)
                    .args(["-out", "/dev/null"]);
                command
            };
            run_ok(&mut cms_verify(&content, &signer.certificate_path()));
            read.signature.verify(signer.signer.certificate()).unwrap();

            let (code, stderr) =
                run_fail(&mut cms_verify(&content, &other_ecdsa().certificate_path()));
            assert_eq!(code, Some(4), "{stderr}");
            assert!(stderr.contains("self-signed certificate"), "{stderr}");
            let err = read
                .signature
                .verify(other_ecdsa().signer.certificate())
                .unwrap_err();
            assert!(
                matches!(err, SignatureError::OtherCertificate { .. }),
                "{err}"
            );
            // Named as the other certificate, the signature still embeds the signer's.
            let mut renamed = read.signature.clone();
            renamed.certificate_fingerprint = other_ecdsa().signer.certificate().fingerprint();
            let err = renamed
                .verify(other_ecdsa().signer.certificate())
                .unwrap_err();
            assert!(
                matches!(&err, SignatureError::Pkcs7(reason) if reason.contains("embeds a certificate other than the trusted one")),
                "{err}"
            );

            let with_newline = dir.path().join("roothash-newline.txt");
            fs::write(&with_newline, format!("{}\n", summary.root_hash)).unwrap();
            let (code, stderr) =
                run_fail(&mut cms_verify(&with_newline, &signer.certificate_path()));
            assert_eq!(code, Some(4), "{stderr}");
        }
    }

    #[test]
    fn the_rsa_signature_is_the_one_openssl_smime_makes_without_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path(), 20 * 4096);
        let (_, summary) = ddi(dir.path(), &data, Arch::Amd64, rsa());
        let content = dir.path().join("roothash.txt");
        fs::write(&content, summary.root_hash.to_hex()).unwrap();
        let theirs = run_ok(
            Command::new("openssl")
                .args([
                    "smime", "-sign", "-noattr", "-binary", "-outform", "DER", "-in",
                ])
                .arg(&content)
                .arg("-signer")
                .arg(rsa().certificate_path())
                .arg("-inkey")
                .arg(rsa().key_path()),
        )
        .stdout;
        assert!(theirs == summary.signature.pkcs7().unwrap());
    }

    #[test]
    fn the_json_fills_the_start_of_the_partition_and_nuls_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path(), 20 * 4096);
        let (image, summary) = ddi(dir.path(), &data, Arch::Arm64, rsa());
        let bytes = fs::read(extract(&image, PartitionRole::RootVeritySig, dir.path())).unwrap();
        assert_eq!(bytes.len() as u64, SIGNATURE_PARTITION_SIZE);
        let json = format!(
            "{{\"rootHash\":\"{}\",\"certificateFingerprint\":\"{}\",\"signature\":\"{}\"}}",
            summary.root_hash,
            rsa().signer.certificate().fingerprint(),
            summary.signature.signature
        );
        assert_eq!(&bytes[..json.len()], json.as_bytes());
        assert!(bytes[json.len()..].iter().all(|&b| b == 0));

        let mut trailing = bytes.clone();
        trailing[json.len() + 10] = b'x';
        assert!(matches!(
            SignaturePartition::from_partition_bytes(&trailing),
            Err(SignatureError::TrailingData)
        ));
    }

    #[test]
    fn the_same_data_and_key_make_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path(), 700 * 4096);
        for signer in [rsa(), ecdsa()] {
            let (image, first) = ddi(dir.path(), &data, Arch::Amd64, signer);
            let first_bytes = fs::read(&image).unwrap();
            let (image, second) = ddi(dir.path(), &data, Arch::Amd64, signer);
            assert_eq!(first, second);
            assert!(first_bytes == fs::read(&image).unwrap());
            assert_eq!(first.sha256, hex::encode(Sha256::digest(&first_bytes)));
        }
    }

    /// The CRC-32 the GPT uses (IEEE, reflected).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    /// Changes the primary GPT of the image at `path` as a hostile file would: `edit` gets
    /// the header's 92 bytes and the 128 entries; both CRCs are recomputed after it, since
    /// anyone can.
    fn rewrite_primary_gpt(path: &Path, edit: impl FnOnce(&mut [u8], &mut [u8])) {
        let mut bytes = fs::read(path).unwrap();
        let (head, rest) = bytes.split_at_mut(1024);
        let header = &mut head[512..512 + 92];
        let entries = &mut rest[..128 * 128];
        edit(header, entries);
        let entries_crc = crc32(entries);
        header[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        header[16..20].fill(0);
        let header_crc = crc32(header);
        header[16..20].copy_from_slice(&header_crc.to_le_bytes());
        fs::write(path, bytes).unwrap();
    }

    fn read_error(path: &Path) -> String {
        let mut file = fs::File::open(path).unwrap();
        DdiImage::read(&mut file, path).unwrap_err().to_string()
    }

    #[test]
    fn a_hostile_partition_table_is_refused_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path(), 20 * 4096);
        let (path, _) = ddi(dir.path(), &data, Arch::Amd64, ecdsa());
        let original = fs::read(&path).unwrap();
        let reset = || fs::write(&path, &original).unwrap();
        // Untouched, with the CRCs recomputed the same, it reads.
        rewrite_primary_gpt(&path, |_, _| {});
        assert_eq!(fs::read(&path).unwrap(), original);

        // Entries of another size (the gpt crate asserts on them).
        rewrite_primary_gpt(&path, |header, _| {
            header[84..88].copy_from_slice(&256u32.to_le_bytes())
        });
        let err = read_error(&path);
        assert!(err.contains("entries of 256 bytes, expected 128"), "{err}");

        // A million entries (the crate would read and hold them all).
        reset();
        rewrite_primary_gpt(&path, |header, _| {
            header[80..84].copy_from_slice(&1_000_000u32.to_le_bytes())
        });
        let err = read_error(&path);
        assert!(err.contains("1000000 entries, at most 128"), "{err}");

        // The signature partition running past the usable sectors, and so past the file.
        reset();
        rewrite_primary_gpt(&path, |_, entries| {
            let last_lba = &mut entries[2 * 128 + 40..2 * 128 + 48];
            last_lba.copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        });
        let err = read_error(&path);
        assert!(err.contains("partition 3 spans sectors"), "{err}");

        // A partition that ends before it starts.
        reset();
        rewrite_primary_gpt(&path, |_, entries| {
            let first_lba = u64::from_le_bytes(entries[32..40].try_into().unwrap());
            entries[40..48].copy_from_slice(&(first_lba - 1).to_le_bytes());
        });
        let err = read_error(&path);
        assert!(err.contains("partition 1 spans sectors"), "{err}");

        // The hash partition starting inside the data partition.
        reset();
        rewrite_primary_gpt(&path, |_, entries| {
            let first_lba = u64::from_le_bytes(entries[128 + 32..128 + 40].try_into().unwrap());
            entries[128 + 32..128 + 40].copy_from_slice(&(first_lba - 8).to_le_bytes());
        });
        let err = read_error(&path);
        assert!(
            err.contains("the root and root-verity partitions overlap"),
            "{err}"
        );
    }

    #[test]
    fn partition_sizes_no_ddi_has_are_refused_before_they_are_read() {
        let partition = |role, offset, size| DdiPartition {
            role,
            type_guid: role.type_guid(Arch::Amd64),
            uuid: Uuid::nil(),
            label: String::new(),
            attributes: 0,
            offset,
            size,
        };
        let mib = 1 << 20;
        let layout = |data: u64, hash: u64, signature: u64| {
            vec![
                partition(PartitionRole::Root, mib, data),
                partition(PartitionRole::RootVerity, mib + data, hash),
                partition(PartitionRole::RootVeritySig, mib + data + hash, signature),
            ]
        };
        let tree = hash_area_size(1024);
        assert_eq!(check_geometry(&layout(4 * mib, tree, 16384)), Ok(()));
        assert_eq!(
            check_geometry(&layout(4 * mib + 512, tree, 16384)),
            Err("the data partition is 4194816 bytes, not whole 4096-byte blocks".into())
        );
        assert!(
            check_geometry(&layout(4 * mib, tree + 5 * mib, 16384))
                .unwrap_err()
                .starts_with("the hash partition is"),
        );
        assert_eq!(
            check_geometry(&layout(4 * mib, tree, 5 * mib)),
            Err("the signature partition is 5242880 bytes, more than 4194304".into())
        );
    }

    #[test]
    fn only_a_system_extension_ddi_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path(), 20 * 4096);
        let mut file = fs::File::open(&data).unwrap();
        let err = DdiImage::read(&mut file, &data).unwrap_err();
        assert!(matches!(err, DdiError::Gpt(_)), "{err}");
        let empty = dir.path().join("empty");
        fs::write(&empty, b"").unwrap();
        let out = dir.path().join("out.raw");
        let mut file = fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&out)
            .unwrap();
        let err = write_ddi(&empty, Arch::Amd64, &rsa().signer, &mut file, &out).unwrap_err();
        assert!(matches!(err, DdiError::EmptyData(_)), "{err}");
    }
}
