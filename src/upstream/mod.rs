//! What comes from the upstream Alloy release: the zip asset and the binary inside it.

pub mod elf;
pub mod zip_entry;
