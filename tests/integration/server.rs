//! `serve` on loopback: webhook verification and the durable inbox.

use alloy_sysext_automation::server::signature::sign;

use crate::serve_process::{SECRET, Server, fixtures};

#[test]
fn every_real_payload_is_verified_and_stored() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    for (index, (event, file, body)) in fixtures().into_iter().enumerate() {
        let id = format!("00000000-0000-0000-0000-{index:012}");
        let response = server.deliver(&id, &event, &body);
        assert_eq!(response.status, 202, "{event}/{file}: {}", response.body);
        let stored = server.get(&format!("/api/deliveries/{id}")).json();
        assert_eq!(stored["event"], event.as_str(), "{file}");
        let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(stored["action"], payload["action"], "{event}/{file}");
        assert_eq!(
            stored["repository"], payload["repository"]["full_name"],
            "{event}/{file}"
        );
        assert_eq!(stored["state"], "pending");
        assert!(stored["received_at"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn bad_or_missing_signatures_are_refused_and_nothing_is_stored() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let body = br#"{"zen":"Design for failure.","hook_id":1}"#;
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no-signature", vec![]),
        (
            "wrong-secret",
            vec![("X-Hub-Signature-256", sign("not the secret", body))],
        ),
        (
            "other-body",
            vec![("X-Hub-Signature-256", sign(SECRET, b"{}"))],
        ),
        (
            "sha1-only",
            vec![("X-Hub-Signature", "sha1=0123456789abcdef".to_owned())],
        ),
        (
            "garbage",
            vec![("X-Hub-Signature-256", "sha256=nothex".to_owned())],
        ),
    ];
    for (id, extra) in cases {
        let mut headers = vec![("X-GitHub-Delivery", id), ("X-GitHub-Event", "ping")];
        headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let response = server.post_webhook(&headers, body);
        assert_eq!(response.status, 401, "{id}: {}", response.body);
        assert_eq!(
            server.get(&format!("/api/deliveries/{id}")).status,
            404,
            "{id}"
        );
    }
}

#[test]
fn a_redelivery_is_acknowledged_and_stored_once() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":2}"#;
    let id = "7c4ff3a0-0000-11ef-8000-000000000001";
    assert_eq!(server.deliver(id, "ping", body).status, 202);
    let again = server.deliver(id, "ping", body);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["status"], "already stored");
    assert_eq!(
        server.get(&format!("/api/deliveries/{id}")).json()["event"],
        "ping"
    );
}

#[test]
fn hostile_bodies_get_clear_errors_and_the_server_stays_up() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());

    let huge = vec![b' '; 30 * 1024 * 1024];
    assert_eq!(server.deliver("huge", "ping", &huge).status, 413);

    let not_json = b"{\"action\": ";
    assert_eq!(server.deliver("not-json", "ping", not_json).status, 400);

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(server.deliver("deep", "ping", deep.as_bytes()).status, 400);

    let array = b"[1, 2, 3]";
    assert_eq!(server.deliver("array", "ping", array).status, 400);

    let missing_fields = br#"{"action": "created"}"#;
    assert_eq!(
        server
            .deliver("sparse", "issue_comment", missing_fields)
            .status,
        202
    );

    let bad_id = server.deliver("../../etc/passwd", "ping", b"{}");
    assert_eq!(bad_id.status, 400);
    let bad_event = server.deliver("fine-id", "Ping; DROP", b"{}");
    assert_eq!(bad_event.status, 400);

    for id in ["huge", "not-json", "deep", "array", "fine-id"] {
        assert_eq!(
            server.get(&format!("/api/deliveries/{id}")).status,
            404,
            "{id}"
        );
    }
    let health = server.get("/healthz");
    assert_eq!(health.status, 200);
}

#[test]
fn acknowledged_deliveries_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let ids: Vec<String> = (0..25)
        .map(|i| format!("d0d0d0d0-0000-0000-0000-{i:012}"))
        .collect();
    for id in &ids {
        let body = format!(r#"{{"action":"created","n":"{id}"}}"#);
        assert_eq!(
            server.deliver(id, "issue_comment", body.as_bytes()).status,
            202
        );
    }
    // SIGKILL right after the last acknowledgement: nothing gets to flush anything.
    let data_dir = server.kill();
    let restarted = Server::with_secret(&data_dir);
    for id in &ids {
        let stored = restarted.get(&format!("/api/deliveries/{id}"));
        assert_eq!(stored.status, 200, "{id} was lost");
        assert_eq!(stored.json()["action"], "created");
    }
}

#[test]
fn without_a_webhook_secret_every_delivery_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let health = server.get("/healthz").json();
    assert_eq!(health["webhook_secret_configured"], false);
    assert_eq!(health["can_act"], false);
    assert!(
        health["cannot_act_because"]
            .as_str()
            .unwrap()
            .contains("APP_ID")
    );
    let response = server.deliver("any", "ping", b"{}");
    assert_eq!(response.status, 401);
    assert!(
        response.body.contains("WEBHOOK_SECRET"),
        "{}",
        response.body
    );
}

#[test]
fn any_configured_secret_verifies_and_headers_are_required() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[("WEBHOOK_SECRET", &format!("rotated-out, {SECRET}"))],
    );
    let body = br#"{"action":"created"}"#;
    let old = sign("rotated-out", body);
    let response = server.post_webhook(
        &[
            ("X-GitHub-Delivery", "signed-with-old"),
            ("X-GitHub-Event", "projects_v2_item"),
            ("X-Hub-Signature-256", &old),
        ],
        body,
    );
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(server.deliver("signed-with-new", "ping", body).status, 202);
    assert_eq!(
        server.get("/api/deliveries/signed-with-old").json()["event"],
        "projects_v2_item"
    );

    let signature = sign(SECRET, body);
    let no_id = server.post_webhook(
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &signature),
        ],
        body,
    );
    assert_eq!(no_id.status, 400);
    let no_event = server.post_webhook(
        &[
            ("X-GitHub-Delivery", "no-event"),
            ("X-Hub-Signature-256", &signature),
        ],
        body,
    );
    assert_eq!(no_event.status, 400);
    assert_eq!(server.get("/api/deliveries/no-event").status, 404);
}

#[test]
fn unknown_deliveries_are_404() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::with_secret(data.path());
    let response = server.get("/api/deliveries/never-sent");
    assert_eq!(response.status, 404);
    assert!(
        response.json()["error"]
            .as_str()
            .unwrap()
            .contains("never-sent")
    );
}

#[test]
fn temporary_files_left_in_the_images_directory_are_removed_at_start() {
    let data = tempfile::tempdir().unwrap();
    let images = data.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    // What a kill between writing a file and renaming it leaves, and a published file.
    let leftover = images.join(".alloy-1.17.1-amd64.raw.Qw3rTy.tmp");
    let published = images.join("alloy-1.17.1-amd64.raw");
    std::fs::write(&leftover, b"half an image").unwrap();
    std::fs::write(&published, b"an image").unwrap();
    let server = Server::with_secret(data.path());
    assert!(!leftover.exists());
    assert_eq!(std::fs::read(&published).unwrap(), b"an image");
    let log = server.log();
    assert!(log.contains("removed the temporary files"), "{log}");
}
