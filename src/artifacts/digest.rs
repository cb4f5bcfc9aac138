//! sha256 computed on the way through a reader, so hashing never costs a second pass.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// A reader that hashes everything read through it.
///
/// ```
/// use std::io::Read;
/// use alloy_sysext_automation::artifacts::digest::HashingReader;
/// let mut r = HashingReader::new(&b"abc"[..]);
/// std::io::copy(&mut r, &mut std::io::sink()).unwrap();
/// assert_eq!(r.finish().0, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// ```
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The lowercase hex sha256 of what was read, and its length.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The lowercase hex sha256 of everything `reader` yields.
pub fn sha256_hex(reader: impl Read) -> io::Result<String> {
    let mut hashing = HashingReader::new(reader);
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(hashing.finish().0)
}

/// The line of a `.sha256` file, in `sha256sum` format.
pub fn sha256sum_line(sha256: &str, file_name: &str) -> String {
    format!("{sha256}  {file_name}\n")
}
