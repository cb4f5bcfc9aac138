//! Compressing a large file's blocks ahead of backhand, on all cores.
//!
//! backhand compresses one block at a time, in order, through its compression hook. Here a
//! reader thread reads the file ahead block by block, worker threads compress those blocks
//! in parallel, and the hook hands each result back when backhand asks for that block. The
//! hook compares the bytes it is given with the block it prepared, so a guess that does not
//! match (a fragment, a metadata block, anything unexpected) is simply compressed on the
//! spot: the output never depends on the pipeline. The number of blocks read but not yet
//! handed back is capped, which caps memory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{BackhandError, FilesystemCompressor, SuperBlock};

use sha2::{Digest, Sha256};

use super::block_compressor::compress_block;
use super::compression::Compression;

/// What backhand stores for one block of a file, as the image's self-check expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredBlock {
    /// An all-zero block, stored as a hole (no bytes).
    Hole,
    /// Stored bytes, by their sha256: the compressed block, or the block itself
    /// (`compressed: false`) when compressing did not make it smaller.
    Bytes { sha256: [u8; 32], compressed: bool },
}

/// What the pipeline saw of the whole file, for the image's self-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBlocks {
    /// What was stored for each block, in file order.
    pub blocks: Vec<StoredBlock>,
    /// sha256 of the file's bytes as the pipeline read and compressed them.
    pub input_sha256: String,
}

/// A block read from the file, and its compressed form (or why compressing failed).
struct Prepared {
    input: Vec<u8>,
    output: Result<Vec<u8>, String>,
    stored: StoredBlock,
}

/// The look-ahead pipeline for one file.
pub(crate) struct Prefetch {
    results: Receiver<(u64, Prepared)>,
    ready: BTreeMap<u64, Prepared>,
    next: u64,
    /// What was stored for each block handed out or passed over, in file order.
    stored: Vec<StoredBlock>,
    /// The bytes of those blocks, hashed in order.
    input_hasher: Sha256,
    /// One unit per block the reader may read ahead; returned as blocks are handed out.
    /// Dropping it stops the reader.
    permits: Option<SyncSender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Prefetch {
    /// Starts reading `file` in `block_size` blocks and compressing them on `workers`
    /// threads, with at most `window` blocks in flight.
    pub(crate) fn start(
        mut file: Box<dyn Read + Send>,
        compression: Compression,
        block_size: u32,
        workers: usize,
        window: usize,
    ) -> Prefetch {
        let (permits, permit_source) = sync_channel::<()>(window);
        for _ in 0..window {
            permits
                .send(())
                .expect("the channel has room for the whole window");
        }
        let (work_sender, work) = sync_channel::<(u64, Vec<u8>)>(window);
        let work = Arc::new(Mutex::new(work));
        let (result_sender, results) = channel();

        let mut threads = Vec::with_capacity(workers + 1);
        threads.push(std::thread::spawn(move || {
            for sequence in 0u64.. {
                if permit_source.recv().is_err() {
                    return;
                }
                match read_block(&mut file, block_size as usize) {
                    Ok(block) if !block.is_empty() => {
                        if work_sender.send((sequence, block)).is_err() {
                            return;
                        }
                    }
                    // End of file, or a read error that backhand's own read will report.
                    _ => return,
                }
            }
        }));
        for _ in 0..workers {
            let work = Arc::clone(&work);
            let result_sender = result_sender.clone();
            threads.push(std::thread::spawn(move || {
                loop {
                    let job = work.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((sequence, input)) = job else { return };
                    // A panic must not leave the writer waiting for this block forever.
                    let output = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        compress_block(compression, &input, block_size)
                    }))
                    .unwrap_or_else(|_| {
                        Err(BackhandError::StdIo(io::Error::other(
                            "the compressor panicked",
                        )))
                    })
                    .map_err(|e| e.to_string());
                    let stored = stored_block(&input, output.as_deref().ok());
                    let prepared = Prepared {
                        input,
                        output,
                        stored,
                    };
                    if result_sender.send((sequence, prepared)).is_err() {
                        return;
                    }
                }
            }));
        }
        Prefetch {
            results,
            ready: BTreeMap::new(),
            next: 0,
            stored: Vec::new(),
            input_hasher: Sha256::new(),
            permits: Some(permits),
            threads,
        }
    }

    /// The compressed form of `bytes` if it is the next prepared block; `None` if it is not
    /// (the caller compresses it itself). Prepared all-zero blocks that backhand stored as
    /// holes instead of asking for them are passed over.
    fn take(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        loop {
            while !self.ready.contains_key(&self.next) {
                let (sequence, prepared) = self.results.recv().ok()?;
                self.ready.insert(sequence, prepared);
            }
            let head = &self.ready[&self.next];
            let is_match = head.input == bytes;
            if !is_match && head.input.iter().any(|&b| b != 0) {
                return None;
            }
            let prepared = self.ready.remove(&self.next).expect("the head is ready");
            self.next += 1;
            if let Some(permits) = &self.permits {
                let _ = permits.try_send(());
            }
            self.input_hasher.update(&prepared.input);
            if !is_match {
                self.stored.push(StoredBlock::Hole);
                continue;
            }
            if prepared.output.is_ok() {
                self.stored.push(prepared.stored);
            }
            return prepared.output.ok();
        }
    }

    /// After the image is written: what was stored for every block of the file, or `None`
    /// when some block was not handed out through the pipeline (a file small enough to go
    /// into a fragment, or anything unexpected), so that only reading it back can tell.
    fn finish(mut self) -> Option<WrittenBlocks> {
        if let Some(permits) = &self.permits {
            // Let the reader run to the end of the file, so the tail is accounted for.
            while permits.try_send(()).is_ok() {}
        }
        loop {
            if let Some(prepared) = self.ready.remove(&self.next) {
                // Trailing blocks backhand never asked for must be holes.
                if prepared.stored != StoredBlock::Hole {
                    return None;
                }
                self.input_hasher.update(&prepared.input);
                self.stored.push(StoredBlock::Hole);
                self.next += 1;
                if let Some(permits) = &self.permits {
                    let _ = permits.try_send(());
                }
                continue;
            }
            match self.results.recv() {
                Ok((sequence, prepared)) => {
                    self.ready.insert(sequence, prepared);
                }
                Err(_) => break,
            }
        }
        if !self.ready.is_empty() || self.stored.len() as u64 != self.next {
            return None;
        }
        let hasher = std::mem::take(&mut self.input_hasher);
        Some(WrittenBlocks {
            blocks: std::mem::take(&mut self.stored),
            input_sha256: hex::encode(hasher.finalize()),
        })
    }
}

