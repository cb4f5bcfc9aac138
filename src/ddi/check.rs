//! Checking a DDI as a host's kernel would, without device-mapper: the hash partition is the
//! dm-verity tree of the data partition (recomputed from the data, with the salt and UUID
//! its seed gives), the partition UUIDs are the root hash's halves, the signature partition
//! names that root hash, and its signature verifies with the certificate hosts trust.
//! [`same_data`] compares the data partition with a squashfs image, for `rebuild-check`.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::arch::Arch;
use crate::ddi::certificate::VerityCertificate;
use crate::ddi::image::{DdiError, DdiImage};
use crate::ddi::partition::PartitionRole;
use crate::ddi::seed::SeedHasher;
use crate::ddi::signature::SignatureError;
use crate::ddi::verity::{BLOCK_SIZE, LeafHasher, RootHash, VerityParams};

const READ_BUFFER: usize = 1 << 20;

/// What a DDI that passed its check holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedDdi {
    pub arch: Arch,
    pub root_hash: RootHash,
    /// The fingerprint of the certificate that signed it.
    pub certificate_fingerprint: String,
}

impl CheckedDdi {
    /// Refuses a DDI whose partitions are for another architecture than its name says
    /// (`named`, when the name says one): hosts take the image by its name, and would
    /// never merge it.
    pub fn named(self, named: Option<Arch>) -> Result<CheckedDdi, DdiCheckError> {
        match named {
            Some(named) if named != self.arch => Err(DdiCheckError::Arch {
                found: self.arch,
                named,
            }),
            _ => Ok(self),
        }
    }
}

/// Why a DDI fails its check.
#[derive(Debug, thiserror::Error)]
pub enum DdiCheckError {
    #[error(transparent)]
    Read(#[from] DdiError),
    #[error("reading {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("the data partition is empty")]
    EmptyData,
    #[error(
        "the hash partition is not the dm-verity tree of the data partition: {0} (the data or the tree was changed)"
    )]
    HashPartition(String),
    #[error(
        "the signature partition names root hash {named}, but the data partition's is {computed}"
    )]
    RootHash { named: String, computed: String },
    #[error("the {role} partition's UUID is {found}, not {expected} from the root hash")]
    PartitionUuid {
        role: PartitionRole,
        found: uuid::Uuid,
        expected: uuid::Uuid,
    },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("its partitions are for {found}, its name says {named}")]
    Arch { found: Arch, named: Arch },
    #[error("the data partition differs from the squashfs image {squashfs}: {reason}")]
    DataDiffers { squashfs: String, reason: String },
}

