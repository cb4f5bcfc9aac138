//! The systemd-sysext image: its tree, and writing and checking it as squashfs.

mod block_compressor;
pub mod compression;
pub mod contents;
pub mod inspect;
pub mod layout;
mod prefetch;
pub mod squashfs;

pub use compression::Compression;
pub use layout::ImageLayout;
pub use squashfs::{SquashfsOptions, write_squashfs};
