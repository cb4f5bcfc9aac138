//! What strangers can cost the server: memory for bodies that are not GitHub's, and time
//! and connections held by clients that send slowly. Each against the real binary on
//! loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use alloy_sysext_automation::server::connections::HEAD_TIMEOUT;
use alloy_sysext_automation::server::per_client::MAX_PER_CLIENT;
use alloy_sysext_automation::server::signature::sign;
use alloy_sysext_automation::server::unverified_body::{
    MAX_RESERVATION, MEMORY_BUDGET, SPILL_BUDGET, SPILL_DIR,
};
use alloy_sysext_automation::server::webhook::MAX_BODY_BYTES;

use crate::common::fixture;
use crate::http::request;
use crate::serve_process::{SECRET, Server};

/// The peak resident memory the issue allows while strangers send large bodies.
const PEAK_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

fn ping_body() -> Vec<u8> {
    std::fs::read(fixture("github-webhooks/ping/payload.json")).unwrap()
}

#[test]
fn twenty_forged_25_mib_bodies_are_streamed_to_disk_or_refused_and_a_signed_delivery_still_gets_in()
{
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let spill = data.path().join(SPILL_DIR);
    let forged = Arc::new(vec![b'x'; MAX_BODY_BYTES]);
    let forged_signature = sign("not the secret", &forged);
    let port = server.port;

    let senders = 20;
    let start = Arc::new(Barrier::new(senders));
    let threads: Vec<_> = (0..senders)
        .map(|i| {
            let (forged, signature, start) =
                (forged.clone(), forged_signature.clone(), start.clone());
            std::thread::spawn(move || {
                let id = format!("forged-{i}");
                start.wait();
                request(
                    port,
                    "POST",
                    "/api/github/webhooks",
                    &[
                        ("X-GitHub-Delivery", &id),
                        ("X-GitHub-Event", "ping"),
                        ("X-Hub-Signature-256", &signature),
                        ("Content-Type", "application/json"),
                    ],
                    &forged,
                )
                .map(|response| response.status)
            })
        })
        .collect();

    // While the forged bodies stream through the HMAC into temporary files, GitHub's
    // delivery is verified and stored as usual.
    server.wait_for(
        "the forged bodies to be streaming to disk",
        Duration::from_secs(60),
        || files_in(&spill) >= senders / 2,
    );
    let signed = server.deliver("signed-among-forged", "ping", &ping_body());
    assert_eq!(signed.status, 202, "{}", signed.body);

    // The disk holds as many as the spill budget allows; those beyond are refused at
    // their head, for want of room.
    let statuses: Vec<u16> = threads
        .into_iter()
        .map(|thread| thread.join().unwrap().expect("the server answers"))
        .collect();
    assert!(
        statuses.iter().all(|status| [401, 503].contains(status)),
        "a forged body is refused: {statuses:?}"
    );
    let read_whole = statuses.iter().filter(|status| **status == 401).count();
    assert!(
        read_whole >= SPILL_BUDGET / MAX_BODY_BYTES,
        "as many as the spill budget holds are read: {statuses:?}"
    );
    let peak = server.peak_memory_bytes();
    assert!(
        peak < PEAK_MEMORY_LIMIT,
        "peak resident memory {} MiB; server log:\n{}",
        peak / (1024 * 1024),
        server.log()
    );
    assert_eq!(files_in(&spill), 0, "every temporary body file is removed");
    let stored = server.get("/api/deliveries/signed-among-forged");
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(stored.json()["event"], "ping");
    for i in 0..senders {
        assert_eq!(
            server.get(&format!("/api/deliveries/forged-{i}")).status,
            404
        );
    }
}

#[test]
fn a_signed_delivery_larger_than_the_memory_budget_is_verified_from_disk_and_stored() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let padding = "z".repeat(MEMORY_BUDGET + 1024 * 1024);
    let body =
        format!(r#"{{"zen":"Keep it logically awesome.","hook_id":7,"padding":"{padding}"}}"#);
    let response = server.deliver("large-signed", "ping", body.as_bytes());
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(
        server.get("/api/deliveries/large-signed").json()["event"],
        "ping"
    );
    assert_eq!(files_in(&data.path().join(SPILL_DIR)), 0);
    // A leftover from a crash is removed at the next start.
    let spill = data.path().join(SPILL_DIR);
    std::fs::write(spill.join("body-left-by-a-crash"), b"{").unwrap();
    let data_dir = server.kill();
    let _restarted = Server::with_secret(&data_dir);
    assert_eq!(files_in(&spill), 0);
}