/// Checks the DDI `file` (named `path` in errors), and its signature against `certificate`
/// when one is given: see the module's documentation for what is checked.
pub fn check_ddi(
    file: &mut File,
    path: &Path,
    certificate: Option<&VerityCertificate>,
) -> Result<CheckedDdi, DdiCheckError> {
    let image = DdiImage::read(file, path)?;
    let io_error = |source| DdiCheckError::Io {
        path: path.display().to_string(),
        source,
    };
    // The seed (and so the salt) comes from all the data, the leaves' hashes need the salt:
    // two reads.
    let mut seed = SeedHasher::default();
    read_partition(&image, file, PartitionRole::Root, |bytes| {
        seed.update(bytes)
    })
    .map_err(io_error)?;
    let seed = seed.finish();
    let params = VerityParams {
        salt: seed.verity_salt(),
        uuid: seed.verity_uuid(),
    };
    let mut leaves = LeafHasher::new(params.salt);
    read_partition(&image, file, PartitionRole::Root, |bytes| {
        leaves.update(bytes)
    })
    .map_err(io_error)?;
    let tree = leaves.finish().ok_or(DdiCheckError::EmptyData)?;
    let expected = tree.to_bytes(&params);
    let mut hash_partition = Vec::new();
    read_partition(&image, file, PartitionRole::RootVerity, |bytes| {
        hash_partition.extend_from_slice(bytes)
    })
    .map_err(io_error)?;
    if hash_partition.len() < expected.len() {
        return Err(DdiCheckError::HashPartition(format!(
            "it is {} bytes, the tree needs {}",
            hash_partition.len(),
            expected.len()
        )));
    }
    if let Some(offset) = first_difference(&hash_partition[..expected.len()], &expected) {
        return Err(DdiCheckError::HashPartition(format!(
            "it differs from byte {offset}"
        )));
    }
    if hash_partition[expected.len()..].iter().any(|&b| b != 0) {
        return Err(DdiCheckError::HashPartition(
            "it has data after the tree".into(),
        ));
    }
    let root_hash = tree.root_hash();
    let named = image.signature.root_hash()?;
    if named != root_hash {
        return Err(DdiCheckError::RootHash {
            named: named.to_hex(),
            computed: root_hash.to_hex(),
        });
    }
    for (role, expected) in [
        (PartitionRole::Root, root_hash.data_partition_uuid()),
        (PartitionRole::RootVerity, root_hash.hash_partition_uuid()),
    ] {
        let found = image.partition(role).uuid;
        if found != expected {
            return Err(DdiCheckError::PartitionUuid {
                role,
                found,
                expected,
            });
        }
    }
    if let Some(certificate) = certificate {
        image.signature.verify(certificate)?;
    }
    Ok(CheckedDdi {
        arch: image.arch,
        root_hash,
        certificate_fingerprint: image.signature.certificate_fingerprint.clone(),
    })
}

