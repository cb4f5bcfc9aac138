//! A real S3-compatible server for tests: moto's standalone server (installed by
//! `scripts/test` into `target/test-tools/venv`), on loopback, with one bucket, behind a
//! small reverse proxy that counts requests and can answer `503 SlowDown` for a while, the
//! way S3 and R2 do under load, or hold a write back so a test can stop its client while
//! the write is in flight.
//!
//! Clients talk to [`S3Server::endpoint`] (the proxy); the inspection helpers (`object`,
//! `keys`, `put_raw`, …) talk to moto directly, so they are never counted or failed.

// Each scenario module uses only a part of this harness.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_sysext_automation::storage::Storage;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The bucket every server starts with.
pub const BUCKET: &str = "sysext-images";
/// Credentials the clients use (moto accepts any); tests check they are never shown.
pub const ACCESS_KEY_ID: &str = "AKIATESTACCESSKEY01";
pub const SECRET_ACCESS_KEY: &str = "test-secret-key-never-shown-0123456789";

/// Moto's `Authorization` check only looks for a signature's presence: without one, reads of
/// private objects are refused as anonymous.
const FAKE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIATESTACCESSKEY01/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0000";

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The status answered (503 when failed on purpose, 502 when moto could not be reached).
    pub status: u16,
    /// The request's headers, names lowercase.
    pub headers: HashMap<String, String>,
}

/// A failure rule: the next `remaining` requests with `method` whose target contains
/// `target_contains` are answered `503 SlowDown`.
struct FailRule {
    method: String,
    target_contains: String,
    remaining: usize,
}

/// A stall: the next request with `method` whose target contains `target_contains` waits
/// `wait`, then is failed without reaching moto.
struct Stall {
    method: String,
    target_contains: String,
    wait: Duration,
}

/// A hold: the next request with `method` whose target contains `target_contains` waits
/// until its gate opens, then goes through to moto.
struct Hold {
    method: String,
    target_contains: String,
    gate: Arc<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Set when the held request arrives.
    reached: AtomicBool,
    /// Sent `true` when the request may go on.
    open: tokio::sync::watch::Sender<bool>,
}

/// A request held back by the proxy (from [`S3Server::hold_next`]); it goes on when the
/// gate is opened or dropped.
pub struct Gate {
    state: Arc<GateState>,
}