/// What backhand will store for `input` given its compressed form (see its `add_bytes`).
fn stored_block(input: &[u8], output: Option<&[u8]>) -> StoredBlock {
    if input.iter().all(|&b| b == 0) {
        return StoredBlock::Hole;
    }
    let (stored, compressed) = match output {
        Some(output) if output.len() <= input.len() => (output, true),
        _ => (input, false),
    };
    StoredBlock::Bytes {
        sha256: Sha256::digest(stored).into(),
        compressed,
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Without permits the reader stops, which closes the work queue, which stops the
        // workers once they have drained it.
        self.permits = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn read_block(file: &mut dyn Read, size: usize) -> io::Result<Vec<u8>> {
    let mut block = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        match file.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    block.truncate(filled);
    Ok(block)
}

/// What the compression hook needs while one image is being written on this thread.
struct WriteContext {
    compression: Compression,
    prefetch: Option<Prefetch>,
}

thread_local! {
    static CONTEXT: RefCell<Option<WriteContext>> = const { RefCell::new(None) };
}

/// Installs the settings (and pipeline) that [`PipelinedCompressor`] uses on this thread,
/// until dropped.
pub(crate) struct ContextGuard(());

impl ContextGuard {
    pub(crate) fn install(compression: Compression, prefetch: Option<Prefetch>) -> ContextGuard {
        CONTEXT.with(|context| {
            *context.borrow_mut() = Some(WriteContext {
                compression,
                prefetch,
            })
        });
        ContextGuard(())
    }
}

impl ContextGuard {
    /// Uninstalls the context and returns what the pipeline saw stored (see
    /// [`Prefetch::finish`]).
    pub(crate) fn finish(self) -> Option<WrittenBlocks> {
        let context = CONTEXT.with(|context| context.borrow_mut().take());
        context.and_then(|c| c.prefetch).and_then(Prefetch::finish)
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        let context = CONTEXT.with(|context| context.borrow_mut().take());
        drop(context);
    }
}

/// backhand's compression hook: prepared blocks from the pipeline, everything else
/// compressed on the spot with the same function.
pub(crate) struct PipelinedCompressor;

/// The one instance backhand's `Kind` refers to.
pub(crate) static PIPELINED_COMPRESSOR: PipelinedCompressor = PipelinedCompressor;

impl CompressionAction for PipelinedCompressor {
    type Error = BackhandError;
    type Compressor = Compressor;
    type FilesystemCompressor = FilesystemCompressor;
    type SuperBlock = SuperBlock;

    fn decompress(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        compressor: Self::Compressor,
    ) -> Result<(), Self::Error> {
        DefaultCompressor.decompress(bytes, out, compressor)
    }

    fn compress(
        &self,
        bytes: &[u8],
        fc: Self::FilesystemCompressor,
        block_size: u32,
    ) -> Result<Vec<u8>, Self::Error> {
        let compression = CONTEXT.with(|context| {
            let mut context = context.borrow_mut();
            let context = context.as_mut()?;
            if let Some(prepared) = context.prefetch.as_mut().and_then(|p| p.take(bytes)) {
                return Some(Ok(prepared));
            }
            Some(Err(context.compression))
        });
        match compression {
            Some(Ok(prepared)) => Ok(prepared),
            Some(Err(compression)) => compress_block(compression, bytes, block_size),
            // Only reachable if backhand compressed outside `write_squashfs`.
            None => DefaultCompressor.compress(bytes, fc, block_size),
        }
    }

    fn compression_options(
        &self,
        superblock: &mut Self::SuperBlock,
        kind: &backhand::kind::Kind,
        fs_compressor: Self::FilesystemCompressor,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        DefaultCompressor.compression_options(superblock, kind, fs_compressor)
    }
}
