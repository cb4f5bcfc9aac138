//! Receiving a webhook body before its signature is known, at a bounded cost in memory.
//!
//! Anyone can POST to the webhook route, so until its signature checks out a body is a
//! stranger's. At most [`MEMORY_BUDGET`] bytes of such bodies are held in memory at once,
//! across all requests, whatever arrives. A body that does not fit in what is left of the
//! budget, or declares a length over [`MAX_RESERVATION`], streams to a temporary file in
//! `DATA_DIR/incoming` instead, so GitHub's deliveries are still taken up to its 25 MiB
//! limit. Either way the signature is computed as the bytes go by, for every configured
//! secret at once. Once verified, a body is
//! GitHub's: it leaves the budget and a spilled one is read back into memory to be stored.
//! A temporary file is removed when its body is dropped (refused, cut off by a disconnect
//! or a timeout, or read back), and any left by a crash are removed at start.
//!
//! The disk is bounded too: spilled bodies take at most [`SPILL_BUDGET`] bytes together
//! (a body with a declared length is charged all of it when its file is made, one without
//! as its bytes are written), and no body is spilled while the filesystem of `DATA_DIR`
//! would keep less than [`MIN_FREE_SPACE`] free (checked when a file is made and at each
//! MiB written), so that strangers cannot fill the volume the database and the builds need.
//! A body refused for want of room gets 503: its sender may retry once the bodies held now
//! are gone, within the request deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::signature::SignatureCheck;

/// Bytes of unverified bodies held in memory at once, across all requests.
pub const MEMORY_BUDGET: usize = 16 * 1024 * 1024;

/// The largest declared length that takes its room in memory up front. A larger body goes
/// straight to disk: a client that declares a large body and sends nothing would otherwise
/// hold the whole budget for the request deadline, pushing every other body to disk.
pub const MAX_RESERVATION: usize = 1024 * 1024;

/// Bytes of unverified bodies spilled to disk at once, across all requests: ten of
/// GitHub's largest deliveries.
pub const SPILL_BUDGET: usize = 256 * 1024 * 1024;

/// Free space the filesystem of `DATA_DIR` keeps: no body is spilled that would leave less.
pub const MIN_FREE_SPACE: u64 = 256 * 1024 * 1024;

/// How often, in bytes written to one file, the free space is checked again.
const FREE_SPACE_CHECK_BYTES: usize = 1024 * 1024;

/// The folder of `DATA_DIR` where bodies that do not fit in memory are streamed.
pub const SPILL_DIR: &str = "incoming";

/// The most a spilled body's file buffers at once: what a connection's input holds.
const WRITE_BUFFER_BYTES: usize = super::connections::READ_BUFFER_BYTES;

/// A body that grows without a declared length starts with this much room.
const FIRST_ALLOCATION: usize = 16 * 1024;

/// Why a body could not be received.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    Read(axum::Error),
    #[error("writing the body to {dir}: {error} (is DATA_DIR full or read-only?)")]
    Spill { dir: PathBuf, error: std::io::Error },
    #[error(
        "the body does not fit in memory and the {budget} bytes allowed on disk for unverified bodies are taken"
    )]
    SpillBudgetTaken { budget: usize },
    #[error(
        "the body does not fit in memory and {dir} has {available} bytes free, too little to keep {floor} free after it"
    )]
    LowOnDisk {
        dir: PathBuf,
        available: u64,
        floor: u64,
    },
}

impl ReceiveError {
    /// True when the body was refused for want of room, which frees up as the bodies held
    /// now end.
    pub fn is_lack_of_room(&self) -> bool {
        matches!(
            self,
            ReceiveError::SpillBudgetTaken { .. } | ReceiveError::LowOnDisk { .. }
        )
    }
}

/// The shared memory budget and the folder spilled bodies go to.
#[derive(Clone)]
pub struct BodyIntake {
    budget: Arc<Semaphore>,
    spill_budget: Arc<Semaphore>,
    spill_budget_bytes: usize,
    spill_dir: Arc<PathBuf>,
}

impl BodyIntake {
    /// An intake with `budget` bytes of memory, spilling at most `spill_budget` bytes to
    /// `spill_dir`.
    pub fn new(spill_dir: PathBuf, budget: usize, spill_budget: usize) -> Self {
        BodyIntake {
            budget: Arc::new(Semaphore::new(budget)),
            spill_budget: Arc::new(Semaphore::new(spill_budget)),
            spill_budget_bytes: spill_budget,
            spill_dir: Arc::new(spill_dir),
        }
    }

