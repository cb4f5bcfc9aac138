//! Embeds the source revision this binary is built from, as `ALLOY_SYSEXT_SOURCE_REVISION`,
//! for `--version` and the provenance records (`src/build_info.rs`).
//!
//! The revision is `SOURCE_REVISION` when it is set (a container build has no `.git`: the
//! Dockerfile passes it as a build argument); otherwise, in a git checkout, the commit `HEAD`
//! names, with `-dirty` when the files the binary is built from differ from it; otherwise
//! `unknown`. The script runs again only when `SOURCE_REVISION`, `HEAD`, the branch it
//! names or those files change, so an ordinary build does not wait for git.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the binary is built from: a change to any of them since the commit makes the
/// revision `-dirty`, and makes the script run again.
const SOURCES: [&str; 7] = [
    "src",
    "migrations",
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
    "app-manifest.json",
    ".cargo/config.toml",
];

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_REVISION");
    let revision = match std::env::var("SOURCE_REVISION") {
        Ok(given) if !given.trim().is_empty() => checked(given.trim()),
        _ => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=ALLOY_SYSEXT_SOURCE_REVISION={revision}");
}

/// `value`, if it can stand in a version line and a record as it is; otherwise the build
/// stops naming what is wrong.
fn checked(value: &str) -> String {
    let fits = value.len() <= 100
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if !fits {
        panic!(
            "SOURCE_REVISION={value:?} is not a revision: use at most 100 ASCII letters, digits \
             and . _ + - (such as a commit id, `git rev-parse HEAD`)"
        );
    }
    value.to_owned()
}

/// The commit `HEAD` names, `-dirty` when the sources differ from it; `None` outside a git
/// checkout or without git.
fn from_git() -> Option<String> {
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    let common_dir = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .map(PathBuf::from)
        .unwrap_or_else(|| git_dir.clone());
    let commit = git(&["rev-parse", "--verify", "HEAD"])?;
    rerun_if_changed(&git_dir.join("HEAD"));
    if let Some(branch) = git(&["symbolic-ref", "--quiet", "HEAD"]) {
        rerun_if_changed(&common_dir.join(branch));
    }
    rerun_if_changed(&common_dir.join("packed-refs"));
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    // Only the files the binary is built from: a changed README does not change it.
    let clean = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--"])
        .args(SOURCES)
        .status()
        .ok()?;
    Some(match clean.code() {
        Some(0) => commit,
        _ => format!("{commit}-dirty"),
    })
}

fn rerun_if_changed(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The trimmed output of `git args`, when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}
