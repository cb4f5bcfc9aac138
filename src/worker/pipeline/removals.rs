//! The files a version leaves in storage when its lines leave `SHA256SUMS` (a withdrawal or
//! a prune): scheduled to go after the grace period, when the server's sweep
//! (`crate::worker::storage_removals`) deletes them unless they are listed again.

use crate::arch::Arch;
use crate::artifacts::MANIFEST_FILE;
use crate::database::storage_removals::{NewRemoval, RemovalReason};
use crate::manifest::image_name::ImageFileName;
use crate::version::Version;

/// The storage removals of the images `listed` (files that left `SHA256SUMS`) of `version`:
/// each image with its `.sha256` and `.asc`, and for an amd64 image the copy under the
/// compatibility name (`alloy-X.Y.Z.raw`, which the manifest does not list) with its own.
/// Each is guarded by the listed image: listed again, it stays.
pub fn removals_of(listed: &[String], version: &Version, why: RemovalReason) -> Vec<NewRemoval> {
    let mut removals = Vec::new();
    for file in listed {
        let mut images = vec![file.clone()];
        if let Some(parsed) = ImageFileName::parse(file)
            && parsed.arch == Some(Arch::Amd64)
        {
            images.push(format!("{}-{}.raw", parsed.name, parsed.version));
        }
        for image in images {
            for key in [format!("{image}.sha256"), format!("{image}.asc"), image] {
                removals.push(NewRemoval {
                    key,
                    manifest_key: MANIFEST_FILE.to_owned(),
                    listed_file: file.clone(),
                    version: version.clone(),
                    why,
                });
            }
        }
    }
    removals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amd64_image_takes_its_compatibility_copy_along() {
        let version: Version = "1.2.3".parse().unwrap();
        let listed = [
            "alloy-1.2.3-amd64.raw".to_owned(),
            "alloy-1.2.3-arm64.raw".to_owned(),
        ];
        let removals = removals_of(&listed, &version, RemovalReason::Pruned);
        let keys: Vec<(&str, &str)> = removals
            .iter()
            .map(|r| (r.key.as_str(), r.listed_file.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("alloy-1.2.3-amd64.raw.sha256", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3-amd64.raw.asc", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3-amd64.raw", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3.raw.sha256", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3.raw.asc", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3.raw", "alloy-1.2.3-amd64.raw"),
                ("alloy-1.2.3-arm64.raw.sha256", "alloy-1.2.3-arm64.raw"),
                ("alloy-1.2.3-arm64.raw.asc", "alloy-1.2.3-arm64.raw"),
                ("alloy-1.2.3-arm64.raw", "alloy-1.2.3-arm64.raw"),
            ]
        );
        assert!(removals.iter().all(|r| r.why == RemovalReason::Pruned
            && r.manifest_key == "SHA256SUMS"
            && r.version == version));
    }
}
