//! SIGTERM, as `docker stop` and Fly.io send it: `serve` stops accepting, answers the
//! requests in flight, stops its worker, and exits 0 well within the 30 s before SIGKILL.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use alloy_sysext_automation::server::signature::sign;

use crate::common::fixture;
use crate::serve_process::{SECRET, Server};

/// The most `serve` may take after SIGTERM (`fly.toml`'s `kill_timeout`).
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// Sends a request's head, without its body, on a new connection.
fn send_head(server: &Server, id: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /api/github/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         X-GitHub-Delivery: {id}\r\nX-GitHub-Event: ping\r\nX-Hub-Signature-256: {}\r\n\
         Content-Length: {}\r\n\r\n",
        sign(SECRET, body),
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

fn read_status(stream: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    (status, text)
}

#[test]
fn sigterm_answers_the_delivery_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::with_secret(dir.path());
    let body = std::fs::read(fixture("github-webhooks/ping/payload.json")).unwrap();

    // The head arrives before the signal, the body after it.
    let mut in_flight = send_head(&server, "in-flight-at-sigterm", &body);
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.send_sigterm();

    // No new connections once the signal is in (within moments: the body of the request
    // in flight must still come within the 10 s grace).
    let refused_by = Instant::now() + Duration::from_secs(4);
    while TcpStream::connect(("127.0.0.1", server.port)).is_ok() {
        assert!(
            Instant::now() < refused_by,
            "the server still accepts connections after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    in_flight.write_all(&body).unwrap();
    let (status, text) = read_status(&mut in_flight);
    assert_eq!(
        status,
        202,
        "the delivery in flight was not acknowledged: {text}\nserver log:\n{}",
        server.log()
    );

    let exit = server.wait_exit(STOP_LIMIT);
    assert!(exit.success(), "exit {exit}; server log:\n{}", server.log());
    assert!(signalled.elapsed() < STOP_LIMIT);
    assert!(server.log().contains("stopped"), "{}", server.log());

    // The acknowledged delivery was committed before the answer.
    let data_dir = server.kill();
    let restarted = Server::with_secret(&data_dir);
    let stored = restarted.get("/api/deliveries/in-flight-at-sigterm");
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(stored.json()["event"], "ping");
}

#[test]
fn sigterm_does_not_wait_for_idle_or_stalled_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::with_secret(dir.path());

    // A keep-alive connection left idle after its request ...
    let mut idle = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // ... and a delivery whose body never comes.
    let _stalled = send_head(&server, "never-finished", b"{\"zen\":\"x\"}");
    std::thread::sleep(Duration::from_millis(300));

    let signalled = Instant::now();
    let exit = server.terminate();
    assert!(exit.success(), "exit {exit}; server log:\n{}", server.log());
    // The 10 s grace ends the stalled request (the 30 s request deadline would, later).
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "took {:?}",
        signalled.elapsed()
    );
}

#[test]
fn sigterm_stops_the_worker_of_a_server_that_can_act() {
    let dir = tempfile::tempdir().unwrap();
    let key = std::fs::read_to_string(fixture("app/test-app-key.pem")).unwrap();
    // GitHub is unreachable: the worker's start-up calls are retrying when the signal comes.
    let mut server = Server::start(
        dir.path(),
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("APP_ID", "1"),
            ("PRIVATE_KEY", &key),
            ("GITHUB_API_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(server.get("/healthz").json()["can_act"], true);
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    let exit = server.terminate();
    assert!(exit.success(), "exit {exit}; server log:\n{}", server.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}; server log:\n{}",
        signalled.elapsed(),
        server.log()
    );
}