/// Checks that the data partition of the DDI `file` (named `path`) is the squashfs image
/// at `squashfs`, byte for byte, zero-filled to a whole block.
pub fn same_data(file: &mut File, path: &Path, squashfs: &Path) -> Result<(), DdiCheckError> {
    let image = DdiImage::read(file, path)?;
    let differs = |reason: String| DdiCheckError::DataDiffers {
        squashfs: squashfs.display().to_string(),
        reason,
    };
    let mut expected = BufReader::with_capacity(
        READ_BUFFER,
        File::open(squashfs).map_err(|source| DdiCheckError::Io {
            path: squashfs.display().to_string(),
            source,
        })?,
    );
    let squashfs_size = std::fs::metadata(squashfs)
        .map_err(|source| DdiCheckError::Io {
            path: squashfs.display().to_string(),
            source,
        })?
        .len();
    let partition_size = image.partition(PartitionRole::Root).size;
    if partition_size != squashfs_size.next_multiple_of(BLOCK_SIZE as u64) {
        return Err(differs(format!(
            "the partition is {partition_size} bytes, the image {squashfs_size} (zero-filled to {})",
            squashfs_size.next_multiple_of(BLOCK_SIZE as u64)
        )));
    }
    let mut offset = 0u64;
    let mut mismatch = None;
    let mut buffer = vec![0; READ_BUFFER];
    let mut read_error = None;
    read_partition(&image, file, PartitionRole::Root, |bytes| {
        if mismatch.is_some() || read_error.is_some() {
            return;
        }
        let want = &mut buffer[..bytes.len()];
        let within = squashfs_size.saturating_sub(offset).min(bytes.len() as u64) as usize;
        if let Err(error) = expected.read_exact(&mut want[..within]) {
            read_error = Some(error);
            return;
        }
        want[within..].fill(0);
        if let Some(at) = first_difference(bytes, want) {
            mismatch = Some(offset + at as u64);
        }
        offset += bytes.len() as u64;
    })
    .map_err(|source| DdiCheckError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if let Some(source) = read_error {
        return Err(DdiCheckError::Io {
            path: squashfs.display().to_string(),
            source,
        });
    }
    match mismatch {
        Some(at) => Err(differs(format!("from byte {at} of the partition"))),
        None => Ok(()),
    }
}

/// Shows the bytes of the partition with `role` to `inspect`, in pieces.
fn read_partition(
    image: &DdiImage,
    file: &mut File,
    role: PartitionRole,
    mut inspect: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, image.partition_reader(file, role)?);
    let mut read = 0u64;
    loop {
        let buffer = io::BufRead::fill_buf(&mut reader)?;
        if buffer.is_empty() {
            break;
        }
        inspect(buffer);
        let n = buffer.len();
        read += n as u64;
        io::BufRead::consume(&mut reader, n);
    }
    // A file cut short (or shortened while it is read) ends a partition early.
    let size = image.partition(role).size;
    if read == size {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the {role} partition ends after {read} of its {size} bytes"),
        ))
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::{Seek, SeekFrom, Write};

    use super::*;
    use crate::ddi::test_support::{ecdsa, other_ecdsa, write_ddi_file};

    fn written(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let squashfs = dir.join("data.squashfs");
        fs::write(&squashfs, &data).unwrap();
        let path = dir.join("alloy.ddi.raw");
        write_ddi_file(&path, &squashfs, Arch::Amd64, ecdsa());
        (path, squashfs)
    }

    fn flip(path: &Path, offset: u64) {
        let mut file = File::options().read(true).write(true).open(path).unwrap();
        let mut byte = [0u8];
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.read_exact(&mut byte).unwrap();
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&[byte[0] ^ 1]).unwrap();
    }

    #[test]
    fn a_written_ddi_passes_and_a_changed_one_names_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, squashfs) = written(dir.path());
        let certificate = ecdsa().signer.certificate();
        let checked = check_ddi(&mut File::open(&path).unwrap(), &path, Some(certificate)).unwrap();
        assert_eq!(checked.arch, Arch::Amd64);
        assert_eq!(checked.certificate_fingerprint, certificate.fingerprint());
        // Under a name for the other architecture, hosts would never merge it.
        assert_eq!(
            checked
                .clone()
                .named(Some(Arch::Arm64))
                .unwrap_err()
                .to_string(),
            "its partitions are for amd64, its name says arm64"
        );
        assert_eq!(checked.clone().named(Some(Arch::Amd64)).unwrap(), checked);
        assert_eq!(checked.clone().named(None).unwrap(), checked);

        // A file cut short: its table names sectors past its end, so it is refused before
        // any partition is read.
        let cut = dir.path().join("cut.ddi.raw");
        let bytes = fs::read(&path).unwrap();
        fs::write(&cut, &bytes[..bytes.len() - 8192]).unwrap();
        let error = check_ddi(&mut File::open(&cut).unwrap(), &cut, Some(certificate)).unwrap_err();
        assert!(matches!(error, DdiCheckError::Read(_)), "{error}");
        same_data(&mut File::open(&path).unwrap(), &path, &squashfs).unwrap();

        let other = other_ecdsa().signer.certificate();
        let error = check_ddi(&mut File::open(&path).unwrap(), &path, Some(other)).unwrap_err();
        assert!(
            matches!(
                error,
                DdiCheckError::Signature(SignatureError::OtherCertificate { .. })
            ),
            "{error}"
        );

        // One byte of data: the tree no longer matches it (its seed, so the superblock's
        // UUID at byte 16, changes first).
        let image = DdiImage::read(&mut File::open(&path).unwrap(), &path).unwrap();
        let data_offset = image.partition(PartitionRole::Root).offset;
        flip(&path, data_offset + 5000);
        let error =
            check_ddi(&mut File::open(&path).unwrap(), &path, Some(certificate)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the hash partition is not the dm-verity tree of the data partition: it differs from byte 16 (the data or the tree was changed)"
        );
        assert_eq!(
            same_data(&mut File::open(&path).unwrap(), &path, &squashfs)
                .unwrap_err()
                .to_string(),
            format!(
                "the data partition differs from the squashfs image {}: from byte 5000 of the partition",
                squashfs.display()
            )
        );
    }
}