    /// Creates the spill folder (owner-only) and removes the files that a crash left in
    /// it; returns how many there were.
    pub fn prepare(&self) -> std::io::Result<usize> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.spill_dir.as_path())?;
        std::fs::set_permissions(
            self.spill_dir.as_path(),
            std::fs::Permissions::from_mode(0o700),
        )?;
        let mut removed = 0;
        for entry in std::fs::read_dir(self.spill_dir.as_path())? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The spill folder.
    pub fn spill_dir(&self) -> &Path {
        &self.spill_dir
    }

    /// Bytes of the budget not taken now.
    pub fn available(&self) -> usize {
        self.budget.available_permits()
    }

    /// Bytes of the spill budget not taken now.
    pub fn spill_available(&self) -> usize {
        self.spill_budget.available_permits()
    }

    /// Reads `body` (at most `limit` bytes; `declared` is its `Content-Length`, if any),
    /// feeding `check` as the bytes arrive.
    pub async fn receive(
        &self,
        body: Body,
        declared: Option<usize>,
        limit: usize,
        mut check: SignatureCheck,
    ) -> Result<UnverifiedBody, ReceiveError> {
        let mut store = match declared {
            // Room for the whole body at once, or straight to disk: it never grows.
            Some(length) => match (length <= MAX_RESERVATION)
                .then(|| self.take(length))
                .flatten()
            {
                Some(permit) => Store::Memory {
                    bytes: Vec::with_capacity(length),
                    _permit: Some(permit),
                },
                None => self.spill_file(&[], length).await?,
            },
            None => Store::Memory {
                bytes: Vec::new(),
                _permit: None,
            },
        };
        let mut received = 0usize;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ReceiveError::Read)?;
            received += chunk.len();
            if received > limit {
                return Err(ReceiveError::TooLarge { limit });
            }
            check.update(&chunk);
            store = self.append(store, chunk, limit).await?;
        }
        if let Store::Spilled(spilled) = &mut store {
            spilled
                .writer
                .flush()
                .await
                .map_err(|error| self.spill_error(error))?;
        }
        Ok(UnverifiedBody { store, check })
    }

    /// Takes `bytes` of the budget, if that much is free now (never waits).
    fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        self.budget.clone().try_acquire_many_owned(bytes).ok()
    }

    async fn append(
        &self,
        store: Store,
        chunk: Bytes,
        limit: usize,
    ) -> Result<Store, ReceiveError> {
        match store {
            Store::Memory {
                mut bytes,
                _permit: permit,
            } => {
                if bytes.len() + chunk.len() <= bytes.capacity() {
                    bytes.extend_from_slice(&chunk);
                    return Ok(Store::Memory {
                        bytes,
                        _permit: permit,
                    });
                }
                // Growing: a new allocation, taken from the budget while the old one is
                // still held, so the count never falls below what is allocated.
                let needed = bytes.len() + chunk.len();
                let size = (bytes.capacity() * 2)
                    .max(needed)
                    .max(FIRST_ALLOCATION)
                    .min(limit.max(needed));
                match self.take(size) {
                    Some(permit) => {
                        let mut grown = Vec::with_capacity(size);
                        grown.extend_from_slice(&bytes);
                        grown.extend_from_slice(&chunk);
                        Ok(Store::Memory {
                            bytes: grown,
                            _permit: Some(permit),
                        })
                    }
                    None => {
                        let mut spilled = self.spill_file(&bytes, 0).await?;
                        drop(bytes);
                        drop(permit);
                        if let Store::Spilled(file) = &mut spilled {
                            self.write_spilled(file, &chunk).await?;
                        }
                        Ok(spilled)
                    }
                }
            }
            Store::Spilled(mut file) => {
                self.write_spilled(&mut file, &chunk).await?;
                Ok(Store::Spilled(file))
            }
        }
    }

    /// A new temporary file (owner-only, removed when dropped) holding `start`, charged
    /// `prepaid` bytes of the spill budget (the declared length) up front.
    async fn spill_file(&self, start: &[u8], prepaid: usize) -> Result<Store, ReceiveError> {
        let charge = self.charge_spill(prepaid)?;
        self.ensure_free_space(prepaid.max(start.len()))?;
        let dir = self.spill_dir.clone();
        let file = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix("body-")
                .tempfile_in(dir.as_path())
        })
        .await
        .map_err(|error| self.spill_error(std::io::Error::other(error)))?
        .map_err(|error| self.spill_error(error))?;
        let handle = file
            .as_file()
            .try_clone()
            .map_err(|error| self.spill_error(error))?;
        let mut writer = tokio::fs::File::from_std(handle);
        // tokio's file copies each write into a buffer of its own, kept for the file's
        // life and outside the budget: bounded to what one read brings in, a large first
        // write (the bytes held in memory so far) goes out in pieces instead.
        writer.set_max_buf_size(WRITE_BUFFER_BYTES);
        let mut spilled = SpilledFile {
            file,
            writer,
            charge,
            prepaid,
            written: 0,
        };
        self.write_spilled(&mut spilled, start).await?;
        Ok(Store::Spilled(spilled))
    }

    /// Writes `bytes` to `spilled`, charging the spill budget for what its prepaid charge
    /// does not cover, and checking the free space at each MiB.
    async fn write_spilled(
        &self,
        spilled: &mut SpilledFile,
        bytes: &[u8],
    ) -> Result<(), ReceiveError> {
        if bytes.len() > spilled.prepaid {
            let extra = self.charge_spill(bytes.len() - spilled.prepaid)?;
            spilled.charge.merge(extra);
            spilled.prepaid = 0;
        } else {
            spilled.prepaid -= bytes.len();
        }
        let before = spilled.written;
        spilled.written += bytes.len();
        if before / FREE_SPACE_CHECK_BYTES != spilled.written / FREE_SPACE_CHECK_BYTES {
            self.ensure_free_space(bytes.len())?;
        }
        spilled
            .writer
            .write_all(bytes)
            .await
            .map_err(|error| self.spill_error(error))
    }

    /// `bytes` of the spill budget, if that much is free now (never waits).
    fn charge_spill(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ReceiveError> {
        u32::try_from(bytes)
            .ok()
            .and_then(|bytes| self.spill_budget.clone().try_acquire_many_owned(bytes).ok())
            .ok_or(ReceiveError::SpillBudgetTaken {
                budget: self.spill_budget_bytes,
            })
    }

    /// Refuses to write `bytes` more when that would leave the filesystem of the spill
    /// folder less than [`MIN_FREE_SPACE`] free.
    fn ensure_free_space(&self, bytes: usize) -> Result<(), ReceiveError> {
        let available = free_space(&self.spill_dir).map_err(|error| self.spill_error(error))?;
        if available < MIN_FREE_SPACE.saturating_add(bytes as u64) {
            return Err(ReceiveError::LowOnDisk {
                dir: self.spill_dir.as_path().to_owned(),
                available,
                floor: MIN_FREE_SPACE,
            });
        }
        Ok(())
    }

    fn spill_error(&self, error: std::io::Error) -> ReceiveError {
        ReceiveError::Spill {
            dir: self.spill_dir.as_path().to_owned(),
            error,
        }
    }
}

