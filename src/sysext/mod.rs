//! The systemd-sysext image: its tree, and writing and checking it as squashfs.

pub mod compression;
pub mod inspect;
pub mod layout;
pub mod squashfs;

pub use compression::Compression;
pub use layout::ImageLayout;
pub use squashfs::{SquashfsOptions, write_squashfs};
