//! Which claim of a job its work directory belongs to.
//!
//! A job's downloads and build output stay in `DATA_DIR/work/job-<id>` between its claims,
//! so that a job stopped after its build resumes without building again. That holds only
//! while the claims follow each other on this replica: once another replica has claimed the
//! job in between, it may have gone further, or started over with other settings, and what
//! this directory holds is older than the job. So each claim records its generation beside
//! the directory (`job-<id>.claim`, outside it, since a step may empty it), and a claim
//! keeps the directory only when the claim just before it left it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file beside `dir` naming the claim that last used it.
fn marker_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".claim");
    dir.with_file_name(name)
}

/// Whether the work directory `dir` was kept for the claim `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// The claim before this one left it: its files are the job's.
    Kept,
    /// Another claim came between (or none is recorded): whatever it held is gone.
    Emptied,
}

/// Makes `dir` the work directory of the claim `generation`: kept when the claim before
/// (`generation - 1`) left it, removed otherwise; then records `generation` as its claim.
pub fn adopt(dir: &Path, generation: i64) -> io::Result<Adopted> {
    let marker = marker_of(dir);
    let recorded = fs::read_to_string(&marker)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok());
    let adopted = if recorded == Some(generation - 1) {
        Adopted::Kept
    } else {
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        Adopted::Emptied
    };
    if let Some(parent) = marker.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&marker, format!("{generation}\n"))?;
    Ok(adopted)
}

/// Removes `dir` and its claim marker: the job will not run again.
pub fn remove(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
    let _ = fs::remove_file(marker_of(dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("alloy-linux-amd64.zip"), b"zip").unwrap();
    }

    #[test]
    fn the_next_claim_keeps_the_directory_and_any_other_empties_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("work").join("job-7");

        // The first claim: nothing recorded, nothing there.
        assert_eq!(adopt(&dir, 1).unwrap(), Adopted::Emptied);
        assert_eq!(
            fs::read_to_string(root.path().join("work/job-7.claim")).unwrap(),
            "1\n"
        );
        with_file(&dir);
        // Claimed again right after (a restart, a retry): the files stay.
        assert_eq!(adopt(&dir, 2).unwrap(), Adopted::Kept);
        assert!(dir.join("alloy-linux-amd64.zip").is_file());
        // Claims 3 and 4 ran elsewhere: at 5 the files here are older than the job.
        assert_eq!(adopt(&dir, 5).unwrap(), Adopted::Emptied);
        assert!(!dir.exists());
        // Files without a recorded claim (left by an older version) are not trusted.
        with_file(&dir);
        fs::remove_file(root.path().join("work/job-7.claim")).unwrap();
        assert_eq!(adopt(&dir, 6).unwrap(), Adopted::Emptied);
        assert!(!dir.exists());

        remove(&dir);
        assert!(!root.path().join("work/job-7.claim").exists());
    }
}
