//! Reading published files from a base URL, as a host's `systemd-pull` does: small files
//! whole (with a size cap), images streamed into a sink so they are never held in memory.
//!
//! Every request has a deadline for its answer, and every read of a body one for its next
//! piece. Those alone do not stop a server that trickles a byte at a time, so each file
//! also has an overall deadline (a minute for a small file, longer for an image) and a
//! size cap (an image's `Content-Length` is refused up front when it is over the cap, and
//! reading stops there when the server sends more): a hostile or broken server fails the
//! command instead of keeping it running.

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::source::ReadError;

/// The most read of `SHA256SUMS`, its signature, a `.sha256` or an `.asc`: each is a few
/// kilobytes at most.
pub const SMALL_FILE_LIMIT: u64 = 4 << 20;

/// How long reading files may take, and how large an image may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a request waits for the answer's head.
    pub answer: Duration,
    /// How long a body's next piece may take.
    pub stall: Duration,
    /// How long reading a small file may take in all.
    pub small_file: Duration,
    /// How long reading an image may take in all.
    pub image: Duration,
    /// The largest image read; a Sysext image of Alloy is about 100 MB.
    pub image_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            answer: Duration::from_secs(30),
            stall: Duration::from_secs(30),
            small_file: Duration::from_secs(60),
            image: Duration::from_secs(15 * 60),
            image_size: 2 << 30,
        }
    }
}

