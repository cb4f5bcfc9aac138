//! What strangers can cost the server: memory for bodies that are not GitHub's. Against
//! the real binary on loopback.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use alloy_sysext_automation::server::signature::sign;
use alloy_sysext_automation::server::unverified_body::{MEMORY_BUDGET, SPILL_DIR};
use alloy_sysext_automation::server::webhook::MAX_BODY_BYTES;

use crate::common::fixture;
use crate::http::request;
use crate::serve_process::Server;

/// The peak resident memory the issue allows while strangers send large bodies.
const PEAK_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

fn ping_body() -> Vec<u8> {
    std::fs::read(fixture("github-webhooks/ping/payload.json")).unwrap()
}

#[test]
fn twenty_forged_25_mib_bodies_are_streamed_to_disk_and_a_signed_delivery_still_gets_in() {
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

    for thread in threads {
        let status = thread.join().unwrap().expect("the server answers");
        assert_eq!(status, 401, "a forged body is refused");
    }
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
