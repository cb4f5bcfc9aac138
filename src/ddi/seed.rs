//! The image's seed, and every identifier derived from it the way `systemd-repart --seed=`
//! derives them, so that the same data always makes the same image and repart, given the
//! seed, makes the same one too.
//!
//! The seed is `SHA-256("alloy-sysext-automation/ddi-seed/v1\n" ‖ data partition)[..16]`.
//! From it, with `HMAC-SHA256(key = seed)`: the verity salt (`"verity-salt"`, all 32 bytes),
//! the superblock UUID (`"verity-uuid"`), the disk GUID (`"disk-uuid"`) and the signature
//! partition's UUID (its type GUID's 16 bytes); the UUIDs take the HMAC's first 16 bytes
//! marked as version 4 (repart `derive_uuid()`, `partition_acquire_uuid()`, `derive_salt()`).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ddi::verity::SALT_SIZE;

/// What the seed's hash starts with, so no other use of SHA-256 over the same bytes collides.
const SEED_DOMAIN: &[u8] = b"alloy-sysext-automation/ddi-seed/v1\n";

/// The 16-byte seed of one image.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ImageSeed([u8; 16]);

/// Hashes the data partition's bytes, as they arrive, into the seed.
pub struct SeedHasher(Sha256);

impl Default for SeedHasher {
    fn default() -> Self {
        let mut hash = Sha256::new();
        hash.update(SEED_DOMAIN);
        SeedHasher(hash)
    }
}

impl SeedHasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> ImageSeed {
        let digest = self.0.finalize();
        ImageSeed(digest[..16].try_into().expect("16 bytes"))
    }
}

impl ImageSeed {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ImageSeed(bytes)
    }

    /// The seed as the UUID `systemd-repart --seed=` takes.
    pub fn as_uuid(&self) -> Uuid {
        Uuid::from_bytes(self.0)
    }

    fn hmac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    fn derived_uuid(&self, message: &[u8]) -> Uuid {
        let mut bytes: [u8; 16] = self.hmac(message)[..16].try_into().expect("16 bytes");
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid::from_bytes(bytes)
    }

    /// The dm-verity salt.
    pub fn verity_salt(&self) -> [u8; SALT_SIZE] {
        self.hmac(b"verity-salt")
    }

    /// The dm-verity superblock's UUID.
    pub fn verity_uuid(&self) -> Uuid {
        self.derived_uuid(b"verity-uuid")
    }

    /// The GPT disk GUID.
    pub fn disk_guid(&self) -> Uuid {
        self.derived_uuid(b"disk-uuid")
    }

    /// The UUID of the one partition of type `type_guid` whose UUID does not come from the
    /// root hash (the signature partition).
    pub fn partition_uuid(&self, type_guid: Uuid) -> Uuid {
        self.derived_uuid(type_guid.as_bytes())
    }
}

impl fmt::Display for ImageSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_uuid())
    }
}

impl fmt::Debug for ImageSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageSeed({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values_are_hmacs_of_the_seed_marked_as_version_4() {
        let seed = ImageSeed::from_bytes(*b"0123456789abcdef");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef").unwrap();
        mac.update(b"verity-salt");
        let salt: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(seed.verity_salt(), salt);
        for uuid in [seed.verity_uuid(), seed.disk_guid()] {
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        }
        assert_ne!(seed.verity_uuid(), seed.disk_guid());
        assert_eq!(seed.to_string(), "30313233-3435-3637-3839-616263646566");
    }

    #[test]
    fn the_seed_is_the_domain_separated_hash_of_the_data() {
        let mut hasher = SeedHasher::default();
        hasher.update(b"data");
        let mut expected = Sha256::new();
        expected.update(b"alloy-sysext-automation/ddi-seed/v1\ndata");
        let digest = expected.finalize();
        assert_eq!(hasher.finish().as_uuid().as_bytes()[..], digest[..16]);
    }
}
