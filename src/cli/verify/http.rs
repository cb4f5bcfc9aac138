//! Reading published files from a base URL, as a host's `systemd-pull` does: small files
//! whole (with a size cap), images streamed into a sink so they are never held in memory.
//!
//! Every request has a deadline for its answer, and every read of a body one for its next
//! piece, so a server that stops answering fails the command instead of hanging it.

use std::io::Write;
use std::time::Duration;

use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The most read of `SHA256SUMS`, its signature, a `.sha256` or an `.asc`: each is a few
/// kilobytes at most.
pub const SMALL_FILE_LIMIT: u64 = 4 << 20;
/// How long a request waits for the answer's head.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a body's next piece may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A base URL (`https://example.com/images/`) and the client that reads under it.
pub struct BaseUrl {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

/// Why a file could not be read: not there, or something else.
#[derive(Debug)]
pub enum FetchError {
    /// The server answered 404 (or 410).
    NotFound(String),
    Failed(String),
}

impl BaseUrl {
    /// Checks `base` (http or https, with a host) and makes the client.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let uri: Uri = base
            .parse()
            .map_err(|e| anyhow::anyhow!("--url {base:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => anyhow::bail!(
                "--url {base:?} must start with https:// or http://, as a host's source URL does"
            ),
        }
        if uri.host().is_none_or(str::is_empty) {
            anyhow::bail!("--url {base:?} has no host");
        }
        if uri.query().is_some() {
            anyhow::bail!("--url {base:?} must not have a query: file names are appended to it");
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| anyhow::anyhow!("loading the system's TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let base = if base.ends_with('/') {
            base.to_owned()
        } else {
            format!("{base}/")
        };
        Ok(BaseUrl { base, client })
    }

    /// The URL of `file`, a bare file name checked by the manifest's parser.
    pub fn url_of(&self, file: &str) -> String {
        format!("{}{file}", self.base)
    }

    /// Reads `file` whole, refusing more than [`SMALL_FILE_LIMIT`] bytes.
    pub async fn small(&self, file: &str) -> Result<Vec<u8>, FetchError> {
        let mut bytes = Vec::new();
        self.stream(file, Some(SMALL_FILE_LIMIT), &mut bytes)
            .await?;
        Ok(bytes)
    }

    /// Streams `file` into `sink`; returns how many bytes were read.
    pub async fn stream(
        &self,
        file: &str,
        limit: Option<u64>,
        sink: &mut impl Write,
    ) -> Result<u64, FetchError> {
        let url = self.url_of(file);
        let failed = |why: String| FetchError::Failed(format!("GET {url}: {why}"));
        let uri: Uri = url.parse().map_err(|e| failed(format!("not a URL: {e}")))?;
        let request = http::Request::get(uri)
            .header(
                http::header::USER_AGENT,
                concat!("alloy-sysext-automation/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| failed(e.to_string()))?;
        let response = tokio::time::timeout(ANSWER_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| failed(format!("no answer within {} s", ANSWER_TIMEOUT.as_secs())))?
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(FetchError::NotFound(format!(
                "the server answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        let mut body = response.into_body();
        let mut read: u64 = 0;
        loop {
            let frame = tokio::time::timeout(READ_TIMEOUT, body.frame())
                .await
                .map_err(|_| {
                    failed(format!(
                        "the body stalled for {} s after {read} bytes",
                        READ_TIMEOUT.as_secs()
                    ))
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| failed(error_chain(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            read += data.len() as u64;
            if limit.is_some_and(|limit| read > limit) {
                return Err(failed(format!(
                    "larger than {} bytes, more than this file can be",
                    limit.unwrap_or_default()
                )));
            }
            sink.write_all(&data)
                .map_err(|e| failed(format!("writing what was read: {e}")))?;
        }
        Ok(read)
    }
}

/// An error with its causes, on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
