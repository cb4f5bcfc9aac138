//! A reader that also writes everything read through it elsewhere, so that one read of a
//! file serves a consumer that pulls (a signer) and others that are pushed to (hashes,
//! checks, a copy).

use std::io::{self, Read, Write};

/// Reads from `inner`, writing each piece read to `copy` before handing it on.
///
/// ```
/// use std::io::Read;
/// use alloy_sysext_automation::artifacts::tee_reader::TeeReader;
/// let mut tee = TeeReader::new(&b"abc"[..], Vec::new());
/// let mut read = String::new();
/// tee.read_to_string(&mut read).unwrap();
/// let (copy, error) = tee.into_copy();
/// assert_eq!((read.as_str(), copy.as_slice(), error.is_none()), ("abc", &b"abc"[..], true));
/// ```
pub struct TeeReader<R, W> {
    inner: R,
    copy: W,
    write_error: Option<io::Error>,
}

impl<R: Read, W: Write> TeeReader<R, W> {
    pub fn new(inner: R, copy: W) -> Self {
        TeeReader {
            inner,
            copy,
            write_error: None,
        }
    }

    /// The writer, and the error that writing to it failed with, if it did. A failed write
    /// fails the read too, but the reader's owner may only see its own error type, so the
    /// original is kept here to tell a failing copy from a failing read.
    pub fn into_copy(self) -> (W, Option<io::Error>) {
        (self.copy, self.write_error)
    }
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.copy.write_all(&buf[..n]) {
            let shown = io::Error::new(e.kind(), e.to_string());
            self.write_error = Some(e);
            return Err(shown);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then fails.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_copy_fails_the_read_and_is_kept() {
        let data = vec![7u8; 10_000];
        let mut tee = TeeReader::new(&data[..], Full { room: 5_000 });
        let error = io::copy(&mut tee, &mut io::sink()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        let (_, kept) = tee.into_copy();
        assert_eq!(kept.unwrap().to_string(), "disk full");
    }
}
