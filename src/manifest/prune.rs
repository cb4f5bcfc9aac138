//! Which versions a manifest keeps: the newest `keep`, and every older one something still
//! pins. The rest leave it (and, after a grace period, storage).

use crate::manifest::Manifest;
use crate::version::Version;

/// What pruning a manifest comes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruning {
    /// Versions beyond the newest `keep` that nothing pins: they leave, oldest first.
    pub remove: Vec<Version>,
    /// Versions beyond the newest `keep` that stay because something pins them, oldest
    /// first.
    pub kept_pinned: Vec<Version>,
}

/// The versions of the images named `name` in `manifest` beyond the newest `keep`, split
/// into those that leave and those `pinned` keeps. `keep` 0 prunes nothing; the newest
/// version is never pruned.
///
/// ```
/// use alloy_sysext_automation::manifest::{Manifest, prune::versions_to_prune};
/// let line = |v: &str| format!("{}  alloy-{v}-amd64.raw\n", "0".repeat(64));
/// let text: String = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"].map(line).concat();
/// let manifest = Manifest::parse(&text).unwrap();
/// let pruning = versions_to_prune(&manifest, "alloy", 2, &["1.0.0".parse().unwrap()]);
/// assert_eq!(pruning.remove, ["1.1.0".parse().unwrap()]);
/// assert_eq!(pruning.kept_pinned, ["1.0.0".parse().unwrap()]);
/// ```
pub fn versions_to_prune(
    manifest: &Manifest,
    name: &str,
    keep: u32,
    pinned: &[Version],
) -> Pruning {
    let mut pruning = Pruning::default();
    if keep == 0 {
        return pruning;
    }
    let versions = manifest.versions(name);
    for version in versions.into_iter().skip(keep as usize).rev() {
        if pinned.contains(&version) {
            pruning.kept_pinned.push(version);
        } else {
            pruning.remove.push(version);
        }
    }
    pruning
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(versions: &[&str]) -> Manifest {
        let text: String = versions
            .iter()
            .flat_map(|v| {
                [
                    format!("{}  alloy-{v}-amd64.raw\n", "a".repeat(64)),
                    format!("{}  alloy-{v}-arm64.raw\n", "b".repeat(64)),
                ]
            })
            .collect();
        Manifest::parse(&text).unwrap()
    }

    fn versions(list: &[&str]) -> Vec<Version> {
        list.iter().map(|v| v.parse().unwrap()).collect()
    }

    #[test]
    fn the_newest_stay_and_pinned_older_ones_too() {
        let m = manifest(&["1.9.0", "1.10.0", "1.2.0", "1.11.0", "1.10.1"]);
        let pruning = versions_to_prune(&m, "alloy", 2, &versions(&["1.9.0", "3.0.0"]));
        assert_eq!(pruning.remove, versions(&["1.2.0", "1.10.0"]));
        assert_eq!(pruning.kept_pinned, versions(&["1.9.0"]));
    }

    #[test]
    fn few_versions_or_keep_zero_prune_nothing() {
        let m = manifest(&["1.0.0", "1.1.0"]);
        assert_eq!(versions_to_prune(&m, "alloy", 2, &[]), Pruning::default());
        assert_eq!(versions_to_prune(&m, "alloy", 0, &[]), Pruning::default());
        assert_eq!(
            versions_to_prune(&m, "alloy", 1, &[]).remove,
            versions(&["1.0.0"])
        );
        // Another image's versions are not counted.
        assert_eq!(versions_to_prune(&m, "other", 1, &[]), Pruning::default());
    }
}
