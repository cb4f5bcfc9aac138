//! SHA-1 (FIPS 180-4), small and slow, and git's object ids built on it: the shas the fake
//! gives blobs, trees and commits are the ones git would.

use std::collections::BTreeMap;

/// The SHA-1 digest of `data`.
pub(super) fn sha1(data: &[u8]) -> [u8; 20] {
    let mut state: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut message = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bits.to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().unwrap());
        }
        for t in 16..80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = state;
        for (t, word) in w.iter().enumerate() {
            let (f, k) = match t {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let next = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = next;
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
            *s = s.wrapping_add(v);
        }
    }
    let mut digest = [0; 20];
    for (chunk, word) in digest.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// The id of a git object of `kind` ("blob", "tree", "commit") with `content`.
fn object_id(kind: &str, content: &[u8]) -> [u8; 20] {
    let mut object = format!("{kind} {}\0", content.len()).into_bytes();
    object.extend_from_slice(content);
    sha1(&object)
}

/// What `git hash-object` gives for a file with `content`.
pub(super) fn blob_sha(content: &[u8]) -> String {
    hex::encode(object_id("blob", content))
}

/// What `git write-tree` gives for these files (path -> content, directories implied).
pub(super) fn tree_sha(files: &BTreeMap<String, Vec<u8>>) -> String {
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, content)| (path.as_str(), content.as_slice()))
        .collect();
    hex::encode(tree_id(&entries))
}

fn tree_id(files: &[(&str, &[u8])]) -> [u8; 20] {
    let mut blobs: Vec<(&str, [u8; 20])> = Vec::new();
    let mut directories: BTreeMap<&str, Vec<(&str, &[u8])>> = BTreeMap::new();
    for &(path, content) in files {
        match path.split_once('/') {
            Some((directory, rest)) => directories
                .entry(directory)
                .or_default()
                .push((rest, content)),
            None => blobs.push((path, object_id("blob", content))),
        }
    }
    // Git sorts a directory as if its name ended with '/'.
    let mut entries: Vec<(String, &str, &str, [u8; 20])> = blobs
        .into_iter()
        .map(|(name, id)| (name.to_owned(), "100644", name, id))
        .collect();
    for (name, files) in directories {
        entries.push((format!("{name}/"), "40000", name, tree_id(&files)));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut content = Vec::new();
    for (_, mode, name, id) in entries {
        content.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        content.extend_from_slice(&id);
    }
    object_id("tree", &content)
}

/// The id of a commit object, as git computes it.
pub(super) fn commit_sha(
    tree: &str,
    parents: &[String],
    author: &str,
    email: &str,
    unix_time: u64,
    message: &str,
) -> String {
    let mut text = format!("tree {tree}\n");
    for parent in parents {
        text.push_str(&format!("parent {parent}\n"));
    }
    let signature = format!("{author} <{email}> {unix_time} +0000");
    text.push_str(&format!(
        "author {signature}\ncommitter {signature}\n\n{message}"
    ));
    hex::encode(object_id("commit", text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_the_ones_git_gives() {
        assert_eq!(
            hex::encode(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let long = "a".repeat(1000);
        assert_eq!(
            hex::encode(sha1(long.as_bytes())),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
        // `printf … | git hash-object --stdin`
        assert_eq!(
            blob_sha(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(blob_sha(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert_eq!(
            blob_sha(b"hello world"),
            "95d09f2b10159347eece71399a7e2e907ea3df4f"
        );
        // `git write-tree`, of nothing and of a nested tree where "dir.txt" sorts before "dir/".
        assert_eq!(
            tree_sha(&BTreeMap::new()),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        let files: BTreeMap<String, Vec<u8>> = [
            ("README.md", &b"hello\n"[..]),
            ("dir/a.txt", b"hello world"),
            ("dir.txt", b"x"),
            ("dir/sub/empty", b""),
        ]
        .into_iter()
        .map(|(path, content)| (path.to_owned(), content.to_vec()))
        .collect();
        assert_eq!(tree_sha(&files), "00805977e9b233bde2ad4cfe6d450f4cd8af9a39");
    }
}