/// A connection to `server` whose local end is bound to `local` (any 127/8 address is this
/// machine's on Linux), so the server sees it come from there.
fn connect_from(local: &str, port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{local}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&server.into()).unwrap();
    TcpStream::from(socket)
}

/// True once the server has closed `stream` (end of file, a reset, or an answer before the
/// close); never blocks.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 512];
    match stream.read(&mut buffer) {
        // End of file, or the start of an answer the server closes after.
        Ok(0) | Ok(1..) => true,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn three_hundred_trickling_connections_from_one_address_delay_no_one_else() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let port = server.port;
    let count = 300;
    let head = b"POST /api/github/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: ping\r\n";
    let connected = Instant::now();
    let streams: Vec<TcpStream> = (0..count)
        .map(|_| {
            let stream = connect_from("127.0.0.2", port);
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    // When each connection was closed by the server, if it was.
    let closed: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; count]));

    // One header byte on every open connection every 2 s; closures are noticed within
    // 50 ms. Bounded: it stops when all are closed or after 40 s.
    let trickler = {
        let closed = closed.clone();
        std::thread::spawn(move || {
            let mut streams = streams;
            let mut sent = 0;
            let mut next_byte = Instant::now();
            let give_up = Instant::now() + Duration::from_secs(40);
            while Instant::now() < give_up {
                let mut closed = closed.lock().unwrap();
                for (stream, closed_at) in streams.iter_mut().zip(closed.iter_mut()) {
                    if closed_at.is_none() && closed_by_server(stream) {
                        *closed_at = Some(Instant::now());
                    }
                }
                if closed.iter().all(Option::is_some) {
                    break;
                }
                if Instant::now() >= next_byte && sent < head.len() {
                    for (stream, closed_at) in streams.iter_mut().zip(closed.iter()) {
                        if closed_at.is_none() {
                            let _ = stream.write(&head[sent..=sent]);
                        }
                    }
                    sent += 1;
                    next_byte += Duration::from_secs(2);
                }
                drop(closed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let closed_count = || closed.lock().unwrap().iter().flatten().count();

    // The address's share is held; every connection beyond it is closed at once.
    server.wait_for(
        "the connections beyond the address's share to be closed",
        Duration::from_secs(5),
        || closed_count() >= count - MAX_PER_CLIENT,
    );
    assert_eq!(
        closed_count(),
        count - MAX_PER_CLIENT,
        "the address keeps its share open"
    );

    // Meanwhile, from 127.0.0.1, GitHub's deliveries and the health check are answered at
    // once, twice over the trickle.
    let body = ping_body();
    for round in 0..2 {
        let started = Instant::now();
        let health = server.get("/healthz");
        let health_took = started.elapsed();
        assert_eq!(health.status, 200);
        assert!(
            health_took < Duration::from_secs(1),
            "/healthz took {health_took:?}"
        );
        let started = Instant::now();
        let delivery = server.deliver(&format!("during-trickle-{round}"), "ping", &body);
        let delivery_took = started.elapsed();
        assert_eq!(delivery.status, 202, "{}", delivery.body);
        assert!(
            delivery_took < Duration::from_secs(1),
            "the delivery took {delivery_took:?}"
        );
        if round == 0 {
            // The second round comes a few trickled bytes later.
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    assert_eq!(
        closed_count(),
        count - MAX_PER_CLIENT,
        "the held connections were still open during the deliveries"
    );

    // The head deadline ends the connections that were held.
    trickler.join().unwrap();
    let closed = closed.lock().unwrap();
    let last = closed
        .iter()
        .map(|at| at.expect("every trickling connection is closed by the server"))
        .max()
        .unwrap();
    let held_for = last.duration_since(connected);
    assert!(
        held_for < HEAD_TIMEOUT + Duration::from_secs(5),
        "a trickling connection was held {held_for:?}"
    );
    for round in 0..2 {
        assert_eq!(
            server
                .get(&format!("/api/deliveries/during-trickle-{round}"))
                .status,
            200
        );
    }
}

#[test]
fn behind_a_trusted_proxy_the_cap_counts_requests_per_named_client() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("TRUSTED_PROXY_HEADER", "Fly-Client-IP"),
        ],
    );
    let body = ping_body();
    let signature = sign(SECRET, &body);
    // Every connection comes from the "proxy" at 127.0.0.1; one client behind it holds its
    // share of requests, each waiting for a body that does not come yet.
    let held: Vec<TcpStream> = (0..MAX_PER_CLIENT)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            let head = format!(
                "POST /api/github/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nFly-Client-IP: 203.0.113.9\r\n\
                 X-GitHub-Delivery: held-{i}\r\nX-GitHub-Event: ping\r\nX-Hub-Signature-256: {signature}\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    server.wait_for(
        "the held requests to reach the webhook route",
        Duration::from_secs(10),
        || {
            let metrics = server.get("/metrics").body;
            metrics.contains(&format!(
                "alloy_sysext_webhook_deliveries_total{{event=\"ping\",outcome=\"received\"}} {MAX_PER_CLIENT}"
            ))
        },
    );

    let from = |client: &str, id: &str| {
        request(
            server.port,
            "POST",
            "/api/github/webhooks",
            &[
                ("Fly-Client-IP", client),
                ("X-GitHub-Delivery", id),
                ("X-GitHub-Event", "ping"),
                ("X-Hub-Signature-256", &signature),
            ],
            &body,
        )
        .unwrap()
    };
    let refused = from("203.0.113.9", "one-too-many");
    assert_eq!(refused.status, 429, "{}", refused.body);
    // Another client behind the same proxy is not affected, although the proxy's own
    // address has more connections open than one client's share.
    let other = from("198.51.100.7", "another-client");
    assert_eq!(other.status, 202, "{}", other.body);

    // The held requests finish, and their client's share is free again.
    for mut stream in held {
        stream.write_all(&body).unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 202");
    }
    let again = from("203.0.113.9", "after-the-held-ones");
    assert_eq!(again.status, 202, "{}", again.body);
}

/// Sends the head of a forged webhook delivery on `stream`, with `length` as its
/// `Content-Length` or, without one, a chunked body.
fn send_forged_head(stream: &mut TcpStream, length: Option<usize>) {
    let framing = match length {
        Some(length) => format!("Content-Length: {length}"),
        None => "Transfer-Encoding: chunked".to_owned(),
    };
    let head = format!(
        "POST /api/github/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Delivery: forged\r\n\
         X-GitHub-Event: ping\r\nX-Hub-Signature-256: {}\r\n{framing}\r\n\r\n",
        sign("not the secret", b"")
    );
    stream.write_all(head.as_bytes()).unwrap();
}

/// Sends `bytes` bytes of a chunked body on `stream`, in 64 KiB chunks, without ending it.
fn send_chunks(stream: &mut TcpStream, bytes: usize) {
    let chunk = vec![b'c'; 64 * 1024];
    let mut sent = 0;
    while sent < bytes {
        let size = chunk.len().min(bytes - sent);
        stream
            .write_all(format!("{size:x}\r\n").as_bytes())
            .unwrap();
        stream.write_all(&chunk[..size]).unwrap();
        stream.write_all(b"\r\n").unwrap();
        sent += size;
    }
}

#[test]
fn chunked_bodies_that_outgrow_the_budget_spill_within_the_memory_limit() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let spill = data.path().join(SPILL_DIR);
    // Connections hold three quarters of the budget with the largest declared bodies that
    // take memory, almost all sent, so that bodies without a length soon outgrow what is
    // left and spill what they held in memory.
    let reservations: Vec<TcpStream> = (0..MEMORY_BUDGET / 4 * 3 / MAX_RESERVATION)
        .map(|_| {
            let mut reservation = connect_from("127.0.0.2", server.port);
            send_forged_head(&mut reservation, Some(MAX_RESERVATION));
            reservation
                .write_all(&vec![b'r'; MAX_RESERVATION - 1])
                .unwrap();
            reservation
        })
        .collect();
    // Each chunked body outgrows the rest of the budget and is left open, spilled.
    let spilling = 30;
    let mut open = Vec::new();
    for i in 0..spilling {
        let mut stream = connect_from(&format!("127.0.0.{}", 3 + i / 10), server.port);
        send_forged_head(&mut stream, None);
        send_chunks(&mut stream, MEMORY_BUDGET / 8 + 1024 * 1024);
        open.push(stream);
        server.wait_for(
            "the chunked body to be spilled",
            Duration::from_secs(10),
            || files_in(&spill) > i,
        );
    }
    // GitHub's delivery is acknowledged meanwhile.
    let signed = server.deliver("signed-among-chunked", "ping", &ping_body());
    assert_eq!(signed.status, 202, "{}", signed.body);
    let peak = server.peak_memory_bytes();
    assert!(
        peak < PEAK_MEMORY_LIMIT,
        "peak resident memory {} MiB with {spilling} spilled chunked bodies",
        peak / (1024 * 1024)
    );
    drop(open);
    drop(reservations);
    server.wait_for(
        "the spilled bodies to be removed",
        Duration::from_secs(10),
        || files_in(&spill) == 0,
    );
}

#[test]
fn once_the_spill_budget_is_taken_forged_bodies_get_503_and_a_signed_delivery_still_202() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let spill = data.path().join(SPILL_DIR);
    // Declared bodies larger than the memory budget go to disk, each charged its length:
    // as many as the spill budget holds are left open.
    let held_count = SPILL_BUDGET / MAX_BODY_BYTES;
    let held: Vec<TcpStream> = (0..held_count)
        .map(|i| {
            let mut stream = connect_from(&format!("127.0.0.{}", 2 + i / 16), server.port);
            send_forged_head(&mut stream, Some(MAX_BODY_BYTES));
            stream.write_all(b"{").unwrap();
            stream
        })
        .collect();
    server.wait_for(
        "the held bodies to be spilled",
        Duration::from_secs(10),
        || files_in(&spill) == held_count,
    );

    // Refused at its head: it is not read.
    let mut refused = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send_forged_head(&mut refused, Some(MAX_BODY_BYTES));
    let mut answer = [0u8; 4096];
    let read = refused.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 30\r\n"), "{answer}");
    assert!(answer.contains("redeliver it later"), "{answer}");
    assert_eq!(files_in(&spill), held_count, "no file for the refused body");

    let signed = server.deliver("signed-with-the-disk-taken", "ping", &ping_body());
    assert_eq!(signed.status, 202, "{}", signed.body);

    // Once the held bodies end, their room is free again.
    drop(held);
    server.wait_for(
        "the held bodies' files to be removed",
        Duration::from_secs(10),
        || files_in(&spill) == 0,
    );
    let padding = "z".repeat(MEMORY_BUDGET + 1024);
    let large = format!(r#"{{"zen":"Approachable is better than simple.","padding":"{padding}"}}"#);
    let after = server.deliver("large-after-the-held-ones", "ping", large.as_bytes());
    assert_eq!(after.status, 202, "{}", after.body);
}

#[test]
fn behind_a_trusted_proxy_a_download_still_being_sent_counts_against_its_client() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("TRUSTED_PROXY_HEADER", "Fly-Client-IP"),
        ],
    );
    // Larger than what loopback's socket buffers take, so a client that does not read
    // keeps its download being sent.
    let images = data.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let image = std::fs::File::create(images.join("alloy-1.0.0-amd64.raw")).unwrap();
    image.set_len(256 * 1024 * 1024).unwrap();
    let download = |client: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "GET /images/alloy-1.0.0-amd64.raw HTTP/1.1\r\nHost: 127.0.0.1\r\nFly-Client-IP: {client}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).unwrap();
        (stream, String::from_utf8_lossy(&status).into_owned())
    };
    // One client starts its share of downloads and reads no further than the status.
    let held: Vec<TcpStream> = (0..MAX_PER_CLIENT)
        .map(|_| {
            let (stream, status) = download("203.0.113.9");
            assert_eq!(status, "HTTP/1.1 200");
            stream
        })
        .collect();
    let (_refused, status) = download("203.0.113.9");
    assert_eq!(status, "HTTP/1.1 429", "its answers are still being sent");
    let (_other, status) = download("198.51.100.7");
    assert_eq!(status, "HTTP/1.1 200", "another client is not affected");

    // Once its downloads are given up, the client's share is free again.
    drop(held);
    server.wait_for(
        "the given-up downloads to free their client's share",
        Duration::from_secs(10),
        || download("203.0.113.9").1 == "HTTP/1.1 200",
    );
}

#[test]
fn a_malformed_signature_is_refused_before_the_body_is_read() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    for signature in [
        "sha256=zz",
        "sha1=0123456789abcdef0123456789abcdef01234567",
        "forged",
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The head promises GitHub's largest body, none of which is sent.
        let head = format!(
            "POST /api/github/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Delivery: malformed\r\n\
             X-GitHub-Event: ping\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = [0u8; 4096];
        let read = stream.read(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 401"), "{signature}: {answer}");
        assert!(
            answer.contains("sha256= followed by 64 hex digits"),
            "{signature}: {answer}"
        );
    }
    assert_eq!(files_in(&data.path().join(SPILL_DIR)), 0);
}