/// Bytes an unprivileged process may still write on the filesystem of `dir`.
fn free_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stats` is written by the call before
    // it is read, only when the call succeeds.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stats.assume_init()
    };
    // The fields' types differ between platforms.
    #[allow(clippy::unnecessary_cast)]
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

/// Where a body's bytes are while it is unverified.
enum Store {
    Memory {
        bytes: Vec<u8>,
        /// The budget this allocation takes, given back when it is dropped.
        _permit: Option<OwnedSemaphorePermit>,
    },
    Spilled(SpilledFile),
}

/// A body's temporary file and what it takes of the spill budget.
struct SpilledFile {
    /// Removes the file when dropped.
    file: tempfile::NamedTempFile,
    writer: tokio::fs::File,
    /// The spill budget this file takes, given back when it is dropped.
    charge: OwnedSemaphorePermit,
    /// Bytes charged up front (by the declared length) and not written yet.
    prepaid: usize,
    written: usize,
}

/// A body received whole, whose signature is not checked yet.
pub struct UnverifiedBody {
    store: Store,
    check: SignatureCheck,
}

impl UnverifiedBody {
    /// True when the body went to a temporary file rather than memory.
    pub fn spilled(&self) -> bool {
        matches!(self.store, Store::Spilled(_))
    }

    /// The body's bytes when `signature` (`X-Hub-Signature-256`) is its signature by one
    /// of the secrets; `Ok(None)` when it is not, and the body is dropped.
    pub async fn verify(self, signature: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !self.check.matches(signature) {
            return Ok(None);
        }
        match self.store {
            // Verified bytes are GitHub's: they leave the budget of unverified ones.
            Store::Memory { bytes, .. } => Ok(Some(bytes)),
            Store::Spilled(spilled) => {
                drop(spilled.writer);
                let bytes = tokio::fs::read(spilled.file.path()).await?;
                Ok(Some(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::server::signature::sign;

    const SECRET: &str = "unit secret";

    fn check() -> SignatureCheck {
        SignatureCheck::new(&[Secret::new(SECRET.into())])
    }

    /// A body that arrives in `pieces` chunks, without a declared length.
    fn chunked(data: &[u8], pieces: usize) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(data.len().div_ceil(pieces).max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn a_body_within_the_budget_stays_in_memory_and_gives_its_room_back() {
        let dir = tempfile::tempdir().unwrap();
        let intake = BodyIntake::new(dir.path().join(SPILL_DIR), 1024, SPILL_BUDGET);
        intake.prepare().unwrap();
        let data = vec![b'x'; 600];
        let body = intake
            .receive(Body::from(data.clone()), Some(600), 4096, check())
            .await
            .unwrap();
        assert!(!body.spilled());
        assert_eq!(intake.available(), 1024 - 600);
        let verified = body.verify(&sign(SECRET, &data)).await.unwrap();
        assert_eq!(verified.as_deref(), Some(&data[..]));
        assert_eq!(intake.available(), 1024);
    }

    #[tokio::test]
    async fn bodies_beyond_the_budget_stream_to_a_private_file_removed_afterwards() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join(SPILL_DIR);
        let intake = BodyIntake::new(spill.clone(), 1024, SPILL_BUDGET);
        intake.prepare().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();

        // Declared larger than the budget: straight to disk, the budget untouched.
        let declared = intake
            .receive(Body::from(data.clone()), Some(data.len()), 20_000, check())
            .await
            .unwrap();
        assert!(declared.spilled());
        assert_eq!(intake.available(), 1024);
        let file = std::fs::read_dir(&spill).unwrap().next().unwrap().unwrap();
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        let verified = declared.verify(&sign(SECRET, &data)).await.unwrap();
        assert_eq!(verified.as_deref(), Some(&data[..]));
        assert_eq!(files_in(&spill), 0);

        // No length: held in memory until the budget runs out, then spilled, in order.
        let roomier = BodyIntake::new(spill.clone(), 20_000, SPILL_BUDGET);
        let long: Vec<u8> = (0..30_000u32).map(|i| (i % 253) as u8).collect();
        let growing = roomier
            .receive(chunked(&long, 60), None, 40_000, check())
            .await
            .unwrap();
        assert!(growing.spilled());
        assert_eq!(roomier.available(), 20_000);
        assert_eq!(files_in(&spill), 1);
        let verified = growing.verify(&sign(SECRET, &long)).await.unwrap();
        assert_eq!(verified.as_deref(), Some(&long[..]));
        assert_eq!(files_in(&spill), 0);

        // A wrong signature: nothing is returned and the file is gone.
        let forged = intake
            .receive(Body::from(data.clone()), Some(data.len()), 20_000, check())
            .await
            .unwrap();
        assert_eq!(forged.verify(&sign("other", &data)).await.unwrap(), None);
        assert_eq!(files_in(&spill), 0);
    }

    #[tokio::test]
    async fn memory_held_at_once_never_exceeds_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let intake = BodyIntake::new(dir.path().join(SPILL_DIR), 1000, SPILL_BUDGET);
        intake.prepare().unwrap();
        let first = intake
            .receive(Body::from(vec![1u8; 700]), Some(700), 4096, check())
            .await
            .unwrap();
        // 700 of 1000 taken: the next 700 do not fit, whether declared or not.
        let second = intake
            .receive(Body::from(vec![2u8; 700]), Some(700), 4096, check())
            .await
            .unwrap();
        let third = intake
            .receive(chunked(&[3u8; 700], 7), None, 4096, check())
            .await
            .unwrap();
        assert!(!first.spilled());
        assert!(second.spilled());
        assert!(third.spilled());
        assert_eq!(intake.available(), 300);
        drop(first);
        assert_eq!(intake.available(), 1000);
    }

    #[tokio::test]
    async fn a_declared_length_beyond_the_largest_reservation_goes_straight_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let intake = BodyIntake::new(dir.path().join(SPILL_DIR), MEMORY_BUDGET, SPILL_BUDGET);
        intake.prepare().unwrap();
        let data = vec![b'y'; MAX_RESERVATION + 1];
        let large = intake
            .receive(
                Body::from(data.clone()),
                Some(data.len()),
                2 * data.len(),
                check(),
            )
            .await
            .unwrap();
        assert!(large.spilled());
        assert_eq!(intake.available(), MEMORY_BUDGET, "no memory taken");
        let fits = intake
            .receive(
                Body::from(vec![b'z'; MAX_RESERVATION]),
                Some(MAX_RESERVATION),
                2 * data.len(),
                check(),
            )
            .await
            .unwrap();
        assert!(!fits.spilled());
        assert_eq!(intake.available(), MEMORY_BUDGET - MAX_RESERVATION);
    }

    #[tokio::test]
    async fn too_large_or_broken_bodies_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join(SPILL_DIR);
        let intake = BodyIntake::new(spill.clone(), 100, SPILL_BUDGET);
        intake.prepare().unwrap();
        let too_large = intake
            .receive(chunked(&[0u8; 5000], 10), None, 4000, check())
            .await;
        assert!(matches!(
            too_large,
            Err(ReceiveError::TooLarge { limit: 4000 })
        ));

        let broken: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(vec![0u8; 3000])),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the client went away",
            )),
        ];
        let cut_off = intake
            .receive(
                Body::from_stream(futures_util::stream::iter(broken)),
                Some(6000),
                8000,
                check(),
            )
            .await;
        assert!(matches!(cut_off, Err(ReceiveError::Read(_))));
        assert_eq!(files_in(&spill), 0);
        assert_eq!(intake.available(), 100);
    }

    #[tokio::test]
    async fn spilled_bodies_take_at_most_the_spill_budget_and_give_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join(SPILL_DIR);
        let intake = BodyIntake::new(spill.clone(), 100, 10_000);
        intake.prepare().unwrap();
        // A declared body is charged its whole length when its file is made.
        let held = intake
            .receive(Body::from(vec![1u8; 8000]), Some(8000), 20_000, check())
            .await
            .unwrap();
        assert!(held.spilled());
        assert_eq!(intake.spill_available(), 2000);
        let declared = intake
            .receive(Body::from(vec![2u8; 5000]), Some(5000), 20_000, check())
            .await;
        assert!(matches!(
            declared,
            Err(ReceiveError::SpillBudgetTaken { budget: 10_000 })
        ));
        // One without a length is charged as it is written, and refused once it outgrows
        // what is left.
        let growing = intake
            .receive(chunked(&[3u8; 5000], 50), None, 20_000, check())
            .await;
        assert!(matches!(
            growing,
            Err(ReceiveError::SpillBudgetTaken { .. })
        ));
        assert_eq!(intake.spill_available(), 2000);
        assert_eq!(files_in(&spill), 1);
        drop(held);
        assert_eq!(intake.spill_available(), 10_000);
        assert_eq!(files_in(&spill), 0);
        let fits = intake
            .receive(chunked(&[4u8; 5000], 50), None, 20_000, check())
            .await
            .unwrap();
        assert!(fits.spilled());
    }

    #[test]
    fn the_free_space_is_that_of_the_spill_folders_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_space(dir.path()).unwrap() > 0);
        assert!(free_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn files_left_by_a_crash_are_removed_at_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join(SPILL_DIR);
        std::fs::create_dir(&spill).unwrap();
        std::fs::write(spill.join("body-left"), b"half a body").unwrap();
        let intake = BodyIntake::new(spill.clone(), 100, SPILL_BUDGET);
        assert_eq!(intake.prepare().unwrap(), 1);
        assert_eq!(files_in(&spill), 0);
        assert_eq!(
            std::fs::metadata(&spill).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
