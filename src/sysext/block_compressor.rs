//! Compressing one squashfs block, the same way whichever thread does it.
//!
//! Every block is compressed by this one function, whether ahead of time on a worker thread
//! or on demand inside backhand, so an image does not depend on how many threads built it.
//! xz uses liblzma's single-threaded stream encoder with the dictionary as large as a block
//! (what `mksquashfs -Xdict-size 100%` does); zstd and gzip use backhand's own encoders,
//! which are single-threaded and deterministic already.

use std::io::{Cursor, Read};

use backhand::compression::{CompressionAction, DefaultCompressor};
use backhand::{BackhandError, FilesystemCompressor};
use liblzma::bufread::XzEncoder;
use liblzma::stream::{Check, Filters, LzmaOptions, Stream};

use super::compression::Compression;

/// Compresses `bytes` (one data, fragment or metadata block) with `compression`.
pub(crate) fn compress_block(
    compression: Compression,
    bytes: &[u8],
    block_size: u32,
) -> Result<Vec<u8>, BackhandError> {
    match compression {
        Compression::Xz { level } => {
            let xz_error = |e: liblzma::stream::Error| {
                BackhandError::StdIo(std::io::Error::other(format!("xz encoder: {e}")))
            };
            let mut options = LzmaOptions::new_preset(level).map_err(xz_error)?;
            options.dict_size(block_size);
            let mut filters = Filters::new();
            filters.lzma2(&options);
            let stream = Stream::new_stream_encoder(&filters, Check::Crc32).map_err(xz_error)?;
            let mut compressed = Vec::with_capacity(bytes.len() / 2);
            XzEncoder::new_stream(Cursor::new(bytes), stream).read_to_end(&mut compressed)?;
            Ok(compressed)
        }
        Compression::Zstd { .. } | Compression::Gzip { .. } => {
            let settings: FilesystemCompressor = compression.filesystem_compressor();
            DefaultCompressor.compress(bytes, settings, block_size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decompress(compression: Compression, compressed: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        let compressor = match compression {
            Compression::Xz { .. } => backhand::compression::Compressor::Xz,
            Compression::Zstd { .. } => backhand::compression::Compressor::Zstd,
            Compression::Gzip { .. } => backhand::compression::Compressor::Gzip,
        };
        DefaultCompressor
            .decompress(compressed, &mut out, compressor)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let block: Vec<u8> = (0..131072u32).map(|i| (i * 7 % 251) as u8).collect();
        for compression in [
            Compression::default(),
            Compression::Zstd { level: 15 },
            Compression::Gzip { level: 9 },
        ] {
            let a = compress_block(compression, &block, 131072).unwrap();
            let b = compress_block(compression, &block, 131072).unwrap();
            assert_eq!(a, b, "{compression}");
            assert!(a.len() < block.len() / 4, "{compression} did not compress");
            assert_eq!(decompress(compression, &a), block, "{compression}");
        }
    }
}
