//! Where `verify` reads the published files from: a directory or a base URL. Both answer
//! the same two questions, so the checks do not know which it is.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use alloy_sysext_automation::manifest::verify::VerifyError;

use super::http::{BaseUrl, SMALL_FILE_LIMIT};

/// A directory or a base URL of published files.
pub enum Source {
    Dir(PathBuf),
    Url(Box<BaseUrl>),
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// It is not there (a missing file, a 404 or 410).
    Missing(String),
    /// Anything else: the check cannot say whether the file is good.
    Failed(String),
}

impl Source {
    /// The base URL `base` (http or https, with a host).
    pub fn url(base: &str) -> anyhow::Result<Source> {
        Ok(Source::Url(Box::new(BaseUrl::new(base)?)))
    }

    /// How the source is named in the output.
    pub fn describe(&self, file: &str) -> String {
        match self {
            Source::Dir(dir) => dir.join(file).display().to_string(),
            Source::Url(base) => base.url_of(file),
        }
    }

    /// [`Source::small`] for a file that must be there: the manifest or its signature.
    pub async fn required(&self, file: &str) -> Result<Vec<u8>, VerifyError> {
        self.small(file).await.map_err(|error| match error {
            ReadError::Missing(reason) => VerifyError::Missing {
                file: file.to_owned(),
                path: self.describe(file),
                reason,
            },
            ReadError::Failed(reason) => VerifyError::Unreadable {
                file: file.to_owned(),
                path: self.describe(file),
                reason,
            },
        })
    }

    /// Reads a small file (a manifest, a signature, a `.sha256`) whole.
    pub async fn small(&self, file: &str) -> Result<Vec<u8>, ReadError> {
        match self {
            Source::Dir(dir) => {
                let path = dir.join(file);
                let mut bytes = Vec::new();
                open(&path)?
                    .take(SMALL_FILE_LIMIT + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| ReadError::Failed(format!("reading {}: {e}", path.display())))?;
                if bytes.len() as u64 > SMALL_FILE_LIMIT {
                    return Err(ReadError::Failed(format!(
                        "{} is larger than {SMALL_FILE_LIMIT} bytes, more than this file can be",
                        path.display()
                    )));
                }
                Ok(bytes)
            }
            Source::Url(base) => base.small(file).await,
        }
    }

    /// Streams an image into `sink`.
    pub async fn stream(&self, file: &str, sink: &mut impl Write) -> Result<(), ReadError> {
        match self {
            Source::Dir(dir) => {
                let path = dir.join(file);
                io::copy(&mut open(&path)?, sink)
                    .map_err(|e| ReadError::Failed(format!("reading {}: {e}", path.display())))?;
                Ok(())
            }
            Source::Url(base) => {
                base.image(file, sink).await?;
                Ok(())
            }
        }
    }
}

fn open(path: &Path) -> Result<File, ReadError> {
    File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ReadError::Missing("not found".to_owned()),
        _ => ReadError::Failed(format!("opening {}: {e}", path.display())),
    })
}