/// A base URL (`https://example.com/images/`) and the client that reads under it.
pub struct BaseUrl {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    limits: Limits,
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
        Ok(BaseUrl {
            base,
            client,
            limits: Limits::default(),
        })
    }

    /// The same base URL with other limits.
    #[cfg(test)]
    fn with_limits(self, limits: Limits) -> Self {
        BaseUrl { limits, ..self }
    }

    /// The URL of `file`, a bare file name checked by the manifest's parser.
    pub fn url_of(&self, file: &str) -> String {
        format!("{}{file}", self.base)
    }

    /// Reads `file` whole, refusing more than [`SMALL_FILE_LIMIT`] bytes.
    pub async fn small(&self, file: &str) -> Result<Vec<u8>, ReadError> {
        let mut bytes = Vec::new();
        self.read(file, SMALL_FILE_LIMIT, self.limits.small_file, &mut bytes)
            .await?;
        Ok(bytes)
    }

    /// Streams the image `file` into `sink`; returns how many bytes were read.
    pub async fn image(&self, file: &str, sink: &mut impl Write) -> Result<u64, ReadError> {
        self.read(file, self.limits.image_size, self.limits.image, sink)
            .await
    }

    /// Streams `file` into `sink`, refusing more than `limit` bytes or taking longer than
    /// `deadline` in all; returns how many bytes were read.
    async fn read(
        &self,
        file: &str,
        limit: u64,
        deadline: Duration,
        sink: &mut impl Write,
    ) -> Result<u64, ReadError> {
        let started = Instant::now();
        let ends = started + deadline;
        let url = self.url_of(file);
        let failed = |why: String| ReadError::Failed(format!("GET {url}: {why}"));
        let uri: Uri = url.parse().map_err(|e| failed(format!("not a URL: {e}")))?;
        let request = http::Request::get(uri)
            .header(
                http::header::USER_AGENT,
                concat!("alloy-sysext-automation/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| failed(e.to_string()))?;
        let answer = self.limits.answer;
        let response = tokio::time::timeout(answer.min(deadline), self.client.request(request))
            .await
            .map_err(|_| failed(format!("no answer within {:?}", answer.min(deadline))))?
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(ReadError::Missing(format!("the server answered {status}")));
        }
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        let too_large = || {
            failed(format!(
                "larger than {limit} bytes, more than this file can be"
            ))
        };
        let length = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|length| length > limit) {
            return Err(failed(format!(
                "its Content-Length is {} bytes, more than the {limit} this file can be",
                length.unwrap_or_default()
            )));
        }
        let mut body = response.into_body();
        let mut read: u64 = 0;
        loop {
            let now = Instant::now();
            if now >= ends {
                return Err(failed(format!(
                    "not read within {deadline:?}, the limit for this file ({read} bytes came)"
                )));
            }
            let stall = self.limits.stall;
            let frame = tokio::time::timeout(stall.min(ends - now), body.frame())
                .await
                .map_err(|_| {
                    if Instant::now() >= ends {
                        failed(format!(
                            "not read within {deadline:?}, the limit for this file ({read} bytes came)"
                        ))
                    } else {
                        failed(format!(
                            "the body stalled for {stall:?} after {read} bytes"
                        ))
                    }
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| failed(error_chain(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            read += data.len() as u64;
            if read > limit {
                return Err(too_large());
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on loopback that answers every request with `head`, then sends `body` one
    /// byte at a time with `pause` between them (all at once without a pause), until the
    /// client goes away.
    async fn trickling_server(head: &'static str, body: Vec<u8>, pause: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    if pause.is_zero() {
                        let _ = stream.write_all(&body).await;
                        return;
                    }
                    for byte in body {
                        if stream.write_all(&[byte]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(pause).await;
                    }
                });
            }
        });
        format!("http://{address}/")
    }

    /// Deadlines that a trickle reaches soon, and a small image size.
    fn short_deadlines() -> Limits {
        Limits {
            small_file: Duration::from_millis(300),
            image: Duration::from_millis(300),
            ..Limits::default()
        }
    }

    fn small_images() -> Limits {
        Limits {
            image_size: 2000,
            ..Limits::default()
        }
    }

    fn reason(error: ReadError) -> String {
        match error {
            ReadError::Failed(reason) => reason,
            ReadError::Missing(reason) => panic!("not found: {reason}"),
        }
    }

    #[tokio::test]
    async fn a_server_that_trickles_bytes_fails_at_the_deadline() {
        let url = trickling_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n",
            vec![b'x'; 1_000_000],
            Duration::from_millis(10),
        )
        .await;
        let base = BaseUrl::new(&url).unwrap().with_limits(short_deadlines());
        let error = reason(base.small("SHA256SUMS").await.unwrap_err());
        let expected =
            format!("GET {url}SHA256SUMS: not read within 300ms, the limit for this file (");
        assert!(error.starts_with(&expected), "{error}");
        let error = reason(
            base.image("alloy-1.0.0-amd64.raw", &mut Vec::new())
                .await
                .unwrap_err(),
        );
        let expected = format!(
            "GET {url}alloy-1.0.0-amd64.raw: not read within 300ms, the limit for this file ("
        );
        assert!(error.starts_with(&expected), "{error}");
    }

    #[tokio::test]
    async fn an_image_larger_than_the_limit_is_refused() {
        let url = trickling_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 2001\r\n\r\n",
            Vec::new(),
            Duration::ZERO,
        )
        .await;
        let base = BaseUrl::new(&url).unwrap().with_limits(small_images());
        let error = reason(base.image("big.raw", &mut Vec::new()).await.unwrap_err());
        assert_eq!(
            error,
            format!(
                "GET {url}big.raw: its Content-Length is 2001 bytes, more than the 2000 this file can be"
            )
        );

        // Without a Content-Length, reading stops past the limit.
        let url = trickling_server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            vec![b'x'; 5000],
            Duration::ZERO,
        )
        .await;
        let base = BaseUrl::new(&url).unwrap().with_limits(small_images());
        let mut sink = Vec::new();
        let error = reason(base.image("big.raw", &mut sink).await.unwrap_err());
        assert_eq!(
            error,
            format!("GET {url}big.raw: larger than 2000 bytes, more than this file can be")
        );
        assert!(sink.len() <= 2000, "{}", sink.len());
    }
}
