//! This tool's version and the source revision it was built from, as `--version` shows them
//! and each provenance record names them (the revision is embedded by `build.rs`).

/// The crate's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from (`-dirty` when its sources differed from it), or
/// `unknown` when the build had neither `SOURCE_REVISION` nor a git checkout.
pub const SOURCE_REVISION: &str = env!("ALLOY_SYSEXT_SOURCE_REVISION");

/// `0.1.0 (revision 0123abcd…)`: what `--version` prints after the name.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("ALLOY_SYSEXT_SOURCE_REVISION"),
    ")"
);
