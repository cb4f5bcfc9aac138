//! Signed dm-verity system extension images: Discoverable Disk Images (DDI) that carry
//! their own proof, checked by the kernel block by block every time the extension is merged.
//!
//! A DDI is a GPT disk image with three partitions ([`partition`]): the squashfs file system
//! (`root`), its dm-verity hash tree (`root-verity`, [`verity`]) and the signature of the
//! tree's root hash (`root-verity-sig`, [`signature`]), made with an X.509 certificate's key
//! ([`certificate`]). The layout and every identifier are those `systemd-repart
//! --make-ddi=sysext` gives the same data with the same seed ([`layout`], [`seed`], [`gpt`]),
//! so the image is reproducible from the squashfs and the key alone. [`image`] writes one
//! from a squashfs file and reads one back; [`check`] checks one as a host would;
//! [`key_source`] finds the key and certificate.

pub mod certificate;
pub mod check;
pub mod gpt;
pub mod image;
pub mod key_source;
pub mod layout;
pub mod partition;
pub mod seed;
pub mod signature;
pub mod verity;

#[cfg(test)]
mod test_support;

pub use certificate::{
    CertificateError, VerityCertificate, VerityKey, VerityKeyAlgorithm, VeritySigner,
};
pub use image::{DdiError, DdiImage, DdiPartition, DdiSummary, write_ddi};
pub use partition::PartitionRole;
pub use signature::{SignatureError, SignaturePartition};
pub use verity::RootHash;

/// `alloy-1.17.1-amd64.ddi.raw` for the squashfs image `alloy-1.17.1-amd64.raw`.
pub fn ddi_file_name(image_file_name: &str) -> String {
    match image_file_name.strip_suffix(".raw") {
        Some(stem) => format!("{stem}.ddi.raw"),
        None => format!("{image_file_name}.ddi.raw"),
    }
}
