//! The dm-verity hash partition, byte for byte as `veritysetup format` writes it: sha256,
//! 4 KiB data and hash blocks, a 32-byte salt, hash format 1, and a superblock.
//!
//! Layout of the partition: the 512-byte superblock in a block of its own, then the hash
//! tree's levels from the top (one block) down to the leaves' level. A level's block holds
//! 128 digests, zero-filled after the last one. Every digest is `SHA-256(salt ‖ block)`:
//! the leaves hash the data blocks, each level above hashes the blocks of the one below, and
//! the root hash is the digest of the top block (of the only data block when there is one).
//! (cryptsetup `lib/verity/verity_hash.c`, the kernel's `dm-verity` documentation.)

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The data and hash block size.
pub const BLOCK_SIZE: usize = 4096;
/// The salt size.
pub const SALT_SIZE: usize = 32;
/// The size of a sha256 digest.
const DIGEST_SIZE: usize = 32;
/// Digests in one hash block.
const DIGESTS_PER_BLOCK: usize = BLOCK_SIZE / DIGEST_SIZE;
/// The superblock's size; the hash tree starts at the next block.
const SUPERBLOCK_SIZE: usize = 512;

/// The root hash: the digest that the signature covers and hosts check the tree against.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootHash(pub [u8; DIGEST_SIZE]);

impl RootHash {
    /// Lowercase hex, 64 characters: the text the signature covers.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The data partition's UUID: the first 16 bytes, verbatim (Discoverable Partitions
    /// Specification).
    pub fn data_partition_uuid(&self) -> Uuid {
        Uuid::from_bytes(self.0[..16].try_into().expect("16 bytes"))
    }

    /// The hash partition's UUID: the last 16 bytes, verbatim.
    pub fn hash_partition_uuid(&self) -> Uuid {
        Uuid::from_bytes(self.0[16..].try_into().expect("16 bytes"))
    }
}

impl fmt::Display for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootHash({self})")
    }
}

/// What makes one tree differ from another over the same data: written in the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerityParams {
    pub salt: [u8; SALT_SIZE],
    /// The superblock's UUID (stored in RFC byte order).
    pub uuid: Uuid,
}

/// `SHA-256(salt ‖ block)`.
fn salted_digest(salt: &[u8; SALT_SIZE], block: &[u8]) -> [u8; DIGEST_SIZE] {
    let mut hash = Sha256::new();
    hash.update(salt);
    hash.update(block);
    hash.finalize().into()
}

/// Hashes the data blocks as their bytes arrive, keeping only their digests (32 bytes per
/// 4 KiB block); [`LeafHasher::finish`] builds the tree. A last partial block is hashed
/// zero-filled, as the data partition is padded.
pub struct LeafHasher {
    salt: [u8; SALT_SIZE],
    block: Vec<u8>,
    digests: Vec<[u8; DIGEST_SIZE]>,
}

impl LeafHasher {
    pub fn new(salt: [u8; SALT_SIZE]) -> Self {
        LeafHasher {
            salt,
            block: Vec::with_capacity(BLOCK_SIZE),
            digests: Vec::new(),
        }
    }

    /// Feeds the next bytes of the data.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.block.is_empty() && data.len() >= BLOCK_SIZE {
                let (block, rest) = data.split_at(BLOCK_SIZE);
                self.digests.push(salted_digest(&self.salt, block));
                data = rest;
                continue;
            }
            let take = (BLOCK_SIZE - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK_SIZE {
                self.digests.push(salted_digest(&self.salt, &self.block));
                self.block.clear();
            }
        }
    }

    /// The tree over everything fed; `None` for no data at all (dm-verity needs a block).
    pub fn finish(mut self) -> Option<HashTree> {
        if !self.block.is_empty() {
            self.block.resize(BLOCK_SIZE, 0);
            self.digests.push(salted_digest(&self.salt, &self.block));
        }
        if self.digests.is_empty() {
            return None;
        }
        let data_blocks = self.digests.len() as u64;
        let mut levels = Vec::new();
        let mut digests = self.digests;
        // One data block is its own root: the tree has no levels.
        while digests.len() > 1 {
            let level = pack_digests(&digests);
            digests = level
                .chunks(BLOCK_SIZE)
                .map(|block| salted_digest(&self.salt, block))
                .collect();
            levels.push(level);
        }
        Some(HashTree {
            root_hash: RootHash(digests[0]),
            data_blocks,
            levels,
        })
    }
}

/// Digests packed 128 to a block, the last block zero-filled.
fn pack_digests(digests: &[[u8; DIGEST_SIZE]]) -> Vec<u8> {
    let blocks = digests.len().div_ceil(DIGESTS_PER_BLOCK);
    let mut level = Vec::with_capacity(blocks * BLOCK_SIZE);
    for digest in digests {
        level.extend_from_slice(digest);
    }
    level.resize(blocks * BLOCK_SIZE, 0);
    level
}

/// The hash tree of some data.
#[derive(Clone)]
pub struct HashTree {
    root_hash: RootHash,
    data_blocks: u64,
    /// The levels from the leaves' up, each a whole number of blocks.
    levels: Vec<Vec<u8>>,
}

impl HashTree {
    pub fn root_hash(&self) -> RootHash {
        self.root_hash
    }

    /// How many 4 KiB data blocks the tree covers.
    pub fn data_blocks(&self) -> u64 {
        self.data_blocks
    }

    /// The size of the hash partition's content: [`hash_area_size`].
    pub fn size(&self) -> u64 {
        hash_area_size(self.data_blocks)
    }