impl Gate {
    /// Waits until the held request has arrived (and is held).
    pub fn wait_reached(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.state.reached.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the held request did not come within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the held request go on to moto.
    pub fn open(&self) {
        self.state.open.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

#[derive(Default)]
struct ProxyState {
    failing: AtomicBool,
    fail_next: AtomicUsize,
    rules: Mutex<VecDeque<FailRule>>,
    stalls: Mutex<Vec<Stall>>,
    holds: Mutex<Vec<Hold>>,
    writes: AtomicUsize,
    seen: Mutex<Vec<SeenRequest>>,
}

impl ProxyState {
    /// How long this request is to stall before it fails, consuming the stall.
    fn take_stall(&self, method: &str, target: &str) -> Option<Duration> {
        let mut stalls = self.stalls.lock().unwrap();
        let index = stalls
            .iter()
            .position(|stall| stall.method == method && target.contains(&stall.target_contains))?;
        Some(stalls.remove(index).wait)
    }

    /// The gate this request waits at, consuming the hold.
    fn take_hold(&self, method: &str, target: &str) -> Option<Arc<GateState>> {
        let mut holds = self.holds.lock().unwrap();
        let index = holds
            .iter()
            .position(|hold| hold.method == method && target.contains(&hold.target_contains))?;
        Some(holds.remove(index).gate)
    }

    /// Whether this request is to fail, consuming a failure.
    fn should_fail(&self, method: &str, target: &str) -> bool {
        if self.failing.load(Ordering::SeqCst) {
            return true;
        }
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return true;
        }
        let mut rules = self.rules.lock().unwrap();
        for rule in rules.iter_mut() {
            if rule.remaining > 0 && rule.method == method && target.contains(&rule.target_contains)
            {
                rule.remaining -= 1;
                return true;
            }
        }
        rules.retain(|rule| rule.remaining > 0);
        false
    }
}

/// Moto on loopback behind the fault-injecting proxy; both stop when this is dropped.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`: the proxy, where clients send requests.
    pub endpoint: String,
    pub bucket: String,
    moto_port: u16,
    moto: Child,
    state: Arc<ProxyState>,
    runtime: Option<tokio::runtime::Runtime>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.moto.kill();
        let _ = self.moto.wait();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The moto server binary: `$MOTO_SERVER`, else the one `scripts/test` installs.
fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/venv/bin/moto_server")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl S3Server {
    /// Starts moto, creates [`BUCKET`], and starts the proxy in front of it.
    pub fn start() -> S3Server {
        let binary = moto_binary();
        assert!(
            binary.exists(),
            "moto's S3 server is not installed at {}: run scripts/test, which installs it \
             (or set MOTO_SERVER to a moto_server binary)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        // A free port can be taken between the check and moto's bind: try a few.
        let mut attempts = 0;
        let (moto, moto_port) = loop {
            attempts += 1;
            let port = free_port();
            let log_file = fs::File::create(&log).unwrap();
            let mut child = Command::new(&binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            match wait_until_listening(&mut child, port) {
                Ok(()) => break (child, port),
                Err(why) if attempts < 3 => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!("moto did not start on port {port} ({why}); trying another");
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "moto did not start ({why}); its log:\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        };

        let state = Arc::new(ProxyState::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let proxy = Proxy {
            state: state.clone(),
            upstream: SocketAddr::from(([127, 0, 0, 1], moto_port)),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let app = Router::new().fallback(forward).with_state(proxy);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });

        let server = S3Server {
            endpoint: format!("http://{address}"),
            bucket: BUCKET.to_owned(),
            moto_port,
            moto,
            state,
            runtime: Some(runtime),
            log,
            _dir: dir,
        };
        let created = server.direct("PUT", &format!("/{BUCKET}"), &[], b"");
        assert_eq!(created.status, 200, "creating the bucket: {created:?}");
        server
    }

    /// The settings that point the server's storage at this bucket, as environment
    /// variables (path style: the endpoint is an IP address).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("R2_ENDPOINT", self.endpoint.clone()),
            ("R2_BUCKET", self.bucket.clone()),
            ("R2_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("R2_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ]
    }

    /// A [`Storage`] for this bucket, made by `Storage::from_env` from [`S3Server::env`].
    pub fn storage(&self) -> Storage {
        let env: HashMap<&str, String> = self.env().into_iter().collect();
        Storage::from_env(|name| env.get(name).cloned(), Path::new("/nonexistent"))
            .expect("valid S3 settings")
    }

    /// While `failing`, the proxy answers every request with `503 SlowDown`.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// The next `n` requests, whatever they are, are answered with `503 SlowDown`.
    pub fn fail_for(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests with `method` whose path and query contain `target_contains`
    /// are answered with `503 SlowDown`; others go through.
    pub fn fail_matching(&self, n: usize, method: &str, target_contains: &str) {
        self.state.rules.lock().unwrap().push_back(FailRule {
            method: method.to_owned(),
            target_contains: target_contains.to_owned(),
            remaining: n,
        });
    }

    /// The next request with `method` whose path and query contain `target_contains` is held
    /// for `wait` and then answered `503 SlowDown`, never reaching moto: a test kills the
    /// server meanwhile, and the write it was making is lost with it, as one in flight is.
    pub fn stall_next(&self, method: &str, target_contains: &str, wait: Duration) {
        self.state.stalls.lock().unwrap().push(Stall {
            method: method.to_owned(),
            target_contains: target_contains.to_owned(),
            wait,
        });
    }

    /// Holds the next request with `method` whose path and query contain `target_contains`
    /// until the returned gate is opened (or dropped); then it reaches moto as usual.
    pub fn hold_next(&self, method: &str, target_contains: &str) -> Gate {
        let gate = Arc::new(GateState::default());
        self.state.holds.lock().unwrap().push(Hold {
            method: method.to_owned(),
            target_contains: target_contains.to_owned(),
            gate: gate.clone(),
        });
        Gate { state: gate }
    }

    /// Lets anyone read the bucket's objects without credentials, as a public R2 bucket or
    /// its custom domain serves them to hosts.
    pub fn make_public(&self) {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::{}/*", self.bucket),
            }],
        })
        .to_string();
        let response = direct_request(
            self.moto_port,
            "PUT",
            &format!("/{}?policy", self.bucket),
            &[("Content-Type", "application/json")],
            policy.as_bytes(),
        )
        .expect("moto answers");
        assert_eq!(response.status, 200, "setting the bucket policy");
    }

    /// The base URL hosts read the bucket at (through the proxy), ending in `/`.
    pub fn public_url(&self) -> String {
        format!("{}/{}/", self.endpoint, self.bucket)
    }

    /// PUT and POST requests (uploads, multipart uploads and their parts) the proxy has seen,
    /// failed or not.
    pub fn put_count(&self) -> usize {
        self.state.writes.load(Ordering::SeqCst)
    }

    /// Every request the proxy has seen, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// The object's bytes and its headers (lowercase names: `content-type`,
    /// `cache-control`, `x-amz-meta-sha256`, …), or `None` when there is no such key.
    pub fn object(&self, key: &str) -> Option<(Vec<u8>, HashMap<String, String>)> {
        let response = self.direct("GET", &self.object_path(key), &[], b"");
        match response.status {
            200 => Some((response.body, response.headers)),
            404 => None,
            _ => panic!("reading {key} from moto: {response:?}"),
        }
    }

    /// The keys in the bucket, sorted (the first 1000).
    pub fn keys(&self) -> Vec<String> {
        let response = self.direct("GET", &format!("/{}?list-type=2", self.bucket), &[], b"");
        assert_eq!(response.status, 200, "listing: {response:?}");
        let mut keys = xml_values(&String::from_utf8_lossy(&response.body), "Key");
        keys.sort();
        keys
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_multipart_uploads(&self) -> usize {
        let response = self.direct("GET", &format!("/{}?uploads", self.bucket), &[], b"");
        assert_eq!(response.status, 200, "listing uploads: {response:?}");
        xml_values(&String::from_utf8_lossy(&response.body), "UploadId").len()
    }

    /// Stores an object directly in moto, bypassing the proxy (as another tool would have).
    pub fn put_raw(&self, key: &str, data: &[u8], headers: &[(&str, &str)]) {
        let response = self.direct("PUT", &self.object_path(key), headers, data);
        assert_eq!(response.status, 200, "storing {key}: {response:?}");
    }

    /// moto's log so far, for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn object_path(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, percent_encode_path(key))
    }

    /// One blocking request straight to moto.
    fn direct(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> DirectResponse {
        direct_request(self.moto_port, method, target, headers, body)
            .unwrap_or_else(|e| panic!("{method} {target} to moto: {e}\n{}", self.log()))
    }
}

/// Polls until moto answers on `port`, or it exits, or 30 s pass. Only moto's bucket list
/// counts as its answer: another test's server may have taken the port first, and moto then
/// exits.
fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("it exited with {status}"));
        }
        if let Ok(response) = direct_request(port, "GET", "/", &[], b"")
            && response.status == 200
            && String::from_utf8_lossy(&response.body).contains("<ListAllMyBucketsResult")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("it did not answer within 30 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An answer from moto.
pub struct DirectResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for DirectResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} {:?} {}",
            self.status,
            self.headers,
            String::from_utf8_lossy(&self.body[..self.body.len().min(2000)])
        )
    }
}

/// A minimal HTTP/1.1 exchange with `Connection: close` (moto's server closes anyway).
fn direct_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<DirectResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {FAKE_AUTHORIZATION}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(length) = headers.get("content-length").and_then(|l| l.parse().ok()) {
        body.truncate(length);
    }
    Ok(DirectResponse {
        status,
        headers,
        body,
    })
}

/// Percent-encodes a key for a request path, keeping `/`.
fn percent_encode_path(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The texts of every `<tag>` element in `xml`, unescaped.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        values.push(
            after[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[end + close.len()..];
    }
    values
}

#[derive(Clone)]
struct Proxy {
    state: Arc<ProxyState>,
    upstream: SocketAddr,
    client: Client<HttpConnector, Body>,
}

/// Headers that belong to one connection, not to the request or answer.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    // The proxy reads the whole request before moto answers; moto need not send 100.
    "expect",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(HeaderName::from_static(name));
    }
}

/// Forwards a request to moto and streams the answer back, or fails it on purpose.
async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let method = request.method().as_str().to_owned();
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    if method == "PUT" || method == "POST" {
        proxy.state.writes.fetch_add(1, Ordering::SeqCst);
    }
    let index = {
        let mut seen = proxy.state.seen.lock().unwrap();
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        seen.push(SeenRequest {
            method: method.clone(),
            target: target.clone(),
            status: 0,
            headers,
        });
        seen.len() - 1
    };
    let record = |status: u16| proxy.state.seen.lock().unwrap()[index].status = status;

    if let Some(gate) = proxy.state.take_hold(&method, &target) {
        let mut open = gate.open.subscribe();
        gate.reached.store(true, Ordering::SeqCst);
        let _ = open.wait_for(|open| *open).await;
    }
    let stall = proxy.state.take_stall(&method, &target);
    if let Some(wait) = stall {
        tokio::time::sleep(wait).await;
    }
    if stall.is_some() || proxy.state.should_fail(&method, &target) {
        // Read the body first, as S3 does, so the client sees the answer rather than a reset.
        let _ = request.into_body().collect().await;
        record(503);
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
             <Message>Please reduce your request rate.</Message>\
             <RequestId>proxy-{index}</RequestId></Error>"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/xml")],
            body,
        )
            .into_response();
    }

    let (mut parts, body) = request.into_parts();
    parts.uri = format!("http://{}{target}", proxy.upstream)
        .parse()
        .unwrap();
    // The Host header stays as the client sent it (it is part of the signature).
    strip_hop_by_hop(&mut parts.headers);
    match proxy
        .client
        .request(axum::http::Request::from_parts(parts, body))
        .await
    {
        Ok(response) => {
            record(response.status().as_u16());
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(error) => {
            record(502);
            (StatusCode::BAD_GATEWAY, format!("proxy: {error}")).into_response()
        }
    }
}
