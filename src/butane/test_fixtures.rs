//! Fixtures shared by the Butane tests: the real consumer file, the hashes they pin, and
//! a small synthetic consumer file, so that the pin finder and the YAML check are tested
//! against the same texts.

use crate::arch::Arch;
use crate::butane::{ButaneEdit, ButaneError, update_alloy_pin};

pub(super) const GHOST: &str = include_str!("../../tests/fixtures/real-world/ghost.bu");
pub(super) const GHOST_HASH: &str =
    "268db7a95a807cfb1c9544fce8a0845db8d7b74354c9ab0e5a1959e4093b7fa7";
pub(super) const NEW_HASH: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub(super) const OLD_HASH: &str =
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Updates the amd64 `alloy` pin in `text` to `version` with `hash`.
pub(super) fn update(text: &str, version: &str, hash: &str) -> Result<ButaneEdit, ButaneError> {
    update_alloy_pin(text, "alloy", Arch::Amd64, &version.parse().unwrap(), hash)
}

/// A small consumer file pinning alloy 1.14.2 with `OLD_HASH`, with `comment` (no `#`) as
/// the comment line above the pin. The pin is on lines 6 (path), 9 (source), 11 (hash)
/// and 18 (links target).
pub(super) fn synthetic_with_comment(comment: &str) -> String {
    format!(
        "variant: flatcar
version: 1.1.0
storage:
  files:
    # {comment}
    - path: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
      mode: 0644
      contents:
        source: ${{base_url}}/alloy-1.14.2-amd64.raw
        verification:
          hash: sha256-{OLD_HASH}
    - path: /opt/extensions/other/other-1.0.0-amd64.raw
      contents:
        source: https://example.com/other-1.0.0-amd64.raw
        verification:
          hash: sha256-{NEW_HASH}
  links:
    - target: /opt/extensions/alloy/alloy-1.14.2-amd64.raw
      path: /etc/extensions/alloy.raw
      hard: false
"
    )
}