    /// The hash partition's content: superblock, then the levels from the top down.
    pub fn to_bytes(&self, params: &VerityParams) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.size() as usize);
        bytes.extend_from_slice(&superblock(params, self.data_blocks));
        bytes.resize(BLOCK_SIZE, 0);
        for level in self.levels.iter().rev() {
            bytes.extend_from_slice(level);
        }
        bytes
    }
}

/// The size of the superblock's block and the tree over `data_blocks` blocks: what
/// systemd-repart reserves for the hash partition (`calculate_verity_hash_size()`).
pub fn hash_area_size(data_blocks: u64) -> u64 {
    let mut blocks = 1;
    let mut below = data_blocks;
    while below > 1 {
        below = below.div_ceil(DIGESTS_PER_BLOCK as u64);
        blocks += below;
    }
    blocks * BLOCK_SIZE as u64
}

/// The 512-byte superblock (cryptsetup `struct verity_sb`).
fn superblock(params: &VerityParams, data_blocks: u64) -> [u8; SUPERBLOCK_SIZE] {
    let mut sb = [0u8; SUPERBLOCK_SIZE];
    sb[0..8].copy_from_slice(b"verity\0\0");
    sb[8..12].copy_from_slice(&1u32.to_le_bytes()); // version
    sb[12..16].copy_from_slice(&1u32.to_le_bytes()); // hash type: normal
    sb[16..32].copy_from_slice(params.uuid.as_bytes());
    sb[32..38].copy_from_slice(b"sha256");
    sb[64..68].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    sb[68..72].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    sb[80..82].copy_from_slice(&(SALT_SIZE as u16).to_le_bytes());
    sb[88..88 + SALT_SIZE].copy_from_slice(&params.salt);
    sb
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn params() -> VerityParams {
        VerityParams {
            salt: std::array::from_fn(|i| (i * 7 + 3) as u8),
            uuid: Uuid::parse_str("8a37ba8f-1c2d-4e5f-9a0b-112233445566").unwrap(),
        }
    }

    /// Deterministic data of `blocks` blocks, no two alike.
    fn data(blocks: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut data = Vec::with_capacity(blocks * BLOCK_SIZE);
        while data.len() < blocks * BLOCK_SIZE {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        data
    }

    /// `veritysetup format` over `data` with `params`: its hash file and root hash.
    fn veritysetup(data: &[u8], params: &VerityParams) -> (Vec<u8>, String) {
        let dir = tempfile::tempdir().unwrap();
        let (data_path, hash_path) = (dir.path().join("data"), dir.path().join("hash"));
        std::fs::write(&data_path, data).unwrap();
        let output = Command::new("veritysetup")
            .arg("format")
            .arg(&data_path)
            .arg(&hash_path)
            .arg(format!("--salt={}", hex::encode(params.salt)))
            .arg(format!("--uuid={}", params.uuid))
            .output()
            .expect("veritysetup runs (cryptsetup-bin)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let root = text
            .lines()
            .find_map(|line| line.strip_prefix("Root hash:"))
            .expect("veritysetup prints the root hash")
            .trim()
            .to_owned();
        (std::fs::read(hash_path).unwrap(), root)
    }

    fn tree_of(data: &[u8], chunk: usize) -> HashTree {
        let mut hasher = LeafHasher::new(params().salt);
        for piece in data.chunks(chunk) {
            hasher.update(piece);
        }
        hasher.finish().unwrap()
    }

    #[test]
    fn the_hash_partition_is_what_veritysetup_writes_at_every_level_boundary() {
        for blocks in [1, 2, 128, 129, 16384, 16385] {
            let data = data(blocks);
            let tree = tree_of(&data, 1 << 20);
            let ours = tree.to_bytes(&params());
            let (theirs, root) = veritysetup(&data, &params());
            assert_eq!(tree.root_hash().to_hex(), root, "{blocks} blocks");
            assert_eq!(ours.len() as u64, tree.size(), "{blocks} blocks");
            // veritysetup may write its file past the tree; the rest must be zero.
            assert!(theirs.len() >= ours.len(), "{blocks} blocks");
            assert!(ours == theirs[..ours.len()], "{blocks} blocks differ");
            assert!(
                theirs[ours.len()..].iter().all(|&b| b == 0),
                "{blocks} blocks"
            );
        }
    }

    #[test]
    fn the_bytes_may_arrive_in_any_pieces_and_a_last_partial_block_is_zero_filled() {
        let mut data = data(3);
        let whole = tree_of(&data, data.len()).root_hash();
        assert_eq!(tree_of(&data, 1000).root_hash(), whole);
        assert_eq!(tree_of(&data, 1).root_hash(), whole);
        data.truncate(2 * BLOCK_SIZE + 10);
        let mut padded = data.clone();
        padded.resize(3 * BLOCK_SIZE, 0);
        assert_eq!(
            tree_of(&data, 4096).root_hash(),
            tree_of(&padded, 4096).root_hash()
        );
        assert!(LeafHasher::new([0; SALT_SIZE]).finish().is_none());
    }

    #[test]
    fn sizes_match_systemd_repart() {
        // 1 superblock block + 93 leaf blocks + 1 top block for 11813 data blocks.
        assert_eq!(hash_area_size(11813), 389120);
        assert_eq!(hash_area_size(1), 4096);
        assert_eq!(hash_area_size(2), 8192);
        assert_eq!(hash_area_size(129), 4 * 4096);
    }

    #[test]
    fn the_root_hash_halves_are_the_partition_uuids() {
        let root = RootHash(std::array::from_fn(|i| i as u8));
        assert_eq!(
            root.data_partition_uuid().to_string(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
        assert_eq!(
            root.hash_partition_uuid().to_string(),
            "10111213-1415-1617-1819-1a1b1c1d1e1f"
        );
    }
}
