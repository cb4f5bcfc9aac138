//! A file that one thread writes while others read it as it grows.
//!
//! The upstream binary is extracted from the zip while the image is already being
//! compressed from it: readers get what has been written so far and wait for more, until
//! the writer says it has finished (or failed, which readers then report as an error).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct Progress {
    written: u64,
    /// Set when nobody needs the rest: the writer stops with an error.
    abandoned: bool,
    /// `None` while writing; then whether it succeeded (with the reason if not).
    end: Option<Result<(), String>>,
}

/// The shared state of a file being written.
pub struct GrowingFile {
    path: PathBuf,
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl GrowingFile {
    /// Tracks the file at `path`, which the writer is about to fill.
    pub fn new(path: &Path) -> Arc<GrowingFile> {
        Arc::new(GrowingFile {
            path: path.to_owned(),
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
        })
    }

    /// Wraps the writer's handle so that readers learn of every write.
    pub fn writer(self: &Arc<Self>, file: File) -> GrowingWriter {
        GrowingWriter {
            file,
            shared: Arc::clone(self),
        }
    }

    /// Opens a reader at the start of the file.
    pub fn reader(self: &Arc<Self>) -> io::Result<GrowingReader> {
        Ok(GrowingReader {
            file: File::open(&self.path)?,
            position: 0,
            shared: Arc::clone(self),
        })
    }

    /// Ends the file: readers see its end, or `Err(reason)` as an error.
    pub fn finish(&self, outcome: Result<(), String>) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.end = Some(outcome);
        self.changed.notify_all();
    }

    /// Tells a writer that is still writing to stop (its next write fails). Returns false
    /// when the writer had already finished.
    pub fn abandon(&self) -> bool {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if progress.end.is_some() {
            return false;
        }
        progress.abandoned = true;
        true
    }
}

/// The writing end.
pub struct GrowingWriter {
    file: File,
    shared: Arc<GrowingFile>,
}

impl Write for GrowingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self
            .shared
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abandoned
        {
            return Err(io::Error::other("the build no longer needs this file"));
        }
        let n = self.file.write(buf)?;
        let mut progress = self
            .shared
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        progress.written += n as u64;
        self.shared.changed.notify_all();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A reading end: blocks until there is more to read or the writer has finished.
pub struct GrowingReader {
    file: File,
    position: u64,
    shared: Arc<GrowingFile>,
}

impl Read for GrowingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let available = {
            let mut progress = self
                .shared
                .progress
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            loop {
                if progress.written > self.position {
                    break progress.written - self.position;
                }
                match &progress.end {
                    Some(Ok(())) => return Ok(0),
                    Some(Err(reason)) => return Err(io::Error::other(reason.clone())),
                    None => {
                        progress = self
                            .shared
                            .changed
                            .wait(progress)
                            .unwrap_or_else(|e| e.into_inner())
                    }
                }
            }
        };
        let wanted = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..wanted])?;
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_follow_the_writer_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let growing = GrowingFile::new(&path);
        let mut writer = growing.writer(File::create(&path).unwrap());
        let mut reader = growing.reader().unwrap();
        let produced: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let consumer = std::thread::spawn(move || {
            let mut read = Vec::new();
            reader.read_to_end(&mut read).unwrap();
            read
        });
        for chunk in produced.chunks(7_000) {
            writer.write_all(chunk).unwrap();
        }
        growing.finish(Ok(()));
        assert!(consumer.join().unwrap() == produced);
    }

    #[test]
    fn readers_see_the_writer_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let growing = GrowingFile::new(&path);
        let mut writer = growing.writer(File::create(&path).unwrap());
        writer.write_all(b"partial").unwrap();
        growing.finish(Err("the zip is corrupt".into()));
        let mut read = Vec::new();
        let err = growing
            .reader()
            .unwrap()
            .read_to_end(&mut read)
            .unwrap_err();
        assert_eq!(err.to_string(), "the zip is corrupt");
        assert_eq!(read, b"partial");
    }
}
